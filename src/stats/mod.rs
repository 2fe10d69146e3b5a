//! Statistics: snapshots read from relaxed atomics, all of them in one
//! [`LlmFactory::stats`](crate::LlmFactory::stats) call ([`FactoryStats`]).
//!
//! With the feature `serde`, every statistics type is `serde::Serialize`, so that a service can
//! expose the snapshot as JSON. Durations serialise as milliseconds, a floating-point number
//! (`f64`, sub-millisecond precision kept), in fields whose name ends in `_ms` (`p50_ms`);
//! enums as their `as_str` names (`"h2"`, `"half_open"`, `"throttled"`); failures as an object
//! of every [`ErrorKind`] name to its count; a float that is not finite as `null`; times of
//! day as milliseconds since the Unix epoch (`*_unix_ms`).
//!
//! Every figure is approximate under load: counters are read one by one, not as one
//! transaction, so a snapshot taken while requests run may be off by the requests in flight.

mod activity;
mod guard;
#[cfg(feature = "serde")]
pub(crate) mod json;
mod models;
mod parts;
mod record;
mod sessions;
mod snapshot;

pub(crate) use activity::Activity;
pub(crate) use guard::CallGuard;
pub(crate) use models::{ModelTable, OTHER_MODELS};
pub(crate) use record::{Histogram, Outcome, RequestCounters, Tokens};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(no_inline)]
pub use parts::FleetStats;
#[doc(no_inline)]
pub use parts::LimitStats;
pub use parts::{BreakerState, BreakerStats, RegionStats};
pub use sessions::SessionStats;
pub(crate) use sessions::{SessionCounters, SessionEnd};
pub use snapshot::{FactoryStats, ModelStats};

use crate::error::ErrorKind;
use aws_sdk_bedrockruntime::types::ServiceTierType;
use std::time::Duration;

/// Negotiated HTTP protocol of a pool's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpProtocol {
    /// HTTP/1.1: one request per connection at a time.
    Http1,
    /// HTTP/2: every request multiplexed on one connection.
    Http2,
}

impl HttpProtocol {
    /// Returns the ALPN name: `http/1.1` or `h2`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpProtocol::Http1 => "http/1.1",
            HttpProtocol::Http2 => "h2",
        }
    }
}

impl std::fmt::Display for HttpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection pool figures for one origin (one Bedrock region, or STS).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    #[cfg_attr(feature = "serde", serde(serialize_with = "json::finite"))]
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
    /// Most connections open at once since the factory was built: from their opening to their
    /// close by the pool, which gives their place under `capacity` back (the socket may take a
    /// moment longer to close, so a server may briefly count one more). Summed over regions,
    /// the sum of each region's peak.
    pub max_open: u64,
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
    #[cfg_attr(
        feature = "serde",
        serde(rename = "establishment_last_ms", serialize_with = "json::ms")
    )]
    pub establishment_last: Duration,
    /// Mean establishment time.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "establishment_mean_ms", serialize_with = "json::ms")
    )]
    pub establishment_mean: Duration,
    /// Longest establishment time.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "establishment_max_ms", serialize_with = "json::ms")
    )]
    pub establishment_max: Duration,
    /// Mean time of the transport part (DNS + TCP).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "transport_mean_ms", serialize_with = "json::ms")
    )]
    pub transport_mean: Duration,
    /// Mean time of the protocol handshake part (TLS and ALPN), when the pool reports it.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "handshake_mean_ms", serialize_with = "json::ms")
    )]
    pub handshake_mean: Duration,
}

impl OriginPoolStats {
    /// Returns the connections closed so far, whatever the cause.
    pub fn closed(&self) -> u64 {
        self.closed_idle + self.closed_error + self.closed_by_peer + self.closed_dropped
    }
}

/// Connection pool figures of a factory: Bedrock (all regions summed) and STS.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The Bedrock Runtime origins, summed over regions (each region's own figures are in
    /// [`FactoryStats::regions`]).
    pub bedrock: OriginPoolStats,
    /// The STS origin.
    pub sts: OriginPoolStats,
}

