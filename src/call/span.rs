//! Each call's span, started for its operation ([`Op`]): its name, level and the
//! OpenTelemetry GenAI attributes (see the README's table).

use super::RequestAttrs;
use crate::metrics::PROVIDER;
use crate::op::Op;

/// The name of every call's `tracing` span; the operation is in its fields.
pub(crate) const SPAN_NAME: &str = "bedrock.call";

impl Op {
    /// Starts the call's span at `level`, with the OpenTelemetry GenAI attributes known before
    /// the call; the others are recorded as they become known (see the README's table).
    ///
    /// Every call has the one static span name [`SPAN_NAME`]; the operation is a field
    /// (`rpc.method`, `gen_ai.operation.name`), and tracing-opentelemetry's `otel.name` carries
    /// the conventions' `{operation} {model}`.
    pub(super) fn span(self, model_id: &str, level: tracing::Level) -> tracing::Span {
        use tracing::Level;
        use tracing::field::Empty;
        // A span's level must be a constant: one expansion per level.
        macro_rules! span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    SPAN_NAME,
                    otel.name = Empty,
                    otel.kind = "client",
                    otel.status_code = Empty,
                    gen_ai.operation.name = self.operation(),
                    gen_ai.provider.name = PROVIDER,
                    gen_ai.request.model = model_id,
                    gen_ai.response.model = Empty,
                    gen_ai.request.max_tokens = Empty,
                    gen_ai.request.temperature = Empty,
                    gen_ai.request.top_p = Empty,
                    gen_ai.response.finish_reasons = Empty,
                    gen_ai.usage.input_tokens = Empty,
                    gen_ai.usage.output_tokens = Empty,
                    gen_ai.usage.cache_read.input_tokens = Empty,
                    gen_ai.usage.cache_creation.input_tokens = Empty,
                    rpc.system = "aws-api",
                    rpc.service = "BedrockRuntime",
                    rpc.method = self.rpc_method(),
                    server.address = Empty,
                    server.port = Empty,
                    cloud.region = Empty,
                    aws.bedrock.attempts = Empty,
                    error.type = Empty,
                    outcome = Empty,
                    latency_ms = Empty,
                )
            };
        }
        let span = match level {
            Level::ERROR => span!(Level::ERROR),
            Level::WARN => span!(Level::WARN),
            Level::INFO => span!(Level::INFO),
            Level::DEBUG => span!(Level::DEBUG),
            Level::TRACE => span!(Level::TRACE),
        };
        if !span.is_disabled() {
            span.record(
                "otel.name",
                format!("{} {model_id}", self.operation()).as_str(),
            );
        }
        span
    }
}

/// Records the region a call goes to: `cloud.region`, `server.address` and `server.port`.
pub(super) fn record_region(span: &tracing::Span, region: &crate::region::RegionClient) {
    let (host, port) = &region.server;
    span.record("cloud.region", region.region.as_str());
    span.record("server.address", host.as_str());
    if let Some(port) = port {
        span.record("server.port", i64::from(*port));
    }
}

/// Marks the span failed: `error.type` and the OpenTelemetry status.
pub(super) fn record_error(span: &tracing::Span, error_type: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

/// Records the request values the validated call sends.
pub(super) fn record_request(span: &tracing::Span, attrs: &RequestAttrs) {
    if let Some(n) = attrs.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(n));
    }
    if let Some(t) = attrs.temperature {
        span.record("gen_ai.request.temperature", f64::from(t));
    }
    if let Some(p) = attrs.top_p {
        span.record("gen_ai.request.top_p", f64::from(p));
    }
}
