//! The recording side of the statistics: relaxed atomics, a lock-free histogram and the call
//! guard that counts one call (the capped per-model table is `models.rs`).

use super::{Activity, Cost, FailureStats, LatencyStats, Prices, RateStats, RequestStats};
use crate::error::ErrorKind;
use aws_sdk_bedrockruntime::types::ServiceTierType;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Sub-buckets per power of two: about 9% bucket width, 4.5% error at the midpoint.
const SUB: usize = 8;
/// Powers of two covered, in microseconds: up to 2^40 us (about 12 days).
const POWERS: usize = 40;
const BUCKETS: usize = SUB * POWERS;

/// A lock-free log-linear latency histogram in microseconds.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    fn bucket_of(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let power = 63 - us.leading_zeros() as usize; // >= 3
        let shift = power - 3;
        let sub = ((us >> shift) as usize) & (SUB - 1);
        ((power - 2) * SUB + sub).min(BUCKETS - 1)
    }

    /// Returns the middle of a bucket, in microseconds.
    fn value_of(bucket: usize) -> u64 {
        if bucket < SUB {
            return bucket as u64;
        }
        let power = bucket / SUB + 2;
        let sub = (bucket % SUB) as u64;
        let shift = power - 3;
        let low = (SUB as u64 + sub) << shift;
        low + (1u64 << shift) / 2
    }

    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Self::bucket_of(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    pub(crate) fn summary(&self) -> LatencyStats {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencyStats::default();
        }
        let max = self.max_us.load(Relaxed);
        let pct = |p: f64| {
            let rank = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(Self::value_of(i).min(max));
                }
            }
            Duration::from_micros(max)
        };
        LatencyStats {
            count,
            mean: Duration::from_micros(self.sum_us.load(Relaxed) / count.max(1)),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: Duration::from_micros(max),
        }
    }
}

/// Counters of one scope: the whole factory, one model id, or one region.
pub(crate) struct RequestCounters {
    requests: AtomicU64,
    successes: AtomicU64,
    failures: [AtomicU64; ErrorKind::ALL.len()],
    retries: AtomicU64,
    repeats: AtomicU64,
    in_flight: AtomicI64,
    cancelled: AtomicU64,
    retired: AtomicU64,
    latency: Histogram,
    wakeups: AtomicU64,
    wakeup_latency: Histogram,
    ttft: Histogram,
    tokens: [AtomicU64; 4],
    /// Output tokens per second of streams, recorded as if they were microseconds.
    rate: Histogram,
    cost_nano: AtomicU64,
    priced_calls: AtomicU64,
    fallbacks: AtomicU64,
}

impl RequestCounters {
    pub(crate) fn new() -> Self {
        RequestCounters {
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            cancelled: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            latency: Histogram::new(),
            wakeups: AtomicU64::new(0),
            wakeup_latency: Histogram::new(),
            ttft: Histogram::new(),
            tokens: std::array::from_fn(|_| AtomicU64::new(0)),
            rate: Histogram::new(),
            cost_nano: AtomicU64::new(0),
            priced_calls: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Returns the calls started.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Returns the calls in flight now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed).max(0) as u64
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let mut failures = FailureStats::default();
        for (slot, a) in failures.counts.iter_mut().zip(self.failures.iter()) {
            *slot = a.load(Relaxed);
        }
        RequestStats {
            requests: self.requests.load(Relaxed),
            successes: self.successes.load(Relaxed),
            timeouts: failures.get(ErrorKind::Timeout),
            throttles: failures.get(ErrorKind::Throttled),
            failures,
            retries: self.retries.load(Relaxed),
            repeats: self.repeats.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed).max(0) as u64,
            cancelled: self.cancelled.load(Relaxed),
            retired_connections: self.retired.load(Relaxed),
            latency: self.latency.summary(),
            wakeups: self.wakeups.load(Relaxed),
            wakeup_latency: self.wakeup_latency.summary(),
            time_to_first_token: self.ttft.summary(),
            input_tokens: self.tokens[0].load(Relaxed),
            output_tokens: self.tokens[1].load(Relaxed),
            cache_read_tokens: self.tokens[2].load(Relaxed),
            cache_write_tokens: self.tokens[3].load(Relaxed),
            output_tokens_per_second: rate_summary(self.rate.summary()),
            cost: (self.priced_calls.load(Relaxed) > 0).then(|| Cost {
                nano_usd: self.cost_nano.load(Relaxed),
            }),
            fallbacks: self.fallbacks.load(Relaxed),
        }
    }
}

/// Reads a histogram of rates (recorded as microseconds) as a rate summary.
fn rate_summary(l: LatencyStats) -> RateStats {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    RateStats {
        count: l.count,
        mean: us(l.mean),
        p50: us(l.p50),
        p90: us(l.p90),
        max: us(l.max),
    }
}

