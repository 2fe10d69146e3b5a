//! The heartbeat task: an STS identity probe, and a keep-warm probe on each Bedrock host.
//!
//! The STS probe goes to another host than Bedrock: pools are per host, so it never keeps a
//! Bedrock connection alive. It keeps credentials and DNS warm and tells the operator when
//! credentials break. What keeps Bedrock connections warm is the keep-warm probe:
//! `ListAsyncInvokes` (`maxResults=1`, free and read-only) on each region's Bedrock host,
//! at an interval shorter than the pool idle timeout.

use crate::error::{Error, ErrorKind, Result, from_sdk};
use crate::factory::{LlmFactory, WeakFactory};
use crate::shared::Shared;
use aws_smithy_types::retry::{ReconnectMode, RetryConfig};
use aws_smithy_types::timeout::TimeoutConfig;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Shortest interval or timeout the heartbeat accepts.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval, timeout or backoff accepted: a day.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Settings of the heartbeat task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    /// Runs the STS GetCallerIdentity probe. Default is true.
    pub identity_probe: bool,
    /// Interval of the identity probe. Default is 300 s.
    pub identity_interval: Duration,
    /// Runs the Bedrock keep-warm probe (`ListAsyncInvokes`) on each region's host. Default is
    /// false.
    pub keep_warm: bool,
    /// Interval of the keep-warm probe; must be shorter than the pool idle timeout.
    /// Default is 40 s.
    pub keep_warm_interval: Duration,
    /// Concurrent keep-warm probes per region and round. Over HTTP/1.1 each probe keeps its own
    /// connection warm. Over HTTP/2 the probes are multiplexed on the one connection that carries
    /// every call, so a value above 1 keeps no more connections, only sends more probes (and
    /// on a cold pool the first round may race that many handshakes, of which one is kept).
    /// Default is 1.
    pub keep_warm_connections: usize,
    /// Skips a keep-warm probe when model calls reached that region within the interval; the
    /// probe then runs one interval after that traffic. Default is true.
    pub activity_aware: bool,
    /// Time allowed for one probe. Default is 10 s.
    pub probe_timeout: Duration,
    /// Shortest wait after a failed probe; waits double with each consecutive failure.
    /// Default is 1 s.
    pub backoff_floor: Duration,
    /// Longest wait after failed probes. Default is 600 s.
    pub backoff_max: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            identity_probe: true,
            identity_interval: Duration::from_secs(300),
            keep_warm: false,
            keep_warm_interval: Duration::from_secs(40),
            keep_warm_connections: 1,
            activity_aware: true,
            probe_timeout: Duration::from_secs(10),
            backoff_floor: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
        }
    }
}

impl HeartbeatConfig {
    /// Turns the identity probe on or off.
    pub fn identity_probe(mut self, on: bool) -> Self {
        self.identity_probe = on;
        self
    }

    /// Sets the identity probe interval.
    pub fn identity_interval(mut self, interval: Duration) -> Self {
        self.identity_interval = interval;
        self
    }

    /// Turns the keep-warm probe on or off.
    pub fn keep_warm(mut self, on: bool) -> Self {
        self.keep_warm = on;
        self
    }

    /// Sets the keep-warm interval.
    pub fn keep_warm_interval(mut self, interval: Duration) -> Self {
        self.keep_warm_interval = interval;
        self
    }

    /// Sets how many connections per region the keep-warm probe keeps warm over HTTP/1.1;
    /// over HTTP/2 it keeps the one connection, whatever `n`.
    pub fn keep_warm_connections(mut self, n: usize) -> Self {
        self.keep_warm_connections = n;
        self
    }

    /// Turns activity-aware skipping on or off.
    pub fn activity_aware(mut self, on: bool) -> Self {
        self.activity_aware = on;
        self
    }

    /// Sets the time allowed for one probe's answer (its read timeout; a probe makes one
    /// attempt). A probe that times out retires its connection, so over HTTP/2 a dead
    /// connection is found by the probe instead of by the next call.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Sets the backoff bounds after failed probes.
    pub fn backoff(mut self, floor: Duration, max: Duration) -> Self {
        self.backoff_floor = floor;
        self.backoff_max = max;
        self
    }

