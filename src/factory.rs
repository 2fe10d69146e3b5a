//! `LlmFactory`: one shared, tuned Bedrock client, and its builder.

use crate::config::{DEFAULT_REGION, FactoryConfig, RetryMode};
use crate::error::{Error, Result};
use crate::model::{Model, ModelInner};
use crate::stats::{
    Activity, CacheStats, OriginPoolStats, PoolStats, RequestCounters, RequestStats,
};
use crate::transport::{AttemptCounter, Transport, sum_origins};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_runtime::client::retries::RetryPartition;
use aws_smithy_types::retry::{ReconnectMode, RetryConfig};
use aws_smithy_types::timeout::TimeoutConfig;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One region's Bedrock client and its health.
pub(crate) struct RegionClient {
    pub(crate) region: String,
    pub(crate) client: aws_sdk_bedrockruntime::Client,
    pub(crate) endpoint_url: String,
    pub(crate) counters: Arc<RequestCounters>,
    /// When model calls last reached this region (for activity-aware keep-warm).
    pub(crate) activity: Arc<Activity>,
    /// Milliseconds since the factory's epoch until which the region is skipped (0 = healthy).
    unhealthy_until_ms: AtomicU64,
    pub(crate) failovers: AtomicU64,
}

/// Health and traffic figures of one region.
#[derive(Clone, Debug)]
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

/// What every handle of a factory shares: the clients, the pool, the statistics.
pub(crate) struct Shared {
    pub(crate) config: FactoryConfig,
    pub(crate) transport: Transport,
    pub(crate) sdk_config: SdkConfig,
    pub(crate) regions: Vec<RegionClient>,
    pub(crate) sts: aws_sdk_sts::Client,
    pub(crate) sts_url: String,
    pub(crate) overall: Arc<RequestCounters>,
    pub(crate) per_model: Mutex<HashMap<String, Arc<RequestCounters>>>,
    pub(crate) activity: Arc<Activity>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last "pool exhausted" warning (rate limit).
    last_exhausted_warn_ms: AtomicU64,
}

impl Shared {
    /// Returns the counters of one model id, created on first use.
    pub(crate) fn model_counters(&self, id: &str) -> Arc<RequestCounters> {
        let mut map = self.per_model.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_owned())
            .or_insert_with(|| Arc::new(RequestCounters::new()))
            .clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_healthy(&self, r: &RegionClient) -> bool {
        r.unhealthy_until_ms.load(Relaxed) <= self.now_ms()
    }

    pub(crate) fn mark_unhealthy(&self, r: &RegionClient) {
        let until = self.now_ms()
            + u64::try_from(self.config.failover_cooldown.as_millis()).unwrap_or(u64::MAX / 2);
        r.unhealthy_until_ms.store(until, Relaxed);
        tracing::warn!(region = %r.region, cooldown_s = self.config.failover_cooldown.as_secs_f64(), "region marked unhealthy");
    }

    pub(crate) fn mark_healthy(&self, r: &RegionClient) {
        if r.unhealthy_until_ms.swap(0, Relaxed) != 0 {
            tracing::info!(region = %r.region, "region healthy again");
        }
    }

