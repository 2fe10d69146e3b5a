//! Export through the `metrics` crate facade (feature `metrics`); no-ops without it.
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `bedrock_pool_requests_total` | counter | `model`, `outcome` (`success`, `cancelled` or an [`ErrorKind`](crate::ErrorKind) name) |
//! | `bedrock_pool_request_duration_seconds` | histogram | `model` |
//! | `bedrock_pool_retries_total` | counter | `model` |
//! | `bedrock_pool_repeats_total` | counter | `model` (sends that may have paid for a generation again) |
//! | `bedrock_pool_in_flight` | gauge | `model` |
//! | `bedrock_pool_wakeups_total` | counter | `model` |
//! | `bedrock_pool_time_to_first_token_seconds` | histogram | `model` |
//! | `bedrock_pool_fallbacks_total` | counter | `model` (the one the call moved away from) |
//! | `bedrock_pool_breaker_opened_total` | counter | `model`, `region` |
//! | `bedrock_pool_limit_wait_seconds` | histogram | `model` (calls admitted by a client-side limit) |
//! | `bedrock_pool_limit_refused_total` | counter | `model`, `reason` (`reject`, `queue_full`, `too_large`, `deadline`) |
//! | `bedrock_pool_connections_opened_total` | counter | `host` |
//! | `bedrock_pool_connections_closed_total` | counter | `host`, `cause` (`idle`, `error`, `peer`, `dropped`) |
//! | `bedrock_pool_connection_establish_seconds` | histogram | `host` |
//! | `bedrock_pool_connection_failures_total` | counter | `host` |
//! | `bedrock_pool_heartbeat_probes_total` | counter | `probe` (`identity`, `keep_warm`), `outcome` (`success`, `failure`, `skipped`) |
//! | `gen_ai.client.token.usage` | histogram (tokens) | `gen_ai.token.type` (`input`, cached input included; `output`), and the GenAI labels |
//! | `gen_ai.client.operation.duration` | histogram (seconds) | the GenAI labels, `error.type` (an [`ErrorKind`](crate::ErrorKind) name) on failure |
//! | `gen_ai.client.operation.time_to_first_chunk` | histogram (seconds, streams only) | the GenAI labels |
//!
//! The `gen_ai.client.*` series follow the OpenTelemetry GenAI semantic conventions (see the
//! README); their GenAI labels are `gen_ai.operation.name` (`chat`), `gen_ai.provider.name`
//! (`aws.bedrock`), `gen_ai.request.model` and `server.address` (absent when no region was
//! reached). Cancelled calls record no duration. The `model` label and `gen_ai.request.model`
//! are the statistics label: ids past the tracked cap read `other`, which bounds cardinality.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::sync::Arc;
use std::time::Duration;

/// `gen_ai.provider.name` of every call (OpenTelemetry GenAI semantic conventions).
pub(crate) const PROVIDER: &str = "aws.bedrock";

// Model labels are the handle's shared `Arc<str>`: a label costs a reference count, not a
// `String` allocation per call.

pub(crate) fn call_started(model: &Arc<str>, wakeup: bool) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("bedrock_pool_in_flight", "model" => model.clone()).increment(1.0);
        if wakeup {
            metrics::counter!("bedrock_pool_wakeups_total", "model" => model.clone()).increment(1);
        }
    }
}

/// Moves a call in flight from `from` to `to` (a prompt router's call, to the model that
/// answered).
pub(crate) fn call_moved(from: &Arc<str>, to: &Arc<str>) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("bedrock_pool_in_flight", "model" => from.clone()).decrement(1.0);
        metrics::gauge!("bedrock_pool_in_flight", "model" => to.clone()).increment(1.0);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (from, to);
}

pub(crate) fn call_finished(model: &Arc<str>, outcome: &'static str, latency: Option<Duration>) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("bedrock_pool_in_flight", "model" => model.clone()).decrement(1.0);
        metrics::counter!("bedrock_pool_requests_total", "model" => model.clone(), "outcome" => outcome)
            .increment(1);
        if let Some(d) = latency {
            metrics::histogram!("bedrock_pool_request_duration_seconds", "model" => model.clone())
                .record(d.as_secs_f64());
        }
    }
}

/// The labels every `gen_ai.client.*` series carries.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct GenAi<'a> {
    pub(crate) operation: &'static str,
    pub(crate) model: &'a str,
    /// Empty when no region was reached.
    pub(crate) server: &'a str,
}

#[cfg(feature = "metrics")]
impl GenAi<'_> {
    fn labels(&self) -> Vec<metrics::Label> {
        let mut labels = vec![
            metrics::Label::new("gen_ai.operation.name", self.operation),
            metrics::Label::new("gen_ai.provider.name", PROVIDER),
            metrics::Label::new("gen_ai.request.model", self.model.to_owned()),
        ];
        if !self.server.is_empty() {
            labels.push(metrics::Label::new(
                "server.address",
                self.server.to_owned(),
            ));
        }
        labels
    }
}

pub(crate) fn gen_ai_tokens(a: &GenAi<'_>, token_type: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    {
        let mut labels = a.labels();
        labels.push(metrics::Label::new("gen_ai.token.type", token_type));
        metrics::histogram!("gen_ai.client.token.usage", labels).record(n as f64);
    }
}

pub(crate) fn gen_ai_duration(a: &GenAi<'_>, error: Option<&'static str>, d: Duration) {
    #[cfg(feature = "metrics")]
    {
        let mut labels = a.labels();
        if let Some(e) = error {
            labels.push(metrics::Label::new("error.type", e));
        }
        metrics::histogram!("gen_ai.client.operation.duration", labels).record(d.as_secs_f64());
    }
}

pub(crate) fn gen_ai_first_chunk(a: &GenAi<'_>, d: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("gen_ai.client.operation.time_to_first_chunk", a.labels())
        .record(d.as_secs_f64());
}

pub(crate) fn retries(model: &Arc<str>, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_retries_total", "model" => model.clone()).increment(n);
}

pub(crate) fn repeats(model: &Arc<str>, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_repeats_total", "model" => model.clone()).increment(n);
}

pub(crate) fn fallback(model: &Arc<str>) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_fallbacks_total", "model" => model.clone()).increment(1);
}

pub(crate) fn breaker_opened(model: &Arc<str>, region: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_breaker_opened_total", "model" => model.clone(), "region" => region.to_owned())
        .increment(1);
}

pub(crate) fn limit_wait(model: &Arc<str>, d: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("bedrock_pool_limit_wait_seconds", "model" => model.clone())
        .record(d.as_secs_f64());
}

pub(crate) fn limit_refused(model: &Arc<str>, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_limit_refused_total", "model" => model.clone(), "reason" => reason)
        .increment(1);
}

pub(crate) fn first_token(model: &Arc<str>, d: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("bedrock_pool_time_to_first_token_seconds", "model" => model.clone())
        .record(d.as_secs_f64());
}

pub(crate) fn connection_opened(host: &str, establish: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("bedrock_pool_connections_opened_total", "host" => host.to_owned())
            .increment(1);
        metrics::histogram!("bedrock_pool_connection_establish_seconds", "host" => host.to_owned())
            .record(establish.as_secs_f64());
    }
}

pub(crate) fn connection_closed(host: &str, cause: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_connections_closed_total", "host" => host.to_owned(), "cause" => cause)
        .increment(1);
}

pub(crate) fn connection_failed(host: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_connection_failures_total", "host" => host.to_owned())
        .increment(1);
}

pub(crate) fn probe(probe: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("bedrock_pool_heartbeat_probes_total", "probe" => probe, "outcome" => outcome)
        .increment(1);
}
