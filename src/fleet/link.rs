//! The fleet's link to Redis: connecting in the background, round trips with their timeout,
//! what a failure does (logged once per outage, Redis left alone for a while), reconnection
//! and the writes spawned off the hot path.

use super::conn::Conn;
use super::health::Transition;
use super::{Fleet, Inner};
use crate::error::Result;
use redis::RedisError;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Instant;

impl Fleet {
    /// Makes a connection in the background (whether the server is a cluster is learned from
    /// it), caches the scripts, and swaps it in; tried again every `retry_after` until it
    /// works, while the fleet lives. Does nothing if a connection is being made already.
    pub(super) fn connect_in_background(&self) {
        if self.inner.connecting.swap(true, Relaxed) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let f = Fleet { inner };
                let timeout = f.inner.connect.connect_timeout;
                let opened = tokio::time::timeout(timeout, f.inner.connect.open()).await;
                match opened {
                    Ok(Ok(mut conn)) => {
                        // The scripts cached now, so the first call is one EVALSHA; best effort.
                        let _ = tokio::time::timeout(timeout, async {
                            for s in [&f.inner.acquire, &f.inner.settle, &f.inner.cooldown] {
                                s.prepare_invoke().load_async(&mut conn).await?;
                            }
                            Ok::<_, RedisError>(())
                        })
                        .await;
                        let cluster = matches!(conn, Conn::Cluster(_));
                        let mode = conn.mode();
                        f.inner.health.cluster.store(cluster, Relaxed);
                        let first = f.inner.conn.send_replace(Some(conn)).is_none();
                        if !first {
                            f.inner.health.reconnects.fetch_add(1, Relaxed);
                        }
                        f.inner.timeouts_in_a_row.store(0, Relaxed);
                        f.inner.connecting.store(false, Relaxed);
                        tracing::info!(
                            server = %f.inner.server,
                            mode,
                            "fleet redis connected"
                        );
                        return;
                    }
                    Ok(Err(e)) => f.failed_to_connect(&Trouble::Redis(e)),
                    Err(_) => f.failed_to_connect(&Trouble::Timeout),
                }
                let pause = f.inner.connect.retry_after;
                drop(f);
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// Records a failed connection attempt: the fleet rests, as after a failed round trip, and
    /// the calls waiting for the connection stop waiting.
    pub(super) fn failed_to_connect(&self, t: &Trouble) {
        let transition = self.inner.health.failed();
        self.inner.conn.send_modify(|_| {});
        if transition == Transition::WentDown {
            tracing::warn!(
                server = %self.inner.server,
                error = %t,
                retry_after = ?self.inner.health.retry_after(),
                "fleet redis failed; using the local limiter until it answers again"
            );
        }
    }

    /// Sends one round trip within the timeout and records a success.
    pub(super) async fn round_trip<T>(
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
        self.inner.timeouts_in_a_row.store(0, Relaxed);
        if health.succeeded() == Transition::CameBack {
            tracing::info!(server = %self.inner.server, "fleet redis is back; limits are shared again");
        }
        Ok(out)
    }

    /// Records a failed round trip; logs the first failure of an outage. Not being connected
    /// yet is no failure of its own: the connection attempt records its failure itself.
    pub(super) fn failed(&self, t: &Trouble) {
        if matches!(t, Trouble::NotConnected) {
            return;
        }
        if self.inner.health.failed() == Transition::WentDown {
            tracing::warn!(
                server = %self.inner.server,
                error = %t,
                retry_after = ?self.inner.health.retry_after(),
                "fleet redis failed; using the local limiter until it answers again"
            );
        }
        // A cluster client follows failovers and lost nodes by itself (it learns the slots
        // again from the nodes it knows); a new one would only know the URL's node.
        let cluster = self.inner.health.cluster.load(Relaxed);
        let rebuild = !cluster
            && match t {
                // One slow answer is a busy Redis; a run of them, a dead connection.
                Trouble::Timeout => self.inner.timeouts_in_a_row.fetch_add(1, Relaxed) >= 1,
                // A demoted primary answers writes with READONLY for as long as the connection
                // lives; a lost connection is lost.
                Trouble::Redis(e) => {
                    // A script's write on a replica fails with READONLY in its message.
                    let readonly = |m: Option<&str>| m.is_some_and(|m| m.contains("READONLY"));
                    readonly(e.code())
                        || readonly(e.detail())
                        || e.is_io_error()
                        || e.is_connection_dropped()
                }
                Trouble::Answer | Trouble::NotConnected => false,
            };
        if rebuild {
            self.reconnect();
        }
    }

    /// Returns the current connection (a cheap clone), waiting up to the round trip's timeout
    /// for the first one, unless the attempt to make it failed.
    pub(super) async fn conn(&self) -> Result<Conn, Trouble> {
        let mut rx = self.inner.conn.subscribe();
        let ready = async {
            loop {
                if let Some(c) = rx.borrow_and_update().clone() {
                    return Ok(c);
                }
                if self.inner.health.resting() || rx.changed().await.is_err() {
                    return Err(Trouble::NotConnected);
                }
            }
        };
        tokio::time::timeout(self.inner.timeout, ready)
            .await
            .unwrap_or(Err(Trouble::NotConnected))
    }

    /// Drops the connection for a new one, at most once per `retry_after`: the manager's own
    /// reconnect is private and does not follow a failover (a demoted primary keeps answering
    /// READONLY), and a black-holed connection is never found dead by it. The new connection
    /// resolves the host name again (an ElastiCache primary endpoint moves on failover).
    pub(super) fn reconnect(&self) {
        let inner = &*self.inner;
        {
            let mut last = inner.reconnected.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < inner.connect.retry_after) {
                return;
            }
            *last = Some(Instant::now());
        }
        tracing::info!(server = %inner.server, "fleet redis: the connection is replaced by a new one");
        self.connect_in_background();
    }

    /// Runs a write in the background unless Redis is resting; failures are counted, not
    /// returned.
    pub(super) fn spawn_write<F, Fut>(&self, write: F)
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
        // Not `tokio::spawn`: this runs in drop paths, where there may be no current runtime.
        self.inner.runtime.spawn(async move {
            if let Err(t) = write(f.clone()).await {
                f.failed(&t);
                f.inner.health.dropped.fetch_add(1, Relaxed);
            }
        });
    }
}

/// Why a round trip failed; shown in the one warning of an outage (no URL, no secret).
#[derive(Debug)]
pub(super) enum Trouble {
    Timeout,
    Redis(RedisError),
    Answer,
    /// No connection made yet.
    NotConnected,
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
            Trouble::NotConnected => f.write_str("not connected yet"),
        }
    }
}