    /// Returns the regions a call for `model_id` may use, healthy ones first, primary first.
    pub(crate) fn region_order(&self, model_id: &str) -> Vec<&RegionClient> {
        let allowed: Vec<&RegionClient> = self
            .regions
            .iter()
            .filter(|r| region_allows(&r.region, model_id))
            .collect();
        let pool = if allowed.is_empty() {
            self.regions.iter().collect()
        } else {
            allowed
        };
        let (mut healthy, sick): (Vec<_>, Vec<_>) =
            pool.into_iter().partition(|r| self.is_healthy(r));
        healthy.extend(sick);
        healthy
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
        let now = self.now_ms() + 1;
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

    pub(crate) fn primary(&self) -> &RegionClient {
        &self.regions[0]
    }
}

/// Shortest gap between two "pool exhausted" warnings.
const EXHAUSTED_WARN_EVERY_MS: u64 = 10_000;

/// Returns false when `model_id` names a region or geography that `region` is not in:
/// ARNs (`arn:aws:bedrock:us-east-1:...`) and cross-region inference profiles (`us.`, `eu.`,
/// `apac.`, `us-gov.`, ... prefixes). Plain model ids and `global.` profiles go anywhere.
pub(crate) fn region_allows(region: &str, model_id: &str) -> bool {
    if let Some(rest) = model_id.strip_prefix("arn:") {
        // arn:partition:service:region:account:resource
        return match rest.split(':').nth(2) {
            Some("") | None => true,
            Some(r) => r == region,
        };
    }
    let Some((prefix, _)) = model_id.split_once('.') else {
        return true;
    };
    match prefix {
        "us" => region.starts_with("us-") && !region.starts_with("us-gov-"),
        "us-gov" => region.starts_with("us-gov-"),
        "eu" => region.starts_with("eu-"),
        "apac" => region.starts_with("ap-"),
        "jp" => region == "ap-northeast-1" || region == "ap-northeast-3",
        "au" => region == "ap-southeast-2" || region == "ap-southeast-4",
        "ca" => region.starts_with("ca-"),
        _ => true, // a provider name such as `anthropic.`, or `global.`
    }
}

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
            .field("cache", &self.cache_stats())
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
        let invalid = crate::model::validate_model_id(id).err();
        let make = || {
            Model::from_inner(ModelInner::new(
                id.to_owned(),
                self.inner.shared.clone(),
                invalid.as_ref().map(Error::shallow_clone),
            ))
        };
        if invalid.is_some() {
            self.inner.misses.fetch_add(1, Relaxed);
            return make();
        }
        let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(id) {
            self.inner.hits.fetch_add(1, Relaxed);
            return m.clone();
        }
        self.inner.misses.fetch_add(1, Relaxed);
        let m = make();
        cache.insert(id.to_owned(), m.clone());
        m
    }

    /// Removes the cached handle of `model_id`. Handles already given out keep working.
    pub fn invalidate(&self, model_id: &str) {
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

    /// Removes every cached handle. Calls in flight and handles already given out keep working;
    /// the shared client and its connections stay.
    pub fn invalidate_all(&self) {
        let n = {
            let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
            let n = cache.len();
            cache.clear();
            n
        };
        self.inner.invalidated.fetch_add(n as u64, Relaxed);
    }

    /// Removes every cached handle (the same as [`invalidate_all`](Self::invalidate_all)).
    pub fn clear_cache(&self) {
        self.invalidate_all();
    }

    /// Returns the model handle cache figures.
    pub fn cache_stats(&self) -> CacheStats {
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

    /// Returns the connection pool figures: Bedrock (all regions summed) and STS.
    pub fn pool_stats(&self) -> PoolStats {
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

    /// Returns the pool figures of each region's Bedrock origin, primary first.
    pub fn pool_stats_by_region(&self) -> Vec<(String, OriginPoolStats)> {
        let s = &self.inner.shared;
        s.regions
            .iter()
            .map(|r| (r.region.clone(), s.transport.origin_stats(&r.endpoint_url)))
            .collect()
    }

    /// Returns the request figures of every call made through this factory's handles.
    pub fn request_stats(&self) -> RequestStats {
        self.inner.shared.overall.snapshot()
    }

    /// Returns the request figures of one model id, if it was used.
    pub fn model_request_stats(&self, model_id: &str) -> Option<RequestStats> {
        let map = self
            .inner
            .shared
            .per_model
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(model_id).map(|c| c.snapshot())
    }

    /// Returns the request figures of every model id used, sorted by id.
    pub fn request_stats_by_model(&self) -> Vec<(String, RequestStats)> {
        let map = self
            .inner
            .shared
            .per_model
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, c)| (k.clone(), c.snapshot())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Returns health and traffic figures of each region, primary first.
    pub fn region_stats(&self) -> Vec<RegionStats> {
        let s = &self.inner.shared;
        s.regions
            .iter()
            .map(|r| RegionStats {
                region: r.region.clone(),
                endpoint_url: r.endpoint_url.clone(),
                healthy: s.is_healthy(r),
                failovers: r.failovers.load(Relaxed),
                requests: r.counters.snapshot(),
                pool: s.transport.origin_stats(&r.endpoint_url),
            })
            .collect()
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
        &self.inner.shared.primary().client
    }

    /// Returns the Bedrock Runtime client of `region`, if the factory serves it.
    pub fn bedrock_client_for(&self, region: &str) -> Option<&aws_sdk_bedrockruntime::Client> {
        self.inner
            .shared
            .regions
            .iter()
            .find(|r| r.region == region)
            .map(|r| &r.client)
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

    pub(crate) fn downgrade(&self) -> WeakFactory {
        WeakFactory(Arc::downgrade(&self.inner))
    }
}

/// A weak reference to a factory: it never keeps the factory alive.
#[derive(Clone)]
pub(crate) struct WeakFactory(std::sync::Weak<Inner>);

impl WeakFactory {
    pub(crate) fn upgrade(&self) -> Option<LlmFactory> {
        self.0.upgrade().map(|inner| LlmFactory { inner })
    }
}

/// Builder of an [`LlmFactory`]; every knob documents its default.
#[derive(Default)]
pub struct LlmFactoryBuilder {
    config: FactoryConfig,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    sdk_config: Option<SdkConfig>,
    region_endpoints: Vec<(String, String)>,
}

impl fmt::Debug for LlmFactoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmFactoryBuilder")
            .field("config", &self.config)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<provider>"),
            )
            .field(
                "sdk_config",
                &self.sdk_config.as_ref().map(|_| "<SdkConfig>"),
            )
            .finish()
    }
}