    fn validate(&self, pool_idle_timeout: Option<Duration>) -> Result<()> {
        for (field, d) in [
            ("identity_interval", self.identity_interval),
            ("keep_warm_interval", self.keep_warm_interval),
            ("probe_timeout", self.probe_timeout),
            ("backoff_floor", self.backoff_floor),
            ("backoff_max", self.backoff_max),
        ] {
            if d < MIN_INTERVAL {
                return Err(Error::invalid(
                    field,
                    format!("{d:?} is shorter than {MIN_INTERVAL:?}"),
                ));
            }
            // Beyond this, `Instant + d` could overflow and panic.
            if d > MAX_INTERVAL {
                return Err(Error::invalid(
                    field,
                    format!("{d:?} is longer than {MAX_INTERVAL:?} (a day)"),
                ));
            }
        }
        if self.backoff_max < self.backoff_floor {
            return Err(Error::invalid(
                "backoff_max",
                format!(
                    "{:?} is shorter than backoff_floor ({:?})",
                    self.backoff_max, self.backoff_floor
                ),
            ));
        }
        if self.keep_warm {
            if self.keep_warm_connections == 0 || self.keep_warm_connections > 1000 {
                return Err(Error::invalid(
                    "keep_warm_connections",
                    format!("{} is outside 1..=1000", self.keep_warm_connections),
                ));
            }
            if let Some(idle) = pool_idle_timeout
                && self.keep_warm_interval >= idle
            {
                return Err(Error::invalid(
                    "keep_warm_interval",
                    format!(
                        "keep_warm_interval ({:?}) must be shorter than pool_idle_timeout ({idle:?}), or the pool evicts the connection it keeps warm",
                        self.keep_warm_interval
                    ),
                ));
            }
        }
        if !self.identity_probe && !self.keep_warm {
            return Err(Error::invalid(
                "heartbeat",
                "both the identity probe and keep-warm are off: nothing to do",
            ));
        }
        Ok(())
    }
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeKind {
    /// STS GetCallerIdentity.
    Identity,
    /// Bedrock ListAsyncInvokes on a region's host.
    KeepWarm,
}

impl ProbeKind {
    fn label(self) -> &'static str {
        match self {
            ProbeKind::Identity => "identity",
            ProbeKind::KeepWarm => "keep_warm",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ProbeKind::Identity => "identity probe (STS GetCallerIdentity)",
            ProbeKind::KeepWarm => "keep-warm probe (Bedrock ListAsyncInvokes, maxResults=1)",
        }
    }
}

/// Counts of one probe kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeCounts {
    /// Probes sent.
    pub sent: u64,
    /// Probes that succeeded.
    pub succeeded: u64,
    /// Probes that failed.
    pub failed: u64,
    /// Probes skipped because real traffic kept the host warm.
    pub skipped: u64,
}

/// The last probe error: its kind and message (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeError {
    /// Which probe failed.
    pub probe: ProbeKind,
    /// The error kind.
    pub kind: ErrorKind,
    /// The error message.
    pub message: String,
}

/// A snapshot of the heartbeat's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatStatus {
    /// Time of the last successful probe.
    pub last_success: Option<SystemTime>,
    /// Time of the last failed probe.
    pub last_failure: Option<SystemTime>,
    /// Failed probes since the last success.
    pub consecutive_failures: u32,
    /// The last error.
    pub last_error: Option<ProbeError>,
    /// Identity probe counts.
    pub identity: ProbeCounts,
    /// Keep-warm probe counts (all regions).
    pub keep_warm: ProbeCounts,
    /// False once the task has stopped.
    pub running: bool,
}

/// Handle of a running heartbeat: read its status, stop it. Dropping it stops the task.
pub struct HeartbeatHandle {
    status: Arc<Mutex<HeartbeatStatus>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// Frees the factory's heartbeat slot when the handle goes.
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
            .field("status", &self.status())
            .finish()
    }
}

