//! When a scope's traffic last started or ended: wake-up detection and activity-aware probes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// When traffic last started or ended, for wake-up detection and activity-aware probes.
pub(crate) struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last start or end of a call, +1 (0 = never).
    last_ms: AtomicU64,
    threshold: Duration,
}

impl Activity {
    pub(crate) fn new(threshold: Duration) -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            threshold,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Marks a call's start; returns true when it is a wake-up (idle past the threshold).
    ///
    /// Under load most calls start and end within the millisecond of the previous one; those
    /// only read the shared value, so that the cores do not take its cache line from one
    /// another on every call.
    pub(crate) fn touch_start(&self) -> bool {
        let now = self.now_ms();
        if !self.threshold.is_zero() && self.last_ms.load(Relaxed) == now {
            return false; // no gap since the last touch: not a wake-up
        }
        let last = self.last_ms.swap(now, Relaxed);
        last != 0 && Duration::from_millis(now.saturating_sub(last)) >= self.threshold
    }

    pub(crate) fn touch_end(&self) {
        let now = self.now_ms();
        if self.last_ms.load(Relaxed) != now {
            self.last_ms.store(now, Relaxed);
        }
    }

    /// Returns how long ago traffic last started or ended, or `None` if there was none.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        match self.last_ms.load(Relaxed) {
            0 => None,
            last => Some(Duration::from_millis(self.now_ms().saturating_sub(last))),
        }
    }
}
