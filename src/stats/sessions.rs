//! The figures of bidirectional sessions ([`SessionStats`]): counted by the sessions
//! themselves, apart from the request figures (where each session also counts as one call
//! of its model, with its tokens).

#[cfg(feature = "serde")]
use super::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Figures of the bidirectional sessions (InvokeModelWithBidirectionalStream) opened through
/// the factory.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Sessions opened (their answer's headers arrived).
    pub opened: u64,
    /// Sessions open now.
    pub active: u64,
    /// Sessions that ended normally (the model ended its output).
    pub completed: u64,
    /// Sessions that ended with an error (a stream error, a dead connection).
    pub failed: u64,
    /// Sessions dropped before their end.
    pub cancelled: u64,
    /// Total time of the sessions that ended, from their opening.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration_total_ms", serialize_with = "json::ms")
    )]
    pub duration_total: Duration,
    /// The longest session that ended.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration_max_ms", serialize_with = "json::ms")
    )]
    pub duration_max: Duration,
    /// Liveness probes a silent session sent (see `session` in the crate docs).
    pub liveness_probes: u64,
    /// Probes that went over another connection than the session's, and so proved nothing.
    pub liveness_unverified: u64,
}

/// How a session ended, for its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    Completed,
    Failed,
    Cancelled,
}

/// The live counters behind [`SessionStats`].
#[derive(Default)]
pub(crate) struct SessionCounters {
    opened: AtomicU64,
    active: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    durations: Mutex<(Duration, Duration)>,
    probes: AtomicU64,
    unverified: AtomicU64,
}

impl SessionCounters {
    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    pub(crate) fn ended(&self, end: SessionEnd, lasted: Duration) {
        self.active.fetch_sub(1, Relaxed);
        let counter = match end {
            SessionEnd::Completed => &self.completed,
            SessionEnd::Failed => &self.failed,
            SessionEnd::Cancelled => &self.cancelled,
        };
        counter.fetch_add(1, Relaxed);
        let mut d = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        d.0 += lasted;
        d.1 = d.1.max(lasted);
    }

    pub(crate) fn probed(&self, verified: bool) {
        self.probes.fetch_add(1, Relaxed);
        if !verified {
            self.unverified.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        let (duration_total, duration_max) =
            *self.durations.lock().unwrap_or_else(|e| e.into_inner());
        SessionStats {
            opened: self.opened.load(Relaxed),
            active: self.active.load(Relaxed),
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            duration_total,
            duration_max,
            liveness_probes: self.probes.load(Relaxed),
            liveness_unverified: self.unverified.load(Relaxed),
        }
    }
}