impl HeartbeatHandle {
    /// Returns a snapshot of the heartbeat's state.
    pub fn status(&self) -> HeartbeatStatus {
        let mut s = lock(&self.status).clone();
        s.running = self.task.as_ref().is_some_and(|t| !t.is_finished());
        s
    }

    /// Stops the task and waits until it has ended: no probe is sent after this returns.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for HeartbeatHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hint for the operator, by what failed.
fn hint(probe: ProbeKind, e: &Error) -> &'static str {
    match (e.kind(), e.code()) {
        (_, Some("ExpiredToken" | "ExpiredTokenException")) => {
            "the credentials have expired: refresh them (new session token, `aws sso login`, role refresh)"
        }
        (_, Some("InvalidClientTokenId" | "UnrecognizedClientException")) => {
            "the access key is not recognised: check the configured credentials"
        }
        (_, Some("SignatureDoesNotMatch" | "InvalidSignatureException")) => {
            "the signature was rejected: check the secret key and the clock"
        }
        (ErrorKind::AccessDenied, Some(_)) if probe == ProbeKind::Identity => {
            "permission denied: the identity needs sts:GetCallerIdentity"
        }
        (ErrorKind::AccessDenied, Some(_)) => {
            "permission denied: the identity needs bedrock:ListAsyncInvokes for keep-warm"
        }
        (ErrorKind::AccessDenied, None) => {
            "no usable credentials: set up the AWS credentials chain (environment, profile, role)"
        }
        (ErrorKind::Timeout | ErrorKind::Network, _) => {
            "network problem: check connectivity, DNS, proxy and security groups"
        }
        (ErrorKind::Throttled, _) => "throttled: the probe interval may be too short",
        (ErrorKind::ServiceUnavailable, _) => "the service is failing; it will be probed again",
        _ => "unexpected failure",
    }
}

/// Per-probe-kind schedule state.
struct Schedule {
    kind: ProbeKind,
    interval: Duration,
    next: Instant,
    failures: u32,
}

impl Schedule {
    fn after_result(&mut self, ok: bool, cfg: &HeartbeatConfig) {
        let now = Instant::now();
        if ok {
            self.failures = 0;
            self.next = now + self.interval;
        } else {
            self.failures = self.failures.saturating_add(1);
            let exp = self.failures.saturating_sub(1).min(20);
            let wait = cfg
                .backoff_floor
                .saturating_mul(1u32 << exp)
                .clamp(cfg.backoff_floor, cfg.backoff_max)
                .min(self.interval.max(cfg.backoff_floor));
            self.next = now + wait;
        }
    }
}