impl LlmFactoryBuilder {
    /// Sets the region. Default is the AWS environment's region, else `us-west-2`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.regions = vec![region.into()];
        self
    }

    /// Sets several regions for failover, the primary first. Default is one region.
    pub fn regions<I, S>(mut self, regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.regions = regions.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the credentials provider. Default is the AWS default chain (environment, profile,
    /// SSO, web identity, ECS, IMDS).
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials =
            Some(aws_credential_types::provider::SharedCredentialsProvider::new(provider));
        self
    }

    /// Starts from an existing `SdkConfig` (its region and credentials are used). The factory
    /// still installs its own pool, timeouts and retry settings. Default is none: the AWS
    /// environment is loaded.
    pub fn sdk_config(mut self, config: SdkConfig) -> Self {
        self.sdk_config = Some(config);
        self
    }

    /// Sets the Bedrock Runtime endpoint URL (of the primary region). Default is the SDK's
    /// endpoint resolution (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, `AWS_ENDPOINT_URL`, else AWS).
    pub fn bedrock_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.config.bedrock_endpoint_url = Some(url.into());
        self
    }

    /// Sets the Bedrock Runtime endpoint URL of one region (multi-region). Default is none.
    pub fn region_endpoint_url(
        mut self,
        region: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        self.region_endpoints.push((region.into(), url.into()));
        self
    }

    /// Sets the STS endpoint URL. Default is the SDK's endpoint resolution
    /// (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else AWS).
    pub fn sts_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.config.sts_endpoint_url = Some(url.into());
        self
    }

    /// Adds a trusted CA certificate (PEM), on top of the platform's roots. Default is none.
    pub fn ca_certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.extra_ca_pem.push(pem.into());
        self
    }

    /// Allows `http://` endpoints on hosts other than loopback, where requests travel
    /// unencrypted. Default is false (refused).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.config.allow_insecure_http = allow;
        self
    }

    /// Sets the connection cap per host. Default is 50.
    pub fn pool_max_connections_per_host(mut self, n: usize) -> Self {
        self.config.pool.max_connections_per_host = n;
        self
    }

    /// Sets the pool idle timeout; `None` never evicts. Default is 50 s.
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.pool.idle_timeout = timeout.into();
        self
    }

    /// Sets the TCP keepalive idle time; `None` disables it. Default is 30 s.
    pub fn pool_tcp_keepalive(mut self, time: impl Into<Option<Duration>>) -> Self {
        self.config.pool.tcp_keepalive = time.into();
        self
    }

    /// Sets the connect timeout (DNS + TCP + TLS). Default is 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.connect = timeout;
        self
    }

    /// Sets the read timeout (request sent to response headers). Default is 60 s.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.read = timeout;
        self
    }

    /// Sets the longest gap between two stream events. Default is 60 s.
    pub fn stream_stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.stream_stall = timeout;
        self
    }

    /// Sets the retry mode. Default is adaptive.
    pub fn retry_mode(mut self, mode: RetryMode) -> Self {
        self.config.retry.mode = mode;
        self
    }

    /// Sets the attempts per call, the first included. Default is 3.
    pub fn retry_max_attempts(mut self, attempts: u32) -> Self {
        self.config.retry.max_attempts = attempts;
        self
    }

    /// Sets the idle time after which a call counts as a wake-up in the statistics.
    /// Default is 30 s.
    pub fn wakeup_threshold(mut self, threshold: Duration) -> Self {
        self.config.wakeup_threshold = threshold;
        self
    }

    /// Sets how long a failed region stays out of rotation. Default is 30 s.
    pub fn failover_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.failover_cooldown = cooldown;
        self
    }

    /// Validates the configuration, builds the pool and the clients, and returns the factory.
    ///
    /// Must run inside a tokio runtime: the pool is bound to it.
    ///
    /// # Errors
    /// An invalid-input error naming the knob for zero or absurd values, bad endpoint URLs,
    /// plain `http://` to a non-loopback host without [`allow_insecure_http`](Self::allow_insecure_http),
    /// or an unusable CA certificate.
    pub async fn build(self) -> Result<LlmFactory> {
        let mut config = self.config;
        validate(&config)?;
        for (region, url) in &self.region_endpoints {
            validate_region(region, "region_endpoint_url")?;
            validate_url(url, "region_endpoint_url", config.allow_insecure_http)?;
        }
        let transport = Transport::new(&config)?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.timeouts.connect)
            .read_timeout(config.timeouts.read)
            .build();
        let retry = match config.retry.mode {
            RetryMode::Adaptive => RetryConfig::adaptive(),
            RetryMode::Standard => RetryConfig::standard(),
        }
        .with_max_attempts(config.retry.max_attempts)
        // Only the transport retires connections, after a timeout or an IO error; a 5xx
        // answered on a healthy connection says nothing about that connection.
        .with_reconnect_mode(ReconnectMode::ReuseAllConnections);
        let partitions = RetryPartitions::new();

        let sdk_config = match self.sdk_config {
            Some(base) => {
                let mut b = base.to_builder();
                b.set_http_client(Some(transport.http_client()));
                b.set_timeout_config(Some(timeouts));
                b.set_retry_config(Some(retry));
                if let Some(c) = self.credentials {
                    b.set_credentials_provider(Some(c));
                }
                b.build()
            }
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(transport.http_client())
                    .timeout_config(timeouts)
                    .retry_config(retry);
                if let Some(r) = config.regions.first() {
                    loader = loader.region(Region::new(r.clone()));
                }
                if let Some(c) = self.credentials {
                    loader = loader.credentials_provider(c);
                }
                loader.load().await
            }
        };
        if config.regions.is_empty() {
            config.regions = vec![
                sdk_config
                    .region()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            ];
        }
        // The SDK reads AWS_ENDPOINT_URL_* itself; read them here too so statistics know the origin.
        let env_url = |service: &str| {
            std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
                .ok()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                .filter(|u| !u.is_empty())
        };
        let bedrock_override = config
            .bedrock_endpoint_url
            .clone()
            .or_else(|| sdk_config.endpoint_url().map(str::to_owned))
            .or_else(|| env_url("BEDROCK_RUNTIME"));
        let sts_override = config
            .sts_endpoint_url
            .clone()
            .or_else(|| sdk_config.endpoint_url().map(str::to_owned))
            .or_else(|| env_url("STS"));
        for (name, url) in [
            ("bedrock_endpoint_url", &bedrock_override),
            ("sts_endpoint_url", &sts_override),
        ] {
            if let Some(u) = url {
                validate_url(u, name, config.allow_insecure_http)?;
            }
        }

        let interceptor = || AttemptCounter;
        let mut regions = Vec::new();
        for (i, region) in config.regions.iter().enumerate() {
            let explicit = self
                .region_endpoints
                .iter()
                .find(|(r, _)| r == region)
                .map(|(_, u)| u.clone());
            let url = explicit.clone().or_else(|| {
                if i == 0 {
                    bedrock_override.clone()
                } else {
                    None
                }
            });
            let mut b = aws_sdk_bedrockruntime::config::Builder::from(&sdk_config)
                .region(Region::new(region.clone()))
                .retry_partition(partitions.get(region))
                .interceptor(interceptor());
            if let Some(u) = &url {
                b = b.endpoint_url(u.clone());
            }
            let endpoint_url =
                url.unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
            regions.push(RegionClient {
                region: region.clone(),
                client: aws_sdk_bedrockruntime::Client::from_conf(b.build()),
                endpoint_url,
                counters: Arc::new(RequestCounters::new()),
                activity: Arc::new(Activity::new(config.wakeup_threshold)),
                unhealthy_until_ms: AtomicU64::new(0),
                failovers: AtomicU64::new(0),
            });
        }
        let primary = config.regions[0].clone();
        let mut sts_b = aws_sdk_sts::config::Builder::from(&sdk_config)
            .region(Region::new(primary.clone()))
            .retry_partition(partitions.get("sts"))
            .interceptor(interceptor());
        if let Some(u) = &sts_override {
            sts_b = sts_b.endpoint_url(u.clone());
        }
        let sts_url =
            sts_override.unwrap_or_else(|| format!("https://sts.{primary}.amazonaws.com"));
        let shared = Shared {
            activity: Arc::new(Activity::new(config.wakeup_threshold)),
            config,
            transport,
            sdk_config,
            regions,
            sts: aws_sdk_sts::Client::from_conf(sts_b.build()),
            sts_url,
            overall: Arc::new(RequestCounters::new()),
            per_model: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            last_exhausted_warn_ms: AtomicU64::new(0),
        };
        tracing::debug!(
            regions = ?shared.config.regions,
            max_connections = shared.config.pool.max_connections_per_host,
            idle_timeout = ?shared.config.pool.idle_timeout,
            "bedrock factory built"
        );
        Ok(LlmFactory {
            inner: Arc::new(Inner {
                shared: Arc::new(shared),
                cache: RwLock::new(HashMap::new()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                invalidated: AtomicU64::new(0),
            }),
        })
    }
}

