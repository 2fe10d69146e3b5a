//! The circuit breaker of one model in one region: `failures` failures within `window` open it
//! for `cooldown`; then one trial call is let through (half-open), which closes it when it
//! succeeds and opens it again when it fails.
//!
//! A success clears the failures counted so far: the breaker opens on a run of failures, not on
//! a failure rate. Only failures that say the model is in trouble in that region count (the
//! table in `crate::policy`); invalid input, validation and access errors are the caller's, and timeouts and
//! network errors the connection's or the region's: none of them opens it.

use crate::config::BreakerConfig;
use crate::error::{Error, ErrorKind};
use crate::stats::{BreakerState, BreakerStats};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial: bool },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the failures of the current run happened (at most `failures` kept).
    failures: VecDeque<Instant>,
    /// The kind of the failure that opened the breaker, for the error of skipped calls.
    opened_by: ErrorKind,
    opened: u64,
    skipped: u64,
}

/// The circuit breaker of one model in one region.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    /// False while closed with no failure counted: the hot path reads this flag only.
    busy: AtomicBool,
    state: Mutex<State>,
}

/// What the breaker says about sending a call now.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Closed: send.
    Closed,
    /// Half-open: send as the one trial call; report its outcome with [`Breaker::success`] or
    /// [`Breaker::failure`], or [`Breaker::release`] it when it ended otherwise.
    Trial,
    /// Open (or a trial is under way): skip the pair; the error says until when.
    Skip(Error),
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            busy: AtomicBool::new(false),
            state: Mutex::new(State {
                phase: Phase::Closed,
                failures: VecDeque::new(),
                opened_by: ErrorKind::Other,
                opened: 0,
                skipped: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives up a trial another process of the fleet sends: the breaker stays open for `retry`
    /// (the fleet's cooldown key then tells how that trial went). Returns the error of the
    /// skipped call.
    pub(crate) fn lost_trial(&self, retry: Duration, what: impl FnOnce() -> String) -> Error {
        let mut s = self.lock();
        s.phase = Phase::Open {
            until: Instant::now() + retry,
        };
        s.skipped += 1;
        Error::new(
            s.opened_by,
            format!(
                "circuit half-open for {}: another process's trial call is under way",
                what()
            ),
        )
        .with_retry_after(retry)
        .with_circuit_open()
    }

    /// Returns true while the breaker would skip a call (open, or its trial under way),
    /// without changing its state or counting a skip.
    pub(crate) fn blocked(&self) -> bool {
        if !self.busy.load(Ordering::Acquire) {
            return false;
        }
        match self.lock().phase {
            Phase::Open { until } => Instant::now() < until,
            Phase::HalfOpen { trial } => trial,
            Phase::Closed => false,
        }
    }

    /// Says whether a call may be sent to the pair now (`what` names it for the error).
    pub(crate) fn admit(&self, what: impl FnOnce() -> String) -> Admit {
        if !self.busy.load(Ordering::Acquire) {
            return Admit::Closed;
        }
        let now = Instant::now();
        let mut s = self.lock();
        match s.phase {
            Phase::Closed => Admit::Closed,
            Phase::Open { until } if now >= until => {
                s.phase = Phase::HalfOpen { trial: true };
                Admit::Trial
            }
            Phase::HalfOpen { trial: false } => {
                s.phase = Phase::HalfOpen { trial: true };
                Admit::Trial
            }
            Phase::Open { until } => {
                s.skipped += 1;
                let remaining = until - now;
                let e = Error::new(
                    s.opened_by,
                    format!(
                        "circuit open for {}: {} failures within {:?}; next trial in {remaining:?}",
                        what(),
                        self.config.failures,
                        self.config.window
                    ),
                );
                Admit::Skip(e.with_retry_after(remaining).with_circuit_open())
            }
            Phase::HalfOpen { trial: true } => {
                s.skipped += 1;
                let e = Error::new(
                    s.opened_by,
                    format!(
                        "circuit half-open for {}: a trial call is under way",
                        what()
                    ),
                );
                Admit::Skip(e.with_retry_after(Duration::ZERO).with_circuit_open())
            }
        }
    }

    /// A call to the pair succeeded: closes the breaker and forgets its failures. Returns true
    /// when that closed a breaker that was not closed (a successful trial).
    pub(crate) fn success(&self, trial: bool) -> bool {
        if !self.busy.load(Ordering::Acquire) {
            return false;
        }
        let mut s = self.lock();
        match s.phase {
            // A straggler sent before the breaker opened says nothing about the model now:
            // only the trial's answer closes an open or half-open breaker.
            Phase::Open { .. } | Phase::HalfOpen { .. } if !trial => return false,
            _ => {}
        }
        let reopened = !matches!(s.phase, Phase::Closed);
        if reopened {
            tracing::info!("circuit closed again after a successful trial call");
        }
        s.phase = Phase::Closed;
        s.failures.clear();
        self.busy.store(false, Ordering::Release);
        reopened
    }

    /// Returns the cooldown an opening lasts.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn cooldown(&self) -> Duration {
        self.config.cooldown
    }

    /// A call to the pair failed with `e`; returns true when this opened the breaker.
    pub(crate) fn failure(&self, e: &Error, trial: bool, what: impl FnOnce() -> String) -> bool {
        if !crate::policy::opens_breaker(e) {
            if trial {
                self.release();
            }
            return false;
        }
        let now = Instant::now();
        let mut s = self.lock();
        self.busy.store(true, Ordering::Release);
        let open = match s.phase {
            Phase::HalfOpen { .. } => true,
            Phase::Open { .. } => false,
            Phase::Closed => {
                let window = self.config.window;
                while s.failures.front().is_some_and(|t| now - *t > window) {
                    s.failures.pop_front();
                }
                s.failures.push_back(now);
                s.failures.len() >= self.config.failures as usize
            }
        };
        if open {
            s.phase = Phase::Open {
                until: now + self.config.cooldown,
            };
            s.opened_by = e.kind();
            s.opened += 1;
            s.failures.clear();
            tracing::warn!(
                pair = %what(),
                cooldown_s = self.config.cooldown.as_secs_f64(),
                error = %e,
                "circuit opened: calls skip this model in this region until a trial call succeeds"
            );
        }
        open
    }

    /// A trial call ended with neither a success nor a counted failure (it was cancelled, or
    /// failed on its input): the next call may try again.
    pub(crate) fn release(&self) {
        let mut s = self.lock();
        if let Phase::HalfOpen { trial: true } = s.phase {
            s.phase = Phase::HalfOpen { trial: false };
        }
    }

    /// Opens the breaker until `until` (a cooldown learnt from elsewhere, e.g. another
    /// process), unless it is already open for longer.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn open_until(&self, until: Instant, kind: ErrorKind) {
        let mut s = self.lock();
        if let Phase::Open { until: u } = s.phase
            && u >= until
        {
            return;
        }
        s.phase = Phase::Open { until };
        s.opened_by = kind;
        self.busy.store(true, Ordering::Release);
    }

    /// Returns the breaker's figures now.
    pub(crate) fn snapshot(&self, model_id: &str, region: &str) -> BreakerStats {
        let now = Instant::now();
        let s = self.lock();
        let state = match s.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if until > now => BreakerState::Open {
                remaining: until - now,
            },
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        BreakerStats {
            model_id: model_id.to_owned(),
            region: region.to_owned(),
            state,
            recent_failures: u32::try_from(s.failures.len()).unwrap_or(u32::MAX),
            opened: s.opened,
            skipped: s.skipped,
        }
    }
}

