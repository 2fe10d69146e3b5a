//! `LlmFactoryBuilder`: every knob with its default, the validation of the whole
//! configuration, and the assembly of the pool, the clients and the shared state (the
//! endpoints and SDK clients in `builder/assemble.rs`).

mod assemble;

use super::validate::{validate, validate_region, validate_url};
use super::{LlmFactory, check_prices};
use crate::config::{FactoryConfig, RetryMode};
use crate::error::{Error, Result};
use crate::model::validate_model_id;
use crate::region::Regions;
use crate::shared::Shared;
use crate::stats::Prices;
use crate::transport::Transport;
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Builder of an [`LlmFactory`]; every knob documents its default.
#[derive(Default)]
pub struct LlmFactoryBuilder {
    config: FactoryConfig,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// A Bedrock API key; never shown by `Debug`.
    api_key: Option<String>,
    sdk_config: Option<SdkConfig>,
    region_endpoints: Vec<(String, String)>,
    prices: Vec<(String, Prices)>,
    #[cfg(feature = "redis")]
    fleet: Option<crate::fleet::FleetConfig>,
}

impl fmt::Debug for LlmFactoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LlmFactoryBuilder");
        d.field("config", &self.config)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<provider>"),
            )
            .field(
                "bedrock_api_key",
                &self.api_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "sdk_config",
                &self.sdk_config.as_ref().map(|_| "<SdkConfig>"),
            );
        // The fleet's Debug hides the password in its URL.
        #[cfg(feature = "redis")]
        d.field("fleet", &self.fleet);
        d.finish()
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

    /// Aims the factory at one Bedrock-compatible test server, such as the `bedrock-pool-local`
    /// crate's `LocalServer`: the region it plays, its Bedrock and STS endpoints, the CA (PEM)
    /// its certificate chains to, and the credentials it accepts. The same as `region`,
    /// `bedrock_endpoint_url`, `sts_endpoint_url`, `ca_certificate_pem` and
    /// `credentials_provider` one by one.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = bedrock_pool_local::LocalServer::start().await?;
    /// let factory = bedrock_pool::LlmFactory::builder()
    ///     .local_endpoints(
    ///         server.region(),
    ///         server.bedrock_url(),
    ///         server.sts_url(),
    ///         server.ca_pem(),
    ///         server.credentials(),
    ///     )
    ///     .build()
    ///     .await?;
    /// # let _ = factory; Ok(()) }
    /// ```
    pub fn local_endpoints(
        self,
        region: impl Into<String>,
        bedrock_url: impl Into<String>,
        sts_url: impl Into<String>,
        ca_pem: impl Into<String>,
        credentials: aws_credential_types::Credentials,
    ) -> Self {
        self.region(region)
            .bedrock_endpoint_url(bedrock_url)
            .sts_endpoint_url(sts_url)
            .ca_certificate_pem(ca_pem)
            .credentials_provider(credentials)
    }

    /// Sets the prices of a model id (per million tokens) for the cost estimate in the
    /// statistics; see [`LlmFactory::set_prices`]. Default is none: cost stays absent.
    pub fn prices(mut self, model_id: impl Into<String>, prices: Prices) -> Self {
        self.prices.push((model_id.into(), prices));
        self
    }

    /// Authenticates to Bedrock Runtime with a Bedrock API key (HTTP bearer auth) instead of
    /// SigV4, as the SDK does when `AWS_BEARER_TOKEN_BEDROCK` is set: the Bedrock clients get
    /// the key and prefer the bearer scheme. STS still needs SigV4 credentials, so the
    /// heartbeat's identity probe is skipped (keep-warm works). The key never appears in a log
    /// line or a `Debug` string of this crate. Default is none: the environment decides.
    pub fn bedrock_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
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

    /// Sets the attempts on one model (in one region) after which a throttle or a server
    /// error moves a call that has a fallback model left to that model, instead of retrying.
    /// Default is 1: the first throttle moves the call. Calls with no fallback left keep
    /// `retry_max_attempts`.
    pub fn fallback_after_attempts(mut self, attempts: u32) -> Self {
        self.config.retry.fallback_after_attempts = attempts;
        self
    }

    /// Sends a unary call again after its read timeout even when the request may have
    /// reached the model, which then generates (and bills) the answer again; such sends are
    /// counted in [`RequestStats::repeats`](crate::stats::RequestStats::repeats). Default is false:
    /// only a read timeout that cannot have reached a healthy model is sent again.
    pub fn retry_slow_calls(mut self, on: bool) -> Self {
        self.config.retry.retry_slow_calls = on;
        self
    }

    /// Carries unary Converse calls (and InvokeModel calls with an Anthropic Messages body) as
    /// streams, collected into the same answer, so that a long generation is neither cut by
    /// the read timeout nor sent twice. Default is true. See the README's "Retries and
    /// timeouts".
    pub fn unary_over_stream(mut self, on: bool) -> Self {
        self.config.timeouts.unary_over_stream = on;
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

    /// Sets the circuit breaker of each model in each region; `None` turns breakers off.
    /// Default is [`BreakerConfig::default`](crate::config::BreakerConfig): 5 failures in a row within
    /// 60 s open it for 10 s (see the README's "Fallbacks and limits").
    pub fn circuit_breaker(mut self, breaker: Option<crate::config::BreakerConfig>) -> Self {
        self.config.breaker = breaker;
        self
    }

    /// Sets the client-side limit of `model_id` in each region (replacing an earlier one): its
    /// calls to a region never go past `limit`'s requests and tokens per window there, as
    /// Bedrock's quotas are per region; see [`ModelLimit`](crate::limit::ModelLimit). The id must be
    /// the one the handles use (`factory.model(id)`).
    pub fn model_limit(
        mut self,
        model_id: impl Into<String>,
        limit: crate::limit::ModelLimit,
    ) -> Self {
        let id = model_id.into();
        self.config.limits.retain(|(m, _)| *m != id);
        self.config.limits.push((id, limit));
        self
    }

    /// Sets the client-side limit of `model_id` in `region` only (replacing an earlier one,
    /// and the limit of [`model_limit`](Self::model_limit) there): for a quota raised in one
    /// region. The region must be one of the factory's.
    pub fn model_limit_in(
        mut self,
        region: impl Into<String>,
        model_id: impl Into<String>,
        limit: crate::limit::ModelLimit,
    ) -> Self {
        let (region, id) = (region.into(), model_id.into());
        self.config
            .region_limits
            .retain(|(r, m, _)| !(*r == region && *m == id));
        self.config.region_limits.push((region, id, limit));
        self
    }

    /// Shares the client-side limits ([`model_limit`](Self::model_limit)), the circuit
    /// breakers' openings and the regions' cooldowns with every factory using the same Redis
    /// and prefix (feature `redis`; see the README's "Across a fleet"). `build()` does not wait
    /// for Redis: while it is unreachable, each process uses its own limits and breakers.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fleet(mut self, config: crate::fleet::FleetConfig) -> Self {
        self.fleet = Some(config);
        self
    }

    /// Sets the level of each call's span, the one carrying the OpenTelemetry GenAI
    /// attributes (see the README). Default is INFO.
    pub fn span_level(mut self, level: tracing::Level) -> Self {
        self.config.span_level = level;
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
        for (id, p) in &self.prices {
            validate_model_id(id)?;
            check_prices(p)?;
        }
        if let Some(key) = &self.api_key
            && (key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::invalid(
                "bedrock_api_key",
                "the key is empty or contains whitespace",
            ));
        }
        for (region, url) in &self.region_endpoints {
            validate_region(region, "region_endpoint_url")?;
            validate_url(url, "region_endpoint_url", config.allow_insecure_http)?;
        }
        let transport = Transport::new(&config)?;
        let factory_id = next_factory_id();
        let sdk_config =
            assemble::sdk_config(&config, &transport, self.sdk_config, self.credentials).await;
        assemble::settle_regions(&mut config, &sdk_config, &self.region_endpoints)?;
        let overrides = assemble::overrides(&config, &sdk_config)?;
        let parts = assemble::ClientParts {
            config: &config,
            sdk_config: &sdk_config,
            factory_id,
            region_endpoints: &self.region_endpoints,
            api_key: self.api_key.as_deref(),
        };
        let regions = assemble::region_clients(&parts, overrides.bedrock.as_deref());
        let (sts, sts_url) = assemble::sts_client(&parts, overrides.sts);
        let regions = Regions::new(regions, config.failover_cooldown);
        let mut shared = Shared::new(
            config, transport, sdk_config, regions, sts, sts_url, factory_id,
        );
        shared.bedrock_api_key = self.api_key.is_some();
        #[cfg(feature = "redis")]
        if let Some(f) = &self.fleet {
            shared.attach_fleet(crate::fleet::Fleet::new(f)?);
        }
        shared
            .prices
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .extend(self.prices);
        tracing::debug!(
            regions = ?shared.config.regions,
            max_connections = shared.config.pool.max_connections_per_host,
            idle_timeout = ?shared.config.pool.idle_timeout,
            "bedrock factory built"
        );
        Ok(LlmFactory::from_shared(shared))
    }
}

/// Returns a number no other factory of the process has, to name its retry partitions.
///
/// The SDK would share the retry token bucket and the adaptive rate limiter of a partition (by
/// default: service and region) across the whole process, so one factory's timeouts or
/// throttles would drain another's retries. Each factory's partitions are custom ones (their
/// state is the factory's own, never in the SDK's process-global maps), one per region as the
/// overflow partition, one per model and region (see `lanes.rs`), one for STS.
fn next_factory_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Relaxed)
}
