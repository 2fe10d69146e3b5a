//! Statistics: `Copy` snapshots read from relaxed atomics.
//!
//! Every figure is approximate under load: counters are read one by one, not as one
//! transaction, so a snapshot taken while requests run may be off by the requests in flight.

use crate::error::ErrorKind;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Negotiated HTTP protocol of a pool's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpProtocol {
    /// HTTP/1.1: one request per connection at a time.
    Http1,
    /// HTTP/2: every request multiplexed on one connection.
    Http2,
}

/// Connection pool figures for one origin (one Bedrock region, or STS).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct OriginPoolStats {
    /// Connection cap of this origin.
    pub capacity: usize,
    /// Connections open now (idle + active), including those still establishing.
    pub open: usize,
    /// Open connections with no request on them (HTTP/1.1).
    pub idle: usize,
    /// Connections carrying a request now (HTTP/1.1), or accepting HTTP/2 connections.
    pub active: usize,
    /// Connections being established now.
    pub establishing: usize,
    /// Requests waiting for a connection now (the pool is exhausted when this is above 0).
    pub waiting: usize,
    /// Share of the cap in use now, `0.0..=1.0`.
    pub utilization: f64,
    /// Protocol negotiated by the most recent connection, if any was opened.
    pub protocol: Option<HttpProtocol>,
    /// Connections this crate retired (poisoned) after an attempt on them timed out or failed
    /// with an IO error, or their stream stalled or broke: counted once per connection. They
    /// are also counted in `closed_error` once the pool closes them, together with connections
    /// the pool discarded for its own reasons.
    pub retired: u64,
    /// Most requests seen in flight at once on one connection (from dispatch until the
    /// response body is done). Over HTTP/1.1 it is 1; over HTTP/2 it shows the multiplexing.
    pub max_in_flight_per_connection: u32,
    /// Connections opened since the factory was built.
    pub opened: u64,
    /// Connections closed by the client's idle eviction.
    pub closed_idle: u64,
    /// Connections discarded after an error (poisoned, incomplete exchange).
    pub closed_error: u64,
    /// Connections whose protocol ended: closed by the server or reset by the network.
    pub closed_by_peer: u64,
    /// Connections closed because the pool was dropped, its runtime stopped, or capacity moved.
    pub closed_dropped: u64,
    /// Connection establishments that failed (DNS, TCP, TLS).
    pub establishment_failures: u64,
    /// Time the most recent connection took to establish.
    pub establishment_last: Duration,
    /// Mean establishment time.
    pub establishment_mean: Duration,
    /// Longest establishment time.
    pub establishment_max: Duration,
    /// Mean time of the transport part (DNS + TCP).
    pub transport_mean: Duration,
    /// Mean time of the protocol handshake part (TLS and ALPN), when the pool reports it.
    pub handshake_mean: Duration,
}

impl OriginPoolStats {
    /// Returns the connections closed so far, whatever the cause.
    pub fn closed(&self) -> u64 {
        self.closed_idle + self.closed_error + self.closed_by_peer + self.closed_dropped
    }
}

/// Connection pool figures of a factory: Bedrock (all regions summed) and STS.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The Bedrock Runtime origins, summed over regions (see
    /// [`LlmFactory::pool_stats_by_region`](crate::LlmFactory::pool_stats_by_region)).
    pub bedrock: OriginPoolStats,
    /// The STS origin.
    pub sts: OriginPoolStats,
}

/// Model handle cache figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Handles cached now.
    pub cached: usize,
    /// Calls of `model(id)` answered from the cache.
    pub hits: u64,
    /// Calls of `model(id)` that created a handle.
    pub misses: u64,
    /// Handles removed by `invalidate` or `invalidate_all`.
    pub invalidated: u64,
}

/// Latency distribution of a set of requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Requests measured.
    pub count: u64,
    /// Mean latency.
    pub mean: Duration,
    /// Median (within the histogram's 6% bucket width).
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Longest latency seen.
    pub max: Duration,
}

/// Failures counted by [`ErrorKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureCounts {
    counts: [u64; ErrorKind::ALL.len()],
}

impl FailureCounts {
    /// Returns the failures of one kind.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts[kind.index()]
    }

    /// Returns every failure, whatever the kind.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Returns `(kind, count)` for each kind with at least one failure.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .zip(self.counts.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
    }
}

