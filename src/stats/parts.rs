//! The figures of the factory's parts, each read from its part: a circuit breaker
//! ([`BreakerStats`]), a region ([`RegionStats`]), a client-side limit ([`LimitStats`]) and
//! the fleet's shared Redis (`FleetStats`, feature `redis`). Plain data, defined here with
//! the other statistics; the parts fill them in.

use super::{LatencyStats, OriginPoolStats, RequestStats};
use std::time::Duration;

/// The state of one circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls skip the pair until the cooldown ends.
    Open {
        /// Time left until a trial call is let through.
        remaining: Duration,
    },
    /// The cooldown is over: the next call is a trial (one at a time).
    HalfOpen,
}

impl BreakerState {
    /// Returns a short lowercase name: `closed`, `open` or `half_open`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// One circuit breaker's figures: a model in a region.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The model id.
    pub model_id: String,
    /// The region.
    pub region: String,
    /// The state now.
    pub state: BreakerState,
    /// Failures counted in the current window (reset by a success).
    pub recent_failures: u32,
    /// Times the breaker opened.
    pub opened: u64,
    /// Calls that skipped the pair while it was open.
    pub skipped: u64,
}

/// Health and traffic figures of one region.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RegionStats {
    /// The region name.
    pub region: String,
    /// The Bedrock Runtime endpoint used for it.
    pub endpoint_url: String,
    /// False while the region cools down after a regional failure.
    pub healthy: bool,
    /// Calls that moved away from this region to the next one after it failed.
    pub failovers: u64,
    /// Request figures of calls sent to this region.
    pub requests: RequestStats,
    /// Pool figures of this region's Bedrock origin.
    pub pool: OriginPoolStats,
}

/// The figures of one model's client-side limit in one region.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitStats {
    /// The model id.
    pub model_id: String,
    /// The region whose quota the limit mirrors.
    pub region: String,
    /// Calls admitted (sent).
    pub admitted: u64,
    /// Calls that waited for room before they were admitted.
    pub waited: u64,
    /// How long admitted calls waited in the queue (the calls that did not wait included).
    pub queue_wait: LatencyStats,
    /// Calls refused at once: `Reject` mode, a full queue, or an estimate larger than the
    /// whole token limit.
    pub rejected: u64,
    /// Calls that waited until their deadline and were refused.
    pub expired: u64,
    /// Calls waiting now.
    pub queued: u64,
    /// Calls this process has in the window now (with a fleet, those admitted through Redis
    /// too: this process's part of the shared window, which Redis holds).
    pub requests_in_window: u64,
    /// Tokens in this process's window now (estimates, corrected by the usage reported).
    pub tokens_in_window: u64,
}

#[cfg(feature = "redis")]
/// A snapshot of the shared store's state and counters (feature `redis`).
///
/// Read from relaxed atomics: approximate while calls are in flight.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// The last round trip to Redis succeeded (true before the first one).
    pub up: bool,
    /// Round trips sent to Redis, failed ones included.
    pub round_trips: u64,
    /// Round trips that failed: connection refused or lost, timeout, script or auth error.
    pub errors: u64,
    /// Admission checks answered "Redis is down", so that the caller used its local limiter.
    pub fallbacks: u64,
    /// Settlements (a call ended: its entry leaves a window later, its tokens corrected to the
    /// usage) that reached their entry in Redis.
    pub corrections: u64,
    /// Cooldowns set or extended in Redis.
    pub cooldowns_set: u64,
    /// Writes (corrections, cooldowns) dropped because Redis was down or failed.
    pub dropped: u64,
    /// Connections dropped for a new one: after READONLY (a failover), a lost connection or
    /// a run of timeouts (a black-holed connection).
    pub reconnects: u64,
    /// Shared entries removed after their acquire timed out on the client but ran on Redis.
    pub forgotten: u64,
    /// The Redis is a Redis Cluster (learned from the server when the fleet connected).
    pub cluster: bool,
    /// Processes of the fleet seen alive at the last admission (this one included); 0 before
    /// the first. While Redis is unreachable each process admits this share of the limits.
    pub processes: u64,
}
