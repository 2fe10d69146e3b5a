//! What every handle of a factory shares: the clients, the pool, the statistics.

use crate::breaker::BreakerTable;
use crate::config::FactoryConfig;
use crate::limit::Limiter;
use crate::region::{RegionClient, Regions};
use crate::stats::{Activity, ModelTable, Prices, RequestCounters};
use crate::transport::Transport;
use aws_config::SdkConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// One model's limiters, in the regions' order; `None` in a region where it has no limit.
pub(crate) type RegionLimiters = Arc<[Option<Arc<Limiter>>]>;

/// Returns the limiters of `config`'s limits in `regions`, each sharing through `fleet` when
/// there is one.
fn limiters(
    config: &FactoryConfig,
    regions: &Regions,
    #[cfg(feature = "redis")] fleet: Option<&crate::fleet::Fleet>,
) -> HashMap<String, RegionLimiters> {
    let mut models: Vec<&String> = config.limits.iter().map(|(m, _)| m).collect();
    models.extend(config.region_limits.iter().map(|(_, m, _)| m));
    models.sort();
    models.dedup();
    models
        .into_iter()
        .map(|id| {
            let per_region = regions
                .iter()
                .map(|r| {
                    let own = config
                        .region_limits
                        .iter()
                        .find(|(region, m, _)| *region == r.region && m == id)
                        .map(|(_, _, l)| *l);
                    let all = config.limits.iter().find(|(m, _)| m == id).map(|(_, l)| *l);
                    own.or(all).map(|l| {
                        let limiter = Limiter::new(id, &r.region, l);
                        #[cfg(feature = "redis")]
                        let limiter = match fleet {
                            Some(f) => limiter.with_fleet(f.clone()),
                            None => limiter,
                        };
                        Arc::new(limiter)
                    })
                })
                .collect();
            (id.clone(), per_region)
        })
        .collect()
}

/// Most model ids whose statistics (and metric labels) are kept apart; later ids are counted
/// together under `other`.
pub(crate) const MAX_TRACKED_MODELS: usize = 256;

/// Shortest gap between two "pool exhausted" warnings.
const EXHAUSTED_WARN_EVERY_MS: u64 = 10_000;

/// The state behind a factory and every handle it gave out.
pub(crate) struct Shared {
    pub(crate) config: FactoryConfig,
    pub(crate) transport: Transport,
    pub(crate) sdk_config: SdkConfig,
    pub(crate) regions: Regions,
    pub(crate) sts: aws_sdk_sts::Client,
    pub(crate) sts_url: String,
    pub(crate) overall: Arc<RequestCounters>,
    pub(crate) models: ModelTable,
    /// Prices per model id, for the cost estimate (never merged into `other`).
    pub(crate) prices: RwLock<HashMap<String, Prices>>,
    pub(crate) activity: Arc<Activity>,
    /// The bidirectional sessions' figures.
    pub(crate) sessions: crate::stats::SessionCounters,
    /// True when Bedrock calls authenticate with an API key (bearer) rather than SigV4.
    pub(crate) bedrock_api_key: bool,
    /// The circuit breakers of each model id in each region.
    pub(crate) breakers: BreakerTable,
    /// Each model id's lanes: its own SDK client (retry partition) and state per region.
    pub(crate) lanes: crate::lanes::LaneTable,
    /// The client-side limits, by model id, one per region in the regions' order (fixed when
    /// the factory is built).
    pub(crate) limits: HashMap<String, RegionLimiters>,
    /// The fleet's shared Redis, when the factory shares its limits and cooldowns.
    #[cfg(feature = "redis")]
    pub(crate) fleet: Option<crate::fleet::Fleet>,
    /// True while a heartbeat task of this factory runs (at most one does).
    pub(crate) heartbeat_running: AtomicBool,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last "pool exhausted" warning (rate limit).
    last_exhausted_warn_ms: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        config: FactoryConfig,
        transport: Transport,
        sdk_config: SdkConfig,
        regions: Regions,
        sts: aws_sdk_sts::Client,
        sts_url: String,
        factory_id: u64,
    ) -> Self {
        Shared {
            breakers: BreakerTable::new(config.breaker, regions.len(), MAX_TRACKED_MODELS),
            lanes: crate::lanes::LaneTable::new(factory_id, MAX_TRACKED_MODELS),
            limits: limiters(
                &config,
                &regions,
                #[cfg(feature = "redis")]
                None,
            ),
            activity: Arc::new(Activity::new(config.wakeup_threshold)),
            sessions: Default::default(),
            config,
            transport,
            sdk_config,
            regions,
            sts,
            sts_url,
            overall: Arc::new(RequestCounters::new()),
            models: ModelTable::new(MAX_TRACKED_MODELS),
            prices: RwLock::new(HashMap::new()),
            bedrock_api_key: false,
            #[cfg(feature = "redis")]
            fleet: None,
            heartbeat_running: AtomicBool::new(false),
            epoch: Instant::now(),
            last_exhausted_warn_ms: AtomicU64::new(0),
        }
    }

    /// Shares the limits and cooldowns through `fleet`: the limiters take the fleet's window.
    #[cfg(feature = "redis")]
    pub(crate) fn attach_fleet(&mut self, fleet: crate::fleet::Fleet) {
        self.limits = limiters(&self.config, &self.regions, Some(&fleet));
        self.fleet = Some(fleet);
    }

    /// Returns the prices of `model_id`, if the user gave them.
    pub(crate) fn prices(&self, model_id: &str) -> Option<Prices> {
        self.prices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model_id)
            .copied()
    }

    /// Returns the prices of the model a prompt router chose, which its trace names as an
    /// inference profile ARN: the prices set for that id, else for the profile's id
    /// (`us.anthropic.claude-…`), else for the model's own id (`anthropic.claude-…`).
    pub(crate) fn prices_of_answering(&self, invoked: &str) -> Option<Prices> {
        let profile = invoked
            .rsplit_once(":inference-profile/")
            .map_or(invoked, |(_, id)| id);
        let model = profile
            .split_once('.')
            .filter(|(geo, rest)| {
                matches!(
                    *geo,
                    "us" | "eu" | "apac" | "global" | "us-gov" | "ca" | "jp" | "au"
                ) && rest.contains('.')
            })
            .map_or(profile, |(_, id)| id);
        [invoked, profile, model]
            .into_iter()
            .find_map(|id| self.prices(id))
    }

    /// Warns (at most every 10 s) when calls queue for a connection of `r`'s host.
    ///
    /// Cheap on the hot path: the pool is asked only when the region's calls in flight (this
    /// one included) exceed the cap, the only time HTTP/1.1 requests can queue.
    pub(crate) fn check_exhaustion(&self, r: &RegionClient) {
        let cap = self.config.pool.max_connections_per_host as u64;
        if r.counters.in_flight() <= cap {
            return;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_exhausted_warn_ms.load(Relaxed);
        if last != 0 && now.saturating_sub(last) < EXHAUSTED_WARN_EVERY_MS {
            return;
        }
        let stats = self.transport.origin_stats(&r.endpoint_url);
        if stats.waiting > 0
            && self
                .last_exhausted_warn_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                region = %r.region,
                cap = stats.capacity,
                open = stats.open,
                waiting = stats.waiting,
                "connection pool exhausted: calls are queueing for a connection (the wait counts against the read timeout); raise pool_max_connections_per_host or lower concurrency"
            );
        }
    }
}
