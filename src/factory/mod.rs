//! `LlmFactory`: one shared, tuned Bedrock client (per region), the model-handle cache, and
//! the statistics snapshot. Its builder sits beside it, in `builder.rs`.

mod builder;
mod validate;

pub use builder::LlmFactoryBuilder;

use crate::config::FactoryConfig;
use crate::error::Result;
use crate::model::{Model, validate_model_id};
use crate::shared::{MAX_TRACKED_MODELS, RegionLimiters, Shared};
use crate::stats::{CacheStats, FactoryStats, ModelStats, PoolStats, Prices, RegionStats};
use crate::transport::sum_origins;
use aws_config::SdkConfig;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The one Arc behind an [`LlmFactory`].
struct Inner {
    shared: Arc<Shared>,
    cache: RwLock<HashMap<String, Model>>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidated: AtomicU64,
}

/// A pooled Amazon Bedrock client factory: one shared, tuned Bedrock client (per region) and STS
/// client on one connection pool, handing out cheap cached [`Model`] handles.
///
/// Build it once at start-up and clone it freely: it is one `Arc` inside, so do not wrap it in
/// another. Dropping the last clone (and every [`Model`] handle from it) closes its connections.
///
/// ```no_run
/// # async fn run() -> bedrock_pool::Result<()> {
/// let factory = bedrock_pool::LlmFactory::from_env().await?;
/// let reply = factory
///     .model("anthropic.claude-3-haiku-20240307-v1:0")
///     .converse()
///     .user("hi")
///     .send()
///     .await?;
/// println!("{}", reply.text());
/// # Ok(()) }
/// ```
///
/// The pool is bound to the tokio runtime in which the factory is built: it keeps working for
/// as long as that runtime lives, from any runtime, and fails once it is shut down.
#[derive(Clone)]
pub struct LlmFactory {
    inner: Arc<Inner>,
}

impl fmt::Debug for LlmFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.shared;
        f.debug_struct("LlmFactory")
            .field(
                "regions",
                &s.regions
                    .iter()
                    .map(|r| r.region.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("pool", &s.config.pool)
            .field("timeouts", &s.config.timeouts)
            .field("retry", &s.config.retry)
            .field("cache", &self.cache())
            .finish_non_exhaustive()
    }
}

impl LlmFactory {
    /// Returns a builder with every default of the crate (see [`FactoryConfig`]).
    pub fn builder() -> LlmFactoryBuilder {
        LlmFactoryBuilder::default()
    }

    /// Builds a factory from the defaults plus what the standard AWS environment says: region,
    /// profile, the credentials chain, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`
    /// and `AWS_ENDPOINT_URL_STS`.
    ///
    /// # Errors
    /// As [`LlmFactoryBuilder::build`].
    pub async fn from_env() -> Result<LlmFactory> {
        LlmFactory::builder().build().await
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Returns the cached handle of `model_id`, creating it on first use.
    ///
    /// The same id gives the same handle (a cheap clone). An invalid id (empty, too long,
    /// whitespace) is not cached; its calls fail with an invalid-input error naming `model_id`.
    pub fn model(&self, model_id: impl AsRef<str>) -> Model {
        let id = model_id.as_ref();
        if let Some(m) = self
            .inner
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            self.inner.hits.fetch_add(1, Relaxed);
            return m.clone();
        }
        if let Err(invalid) = validate_model_id(id) {
            // Not cached and not counted per model: invalid ids must not grow any table.
            self.inner.misses.fetch_add(1, Relaxed);
            return Model::new(id, self.inner.shared.clone(), Some(invalid));
        }
        let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(id) {
            self.inner.hits.fetch_add(1, Relaxed);
            return m.clone();
        }
        self.inner.misses.fetch_add(1, Relaxed);
        let m = Model::new(id, self.inner.shared.clone(), None);
        // Past the cap a handle still works, it is just not kept.
        if cache.len() < MAX_TRACKED_MODELS {
            cache.insert(id.to_owned(), m.clone());
        }
        m
    }

    /// Removes the cached handle of `model_id` and forgets its per-model statistics and its
    /// circuit breakers, retry partitions and cooldowns. Handles already given out keep
    /// working (with the breakers and partitions they had).
    pub fn invalidate(&self, model_id: &str) {
        self.inner.shared.models.remove(model_id);
        self.inner.shared.breakers.remove(model_id);
        self.inner.shared.lanes.remove(model_id);
        let removed = self
            .inner
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(model_id);
        if removed.is_some() {
            self.inner.invalidated.fetch_add(1, Relaxed);
        }
    }

    /// Removes every cached handle and forgets every per-model statistic. Calls in flight and
    /// handles already given out keep working; the shared client and its connections stay.
    pub fn invalidate_all(&self) {
        self.inner.shared.models.clear();
        self.inner.shared.breakers.clear();
        self.inner.shared.lanes.clear();
        let n = {
            let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
            let n = cache.len();
            cache.clear();
            n
        };
        self.inner.invalidated.fetch_add(n as u64, Relaxed);
    }