/// Names the retry partitions of one factory: one per region, one for STS.
///
/// The SDK shares the retry token bucket and the adaptive rate limiter of a partition (by
/// default: service and region) across the whole process, so one factory's timeouts or
/// throttles would drain another's retries. Each factory gets its own partitions; the SDK
/// keeps each partition's small state for the life of the process.
struct RetryPartitions(u64);

impl RetryPartitions {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        RetryPartitions(NEXT.fetch_add(1, Relaxed))
    }

    fn get(&self, scope: &str) -> RetryPartition {
        RetryPartition::new(format!("bedrock-pool-{}-{scope}", self.0))
    }
}

/// Longest timeout or interval the builder accepts: a day.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn validate_duration(d: Duration, field: &'static str) -> Result<()> {
    if d.is_zero() {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(Error::invalid(field, format!("{d:?} is longer than a day")));
    }
    Ok(())
}

fn validate_region(region: &str, field: &'static str) -> Result<()> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{region:?} is not a region name (such as us-west-2)"),
        ))
    }
}

/// Checks an endpoint URL: http(s), a host, and no plain http off loopback unless allowed.
pub(crate) fn validate_url(url: &str, field: &'static str, allow_insecure: bool) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::invalid(field, format!("{url:?} is not a URL")))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::invalid(field, format!("{url:?} has no host")))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if loopback || allow_insecure {
                Ok(())
            } else {
                Err(Error::invalid(
                    field,
                    format!(
                        "{url:?} is plain http to a non-loopback host: requests would travel unencrypted (allow_insecure_http(true) to permit)"
                    ),
                ))
            }
        }
        _ => Err(Error::invalid(
            field,
            format!("{url:?} must start with https:// (or http:// for loopback)"),
        )),
    }
}

