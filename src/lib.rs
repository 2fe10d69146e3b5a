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
//! has a circuit breaker ([`BreakerConfig`](config::BreakerConfig)); client-side limits keep a model under its requests
//! and tokens per minute ([`ModelLimit`](limit::ModelLimit)), and with the `redis` feature a whole fleet of
//! processes shares them (`LlmFactoryBuilder::fleet`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The call path, bottom up, each module importing only those below it: plain data first
// (error, config, metrics, meta, op, inputs; stats and policy, the rules); transport (the
// pool), probe (the heartbeat's and a silent session's probes), breaker, region (with its
// lanes), fleet (Redis), limit, shared, call (the driver); then the handles: model, stream (the
// reply stream), request and the other operations (session: bidirectional streams); then
// factory and heartbeat.
//
// The root holds what a first program needs; the rest lives in public modules named after
// their concern (`config`, `stats`, `limit`, `fleet`, `heartbeat`, `embed`, `invoke`,
// `converse`, `policy`, `error`, `metrics`), and the whole SDK crate is `sdk`.
mod anthropic;
mod breaker;
mod call;
mod collect;
pub mod config;
mod count_tokens;
pub mod embed;
pub mod error;
mod factory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
pub mod guardrails;
pub mod heartbeat;
mod inputs;
pub mod invoke;
pub mod jobs;
mod lanes;
pub mod limit;
mod meta;
pub mod metrics;
mod model;
mod op;
pub mod policy;
mod probe;
mod region;
mod reply;
mod request;
pub mod session;
mod shared;
pub mod stats;
mod stream;
mod transport;

pub use error::{Error, ErrorKind, Result};
pub use factory::{LlmFactory, LlmFactoryBuilder};
pub use heartbeat::HeartbeatConfig;
pub use meta::{CallInfo, CallMetadata};
pub use model::Model;
pub use reply::Reply;
pub use request::{ConverseRequest, ConverseStreamRequest};
pub use stream::{ReplyStream, StreamEvent};

/// Converse and ConverseStream: the requests, the replies and the stream's events.
pub mod converse {
    pub use crate::reply::{Reasoning, Reply};
    pub use crate::request::{
        ConverseRequest, ConverseStreamRequest, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, MAX_IMAGE_BYTES,
        MAX_IMAGES, MAX_VIDEO_BYTES, Media, Streaming, Unary,
    };
    pub use crate::stream::{ReplyStream, StreamEvent};
}

/// The AWS SDK for Bedrock Runtime (`aws-sdk-bedrockruntime`), whole, at the version this
/// crate uses: its `types` (content blocks, messages, tools), `primitives` (`Blob`), errors
/// and operations, plus the [`Document`](aws_smithy_types::Document) type of tool inputs and additional model fields.
/// Use it rather than a dependency of your own, so that the versions always match.
pub mod sdk {
    pub use aws_sdk_bedrockruntime::*;
    pub use aws_smithy_types::Document;
}