/// The tokens of one call, as Bedrock reports them (`inputTokens` excludes cache reads and
/// writes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
    /// The part of `cache_write` written with the 1-hour time to live (`cacheDetails`).
    pub(crate) cache_write_1h: u64,
}

impl Tokens {
    /// Returns the cost of these tokens at `prices`, served by `tier` when the answer named
    /// one, in nano-dollars (rounded down).
    pub(crate) fn cost(&self, prices: &Prices, tier: Option<&ServiceTierType>) -> u64 {
        let part = |n: u64, usd_per_million: f64| -> u128 {
            // usd/M tokens = 1000 nano-usd per token at 1 usd/M: n * price * 1000.
            let nano_per_token_milli = (usd_per_million.max(0.0) * 1_000_000.0).round() as u128;
            u128::from(n) * nano_per_token_milli / 1000
        };
        let hour = self.cache_write_1h.min(self.cache_write);
        let total = part(self.input, prices.input)
            + part(self.output, prices.output)
            + part(self.cache_read, prices.cache_read)
            + part(self.cache_write - hour, prices.cache_write)
            + part(hour, prices.cache_write_1h.unwrap_or(prices.cache_write));
        let multiplier = tier.map_or(1.0, |t| prices.tier_multiplier(t)).max(0.0);
        if multiplier == 1.0 {
            return u64::try_from(total).unwrap_or(u64::MAX);
        }
        // In thousandths: a tier's multiplier has no finer grain in any price list.
        let scaled = total * (multiplier * 1000.0).round() as u128 / 1000;
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure(ErrorKind),
    Cancelled,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_splits_cache_writes_by_ttl_and_multiplies_by_tier() {
        let t = Tokens {
            input: 1_000,
            output: 100,
            cache_read: 10_000,
            cache_write: 3_000,
            cache_write_1h: 2_000,
        };
        let p = Prices::per_million_usd(3.0, 15.0)
            .cache_read(0.3)
            .cache_write(3.75);
        // nano-dollars: 3000/token input, 15000 output, 300 read, 3750 written.
        let base = 1_000 * 3_000 + 100 * 15_000 + 10_000 * 300;
        assert_eq!(
            t.cost(&p, None),
            base + 3_000 * 3_750,
            "1h as 5m when unpriced"
        );
        let p = p.cache_write_1h(6.0);
        let split = base + 1_000 * 3_750 + 2_000 * 6_000;
        assert_eq!(t.cost(&p, None), split);
        assert_eq!(t.cost(&p, Some(&ServiceTierType::Default)), split);
        let p = p.tier(ServiceTierType::Flex, 0.5);
        assert_eq!(t.cost(&p, Some(&ServiceTierType::Flex)), split / 2);
        assert_eq!(t.cost(&p, Some(&ServiceTierType::Priority)), split);
        assert_eq!(t.cost(&p, Some(&ServiceTierType::from("future"))), split);
        // More 1-hour tokens than writes (a usage that disagrees): never more than written.
        let odd = Tokens {
            cache_write_1h: 9_000,
            ..t
        };
        assert_eq!(odd.cost(&p, None), base + 3_000 * 6_000);
    }

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for us in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            65_432,
            1_000_000,
            123_456_789,
        ] {
            let b = Histogram::bucket_of(us);
            assert!(b >= prev, "bucket order broke at {us}");
            prev = b;
            let v = Histogram::value_of(b) as f64;
            let err = (v - us as f64).abs() / (us.max(1) as f64);
            assert!(err <= 0.07 || us < 8, "{us} us -> {v} ({err})");
        }
    }

    #[test]
    fn percentiles_of_a_known_mix() {
        let h = Histogram::new();
        for _ in 0..90 {
            h.record(Duration::from_millis(10));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(200));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        let near = |d: Duration, want: f64| {
            let ms = d.as_secs_f64() * 1000.0;
            (ms - want).abs() / want < 0.07
        };
        assert!(near(s.p50, 10.0), "{s:?}");
        assert!(near(s.p90, 10.0), "{s:?}");
        assert!(near(s.p99, 200.0), "{s:?}");
        assert_eq!(s.max, Duration::from_millis(200));
        assert!(near(s.mean, 29.0), "{s:?}");
    }

    #[test]
    fn dropped_guard_counts_cancelled_and_leaves_no_flight() {
        let c = std::sync::Arc::new(RequestCounters::new());
        let act = std::sync::Arc::new(Activity::new(Duration::from_secs(30)));
        let g = CallGuard::start([Some(c.clone()), None], act.clone(), None);
        assert_eq!(c.snapshot().in_flight, 1);
        drop(g);
        let s = c.snapshot();
        assert_eq!((s.in_flight, s.cancelled, s.requests), (0, 1, 1));
        CallGuard::start([Some(c.clone()), None], act, None)
            .finish(Outcome::Failure(ErrorKind::Throttled));
        let s = c.snapshot();
        assert_eq!(
            (s.throttles, s.failures.total(), s.latency.count),
            (1, 1, 1)
        );
    }
}