/// Model handle cache figures.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencyStats {
    /// Requests measured.
    pub count: u64,
    /// Mean latency.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "mean_ms", serialize_with = "json::ms")
    )]
    pub mean: Duration,
    /// Median (within the histogram's 6% bucket width).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p50_ms", serialize_with = "json::ms")
    )]
    pub p50: Duration,
    /// 90th percentile.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p90_ms", serialize_with = "json::ms")
    )]
    pub p90: Duration,
    /// 99th percentile.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p99_ms", serialize_with = "json::ms")
    )]
    pub p99: Duration,
    /// Longest latency seen.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "max_ms", serialize_with = "json::ms")
    )]
    pub max: Duration,
}

/// Failures counted by [`ErrorKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureStats {
    pub(crate) counts: [u64; ErrorKind::ALL.len()],
}

impl FailureStats {
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestStats {
    /// Calls started (invalid input included).
    pub requests: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed, by kind.
    pub failures: FailureStats,
    /// Calls that failed on a timeout (also counted in `failures`).
    pub timeouts: u64,
    /// Calls that failed throttled (also counted in `failures`).
    pub throttles: u64,
    /// Attempts beyond the first, made by the SDK's retries.
    pub retries: u64,
    /// Sends that went out again although the one before may have reached the model and been
    /// paid for: a unary call's read timeout on a connection that was not known dead (the
    /// seed's dead-connection recovery, or [`retry_slow_calls`](crate::LlmFactoryBuilder::retry_slow_calls)).
    /// Also counted in `retries`.
    pub repeats: u64,
    /// Calls in flight now.
    pub in_flight: u64,
    /// Calls that gave up without an answer because their future was dropped.
    pub cancelled: u64,
    /// Connections retired (poisoned) because an attempt of these calls timed out or failed
    /// with an IO error, or their stream stalled or broke.
    pub retired_connections: u64,
    /// Latency of completed calls (success or failure; for streams, until the stream ended).
    pub latency: LatencyStats,
    /// Calls that came after at least the wake-up threshold with no traffic.
    pub wakeups: u64,
    /// Latency of those wake-up calls: the figure an idle service's users feel.
    pub wakeup_latency: LatencyStats,
    /// Time to the first event of streams (unary calls carried as streams included).
    pub time_to_first_token: LatencyStats,
    /// Input tokens billed as input: Bedrock's own `inputTokens`, which excludes cache reads
    /// and writes (as cost needs; the OpenTelemetry convention's input figure includes them).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Output tokens per second of generation of streams (from the first event to the last).
    pub output_tokens_per_second: RateStats,
    /// Estimated cost of the calls whose model has prices (see
    /// [`LlmFactory::set_prices`](crate::LlmFactory::set_prices)); `None` when no call had
    /// prices: an unknown cost is never shown as zero.
    pub cost: Option<Cost>,
    /// Times a call moved from this model to the next model of its fallback chain (overall:
    /// from any model). The call's failure on this model is counted in `failures` too.
    pub fallbacks: u64,
}

/// A distribution of rates (whole units per second), e.g. output tokens per second of streams.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateStats {
    /// Samples measured.
    pub count: u64,
    /// Mean rate.
    pub mean: u64,
    /// Median (within the histogram's bucket width).
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// Highest rate seen.
    pub max: u64,
}

/// An amount of US dollars, in nano-dollars (10^-9 $) so that snapshots stay `Eq` and sums
/// stay exact.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    /// The amount in nano-dollars.
    pub nano_usd: u64,
}

impl Cost {
    /// Returns the amount in US dollars.
    pub fn usd(self) -> f64 {
        self.nano_usd as f64 / 1e9
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.6}", self.usd())
    }
}

