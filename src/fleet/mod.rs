//! Limits and cooldowns shared across a fleet of processes through Redis (feature `redis`).
//!
//! One [`Fleet`] per process talks to the shared Redis: [`Fleet::acquire`] checks a model's
//! sliding window and reads cooldowns in ONE atomic script round trip; corrections and cooldown
//! writes are spawned off the hot path. Any Redis trouble answers [`FleetDown`] (the caller
//! then uses its local limiter), is logged once per outage, counted, and Redis is left alone for
//! `retry_after` before it is tried again, so a dead Redis costs a call nothing.

mod config;
mod health;
mod script;
#[cfg(test)]
mod tests;

pub use config::FleetConfig;
pub use health::FleetStats;
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use script::{Acquired, Admission, CooldownKey, Ticket, WindowSpec};

use crate::error::{Error, ErrorKind, Result};
use health::{Health, Transition};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

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
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// `host:port` (or the socket path): what logs show, never the URL.
    server: String,
    health: Health,
    acquire: Script,
    settle: Script,
    cooldown: Script,
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
        let client = match &config.ca_pem {
            None => redis::Client::open(config.url.as_str()),
            Some(pem) => redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.as_bytes().to_vec()),
                },
            ),
        }
        .map_err(|_| Error::invalid("fleet.url", "is not a Redis URL"))?;
        let server = client.get_connection_info().addr().to_string();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Other,
                "the fleet's Redis connection needs a tokio runtime",
            ));
        }
        let connect_timeout = config.timeout.max(MIN_CONNECT_TIMEOUT);
        // One quick retry per connection attempt: our own `retry_after` paces the rest.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(config.retry_after);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| Error::new(ErrorKind::Other, format!("fleet: {:?} error", e.kind())))?;
        let fleet = Fleet {
            inner: Arc::new(Inner {
                conn,
                prefix: config.prefix.clone(),
                timeout: config.timeout,
                server,
                health: Health::new(config.retry_after),
                acquire: Script::new(script::ACQUIRE),
                settle: Script::new(script::SETTLE),
                cooldown: Script::new(script::COOLDOWN),
            }),
        };
        // Connect and cache the scripts now, so the first call is one EVALSHA; best effort.
        let warm = fleet.clone();
        tokio::spawn(async move {
            let mut conn = warm.inner.conn.clone();
            let _ = tokio::time::timeout(connect_timeout, async {
                for s in [
                    &warm.inner.acquire,
                    &warm.inner.settle,
                    &warm.inner.cooldown,
                ] {
                    s.prepare_invoke().load_async(&mut conn).await?;
                }
                Ok::<_, RedisError>(())
            })
            .await;
        });
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
        let mut call = inner.acquire.prepare_invoke();
        for k in script::window_keys(&inner.prefix, model_id) {
            call.key(k);
        }
        for k in cooldown_keys {
            call.key(k.redis_key(&inner.prefix));
        }
        call.arg(u8::from(!spec.is_unlimited()))
            .arg(limit(spec.requests))
            .arg(limit(spec.tokens))
            .arg(spec.window_ms())
            .arg(tokens);
        let mut conn = inner.conn.clone();
        let answer = self
            .round_trip(call.invoke_async::<Vec<i64>>(&mut conn))
            .await
            .and_then(|v| script::parse_acquire(&v, cooldown_keys.len()).ok_or(Trouble::Answer));
        match answer {
            Ok(a) => Ok(a),
            Err(t) => {
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
        let [log, toks] = script::window_keys(&self.inner.prefix, model_id);
        let tokens = tokens.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX / 4)
            .max(1);
        self.spawn_write(move |f| async move {
            let mut call = f.inner.settle.prepare_invoke();
            call.key(log)
                .key(toks)
                .arg(ticket.id)
                .arg(ticket.at_ms)
                .arg(tokens)
                .arg(window_ms);
            let mut conn = f.inner.conn.clone();
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
            let mut conn = f.inner.conn.clone();
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
            let mut conn = f.inner.conn.clone();
            let cmd = redis::cmd("DEL").arg(key).clone();
            let _: i64 = f.round_trip(cmd.query_async(&mut conn)).await?;
            Ok(())
        });
    }

    /// Returns a snapshot of the state and counters.
    pub(crate) fn stats(&self) -> FleetStats {
        self.inner.health.snapshot()
    }

    /// Sends one round trip within the timeout and records a success.
    async fn round_trip<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Trouble> {
        let health = &self.inner.health;
        health.sent();
        let out = match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(Trouble::Redis(e)),
            Err(_) => return Err(Trouble::Timeout),
        };
        if health.succeeded() == Transition::CameBack {
            tracing::info!(server = %self.inner.server, "fleet redis is back; limits are shared again");
        }
        Ok(out)
    }

    /// Records a failed round trip; logs the first failure of an outage.
    fn failed(&self, t: &Trouble) {
        if self.inner.health.failed() == Transition::WentDown {
            tracing::warn!(
                server = %self.inner.server,
                error = %t,
                retry_after = ?self.inner.health.retry_after(),
                "fleet redis failed; using the local limiter until it answers again"
            );
        }
    }

    /// Runs a write in the background unless Redis is resting; failures are counted, not
    /// returned.
    fn spawn_write<F, Fut>(&self, write: F)
    where
        F: FnOnce(Fleet) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Trouble>> + Send + 'static,
    {
        let health = &self.inner.health;
        if health.resting() {
            health.dropped.fetch_add(1, Relaxed);
            return;
        }
        let f = self.clone();
        tokio::spawn(async move {
            if let Err(t) = write(f.clone()).await {
                f.failed(&t);
                f.inner.health.dropped.fetch_add(1, Relaxed);
            }
        });
    }
}

/// Why a round trip failed; shown in the one warning of an outage (no URL, no secret).
#[derive(Debug)]
enum Trouble {
    Timeout,
    Redis(RedisError),
    Answer,
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::Timeout => f.write_str("no answer within the timeout"),
            // The kind and the server's error code only: details may echo arguments.
            Trouble::Redis(e) if e.is_connection_refusal() => f.write_str("connection refused"),
            Trouble::Redis(e) if e.is_connection_dropped() => f.write_str("connection lost"),
            Trouble::Redis(e) => match e.code() {
                Some(code) => write!(f, "{:?} error ({code})", e.kind()),
                None => write!(f, "{:?} error", e.kind()),
            },
            Trouble::Answer => f.write_str("the script's answer had an unexpected shape"),
        }
    }
}
