//! The heartbeat task: an STS identity probe, and a keep-warm probe on each Bedrock host.
//!
//! The STS probe goes to another host than Bedrock: pools are per host, so it never keeps a
//! Bedrock connection alive. It keeps credentials and DNS warm and tells the operator when
//! credentials break. What keeps Bedrock connections warm is the keep-warm probe:
//! `ListAsyncInvokes` (`maxResults=1`, free and read-only) on each region's Bedrock host,
//! at an interval shorter than the pool idle timeout.

mod config;
mod status;
mod task;

pub use config::HeartbeatConfig;
pub use status::{HeartbeatStats, ProbeError, ProbeKind, ProbeStats};

use crate::error::{Error, Result};
use crate::factory::LlmFactory;
use crate::probe::keep_warm_probe;
use crate::shared::Shared;
use status::lock;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use task::{Schedule, run};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Handle of a running heartbeat: read its statistics, stop it.
///
/// Clones share the one task (a service can keep one in its state and hand others to a
/// `/stats` endpoint): it stops when [`HeartbeatHandle::stop`] is called on any clone, or when
/// the last clone is dropped.
#[derive(Clone)]
pub struct HeartbeatHandle {
    inner: Arc<Inner>,
}

/// What the clones of a handle share.
struct Inner {
    status: Arc<Mutex<HeartbeatStats>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Frees the factory's heartbeat slot when the last handle goes.
    _slot: Slot,
}

/// The factory's one heartbeat slot, taken by a running heartbeat; it never keeps the factory
/// alive.
struct Slot(std::sync::Weak<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Result<Slot> {
        if shared.heartbeat_running.swap(true, Relaxed) {
            return Err(Error::invalid(
                "start_heartbeat",
                "a heartbeat is already running for this factory: stop or drop its handle first",
            ));
        }
        Ok(Slot(Arc::downgrade(shared)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.heartbeat_running.store(false, Relaxed);
        }
    }
}

impl fmt::Debug for HeartbeatHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl HeartbeatHandle {
    /// Returns a snapshot of the heartbeat's state: probe counts, the last error, running.
    pub fn stats(&self) -> HeartbeatStats {
        let mut s = lock(&self.inner.status).clone();
        s.running = lock(&self.inner.task)
            .as_ref()
            .is_some_and(|t| !t.is_finished());
        s
    }

    /// Stops the task (for every clone of this handle) and waits until it has ended: no probe
    /// is sent after this returns.
    pub async fn stop(self) {
        let _ = self.inner.stop.send(true);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl LlmFactory {
    /// Starts the heartbeat task on the current tokio runtime.
    ///
    /// Each probe runs once at start, then at its interval: missing or expired credentials
    /// show in [`HeartbeatHandle::stats`] and the log within moments of start-up, not at the
    /// first request, and the keep-warm probe opens the connections the first calls use.
    ///
    /// The task holds only a weak reference: it never keeps the factory alive, and ends when
    /// the factory is dropped, when [`HeartbeatHandle::stop`] is called, or when the last
    /// clone of the handle is dropped.
    ///
    /// A factory runs at most one heartbeat: a second call while the first one's handle lives
    /// is refused (one task already probes everything there is to probe). Stop or drop the
    /// handle to start another with a new configuration.
    ///
    /// # Errors
    /// An invalid-input error naming the setting: intervals, timeouts or backoffs shorter than
    /// 10 ms or longer than a day, a keep-warm interval not shorter than the pool idle timeout,
    /// zero connections to keep warm, or both probes off; `start_heartbeat` when a heartbeat
    /// of this factory is already running; `heartbeat` when the factory uses a Bedrock API key
    /// (the identity probe is then skipped: STS needs SigV4 credentials) and keep-warm is off.
    /// Also fails outside a tokio runtime.
    pub fn start_heartbeat(&self, config: HeartbeatConfig) -> Result<HeartbeatHandle> {
        config.validate(self.config().pool.idle_timeout)?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid(
                "heartbeat",
                "start_heartbeat must run inside a tokio runtime",
            )
        })?;
        let slot = Slot::take(self.shared())?;
        let status = Arc::new(Mutex::new(HeartbeatStats {
            running: true,
            ..HeartbeatStats::default()
        }));
        let (stop, stop_rx) = watch::channel(false);
        let mut schedules = Vec::new();
        // The first round runs at start: missing or broken credentials, or a host out of
        // reach, show at once rather than one interval later, and the keep-warm probe opens
        // the connections the first calls will use.
        let now = Instant::now();
        // STS takes SigV4 only: with a Bedrock API key there may be no credentials for it.
        let identity = config.identity_probe && !self.shared().bedrock_api_key;
        if config.identity_probe && !identity {
            tracing::info!(
                "heartbeat: identity probe skipped: the factory uses a Bedrock API key, and STS needs SigV4 credentials"
            );
        }
        if !identity && !config.keep_warm {
            return Err(Error::invalid(
                "heartbeat",
                "the factory uses a Bedrock API key, so the STS identity probe cannot run: turn keep_warm on",
            ));
        }
        if identity {
            schedules.push(Schedule {
                kind: ProbeKind::Identity,
                interval: config.identity_interval,
                next: now,
                failures: 0,
            });
        }
        if config.keep_warm {
            schedules.push(Schedule {
                kind: ProbeKind::KeepWarm,
                interval: config.keep_warm_interval,
                next: now,
                failures: 0,
            });
        }
        for s in &schedules {
            tracing::info!(
                probe = s.kind.describe(),
                interval_s = s.interval.as_secs_f64(),
                "heartbeat scheduled: no model calls, no cost"
            );
        }
        let task = handle.spawn(run(
            self.downgrade(),
            config,
            schedules,
            status.clone(),
            stop_rx,
        ));
        Ok(HeartbeatHandle {
            inner: Arc::new(Inner {
                status,
                stop,
                task: Mutex::new(Some(task)),
                _slot: slot,
            }),
        })
    }

    /// Opens connections to each region's Bedrock host before the first real request, with
    /// `n` concurrent keep-warm probes (`ListAsyncInvokes`, free and read-only).
    ///
    /// Over HTTP/1.1 it leaves `n` connections open. Over HTTP/2 (what Bedrock negotiates) it
    /// leaves one, which every later call shares: on a cold pool the `n` probes may race up to
    /// `n` handshakes, and the pool keeps one and drops the rest (they do not show in the pool
    /// statistics). `warm_up(1)` is therefore enough over HTTP/2.
    ///
    /// # Errors
    /// Invalid input for `n` of 0 or above the pool cap; otherwise the first probe error.
    pub async fn warm_up(&self, n: usize) -> Result<()> {
        let cap = self.config().pool.max_connections_per_host;
        if n == 0 || n > cap {
            return Err(Error::invalid(
                "warm_up",
                format!("{n} connections is outside 1..={cap} (the pool cap)"),
            ));
        }
        let timeout = self.config().timeouts.read;
        let mut probes = Vec::new();
        for region in self.shared().regions.iter() {
            for _ in 0..n {
                let client = region.client.clone();
                probes.push(async move { keep_warm_probe(&client, timeout).await });
            }
        }
        for r in futures_util::future::join_all(probes).await {
            r?;
        }
        Ok(())
    }
}