impl LlmFactory {
    /// Starts the heartbeat task on the current tokio runtime.
    ///
    /// The task holds only a weak reference: it never keeps the factory alive, and ends when
    /// the factory is dropped, when [`HeartbeatHandle::stop`] is called, or when the handle is
    /// dropped.
    ///
    /// A factory runs at most one heartbeat: a second call while the first one's handle lives
    /// is refused (one task already probes everything there is to probe). Stop or drop the
    /// handle to start another with a new configuration.
    ///
    /// # Errors
    /// An invalid-input error naming the setting: intervals, timeouts or backoffs shorter than
    /// 10 ms or longer than a day, a keep-warm interval not shorter than the pool idle timeout,
    /// zero connections to keep warm, or both probes off; `start_heartbeat` when a heartbeat
    /// of this factory is already running. Also fails outside a tokio runtime.
    pub fn start_heartbeat(&self, config: HeartbeatConfig) -> Result<HeartbeatHandle> {
        config.validate(self.config().pool.idle_timeout)?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid(
                "heartbeat",
                "start_heartbeat must run inside a tokio runtime",
            )
        })?;
        let slot = Slot::take(self.shared())?;
        let status = Arc::new(Mutex::new(HeartbeatStatus {
            running: true,
            ..HeartbeatStatus::default()
        }));
        let (stop, stop_rx) = watch::channel(false);
        let mut schedules = Vec::new();
        let now = Instant::now();
        if config.identity_probe {
            schedules.push(Schedule {
                kind: ProbeKind::Identity,
                interval: config.identity_interval,
                next: now + config.identity_interval,
                failures: 0,
            });
        }
        if config.keep_warm {
            schedules.push(Schedule {
                kind: ProbeKind::KeepWarm,
                interval: config.keep_warm_interval,
                next: now + config.keep_warm_interval,
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
            status,
            stop,
            task: Some(task),
            _slot: slot,
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

/// Returns the per-call settings of a probe: one attempt, and the probe timeout as the read
/// timeout, so that a probe that gets no answer fails in the connector, which retires its
/// connection (over h2, the one connection every call would use next).
fn probe_settings(timeout: Duration) -> (TimeoutConfig, RetryConfig) {
    (
        TimeoutConfig::builder().read_timeout(timeout).build(),
        RetryConfig::standard()
            .with_max_attempts(1)
            // As the factory's clients: an error answer keeps its (healthy) connection.
            .with_reconnect_mode(ReconnectMode::ReuseAllConnections),
    )
}

/// Returns the probe timeout error, for a probe the safety net below had to cut.
fn probe_timed_out(op: &str, timeout: Duration) -> Error {
    Error::timeout(
        crate::error::TimeoutKind::Operation,
        format!("{op} failed: no answer within the probe timeout of {timeout:?}"),
    )
}

/// Longest a probe may take in all: the connect timeout plus the read timeout fit in it.
fn probe_deadline(timeout: Duration) -> Duration {
    timeout * 2
}

async fn keep_warm_probe(client: &aws_sdk_bedrockruntime::Client, timeout: Duration) -> Result<()> {
    let (t, r) = probe_settings(timeout);
    let call = client
        .list_async_invokes()
        .max_results(1)
        .customize()
        .config_override(
            aws_sdk_bedrockruntime::config::Builder::default()
                .timeout_config(t)
                .retry_config(r),
        )
        .send();
    match tokio::time::timeout(probe_deadline(timeout), call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(from_sdk("list_async_invokes", e)),
        Err(_) => Err(probe_timed_out("list_async_invokes", timeout)),
    }
}

async fn identity_probe(client: &aws_sdk_sts::Client, timeout: Duration) -> Result<()> {
    let (t, r) = probe_settings(timeout);
    let call = client
        .get_caller_identity()
        .customize()
        .config_override(
            aws_sdk_sts::config::Builder::default()
                .timeout_config(t)
                .retry_config(r),
        )
        .send();
    match tokio::time::timeout(probe_deadline(timeout), call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(from_sdk("get_caller_identity", e)),
        Err(_) => Err(probe_timed_out("get_caller_identity", timeout)),
    }
}

/// Outcome of one round of one probe kind.
enum Round {
    Sent(Result<()>),
    Skipped,
}

/// Runs one round; also returns how soon a host skipped for recent traffic needs its probe.
async fn probe_round(
    factory: &LlmFactory,
    kind: ProbeKind,
    cfg: &HeartbeatConfig,
) -> (Round, Option<Duration>) {
    match kind {
        ProbeKind::Identity => (
            Round::Sent(identity_probe(factory.sts_client(), cfg.probe_timeout).await),
            None,
        ),
        ProbeKind::KeepWarm => {
            let mut probes = Vec::new();
            let mut due: Option<Duration> = None;
            for region in factory.shared().regions.iter() {
                let idle = region.activity.idle_for();
                let recently_used = idle.is_some_and(|idle| idle < cfg.keep_warm_interval);
                if cfg.activity_aware && recently_used {
                    // Probe one interval after that traffic, not one interval after now: a
                    // connection must never idle longer than the interval.
                    let wait = cfg
                        .keep_warm_interval
                        .saturating_sub(idle.unwrap_or_default())
                        .max(MIN_INTERVAL);
                    due = Some(due.map_or(wait, |d| d.min(wait)));
                    continue;
                }
                for _ in 0..cfg.keep_warm_connections {
                    let client = region.client.clone();
                    probes.push(async move { keep_warm_probe(&client, cfg.probe_timeout).await });
                }
            }
            if probes.is_empty() {
                return (Round::Skipped, due);
            }
            let results = futures_util::future::join_all(probes).await;
            let result = results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()));
            (Round::Sent(result), due)
        }
    }
}

async fn run(
    weak: WeakFactory,
    cfg: HeartbeatConfig,
    mut schedules: Vec<Schedule>,
    status: Arc<Mutex<HeartbeatStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(next) = schedules.iter().map(|s| s.next).min() {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        // Upgrade only for the round: the task must never keep the factory alive.
        let Some(factory) = weak.upgrade() else {
            tracing::debug!("heartbeat: the factory is gone, stopping");
            break;
        };
        let now = Instant::now();
        for s in schedules.iter_mut().filter(|s| s.next <= now) {
            let (round, due) = probe_round(&factory, s.kind, &cfg).await;
            let failed = matches!(round, Round::Sent(Err(_)));
            record(&status, s, round, &cfg);
            if let (Some(due), false) = (due, failed) {
                s.next = s.next.min(Instant::now() + due);
            }
        }
        drop(factory);
    }
    lock(&status).running = false;
}

fn record(status: &Mutex<HeartbeatStatus>, s: &mut Schedule, round: Round, cfg: &HeartbeatConfig) {
    let mut st = lock(status);
    let counts = match s.kind {
        ProbeKind::Identity => &mut st.identity,
        ProbeKind::KeepWarm => &mut st.keep_warm,
    };
    match round {
        Round::Skipped => {
            crate::metrics::probe(s.kind.label(), "skipped");
            counts.skipped += 1;
            drop(st);
            tracing::debug!(
                probe = s.kind.describe(),
                "heartbeat skipped: recent traffic keeps the host warm"
            );
            s.next = Instant::now() + s.interval;
        }
        Round::Sent(Ok(())) => {
            crate::metrics::probe(s.kind.label(), "success");
            counts.sent += 1;
            counts.succeeded += 1;
            let failures = st.consecutive_failures;
            st.consecutive_failures = 0;
            st.last_success = Some(SystemTime::now());
            drop(st);
            if failures > 0 {
                tracing::info!(probe = s.kind.describe(), failures, "heartbeat recovered");
            } else {
                tracing::debug!(probe = s.kind.describe(), "heartbeat ok");
            }
            s.after_result(true, cfg);
        }
        Round::Sent(Err(e)) => {
            crate::metrics::probe(s.kind.label(), "failure");
            counts.sent += 1;
            counts.failed += 1;
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
            st.last_failure = Some(SystemTime::now());
            st.last_error = Some(ProbeError {
                probe: s.kind,
                kind: e.kind(),
                message: e.to_string(),
            });
            let failures = st.consecutive_failures;
            drop(st);
            s.after_result(false, cfg);
            tracing::warn!(
                probe = s.kind.describe(),
                error = %e,
                hint = hint(s.kind, &e),
                consecutive_failures = failures,
                retry_in_s = s.next.saturating_duration_since(Instant::now()).as_secs_f64(),
                "heartbeat failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_warm_interval_must_be_below_idle_timeout() {
        let cfg = HeartbeatConfig::default()
            .keep_warm(true)
            .keep_warm_interval(Duration::from_secs(60));
        let e = cfg.validate(Some(Duration::from_secs(50))).unwrap_err();
        assert_eq!(e.field(), Some("keep_warm_interval"));
        assert!(
            e.to_string().contains("60s") && e.to_string().contains("50s"),
            "{e}"
        );
        assert!(cfg.validate(None).is_ok());
        assert!(
            HeartbeatConfig::default()
                .validate(Some(Duration::from_secs(50)))
                .is_ok()
        );
    }

    #[test]
    fn backoff_is_bounded_and_floored() {
        let cfg =
            HeartbeatConfig::default().backoff(Duration::from_secs(1), Duration::from_secs(8));
        let mut s = Schedule {
            kind: ProbeKind::Identity,
            interval: Duration::from_secs(300),
            next: Instant::now(),
            failures: 0,
        };
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            s.after_result(false, &cfg);
            waits.push((s.next - before).as_secs());
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 8, 8]);
        s.after_result(true, &cfg);
        assert_eq!(s.failures, 0);
    }
}
