//! The client's integration tests, in one binary: each module drives the real SDK client over
//! real sockets against the local server (`bedrock-pool-local`).
//!
//! Kept apart, each in a process of its own: `fds.rs` (counts the process's file descriptors),
//! `load.rs` (a multi-thread load run whose connection counts other tests would disturb),
//! `metrics.rs` (installs the global metrics recorder) and `otel.rs` (installs a global
//! OpenTelemetry pipeline).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod collect_kinds;
mod converse_surface;
mod factory;
mod fallbacks;
mod faults;
mod fleet;
mod guardrails;
mod heartbeat;
mod jobs;
mod limits;
mod liveness;
mod llm_calls;
mod local_quota;
mod media;
mod multi_region;
mod operations;
mod security;
mod sessions;
mod stats;
mod stream;
mod tokens;
mod tools;
