//! The limiter's path through the fleet's shared window (feature `redis`): one round trip per
//! admission; a call over the limit is refused or waits (polling the shared window, bounded by
//! its deadline) as in the local path; Redis trouble hands the call to the local window.

use super::{Lease, LimitMode, Limiter};
use crate::error::Result;
use crate::fleet::{Admission, CooldownKey, Fleet, WindowSpec};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The cooldowns read with an admission, in the order of the keys asked about.
pub(crate) type Cooldowns = Vec<Option<Duration>>;

/// Counts a call waiting for the shared window while it waits.
struct SharedWaiting<'a>(&'a Limiter);

impl Drop for SharedWaiting<'_> {
    fn drop(&mut self) {
        self.0.shared_waiting.fetch_sub(1, Relaxed);
    }
}

impl Limiter {
    /// Returns this limiter sharing its window through `fleet`.
    pub(crate) fn with_fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Whether calls admitted by the local window (during an outage) may still be in it.
    pub(super) fn recovering(&self) -> bool {
        let at = self.local_admitted_ms.load(Relaxed);
        at != 0 && {
            let since = Duration::from_millis(at - 1);
            self.created.elapsed() < since + self.limit.window * 2
        }
    }

    /// Whether a call of `tokens` fits this process's share of the limit in its own window.
    fn fits_share(&self, tokens: u64) -> bool {
        let share = self.outage_share();
        let limit = share.as_ref().unwrap_or(&self.limit);
        let mut s = self.lock();
        s.window.trim(Instant::now(), limit);
        s.window.has_room(limit, tokens)
    }

    /// Returns the fleet's figures, when this limiter shares its window.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn fleet_stats(&self) -> Option<crate::fleet::FleetStats> {
        self.fleet.as_ref().map(Fleet::stats)
    }

    /// Admits a call of `tokens` through the fleet's shared window, reading the cooldowns of
    /// `keys` in the same round trip. `None` when Redis did not answer: the caller uses the
    /// local window.
    // Long because the fleet admission and its fallbacks (outage share, local limiter) read as one sequence.
    pub(crate) async fn acquire_shared(
        self: &Arc<Self>,
        fleet: &Fleet,
        model_id: &str,
        tokens: u64,
        keys: &[CooldownKey],
    ) -> Option<Result<(Lease, Cooldowns)>> {
        let limit = &self.limit;
        let spec = WindowSpec {
            requests: limit.requests,
            tokens: limit.tokens,
            window: limit.window,
        };
        // After an outage, the calls this process admitted alone are not in the fleet's window:
        // until they left its own (two windows: a call leaves one window after it ended), a
        // call must also fit its share, else it goes the local way (which waits or refuses).
        if self.recovering() && !self.fits_share(tokens) {
            return None;
        }
        let started = Instant::now();
        let mut waiting: Option<SharedWaiting<'_>> = None;
        loop {
            let acquired = fleet.acquire(&self.key, spec, tokens, keys).await.ok()?;
            if acquired.processes > 0 {
                self.processes.store(acquired.processes, Relaxed);
                self.fill_requests.store(acquired.fill.0, Relaxed);
                self.fill_tokens.store(acquired.fill.1, Relaxed);
                let at = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.fill_at_ms.store(at, Relaxed);
            }
            let after = match acquired.admission {
                Admission::Admitted(ticket) => {
                    if waiting.is_some() {
                        self.waited.fetch_add(1, Relaxed);
                    }
                    self.count_admitted(started.elapsed());
                    self.end_outage();
                    // Mirrored in the local window, unchecked: the fleet admitted it.
                    let seq = self.lock().window.push(tokens);
                    let lease = Lease {
                        limiter: self.clone(),
                        seq,
                        shared: Some((ticket, AtomicU64::new(u64::MAX))),
                        renewal: Some(fleet.keep_in_window(&self.key, ticket, limit.window)),
                    };
                    return Some(Ok((lease, acquired.cooldowns)));
                }
                Admission::NeverFits => {
                    self.rejected.fetch_add(1, Relaxed);
                    let max = limit.tokens.unwrap_or(0);
                    return Some(Err(self.never_fits(model_id, tokens, max)));
                }
                Admission::RetryAfter(after) => after,
            };
            let LimitMode::Wait {
                max_queue,
                deadline,
            } = limit.mode
            else {
                self.rejected.fetch_add(1, Relaxed);
                let why = "the fleet's limit is reached";
                return Some(Err(self.throttled(model_id, "reject", why, Some(after))));
            };
            if waiting.is_none() {
                if self.shared_waiting.fetch_add(1, Relaxed) >= max_queue {
                    self.shared_waiting.fetch_sub(1, Relaxed);
                    self.rejected.fetch_add(1, Relaxed);
                    let why = format!("{max_queue} calls already wait for the limit");
                    return Some(Err(self.throttled(model_id, "queue_full", &why, None)));
                }
                waiting = Some(SharedWaiting(self));
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                self.expired.fetch_add(1, Relaxed);
                let why = format!("waited {deadline:?} for room");
                return Some(Err(self.throttled(model_id, "deadline", &why, Some(after))));
            }
            // Calls in flight elsewhere may end sooner than Redis can say: ask again at least
            // every quarter window.
            // Jittered: the fleet's waiters all got the same retry-after, and would wake and
            // ask Redis together.
            let nap = super::jittered(after.min(limit.window / 4))
                .min(left)
                .max(Duration::from_millis(1));
            tokio::time::sleep(nap).await;
        }
    }
}
