//! [`FactoryStats`]: every figure of a factory in one snapshot.

use super::{BreakerStats, CacheStats, LimitStats, PoolStats, RegionStats, RequestStats};

/// Every statistic of a factory at one moment, as [`LlmFactory::stats`](crate::LlmFactory::stats)
/// returns it: the pool, the requests (all models, each model, each region), the handle cache,
/// the circuit breakers, the client-side limits and the fleet.
///
/// With the feature `serde` it is `serde::Serialize`, ready for a `/stats` endpoint:
/// `serde_json::to_string(&factory.stats())` (see the [module](crate::stats) for the format).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FactoryStats {
    /// Connection pool figures: Bedrock (all regions summed) and STS.
    pub pool: PoolStats,
    /// Request figures of every call made through the factory's handles.
    pub requests: RequestStats,
    /// Request figures of each model id used, sorted by id, with `other` last when ids beyond
    /// the tracked cap were used (at most 256 ids are counted apart: the first ones used; later
    /// ones together under `other`, so that a stream of distinct ids cannot grow the figures).
    pub models: Vec<ModelStats>,
    /// Health, traffic and pool figures of each region, primary first.
    pub regions: Vec<RegionStats>,
    /// Model handle cache figures.
    pub cache: CacheStats,
    /// The bidirectional sessions.
    pub sessions: super::SessionStats,
    /// The circuit breakers: each model id called so far (up to the tracked cap) in each
    /// region, sorted by model id then region.
    pub breakers: Vec<BreakerStats>,
    /// The client-side limits: each model with a limit, in each region where it has one,
    /// sorted by model id then region (primary first).
    pub limits: Vec<LimitStats>,
    /// The fleet's shared Redis, when the factory was built with
    /// [`fleet`](crate::LlmFactoryBuilder::fleet) (feature `redis`); left out of the
    /// serialised form when there is none.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub fleet: Option<super::FleetStats>,
}

impl FactoryStats {
    /// Returns the figures of `model_id` (or `other`), if it was used.
    pub fn model(&self, model_id: &str) -> Option<&ModelStats> {
        self.models.iter().find(|m| m.model_id == model_id)
    }

    /// Returns the figures of `region`, if the factory serves it.
    pub fn region(&self, region: &str) -> Option<&RegionStats> {
        self.regions.iter().find(|r| r.region == region)
    }

    /// Returns the circuit breaker of `model_id` in `region`, if that model was called.
    pub fn breaker(&self, model_id: &str, region: &str) -> Option<&BreakerStats> {
        self.breakers
            .iter()
            .find(|b| b.model_id == model_id && b.region == region)
    }

    /// Returns the client-side limit of `model_id` in `region`, if it has one there.
    pub fn limit(&self, model_id: &str, region: &str) -> Option<&LimitStats> {
        self.limits
            .iter()
            .find(|l| l.model_id == model_id && l.region == region)
    }
}

/// The request figures of one model id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ModelStats {
    /// The model id, or `other` for the ids beyond the tracked cap.
    pub model_id: String,
    /// Its request figures.
    pub requests: RequestStats,
}

#[cfg(all(test, feature = "serde"))]
#[path = "snapshot_tests.rs"]
mod tests;
