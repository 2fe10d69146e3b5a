//! Plain configuration values of the factory, each with its default.

pub(crate) mod limit;

use limit::ModelLimit;
use std::time::Duration;

/// Retry strategy of the SDK clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryMode {
    /// Exponential backoff with jitter, plus a client-side rate limiter that slows down after
    /// throttling (one per model and region: Bedrock's quotas are per model). Default.
    #[default]
    Adaptive,
    /// Exponential backoff with jitter and a retry token bucket.
    Standard,
}

/// Connection pool configuration, shared by every client of one factory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Hard cap of connections per host (origin); extra requests queue. Default is 50.
    pub max_connections_per_host: usize,
    /// Idle time after which a pooled connection is closed by the client, before a middlebox
    /// can kill it silently; `None` keeps idle connections forever. Default is 50 s (below a
    /// 60 s load-balancer idle close and a 350 s NAT idle drop).
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive idle time (`TCP_KEEPIDLE`); `None` disables keepalive. Default is 30 s.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections_per_host: 50,
            idle_timeout: Some(Duration::from_secs(50)),
            tcp_keepalive: Some(Duration::from_secs(30)),
        }
    }
}

/// Timeouts applied to every request attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// Time allowed to establish a connection (DNS, TCP, TLS). Default is 5 s.
    pub connect: Duration,
    /// Time allowed from sending a request (including waiting for a pooled connection) to the
    /// response headers. Unary calls carried as streams (see `unary_over_stream`) get their
    /// headers before the model works, so this bounds the time to a live answer, never a
    /// generation's length. Default is 60 s.
    pub read: Duration,
    /// Longest gap allowed between two events of a response stream. Default is 60 s.
    pub stream_stall: Duration,
    /// Carries unary Converse calls (and InvokeModel calls whose body the crate can rebuild:
    /// Anthropic's Messages API) as streams, collected into the same answer: a generation may
    /// then take as long as it needs, while the read timeout still finds a dead connection.
    /// Default is true. When false, or when the service refuses the stream, a unary call whose
    /// `max_tokens` may take longer than the read timeout is refused before the network unless
    /// it sets its own read timeout (see the README's "Retries and timeouts").
    pub unary_over_stream: bool,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            stream_stall: Duration::from_secs(60),
            unary_over_stream: true,
        }
    }
}

/// Retry configuration of the SDK clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retry strategy. Default is [`RetryMode::Adaptive`].
    pub mode: RetryMode,
    /// Attempts per call, the first included. Default is 3.
    pub max_attempts: u32,
    /// Attempts on one model (in one region) after which a throttle or a server error moves a
    /// call that has a fallback model left to that model, instead of retrying. Default is 1:
    /// the first throttle moves the call (a per-minute quota rarely frees up within a
    /// backoff). Calls with no fallback left retry up to `max_attempts`.
    pub fallback_after_attempts: u32,
    /// Sends a unary call again after a read timeout even when the request may have reached
    /// the model (a slow model generates, and bills, the answer again). Default is false.
    pub retry_slow_calls: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            mode: RetryMode::Adaptive,
            max_attempts: 3,
            fallback_after_attempts: 1,
            retry_slow_calls: false,
        }
    }
}

/// Circuit breaker configuration, one breaker per model and region (see the README's "Fallbacks
/// and limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Failures in a row (no success between them) within `window` that open the breaker.
    /// Default is 5.
    pub failures: u32,
    /// The window the failures must fall in. Default is 60 s.
    pub window: Duration,
    /// How long an open breaker skips its model in its region before a trial call. Default is
    /// 10 s: long enough to shed load from a throttled model, short against per-minute quotas.
    pub cooldown: Duration,
}

impl BreakerConfig {
    /// Returns a configuration opening the breaker after `failures` failures within `window`, for
    /// `cooldown`.
    pub fn new(failures: u32, window: Duration, cooldown: Duration) -> Self {
        BreakerConfig {
            failures,
            window,
            cooldown,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig::new(5, Duration::from_secs(60), Duration::from_secs(10))
    }
}

/// Default region when neither the builder nor the AWS environment names one.
pub const DEFAULT_REGION: &str = "us-west-2";

/// Everything the factory builder can set, apart from credentials and an existing `SdkConfig`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FactoryConfig {
    /// Regions, primary first. Default is empty: the region of the AWS environment, else
    /// [`DEFAULT_REGION`].
    pub regions: Vec<String>,
    /// Bedrock Runtime endpoint URL override. Default is none: the SDK's endpoint resolution
    /// (which honours `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` and `AWS_ENDPOINT_URL` with `from_env`).
    pub bedrock_endpoint_url: Option<String>,
    /// STS endpoint URL override. Default is none.
    pub sts_endpoint_url: Option<String>,
    /// Extra trusted CA certificates (PEM), added to the platform's roots. Default is none.
    pub extra_ca_pem: Vec<String>,
    /// Allows plain `http://` endpoints on non-loopback hosts, where signed requests and
    /// session tokens would travel in the clear. Default is false.
    pub allow_insecure_http: bool,
    /// Connection pool configuration.
    pub pool: PoolConfig,
    /// Request timeouts.
    pub timeouts: TimeoutConfig,
    /// Retry configuration.
    pub retry: RetryConfig,
    /// A request that comes after at least this long with no traffic counts as a wake-up in
    /// the request statistics. Default is 30 s.
    pub wakeup_threshold: Duration,
    /// How long a region that failed stays out of rotation (multi-region). Default is 30 s.
    pub failover_cooldown: Duration,
    /// The circuit breaker of each model in each region; `None` turns breakers off. Default is
    /// [`BreakerConfig::default`].
    pub breaker: Option<BreakerConfig>,
    /// Client-side limits by model id, one of this size in each region. Default is none.
    pub limits: Vec<(String, ModelLimit)>,
    /// Client-side limits of one model in one region, (region, model id, limit), replacing
    /// the model's limit of `limits` there. Default is none.
    pub region_limits: Vec<(String, String, ModelLimit)>,
    /// Level of each call's `tracing` span (named `bedrock.call`, with the OpenTelemetry GenAI
    /// attributes and the operation in `rpc.method`). Default is INFO.
    pub span_level: tracing::Level,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        FactoryConfig {
            regions: Vec::new(),
            bedrock_endpoint_url: None,
            sts_endpoint_url: None,
            extra_ca_pem: Vec::new(),
            allow_insecure_http: false,
            pool: PoolConfig::default(),
            timeouts: TimeoutConfig::default(),
            retry: RetryConfig::default(),
            wakeup_threshold: Duration::from_secs(30),
            failover_cooldown: Duration::from_secs(30),
            breaker: Some(BreakerConfig::default()),
            limits: Vec::new(),
            region_limits: Vec::new(),
            span_level: tracing::Level::INFO,
        }
    }
}
