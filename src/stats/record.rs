//! The recording side of the statistics: relaxed atomics and a lock-free histogram (the call
//! guard that counts one call is `guard.rs`, the capped per-model table `models.rs`).

use super::{Cost, FailureStats, LatencyStats, Prices, RateStats, RequestStats};
use crate::error::ErrorKind;
use aws_sdk_bedrockruntime::types::ServiceTierType;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    pub(super) requests: AtomicU64,
    pub(super) successes: AtomicU64,
    pub(super) failures: [AtomicU64; ErrorKind::ALL.len()],
    pub(super) retries: AtomicU64,
    pub(super) repeats: AtomicU64,
    pub(super) in_flight: AtomicI64,
    pub(super) cancelled: AtomicU64,
    pub(super) retired: AtomicU64,
    pub(super) latency: Histogram,
    pub(super) wakeups: AtomicU64,
    pub(super) wakeup_latency: Histogram,
    pub(super) ttft: Histogram,
    pub(super) tokens: [AtomicU64; 4],
    /// Output tokens per second of streams, recorded as if they were microseconds.
    pub(super) rate: Histogram,
    pub(super) cost_nano: AtomicU64,
    pub(super) priced_calls: AtomicU64,
    pub(super) fallbacks: AtomicU64,
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

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
