//! The call guard: counts one call into its scopes (overall, a model, a region) from start to
//! end, and moves a prompt router's call to the model that answered.

use super::record::{Outcome, RequestCounters, Tokens};
use super::{Activity, Prices};
use aws_sdk_bedrockruntime::types::ServiceTierType;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Records one call into several scopes; finishing it (or dropping it) ends the call.
///
/// Dropping an unfinished guard counts the call as cancelled, so in-flight figures return to 0
/// when a caller drops a future or a stream.
pub(crate) struct CallGuard {
    /// The scopes counted: at most two (overall and a model, or one region), held inline so
    /// that starting a call allocates nothing.
    scopes: Scopes,
    start: Instant,
    wakeup: bool,
    done: bool,
    activity: std::sync::Arc<Activity>,
    /// Model id for the `metrics` export; `None` for region-scoped guards.
    label: Option<std::sync::Arc<str>>,
    /// Set for a call to a prompt router, whose model figures may move to the model that
    /// answered ([`CallGuard::route`]): what this call added to its model's figures, so that
    /// they can move, and its time to first token, recorded when it ends or moves.
    routable: Option<Box<Routable>>,
}

/// What a call to a prompt router added to its model's figures so far (see
/// [`CallGuard::route`]).
#[derive(Default)]
struct Routable {
    retries: AtomicU64,
    repeats: AtomicU64,
    retired: AtomicU64,
    /// The time to first token in nanoseconds plus one; 0 until the first token.
    ttft_nanos: AtomicU64,
}

impl Routable {
    fn ttft(&self) -> Option<Duration> {
        match self.ttft_nanos.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }
}

/// The scopes of one call guard: one or two counters.
pub(crate) type Scopes = [Option<Arc<RequestCounters>>; 2];

impl CallGuard {
    pub(crate) fn start(
        scopes: Scopes,
        activity: std::sync::Arc<Activity>,
        label: Option<std::sync::Arc<str>>,
    ) -> Self {
        let wakeup = activity.touch_start();
        if let Some(l) = &label {
            crate::metrics::call_started(l, wakeup);
        }
        for s in scopes.iter().flatten() {
            s.requests.fetch_add(1, Relaxed);
            s.in_flight.fetch_add(1, Relaxed);
            if wakeup {
                s.wakeups.fetch_add(1, Relaxed);
            }
        }
        CallGuard {
            scopes,
            start: Instant::now(),
            wakeup,
            done: false,
            activity,
            label,
            routable: None,
        }
    }

    /// Marks the call as one to a prompt router: its model figures may move to the model that
    /// answered ([`route`](Self::route)).
    pub(crate) fn routable(mut self) -> Self {
        self.routable = Some(Box::default());
        self
    }

    /// Moves the call's model figures (the second scope: the request, in flight, wake-up,
    /// retries, repeats, retired connections, and the time to first token) to `next`, the
    /// model a prompt router chose, labelled `label`; tokens and the outcome counted after this
    /// go to `next`. Does nothing unless the guard is [`routable`](Self::routable) and the
    /// call is not over.
    pub(crate) fn route(&mut self, next: Arc<RequestCounters>, label: Arc<str>) {
        let Some(r) = self.routable.as_deref() else {
            return;
        };
        if self.done {
            return;
        }
        let wakeup = u64::from(self.wakeup);
        if let Some(old) = self.scopes[1].take() {
            old.requests.fetch_sub(1, Relaxed);
            old.in_flight.fetch_sub(1, Relaxed);
            old.wakeups.fetch_sub(wakeup, Relaxed);
            old.retries.fetch_sub(r.retries.load(Relaxed), Relaxed);
            old.repeats.fetch_sub(r.repeats.load(Relaxed), Relaxed);
            old.retired.fetch_sub(r.retired.load(Relaxed), Relaxed);
        }
        next.requests.fetch_add(1, Relaxed);
        next.in_flight.fetch_add(1, Relaxed);
        next.wakeups.fetch_add(wakeup, Relaxed);
        next.retries.fetch_add(r.retries.load(Relaxed), Relaxed);
        next.repeats.fetch_add(r.repeats.load(Relaxed), Relaxed);
        next.retired.fetch_add(r.retired.load(Relaxed), Relaxed);
        if let Some(old) = &self.label {
            crate::metrics::call_moved(old, &label);
        }
        if self.label.is_some() {
            self.label = Some(label);
        }
        self.scopes[1] = Some(next);
    }

    pub(crate) fn retries(&self, extra_attempts: u64) {
        if extra_attempts > 0 {
            if let Some(r) = self.routable.as_deref() {
                r.retries.fetch_add(extra_attempts, Relaxed);
            }
            if let Some(l) = &self.label {
                crate::metrics::retries(l, extra_attempts);
            }
            for s in self.scopes.iter().flatten() {
                s.retries.fetch_add(extra_attempts, Relaxed);
            }
        }
    }