    /// Returns every statistic of the factory in one snapshot: the pool, the requests (all
    /// models, each model, each region), the handle cache, the circuit breakers, the
    /// client-side limits and the fleet. With the feature `serde` it serialises (as JSON, say)
    /// as it is.
    ///
    /// Each figure is read on its own (relaxed atomics, short locks): approximate while calls
    /// run. It costs a few allocations per model, region, breaker and limit; for one model's
    /// figures on a hot path, [`model_stats`](Self::model_stats) reads only those.
    pub fn stats(&self) -> FactoryStats {
        let s = &self.inner.shared;
        let regions: Vec<&str> = s.regions.iter().map(|r| r.region.as_str()).collect();
        let mut limits: Vec<(&String, &RegionLimiters)> = s.limits.iter().collect();
        limits.sort_by(|a, b| a.0.cmp(b.0));
        FactoryStats {
            pool: self.pool(),
            requests: s.overall.snapshot(),
            models: s.models.all(),
            regions: s
                .regions
                .iter()
                .map(|r| RegionStats {
                    region: r.region.clone(),
                    endpoint_url: r.endpoint_url.clone(),
                    healthy: s.regions.is_healthy(r),
                    failovers: r.failovers.load(Relaxed),
                    requests: r.counters.snapshot(),
                    pool: s.transport.origin_stats(&r.endpoint_url),
                })
                .collect(),
            cache: self.cache(),
            sessions: s.sessions.snapshot(),
            breakers: s.breakers.all(&regions),
            limits: limits
                .into_iter()
                .flat_map(|(_, per_region)| per_region.iter().flatten().map(|l| l.stats()))
                .collect(),
            #[cfg(feature = "redis")]
            fleet: s.fleet.as_ref().map(|f| f.stats()),
        }
    }

    /// Returns the request figures of one model id, if it was used: the entry of
    /// [`FactoryStats::models`] alone, without the rest of the snapshot.
    ///
    /// At most 256 ids are counted apart (the first ones used); calls for later ids are counted
    /// together under the id `other`, so that a stream of distinct ids cannot grow the figures
    /// (or the `metrics` labels) without bound. [`invalidate`](Self::invalidate) forgets an id.
    pub fn model_stats(&self, model_id: &str) -> Option<ModelStats> {
        self.inner
            .shared
            .models
            .get(model_id)
            .map(|requests| ModelStats {
                model_id: model_id.to_owned(),
                requests,
            })
    }

    fn cache(&self) -> CacheStats {
        CacheStats {
            cached: self
                .inner
                .cache
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            hits: self.inner.hits.load(Relaxed),
            misses: self.inner.misses.load(Relaxed),
            invalidated: self.inner.invalidated.load(Relaxed),
        }
    }

    fn pool(&self) -> PoolStats {
        let s = &self.inner.shared;
        PoolStats {
            bedrock: sum_origins(
                s.regions
                    .iter()
                    .map(|r| s.transport.origin_stats(&r.endpoint_url)),
            ),
            sts: s.transport.origin_stats(&s.sts_url),
        }
    }

    /// Sets the prices of `model_id` (per million tokens), so that the statistics estimate the
    /// cost of its calls from their token counts; later calls use the new prices.
    ///
    /// # Errors
    /// An invalid-input error naming `prices` for a negative, infinite or NaN price, or
    /// `model_id` for an invalid id.
    pub fn set_prices(&self, model_id: &str, prices: Prices) -> Result<()> {
        check_prices(&prices)?;
        validate_model_id(model_id)?;
        self.inner
            .shared
            .prices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model_id.to_owned(), prices);
        Ok(())
    }

    /// Returns the regions, primary first.
    pub fn regions(&self) -> Vec<String> {
        self.inner
            .shared
            .regions
            .iter()
            .map(|r| r.region.clone())
            .collect()
    }

    /// Returns the primary region's Bedrock Runtime client: the same shared client (and pool)
    /// every model handle uses.
    pub fn bedrock_client(&self) -> &aws_sdk_bedrockruntime::Client {
        &self.inner.shared.regions.primary().client
    }

    /// Returns the Bedrock Runtime client of `region`, if the factory serves it.
    pub fn bedrock_client_for(&self, region: &str) -> Option<&aws_sdk_bedrockruntime::Client> {
        self.inner.shared.regions.find(region).map(|r| &r.client)
    }

    /// Returns the shared STS client (same pool, same credentials cache).
    pub fn sts_client(&self) -> &aws_sdk_sts::Client {
        &self.inner.shared.sts
    }

    /// Returns the `SdkConfig` the clients were built from (credentials, pool, timeouts, retry).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.inner.shared.sdk_config
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> &FactoryConfig {
        &self.inner.shared.config
    }

    /// Returns how long ago a model call last started or ended, or `None` before the first.
    pub fn idle_for(&self) -> Option<Duration> {
        self.inner.shared.activity.idle_for()
    }

    /// Returns a factory over freshly built shared state, with an empty handle cache.
    pub(crate) fn from_shared(shared: Shared) -> LlmFactory {
        LlmFactory {
            inner: Arc::new(Inner {
                shared: Arc::new(shared),
                cache: RwLock::new(HashMap::new()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                invalidated: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> WeakFactory {
        WeakFactory(Arc::downgrade(&self.inner))
    }
}

/// Checks prices: finite and not negative, and so are the service tiers' multipliers.
pub(crate) fn check_prices(p: &Prices) -> Result<()> {
    let hour = p.cache_write_1h.unwrap_or(0.0);
    for v in [p.input, p.output, p.cache_read, p.cache_write, hour] {
        if !v.is_finite() || v < 0.0 {
            return Err(crate::error::Error::invalid(
                "prices",
                format!("{v} is not a price (dollars per million tokens, 0 or more)"),
            ));
        }
    }
    for (tier, m) in p.multipliers() {
        if !m.is_finite() || m < 0.0 {
            return Err(crate::error::Error::invalid(
                "prices",
                format!("{m} is not a multiplier for the service tier {tier} (0 or more)"),
            ));
        }
    }
    Ok(())
}

/// A weak reference to a factory: it never keeps the factory alive.
#[derive(Clone)]
pub(crate) struct WeakFactory(std::sync::Weak<Inner>);

impl WeakFactory {
    pub(crate) fn upgrade(&self) -> Option<LlmFactory> {
        self.0.upgrade().map(|inner| LlmFactory { inner })
    }
}