/// A model's prices in US dollars per million tokens, for the cost estimate. There is no
/// built-in price list: prices change, and a stale table is worse than none.
///
/// Cache writes are priced by their time to live when the usage reports it (`cacheDetails`):
/// 5-minute writes at [`cache_write`](Self::cache_write), 1-hour writes at
/// [`cache_write_1h`](Self::cache_write_1h). A call's whole cost is multiplied by the
/// multiplier of the service tier that served it (the response's `serviceTier`), 1 unless set
/// with [`tier`](Self::tier).
///
/// ```
/// use bedrock_pool::sdk::types::ServiceTierType;
/// use bedrock_pool::stats::Prices;
/// let prices = Prices::per_million_usd(3.0, 15.0)
///     .cache_read(0.30)
///     .cache_write(3.75)
///     .cache_write_1h(6.0)
///     .tier(ServiceTierType::Flex, 0.5);
/// assert_eq!(prices.tier_multiplier(&ServiceTierType::Flex), 0.5);
/// assert_eq!(prices.tier_multiplier(&ServiceTierType::Priority), 1.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Prices {
    /// Per million input tokens (Bedrock's `inputTokens`).
    pub input: f64,
    /// Per million output tokens.
    pub output: f64,
    /// Per million tokens read from the prompt cache.
    pub cache_read: f64,
    /// Per million tokens written to the prompt cache with the 5-minute time to live (the
    /// default), and writes whose time to live the usage does not report.
    pub cache_write: f64,
    /// Per million tokens written to the prompt cache with the 1-hour time to live; `None`
    /// prices them as [`cache_write`](Self::cache_write).
    pub cache_write_1h: Option<f64>,
    tiers: TierMultipliers,
}

/// The multiplier of each service tier (`priority`, `default`, `flex`, `reserved`), 1 unless
/// set.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TierMultipliers([f64; 4]);

impl Default for TierMultipliers {
    fn default() -> Self {
        TierMultipliers([1.0; 4])
    }
}

/// Returns the slot of a known service tier.
fn tier_slot(tier: &ServiceTierType) -> Option<usize> {
    match tier {
        ServiceTierType::Priority => Some(0),
        ServiceTierType::Default => Some(1),
        ServiceTierType::Flex => Some(2),
        ServiceTierType::Reserved => Some(3),
        _ => None,
    }
}

impl Prices {
    /// Returns prices for input and output tokens, in dollars per million tokens; cache reads
    /// and writes cost nothing until set.
    pub fn per_million_usd(input: f64, output: f64) -> Prices {
        Prices {
            input,
            output,
            ..Prices::default()
        }
    }

    /// Returns the prices with this price per million cache-read tokens.
    pub fn cache_read(mut self, usd_per_million: f64) -> Prices {
        self.cache_read = usd_per_million;
        self
    }

    /// Returns the prices with this price per million cache-write tokens (5-minute time to
    /// live, and writes whose time to live the usage does not report).
    pub fn cache_write(mut self, usd_per_million: f64) -> Prices {
        self.cache_write = usd_per_million;
        self
    }

    /// Returns the prices with this price per million tokens written to the cache with the
    /// 1-hour time to live (`cacheDetails` entries with `ttl` `1h`).
    pub fn cache_write_1h(mut self, usd_per_million: f64) -> Prices {
        self.cache_write_1h = Some(usd_per_million);
        self
    }

    /// Returns the prices with the whole cost of a call that `tier` served multiplied by
    /// `multiplier` (for example `0.5` for `flex`, `1.75` for `priority`: check your
    /// region's price list). A tier this version does not know is left at 1; the factory
    /// refuses a negative or non-finite multiplier, naming `prices`.
    pub fn tier(mut self, tier: ServiceTierType, multiplier: f64) -> Prices {
        if let Some(i) = tier_slot(&tier) {
            self.tiers.0[i] = multiplier;
        }
        self
    }

    /// Returns the multiplier of the cost of a call that `tier` served (1 unless set).
    pub fn tier_multiplier(&self, tier: &ServiceTierType) -> f64 {
        tier_slot(tier).map_or(1.0, |i| self.tiers.0[i])
    }

    /// Returns each known tier's name and multiplier.
    pub(crate) fn multipliers(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        ["priority", "default", "flex", "reserved"]
            .into_iter()
            .zip(self.tiers.0)
    }
}
