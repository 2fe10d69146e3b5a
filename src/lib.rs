//! A pooled Amazon Bedrock client factory.
//!
//! Services that call Bedrock after sitting idle wait a whole read timeout on their first
//! request: the pooled connection died silently behind a NAT or load balancer. This crate
//! builds ONE shared Bedrock Runtime client on a tuned pool (50 connections per host, TCP
//! keepalive, idle eviction below middlebox timeouts, 5 s connect / 60 s read timeouts,
//! adaptive retry with 3 attempts), hands out cheap cached [`Model`] handles, and reports
//! pool, request and cache statistics.
//!
//! ```no_run
//! # async fn run() -> bedrock_pool::Result<()> {
//! let factory = bedrock_pool::LlmFactory::from_env().await?;
//! let reply = factory
//!     .model("anthropic.claude-3-haiku-20240307-v1:0")
//!     .converse()
//!     .user("hi")
//!     .send()
//!     .await?;
//! println!("{}", reply.text());
//! # Ok(()) }
//! ```
//!
//! Each call has a `tracing` span with the OpenTelemetry GenAI semantic-convention attributes
//! (`chat {model}`, client kind, token usage, finish reasons; never message content); the
//! `otel` feature sets its array attributes through `tracing-opentelemetry`, the `metrics`
//! feature exports the figures and the `gen_ai.client.*` metrics. The `bedrock-pool-local`
//! crate is a Bedrock-compatible server for offline tests (a dev-dependency; see
//! [`LlmFactoryBuilder::local_endpoints`]).
//!
//! Handles can fall back to other models ([`Model::with_fallbacks`]); each model in each region
//! has a circuit breaker ([`BreakerConfig`]); client-side limits keep a model under its requests
//! and tokens per minute ([`ModelLimit`]), and with the `redis` feature a whole fleet of
//! processes shares them (`LlmFactoryBuilder::fleet`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The call path, bottom up: error, config, metrics; transport (the pool), stats, breaker,
// fleet (Redis), limit, region (policy), shared, call (the driver); then the handles: model,
// request, reply, stream and the other operations; then factory and heartbeat.
mod anthropic;
mod breaker;
mod call;
mod collect;
mod config;
mod count_tokens;
mod embed;
mod error;
mod factory;
#[cfg(feature = "redis")]
mod fleet;
mod heartbeat;
mod invoke;
mod lanes;
mod limit;
pub mod metrics;
mod model;
mod region;
mod reply;
mod request;
mod shared;
mod stats;
mod stream;
mod transport;

pub use breaker::{BreakerState, BreakerStats};
pub use call::policy::{CallPolicy, ReadTimeoutRetry};
pub use config::{
    BreakerConfig, DEFAULT_REGION, FactoryConfig, PoolConfig, RetryMode, RetrySettings,
    TimeoutSettings,
};
pub use embed::{
    DEFAULT_EMBED_CONCURRENCY, EmbedFamily, EmbedRequest, Embeddings, InputType, Truncate,
};
pub use error::{Error, ErrorKind, Result, TimeoutKind};
pub use factory::{LlmFactory, LlmFactoryBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use fleet::{FleetConfig, FleetStats};
pub use heartbeat::{
    HeartbeatConfig, HeartbeatHandle, HeartbeatStatus, ProbeCounts, ProbeError, ProbeKind,
};
pub use invoke::{InvokeBody, InvokeReply, InvokeRequest, InvokeStream};
pub use limit::{LimitMode, LimitStats, ModelLimit, burndown_rate};
pub use model::Model;
pub use region::RegionStats;
pub use reply::{Reasoning, Reply};
pub use request::{ConverseRequest, Streaming, Unary};
pub use stats::{
    CacheStats, Cost, FailureCounts, HttpProtocol, LatencySummary, OriginPoolStats, PoolStats,
    Prices, RateSummary, RequestStats,
};
pub use stream::{ConverseStreamRequest, ReplyStream, StreamEvent};

/// The SDK types used in this crate's API, re-exported for convenience.
pub mod types {
    pub use aws_sdk_bedrockruntime::types::{
        AnyToolChoice, AutoToolChoice, CachePointBlock, CacheTtl, Citation,
        CitationGeneratedContent, CitationLocation, CitationSourceContent, CitationsContentBlock,
        CitationsDelta, ContentBlock, ConversationRole, ConverseStreamTrace, ConverseTrace,
        GuardrailStreamProcessingMode, GuardrailTrace, GuardrailTraceAssessment, Message,
        PerformanceConfiguration, ReasoningContentBlock, ReasoningTextBlock, ServiceTier,
        ServiceTierType, SpecificToolChoice, StopReason, SystemContentBlock, TokenUsage, Tool,
        ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock,
        ToolSpecification, ToolUseBlock,
    };
    pub use aws_smithy_types::{Blob, Document};
}

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