fn validate(c: &FactoryConfig) -> Result<()> {
    if c.pool.max_connections_per_host == 0 {
        return Err(Error::invalid(
            "pool_max_connections_per_host",
            "must be at least 1",
        ));
    }
    if c.pool.max_connections_per_host > 10_000 {
        return Err(Error::invalid(
            "pool_max_connections_per_host",
            format!(
                "{} is absurd (at most 10000)",
                c.pool.max_connections_per_host
            ),
        ));
    }
    if let Some(d) = c.pool.idle_timeout {
        validate_duration(d, "pool_idle_timeout")?;
    }
    if let Some(d) = c.pool.tcp_keepalive {
        validate_duration(d, "pool_tcp_keepalive")?;
        if d < Duration::from_secs(1) {
            return Err(Error::invalid(
                "pool_tcp_keepalive",
                "the kernel's keepalive idle time has a 1 s resolution",
            ));
        }
    }
    validate_duration(c.timeouts.connect, "connect_timeout")?;
    validate_duration(c.timeouts.read, "read_timeout")?;
    validate_duration(c.timeouts.stream_stall, "stream_stall_timeout")?;
    validate_duration(c.wakeup_threshold, "wakeup_threshold")?;
    validate_duration(c.failover_cooldown, "failover_cooldown")?;
    if c.retry.max_attempts == 0 {
        return Err(Error::invalid("retry_max_attempts", "must be at least 1"));
    }
    if c.retry.max_attempts > 20 {
        return Err(Error::invalid(
            "retry_max_attempts",
            format!("{} is absurd (at most 20)", c.retry.max_attempts),
        ));
    }
    let mut seen = Vec::new();
    for r in &c.regions {
        validate_region(r, "regions")?;
        if seen.contains(&r) {
            return Err(Error::invalid("regions", format!("{r} is listed twice")));
        }
        seen.push(r);
    }
    for pem in &c.extra_ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::invalid(
                "ca_certificate_pem",
                "expected a PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_profiles_and_arns_scope_regions() {
        assert!(region_allows(
            "us-east-1",
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(!region_allows(
            "eu-west-1",
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(region_allows(
            "eu-west-1",
            "eu.meta.llama3-2-1b-instruct-v1:0"
        ));
        assert!(region_allows(
            "eu-west-1",
            "anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(region_allows(
            "eu-west-1",
            "global.anthropic.claude-sonnet-4-v1:0"
        ));
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x";
        assert!(region_allows("us-east-1", arn));
        assert!(!region_allows("us-west-2", arn));
    }

    #[test]
    fn urls_are_checked() {
        assert!(
            validate_url(
                "https://bedrock-runtime.us-west-2.amazonaws.com",
                "f",
                false
            )
            .is_ok()
        );
        assert!(validate_url("http://127.0.0.1:8080", "f", false).is_ok());
        assert!(validate_url("http://[::1]:8080", "f", false).is_ok());
        let e = validate_url("http://10.1.2.3", "bedrock_endpoint_url", false).unwrap_err();
        assert_eq!(e.field(), Some("bedrock_endpoint_url"));
        assert!(validate_url("http://10.1.2.3", "f", true).is_ok());
        assert!(validate_url("ftp://x", "f", false).is_err());
        assert!(validate_url("not a url", "f", false).is_err());
    }
}