    /// Counts the tokens of this call, its cost when `prices` are known, and, for a stream whose
    /// first event came `generation` before its end, its output tokens per second.
    pub(crate) fn tokens(
        &self,
        t: Tokens,
        prices: Option<&Prices>,
        tier: Option<&ServiceTierType>,
        generation: Option<Duration>,
    ) {
        let cost = prices.map(|p| t.cost(p, tier));
        let rate = generation
            .filter(|g| !g.is_zero() && t.output > 0)
            .map(|g| (t.output as f64 / g.as_secs_f64()).round() as u64);
        for s in self.scopes.iter().flatten() {
            for (slot, n) in s
                .tokens
                .iter()
                .zip([t.input, t.output, t.cache_read, t.cache_write])
            {
                slot.fetch_add(n, Relaxed);
            }
            if let Some(c) = cost {
                s.cost_nano.fetch_add(c, Relaxed);
                s.priced_calls.fetch_add(1, Relaxed);
            }
            if let Some(r) = rate {
                s.rate.record(Duration::from_micros(r));
            }
        }
    }

    /// Counts sends of this call that went out again after an earlier send of it may have
    /// reached the model (a unary read timeout on a connection that could be alive).
    pub(crate) fn repeats(&self, n: u64) {
        if n > 0 {
            if let Some(r) = self.routable.as_deref() {
                r.repeats.fetch_add(n, Relaxed);
            }
            if let Some(l) = &self.label {
                crate::metrics::repeats(l, n);
            }
            for s in self.scopes.iter().flatten() {
                s.repeats.fetch_add(n, Relaxed);
            }
        }
    }

    /// Counts connections retired by this call.
    pub(crate) fn retired(&self, connections: u64) {
        if connections > 0 {
            if let Some(r) = self.routable.as_deref() {
                r.retired.fetch_add(connections, Relaxed);
            }
            for s in self.scopes.iter().flatten() {
                s.retired.fetch_add(connections, Relaxed);
            }
        }
    }

    pub(crate) fn first_token(&self) {
        let d = self.start.elapsed();
        if let Some(r) = self.routable.as_deref() {
            // Recorded when the call ends, in the scope of the model that answered.
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1);
            r.ttft_nanos.store(nanos + 1, Relaxed);
            return;
        }
        if let Some(l) = &self.label {
            crate::metrics::first_token(l, d);
        }
        for s in self.scopes.iter().flatten() {
            s.ttft.record(d);
        }
    }

    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    /// Moves the call from its model (the second scope) to the next model of its fallback
    /// chain, after the first failed with `kind`: that model's figures end with the failure and
    /// count a fallback, the overall ones count the fallback, and `next` counts a call (`routable`:
    /// `next` is a prompt router, see [`route`](Self::route)).
    pub(crate) fn move_model(
        &mut self,
        next: Option<Arc<RequestCounters>>,
        label: Arc<str>,
        kind: crate::error::ErrorKind,
        routable: bool,
    ) {
        let d = self.start.elapsed();
        if let Some(overall) = &self.scopes[0] {
            overall.fallbacks.fetch_add(1, Relaxed);
        }
        if let Some(old) = self.scopes[1].take() {
            old.fallbacks.fetch_add(1, Relaxed);
            end_scope(&old, Outcome::Failure(kind), d, self.wakeup);
        }
        if let Some(l) = &self.label {
            crate::metrics::fallback(l);
            crate::metrics::call_finished(l, kind.as_str(), Some(d));
            crate::metrics::call_started(&label, false);
        }
        if self.label.is_some() {
            self.label = Some(label);
        }
        if let Some(n) = &next {
            n.requests.fetch_add(1, Relaxed);
            n.in_flight.fetch_add(1, Relaxed);
        }
        self.scopes[1] = next;
        // What the failed model's figures got stays with them; a router next may move only
        // what comes after.
        self.routable = routable.then(Box::default);
    }

    /// Ends the call's figures with `outcome`, once; tokens may still be counted after.
    pub(crate) fn end(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(ttft) = self.routable.as_deref().and_then(Routable::ttft) {
            if let Some(l) = &self.label {
                crate::metrics::first_token(l, ttft);
            }
            for s in self.scopes.iter().flatten() {
                s.ttft.record(ttft);
            }
        }
        let d = self.start.elapsed();
        self.activity.touch_end();
        if let Some(l) = &self.label {
            let (name, latency) = match outcome {
                Outcome::Success => ("success", Some(d)),
                Outcome::Failure(k) => (k.as_str(), Some(d)),
                Outcome::Cancelled => ("cancelled", None),
            };
            crate::metrics::call_finished(l, name, latency);
        }
        for s in self.scopes.iter().flatten() {
            end_scope(s, outcome, d, self.wakeup);
        }
    }
}

/// Ends one scope's figures of a call that took `d`.
fn end_scope(s: &RequestCounters, outcome: Outcome, d: Duration, wakeup: bool) {
    s.in_flight.fetch_sub(1, Relaxed);
    match outcome {
        Outcome::Success => {
            s.successes.fetch_add(1, Relaxed);
        }
        Outcome::Failure(k) => {
            s.failures[k.index()].fetch_add(1, Relaxed);
        }
        Outcome::Cancelled => {
            s.cancelled.fetch_add(1, Relaxed);
            return;
        }
    }
    s.latency.record(d);
    if wakeup {
        s.wakeup_latency.record(d);
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}