/// Request figures, overall or for one model id or region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestStats {
    /// Calls started (invalid input included).
    pub requests: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed, by kind.
    pub failures: FailureCounts,
    /// Calls that failed on a timeout (also counted in `failures`).
    pub timeouts: u64,
    /// Calls that failed throttled (also counted in `failures`).
    pub throttles: u64,
    /// Attempts beyond the first, made by the SDK's retries.
    pub retries: u64,
    /// Calls in flight now.
    pub in_flight: u64,
    /// Calls that gave up without an answer because their future was dropped.
    pub cancelled: u64,
    /// Connections retired (poisoned) because an attempt of these calls timed out or failed
    /// with an IO error, or their stream stalled or broke.
    pub retired_connections: u64,
    /// Latency of completed calls (success or failure; for streams, until the stream ended).
    pub latency: LatencySummary,
    /// Calls that came after at least the wake-up threshold with no traffic.
    pub wakeups: u64,
    /// Latency of those wake-up calls: the figure an idle service's users feel.
    pub wakeup_latency: LatencySummary,
    /// Time to the first event of streams.
    pub time_to_first_token: LatencySummary,
}

// ---------------------------------------------------------------------------------------------
// Recording side (crate-private).

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

    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencySummary::default();
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
        LatencySummary {
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
    in_flight: AtomicI64,
    cancelled: AtomicU64,
    retired: AtomicU64,
    latency: Histogram,
    wakeups: AtomicU64,
    wakeup_latency: Histogram,
    ttft: Histogram,
}

impl RequestCounters {
    pub(crate) fn new() -> Self {
        RequestCounters {
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            cancelled: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            latency: Histogram::new(),
            wakeups: AtomicU64::new(0),
            wakeup_latency: Histogram::new(),
            ttft: Histogram::new(),
        }
    }

    /// Returns the calls in flight now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed).max(0) as u64
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let mut failures = FailureCounts::default();
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
            in_flight: self.in_flight.load(Relaxed).max(0) as u64,
            cancelled: self.cancelled.load(Relaxed),
            retired_connections: self.retired.load(Relaxed),
            latency: self.latency.summary(),
            wakeups: self.wakeups.load(Relaxed),
            wakeup_latency: self.wakeup_latency.summary(),
            time_to_first_token: self.ttft.summary(),
        }
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
    scopes: Vec<std::sync::Arc<RequestCounters>>,
    start: Instant,
    wakeup: bool,
    done: bool,
    activity: std::sync::Arc<Activity>,
    /// Model id for the `metrics` export; `None` for region-scoped guards.
    label: Option<std::sync::Arc<str>>,
}

impl CallGuard {
    pub(crate) fn start(
        scopes: Vec<std::sync::Arc<RequestCounters>>,
        activity: std::sync::Arc<Activity>,
        label: Option<std::sync::Arc<str>>,
    ) -> Self {
        let wakeup = activity.touch_start();
        if let Some(l) = &label {
            crate::metrics::call_started(l, wakeup);
        }
        for s in &scopes {
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
        }
    }

    pub(crate) fn retries(&self, extra_attempts: u64) {
        if extra_attempts > 0 {
            if let Some(l) = &self.label {
                crate::metrics::retries(l, extra_attempts);
            }
            for s in &self.scopes {
                s.retries.fetch_add(extra_attempts, Relaxed);
            }
        }
    }

    /// Counts connections retired by this call.
    pub(crate) fn retired(&self, connections: u64) {
        if connections > 0 {
            for s in &self.scopes {
                s.retired.fetch_add(connections, Relaxed);
            }
        }
    }

    pub(crate) fn first_token(&self) {
        let d = self.start.elapsed();
        if let Some(l) = &self.label {
            crate::metrics::first_token(l, d);
        }
        for s in &self.scopes {
            s.ttft.record(d);
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
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
        for s in &self.scopes {
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
                    continue;
                }
            }
            s.latency.record(d);
            if self.wakeup {
                s.wakeup_latency.record(d);
            }
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}

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
    fn touch_start(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_ms.swap(now, Relaxed);
        last != 0 && Duration::from_millis(now.saturating_sub(last)) >= self.threshold
    }

    fn touch_end(&self) {
        self.last_ms.store(self.now_ms(), Relaxed);
    }

    /// Returns how long ago traffic last started or ended, or `None` if there was none.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        match self.last_ms.load(Relaxed) {
            0 => None,
            last => Some(Duration::from_millis(self.now_ms().saturating_sub(last))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let g = CallGuard::start(vec![c.clone()], act.clone(), None);
        assert_eq!(c.snapshot().in_flight, 1);
        drop(g);
        let s = c.snapshot();
        assert_eq!((s.in_flight, s.cancelled, s.requests), (0, 1, 1));
        CallGuard::start(vec![c.clone()], act, None).finish(Outcome::Failure(ErrorKind::Throttled));
        let s = c.snapshot();
        assert_eq!(
            (s.throttles, s.failures.total(), s.latency.count),
            (1, 1, 1)
        );
    }
}