/// The breakers of every model id, one per region, for at most `cap` ids (later ids have
/// none, so that a stream of distinct ids cannot grow the table).
pub(crate) struct BreakerTable {
    config: Option<BreakerConfig>,
    regions: usize,
    cap: usize,
    map: Mutex<std::collections::HashMap<String, std::sync::Arc<[Breaker]>>>,
}

impl BreakerTable {
    pub(crate) fn new(config: Option<BreakerConfig>, regions: usize, cap: usize) -> Self {
        BreakerTable {
            config,
            regions,
            cap,
            map: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Arc<[Breaker]>>>
    {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the breakers of `id` (one per region), or none when breakers are off or the
    /// table is full.
    pub(crate) fn get(&self, id: &str) -> Option<std::sync::Arc<[Breaker]>> {
        let config = self.config?;
        let mut map = self.lock();
        if let Some(b) = map.get(id) {
            return Some(b.clone());
        }
        if map.len() >= self.cap {
            return None;
        }
        let b: std::sync::Arc<[Breaker]> =
            (0..self.regions).map(|_| Breaker::new(config)).collect();
        map.insert(id.to_owned(), b.clone());
        Some(b)
    }

    /// Forgets the breakers of `id` (handles given out keep theirs).
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Forgets every breaker (handles given out keep theirs).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Returns every breaker's figures, by model id then region (`regions` names them).
    pub(crate) fn all(&self, regions: &[&str]) -> Vec<BreakerStats> {
        let mut v: Vec<BreakerStats> = self
            .lock()
            .iter()
            .flat_map(|(id, bs)| {
                bs.iter()
                    .zip(regions)
                    .map(|(b, r)| b.snapshot(id, r))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by(|a, b| (&a.model_id, &a.region).cmp(&(&b.model_id, &b.region)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(failures: u32, window_ms: u64, cooldown_ms: u64) -> BreakerConfig {
        BreakerConfig::new(
            failures,
            Duration::from_millis(window_ms),
            Duration::from_millis(cooldown_ms),
        )
    }

    fn throttled() -> Error {
        Error::new(ErrorKind::Throttled, "slow down")
    }

    fn what() -> String {
        "m in r".to_owned()
    }

    #[test]
    fn opens_after_n_failures_then_lets_one_trial_through() {
        let b = Breaker::new(config(3, 60_000, 50));
        for i in 0..3 {
            assert!(matches!(b.admit(what), Admit::Closed));
            assert_eq!(b.failure(&throttled(), false, what), i == 2);
        }
        let Admit::Skip(e) = b.admit(what) else {
            panic!("open")
        };
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert!(e.retry_after().is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(b.admit(what), Admit::Trial));
        assert!(
            matches!(b.admit(what), Admit::Skip(_)),
            "one trial at a time"
        );
        assert!(b.success(true));
        assert!(matches!(b.admit(what), Admit::Closed));
        let s = b.snapshot("m", "r");
        assert_eq!((s.state, s.opened, s.skipped), (BreakerState::Closed, 1, 2));
    }

    #[test]
    fn a_failed_trial_opens_it_again_and_a_released_one_frees_the_slot() {
        let b = Breaker::new(config(1, 60_000, 30));
        b.failure(&throttled(), false, what);
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(b.admit(what), Admit::Trial));
        b.release();
        assert!(matches!(b.admit(what), Admit::Trial));
        assert!(b.failure(&throttled(), true, what));
        assert!(matches!(
            b.snapshot("m", "r").state,
            BreakerState::Open { .. }
        ));
    }

    #[test]
    fn a_stragglers_success_does_not_close_it() {
        let b = Breaker::new(config(1, 60_000, 30));
        assert!(!b.blocked());
        assert!(b.failure(&throttled(), false, what));
        assert!(b.blocked());
        // A call sent before the breaker opened answers now: it is no trial.
        assert!(!b.success(false));
        assert!(matches!(b.admit(what), Admit::Skip(_)), "still open");
        std::thread::sleep(Duration::from_millis(40));
        assert!(!b.blocked(), "due for a trial");
        assert!(matches!(b.admit(what), Admit::Trial));
        assert!(b.blocked(), "the trial is under way");
        assert!(!b.success(false), "half-open: only the trial closes it");
        assert!(matches!(b.snapshot("m", "r").state, BreakerState::HalfOpen));
        assert!(b.success(true));
        assert!(matches!(b.admit(what), Admit::Closed));
    }

    #[test]
    fn connection_failures_never_open_it() {
        let b = Breaker::new(config(1, 60_000, 1000));
        for kind in [
            ErrorKind::Timeout,
            ErrorKind::Network,
            ErrorKind::Validation,
        ] {
            assert!(!b.failure(&Error::new(kind, "x"), false, what));
        }
        assert!(matches!(b.admit(what), Admit::Closed));
        assert!(b.failure(&Error::new(ErrorKind::ModelFailure, "x"), false, what));
    }

    #[test]
    fn a_success_or_the_window_resets_the_count_and_caller_errors_do_not_count() {
        let b = Breaker::new(config(2, 30, 1000));
        b.failure(&throttled(), false, what);
        b.success(false);
        assert!(!b.failure(&throttled(), false, what));
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            !b.failure(&throttled(), false, what),
            "the first left the window"
        );
        let invalid = Error::new(ErrorKind::Validation, "bad");
        assert!(!b.failure(&invalid, false, what));
        assert!(!b.failure(&invalid, false, what));
        assert!(matches!(b.admit(what), Admit::Closed));
    }
}
