//! Whether Redis is up, when to try it again after a failure, and the fleet's counters.

use crate::stats::FleetStats;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// The live state behind [`FleetStats`].
pub(super) struct Health {
    up: AtomicBool,
    /// Redis is left alone until this many ms after `epoch`.
    down_until_ms: AtomicU64,
    epoch: Instant,
    retry_after: Duration,
    pub(super) round_trips: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) fallbacks: AtomicU64,
    pub(super) corrections: AtomicU64,
    pub(super) cooldowns_set: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) forgotten: AtomicU64,
    pub(super) cluster: AtomicBool,
    pub(super) processes: AtomicU64,
}

/// What a failure or success changed, so that the caller logs each transition once.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Transition {
    None,
    WentDown,
    CameBack,
}

impl Health {
    pub(super) fn new(retry_after: Duration) -> Self {
        Health {
            up: AtomicBool::new(true),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            retry_after,
            round_trips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            corrections: AtomicU64::new(0),
            cooldowns_set: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            cluster: AtomicBool::new(false),
            processes: AtomicU64::new(0),
        }
    }

    pub(super) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Returns true while Redis is being left alone after a failure.
    pub(super) fn resting(&self) -> bool {
        self.now_ms() < self.down_until_ms.load(Relaxed)
    }

    /// Counts a round trip about to be sent.
    pub(super) fn sent(&self) {
        self.round_trips.fetch_add(1, Relaxed);
    }

    /// Records a failed round trip: Redis rests for `retry_after`.
    pub(super) fn failed(&self) -> Transition {
        self.errors.fetch_add(1, Relaxed);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.retry_after.as_millis()).unwrap_or(u64::MAX));
        self.down_until_ms.fetch_max(until, Relaxed);
        if self.up.swap(false, Relaxed) {
            Transition::WentDown
        } else {
            Transition::None
        }
    }

    /// Records a successful round trip.
    pub(super) fn succeeded(&self) -> Transition {
        if self.up.load(Relaxed) || self.up.swap(true, Relaxed) {
            Transition::None
        } else {
            Transition::CameBack
        }
    }

    pub(super) fn snapshot(&self) -> FleetStats {
        FleetStats {
            up: self.up.load(Relaxed),
            round_trips: self.round_trips.load(Relaxed),
            errors: self.errors.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            corrections: self.corrections.load(Relaxed),
            cooldowns_set: self.cooldowns_set.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            forgotten: self.forgotten.load(Relaxed),
            cluster: self.cluster.load(Relaxed),
            processes: self.processes.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failure_rests_redis_then_lets_it_be_tried_again() {
        let h = Health::new(Duration::from_secs(1));
        assert!(!h.resting());
        assert_eq!(h.failed(), Transition::WentDown);
        assert_eq!(h.failed(), Transition::None);
        assert!(h.resting());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!h.resting());
        assert_eq!(h.succeeded(), Transition::CameBack);
        assert_eq!(h.succeeded(), Transition::None);
        let s = h.snapshot();
        assert!(s.up);
        assert_eq!(s.errors, 2);
    }
}
