//! Limits and cooldowns shared across a fleet of processes through Redis (feature `redis`).
//!
//! Set it with `LlmFactoryBuilder::fleet(`[`FleetConfig`]`)`; read it with
//! [`FleetStats`]. One fleet per factory talks to the shared Redis: an admission checks a
//! model's sliding window and reads cooldowns in ONE atomic script round trip; corrections and
//! cooldown writes are spawned off the hot path. Any Redis trouble makes the call use the
//! local limiter, breakers and health, is logged once per outage, counted, and Redis is left alone for
//! `retry_after` before it is tried again, so a dead Redis costs a call nothing.

mod config;
mod conn;
mod health;
mod link;
mod script;
#[cfg(test)]
mod tests;

#[doc(inline)]
pub use crate::stats::FleetStats;
pub use config::FleetConfig;
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use script::{Acquired, Admission, CooldownKey, Ticket, WindowSpec};

use crate::error::{Error, ErrorKind, Result};
use conn::{Conn, Connect};
use health::Health;
use link::Trouble;
use redis::Script;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Shortest time allowed to (re)connect in the background; a round trip on the hot path still
/// waits no longer than the configured timeout.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis could not answer in time; use the local limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FleetDown;

/// The process's handle on the fleet's shared Redis; a cheap clone.
#[derive(Clone)]
pub(crate) struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection, once the first one is made (in the background); swapped for a new one
    /// after a failover or a dead connection (see [`Fleet::reconnect`]).
    conn: watch::Sender<Option<Conn>>,
    /// A connection is being made in the background.
    connecting: AtomicBool,
    /// This process's id among the fleet's processes (see [`script::procs_key`]).
    process: String,
    /// How to build a new connection.
    connect: Connect,
    /// Round trips that timed out since the last answer.
    timeouts_in_a_row: AtomicU32,
    /// When the connection was last rebuilt.
    reconnected: Mutex<Option<Instant>>,
    prefix: String,
    timeout: Duration,
    /// `host:port` (or the socket path): what logs show, never the URL.
    server: String,
    health: Health,
    acquire: Script,
    settle: Script,
    renew: Script,
    forget: Script,
    cooldown: Script,
    /// The runtime the fleet was built in: background writes run there, so that a lease
    /// dropped outside any runtime (a blocking thread, a destructor at shutdown) never panics.
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("server", &self.inner.server)
            .field("prefix", &self.inner.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Fleet {
    /// Returns a handle on the Redis of `config`, without waiting for it: it connects and loads
    /// its scripts in the background, so a factory builds even while Redis is down.
    ///
    /// # Errors
    ///
    /// Invalid settings (see [`FleetConfig`]), or no tokio runtime to run the connection on.
    pub(crate) fn new(config: &FleetConfig) -> Result<Fleet> {
        config.validate()?;
        let connect = Connect {
            url: config.url.clone(),
            ca_pem: config.ca_pem.clone(),
            connect_timeout: config.timeout.max(MIN_CONNECT_TIMEOUT),
            retry_after: config.retry_after,
        };
        let server = connect.info()?.addr().to_string();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::new(
                ErrorKind::Other,
                "the fleet's Redis connection needs a tokio runtime",
            ));
        };
        let fleet = Fleet {
            inner: Arc::new(Inner {
                conn: watch::Sender::new(None),
                connecting: AtomicBool::new(false),
                process: format!("{:x}", script::new_ticket_id()),
                connect,
                timeouts_in_a_row: AtomicU32::new(0),
                reconnected: Mutex::new(None),
                prefix: config.prefix.clone(),
                timeout: config.timeout,
                server,
                health: Health::new(config.retry_after),
                acquire: Script::new(script::ACQUIRE),
                settle: Script::new(script::SETTLE),
                renew: Script::new(script::RENEW),
                forget: Script::new(script::FORGET),
                cooldown: Script::new(script::COOLDOWN),
                runtime,
            }),
        };
        fleet.connect_in_background();
        Ok(fleet)
    }

    /// Checks `model_id`'s shared window for a request of `tokens` (admitting and logging it if
    /// it fits) and reads the cooldowns left on `cooldown_keys`, in one atomic round trip.
    /// With no limit in `spec`, only reads the cooldowns.
    ///
    /// # Errors
    ///
    /// [`FleetDown`] when Redis failed or is resting after a failure: use the local limiter.
    pub(crate) async fn acquire(
        &self,
        model_id: &str,
        spec: WindowSpec,
        tokens: u64,
        cooldown_keys: &[CooldownKey],
    ) -> Result<Acquired, FleetDown> {
        let inner = &*self.inner;
        if inner.health.resting() {
            inner.health.fallbacks.fetch_add(1, Relaxed);
            return Err(FleetDown);
        }
        let limit = |l: Option<u64>| l.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let ticket = script::new_ticket_id();
        let keys = script::window_keys(&inner.prefix, model_id, spec.window_ms());
        let mut call = inner.acquire.prepare_invoke();
        for k in &keys {
            call.key(k);
        }
        call.key(script::gone_key(&inner.prefix, ticket))
            .key(script::procs_key(&inner.prefix));
        for k in cooldown_keys {
            call.key(k.redis_key(&inner.prefix));
        }
        call.arg(u8::from(!spec.is_unlimited()))
            .arg(limit(spec.requests))
            .arg(limit(spec.tokens))
            .arg(spec.window_ms())
            .arg(tokens)
            .arg(ticket.to_string())
            .arg(&inner.process);
        let answer = match self.conn().await {
            Ok(mut conn) => self
                .round_trip(call.invoke_async::<Vec<i64>>(&mut conn))
                .await
                .and_then(|v| {
                    script::parse_acquire(&v, cooldown_keys.len(), ticket).ok_or(Trouble::Answer)
                }),
            Err(t) => Err(t),
        };
        if let Ok(a) = &answer
            && a.processes > 0
        {
            inner.health.processes.store(a.processes, Relaxed);
        }
        match answer {
            Ok(a) => Ok(a),
            Err(t) => {
                // It may still run on the server after the client gave up on it: the local
                // limiter admits this call, so its shared entry must not stay behind.
                if matches!(t, Trouble::Timeout) && !spec.is_unlimited() {
                    self.forget(keys, ticket, spec.window_ms());
                }
                self.failed(&t);
                inner.health.fallbacks.fetch_add(1, Relaxed);
                Err(FleetDown)
            }
        }
    }

    /// Settles the entry behind `ticket` when its call ended: it leaves the window one
    /// `window` from now, with its tokens corrected to the usage when `tokens` is known. In the
    /// background; a failure is counted (`dropped`) and logged like any other.
    pub(crate) fn settle(
        &self,
        model_id: &str,
        ticket: Ticket,
        tokens: Option<u64>,
        window: Duration,
    ) {
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX / 4)
            .max(1);
        let [log, toks] = script::window_keys(&self.inner.prefix, model_id, window_ms);
        let tokens = tokens.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
        self.spawn_write(move |f| async move {
            let mut call = f.inner.settle.prepare_invoke();
            call.key(log)
                .key(toks)
                .arg(ticket.id)
                .arg(ticket.at_ms)
                .arg(tokens)
                .arg(window_ms);
            let mut conn = f.conn().await?;
            let applied: i64 = f.round_trip(call.invoke_async(&mut conn)).await?;
            if applied == 1 {
                f.inner.health.corrections.fetch_add(1, Relaxed);
            }
            Ok(())
        });
    }

    /// Puts `key` in cooldown for `for_`, in the background; an existing longer cooldown is
    /// kept (never shortened).
    pub(crate) fn set_cooldown(&self, key: CooldownKey, for_: Duration) {
        let key = key.redis_key(&self.inner.prefix);
        let ms = u64::try_from(for_.as_millis()).unwrap_or(u64::MAX).max(1);
        self.spawn_write(move |f| async move {
            let mut call = f.inner.cooldown.prepare_invoke();
            call.key(key).arg(ms);
            let mut conn = f.conn().await?;
            let set: i64 = f.round_trip(call.invoke_async(&mut conn)).await?;
            if set == 1 {
                f.inner.health.cooldowns_set.fetch_add(1, Relaxed);
            }
            Ok(())
        });
    }

    /// Ends `key`'s cooldown (a half-open trial succeeded), in the background.
    pub(crate) fn clear_cooldown(&self, key: CooldownKey) {
        let key = key.redis_key(&self.inner.prefix);
        self.spawn_write(move |f| async move {
            let mut conn = f.conn().await?;
            let cmd = redis::cmd("DEL").arg(key).clone();
            let _: i64 = f.round_trip(cmd.query_async(&mut conn)).await?;
            Ok(())
        });
    }

    /// Removes the entry of an acquire that timed out, if it ran after all, in the background:
    /// after the acquire on the same connection (Redis runs a connection's commands in order),
    /// tried a few times whether or not Redis rests, since the entry would hold a slot for two
    /// windows.
    fn forget(&self, [log, toks]: [String; 2], ticket: u64, window_ms: u64) {
        let f = self.clone();
        let gone = script::gone_key(&self.inner.prefix, ticket);
        self.inner.runtime.spawn(async move {
            for _ in 0..3 {
                let mut call = f.inner.forget.prepare_invoke();
                call.key(&log)
                    .key(&toks)
                    .key(&gone)
                    .arg(ticket.to_string())
                    .arg(window_ms);
                let Ok(mut conn) = f.conn().await else {
                    tokio::time::sleep(f.inner.connect.retry_after).await;
                    continue;
                };
                // Nothing waits on it: room for the stall that made the acquire time out.
                let timeout = Duration::from_secs(5);
                match tokio::time::timeout(timeout, call.invoke_async::<i64>(&mut conn)).await {
                    Ok(Ok(n)) => {
                        f.inner
                            .health
                            .forgotten
                            .fetch_add(u64::try_from(n).unwrap_or(0), Relaxed);
                        return;
                    }
                    _ => tokio::time::sleep(f.inner.connect.retry_after).await,
                }
            }
        });
    }

    /// Keeps the entry of a call in flight in `model_id`'s window: every half window, until the
    /// returned guard drops, its entry is pushed two windows ahead again (two round trips per
    /// window, for calls longer than half a window only). Without it a call in flight longer than
    /// two windows (a long stream) would leave the shared window while the service still counts it.
    pub(crate) fn keep_in_window(
        &self,
        model_id: &str,
        ticket: Ticket,
        window: Duration,
    ) -> Renewal {
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX / 4)
            .max(1);
        let [log, toks] = script::window_keys(&self.inner.prefix, model_id, window_ms);
        let f = self.clone();
        let task = self.inner.runtime.spawn(async move {
            loop {
                // Twice a window: an entry in flight is then always more than a window ahead,
                // which tells it from a settled one (at most a window ahead).
                tokio::time::sleep(window / 2).await;
                if f.inner.health.resting() {
                    continue;
                }
                let mut call = f.inner.renew.prepare_invoke();
                call.key(&log)
                    .key(&toks)
                    .arg(ticket.id)
                    .arg(ticket.at_ms)
                    .arg(window_ms);
                let Ok(mut conn) = f.conn().await else {
                    continue;
                };
                match f.round_trip(call.invoke_async::<i64>(&mut conn)).await {
                    Ok(1) => {}
                    // Settled or trimmed already: nothing left to keep.
                    Ok(_) => return,
                    Err(t) => f.failed(&t),
                }
            }
        });
        Renewal(task.abort_handle())
    }

    /// Claims the half-open trial of a model in a region for the fleet (`SET NX`, held for at
    /// most `ttl`): true when this process won it and sends the trial, false when another
    /// process's trial is under way. Redis trouble leaves the decision to this process (true).
    pub(crate) async fn claim_trial(&self, key: CooldownKey, ttl: Duration) -> bool {
        if self.inner.health.resting() {
            return true;
        }
        let key = key.redis_key(&self.inner.prefix);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .clone();
        let Ok(mut conn) = self.conn().await else {
            return true;
        };
        match self
            .round_trip(cmd.query_async::<Option<String>>(&mut conn))
            .await
        {
            Ok(set) => set.is_some(),
            Err(t) => {
                self.failed(&t);
                true
            }
        }
    }

    /// Returns a snapshot of the state and counters.
    pub(crate) fn stats(&self) -> FleetStats {
        self.inner.health.snapshot()
    }
}

/// Stops the renewal of a call's entry when dropped (the call ended; its settlement follows).
#[derive(Debug)]
pub(crate) struct Renewal(tokio::task::AbortHandle);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}
