//! The operations the driver runs and each call's span: its name, level and the
//! OpenTelemetry GenAI attributes (see the README's table).

use super::RequestAttrs;
use crate::metrics::PROVIDER;

/// The operations the driver runs; each names its span and its error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
    CountTokens,
    Embed,
}

impl Op {
    /// Returns the operation's name as the SDK spells it, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Converse => "converse",
            Op::ConverseStream => "converse_stream",
            Op::Invoke => "invoke_model",
            Op::InvokeStream => "invoke_model_with_response_stream",
            Op::CountTokens => "count_tokens",
            Op::Embed => "embed",
        }
    }

    /// Returns `gen_ai.operation.name`: Converse and InvokeModel are `chat` (a model-native
    /// body is a chat request for the models Bedrock serves), embeddings `embeddings`; counting
    /// tokens has no name in the conventions and keeps its own.
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Op::Converse | Op::ConverseStream | Op::Invoke | Op::InvokeStream => "chat",
            Op::Embed => "embeddings",
            Op::CountTokens => "count_tokens",
        }
    }

    /// Starts the call's span at `level`, with the OpenTelemetry GenAI attributes known before
    /// the call; the others are recorded as they become known (see the README's table).
    pub(super) fn span(self, model_id: &str, level: tracing::Level) -> tracing::Span {
        use tracing::Level;
        use tracing::field::Empty;
        // Span names and levels must be constants: a static name per operation, and
        // tracing-opentelemetry's `otel.name` carries `{operation} {model}`.
        macro_rules! span {
            ($level:expr, $name:literal) => {
                tracing::span!(
                    $level,
                    $name,
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
        macro_rules! at_level {
            ($name:literal) => {
                match level {
                    Level::ERROR => span!(Level::ERROR, $name),
                    Level::WARN => span!(Level::WARN, $name),
                    Level::INFO => span!(Level::INFO, $name),
                    Level::DEBUG => span!(Level::DEBUG, $name),
                    Level::TRACE => span!(Level::TRACE, $name),
                }
            };
        }
        let span = match self {
            Op::Converse => at_level!("bedrock.converse"),
            Op::ConverseStream => at_level!("bedrock.converse_stream"),
            Op::Invoke => at_level!("bedrock.invoke_model"),
            Op::InvokeStream => at_level!("bedrock.invoke_model_stream"),
            Op::CountTokens => at_level!("bedrock.count_tokens"),
            Op::Embed => at_level!("bedrock.embed"),
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
