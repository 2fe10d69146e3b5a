//! A call that got its answer but may not be over (a stream): its figures, span and metrics
//! until it finishes.

use super::span::record_error;
use crate::error::Error;
use crate::limit::Lease;
use crate::meta::CallInfo;
use crate::shared::Shared;
use crate::stats::{CallGuard, Outcome, Prices, Tokens};
use crate::transport::ConnectionWatch;
use aws_sdk_bedrockruntime::types::{CacheTtl, ServiceTierType, TokenUsage};
use std::sync::Arc;
use std::time::Instant;

/// The figures of a call that has an answer but may not be over (a stream is over when its
/// last event arrived): finish it with [`OpenCall::finish`]; dropping it counts as cancelled.
pub(crate) struct OpenCall {
    /// The model and region that answered, the attempts, the latency to the answer's headers.
    info: CallInfo,
    /// The limit's admission, corrected by the usage.
    lease: Option<Lease>,
    /// The model's prices when the call started, for its cost.
    prices: Option<Prices>,
    /// The service tier that served the call, as the answer says (for its cost).
    tier: Option<ServiceTierType>,
    /// When the first event of a stream arrived.
    first_event: Option<Instant>,
    guard: CallGuard,
    region_guard: CallGuard,
    /// Set once the figures are finished; tokens reported later (a stream's metadata comes
    /// after `messageStop`) still count.
    finished: bool,
    span: tracing::Span,
    /// `gen_ai.operation.name`, the model's statistics label and `server.address`, for the
    /// `gen_ai.client.*` metrics.
    operation: &'static str,
    label: Arc<str>,
    server: String,
    started: Instant,
    connection: Option<ConnectionWatch>,
    /// For a call to a prompt router, the factory's state, to move the call to the model the
    /// router chose ([`OpenCall::route`]).
    routing: Option<Arc<Shared>>,
}

/// What the driver knows of a call when it gets its answer.
pub(super) struct Opened {
    pub(super) prices: Option<Prices>,
    pub(super) guard: CallGuard,
    pub(super) region_guard: CallGuard,
    pub(super) span: tracing::Span,
    pub(super) operation: &'static str,
    pub(super) model_id: String,
    pub(super) label: Arc<str>,
    pub(super) server: String,
    pub(super) started: Instant,
    pub(super) region: String,
    pub(super) attempts: u32,
    pub(super) connection: Option<ConnectionWatch>,
    pub(super) lease: Option<Lease>,
    pub(super) routing: Option<Arc<Shared>>,
}

impl OpenCall {
    pub(super) fn new(o: Opened) -> Self {
        OpenCall {
            info: CallInfo {
                model_id: o.model_id,
                router: None,
                region: o.region,
                attempts: o.attempts,
                latency: o.started.elapsed(),
            },
            lease: o.lease,
            prices: o.prices,
            tier: None,
            first_event: None,
            guard: o.guard,
            region_guard: o.region_guard,
            finished: false,
            span: o.span,
            operation: o.operation,
            label: o.label,
            server: o.server,
            started: o.started,
            connection: o.connection,
            routing: o.routing,
        }
    }

    /// Returns true while a call to a prompt router waits for its answer to name the model
    /// the router chose (a stream names it in its metadata event, after `messageStop`).
    pub(crate) fn awaits_route(&self) -> bool {
        self.routing.is_some()
    }

    /// Moves a call to a prompt router to the model the router chose, named by the answer's
    /// trace (`promptRouter.invokedModelId`): its statistics (from the request on), its cost
    /// (that model's prices), its span's `gen_ai.response.model` and its metadata
    /// (`model_id`, with `router` the id called). Call it before the usage is counted; it does
    /// nothing for a call to a model id, or once the call moved.
    pub(crate) fn route(&mut self, invoked: Option<&str>) {
        let Some(invoked) = invoked.filter(|i| !i.is_empty()) else {
            return;
        };
        let Some(shared) = self.routing.take() else {
            return;
        };
        let (counters, label) = shared.models.entry(invoked);
        self.guard.route(counters, label.clone());
        self.prices = shared.prices_of_answering(invoked);
        self.span.record("gen_ai.response.model", invoked);
        self.label = label;
        let router = std::mem::replace(&mut self.info.model_id, invoked.to_owned());
        self.info.router = Some(router);
    }

    /// Returns the id of the connection the answer arrives on, once known.
    pub(crate) fn connection_id(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connection::ConnectionId> {
        self.connection.as_ref().and_then(ConnectionWatch::id)
    }

    /// Returns the region that answered.
    pub(crate) fn region(&self) -> &str {
        &self.info.region
    }

    /// Returns the call's metadata as of its headers.
    pub(crate) fn info(&self) -> &CallInfo {
        &self.info
    }

    /// Returns the call's metadata for its whole answer: the latency is the time until now.
    pub(crate) fn finished_info(&self) -> CallInfo {
        CallInfo {
            latency: self.started.elapsed(),
            ..self.info.clone()
        }
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the service tier that served the call, when the answer names one: the cost of
    /// its tokens uses that tier's multiplier (see [`Prices::tier`]).
    pub(crate) fn served_by(&mut self, tier: Option<&ServiceTierType>) {
        if let Some(t) = tier {
            self.tier = Some(t.clone());
        }
    }

    /// Counts the call's tokens (and cost, and a stream's output tokens per second) from the
    /// usage the service reported.
    pub(crate) fn usage(&self, usage: &TokenUsage) {
        let n = |v: i32| u64::try_from(v).unwrap_or(0);
        let tokens = Tokens {
            input: n(usage.input_tokens()),
            output: n(usage.output_tokens()),
            cache_read: usage.cache_read_input_tokens().map_or(0, n),
            cache_write: usage.cache_write_input_tokens().map_or(0, n),
            cache_write_1h: usage
                .cache_details()
                .iter()
                .filter(|d| *d.ttl() == CacheTtl::OneHour)
                .map(|d| n(d.input_tokens()))
                .sum(),
        };
        if let Some(l) = &self.lease {
            l.settle_usage(tokens.input, tokens.cache_write, tokens.output);
        }
        let generation = self.first_event.map(|t| t.elapsed());
        for g in [&self.guard, &self.region_guard] {
            g.tokens(tokens, self.prices.as_ref(), self.tier.as_ref(), generation);
        }
        // The conventions count cached input (reads and writes) in the input tokens; OTel
        // integers are i64 (tracing-opentelemetry exports a u64 as text).
        let input = tokens.input + tokens.cache_read + tokens.cache_write;
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.span.record("gen_ai.usage.input_tokens", int(input));
        self.span
            .record("gen_ai.usage.output_tokens", int(tokens.output));
        if tokens.cache_read > 0 {
            self.span.record(
                "gen_ai.usage.cache_read.input_tokens",
                int(tokens.cache_read),
            );
        }
        if tokens.cache_write > 0 {
            self.span.record(
                "gen_ai.usage.cache_creation.input_tokens",
                int(tokens.cache_write),
            );
        }
        let m = self.gen_ai();
        crate::metrics::gen_ai_tokens(&m, "input", input);
        crate::metrics::gen_ai_tokens(&m, "output", tokens.output);
    }

    /// Records why the model stopped (`gen_ai.response.finish_reasons`): a string array with
    /// the `otel` feature, else its JSON text (`["end_turn"]`).
    pub(crate) fn finish_reason(&self, reason: &aws_sdk_bedrockruntime::types::StopReason) {
        // The value is built for a span someone records, not on every call.
        if self.span.is_disabled() {
            return;
        }
        #[cfg(feature = "otel")]
        {
            use opentelemetry::{Array, StringValue, Value};
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let v = Value::Array(Array::String(vec![StringValue::from(
                reason.as_str().to_owned(),
            )]));
            self.span.set_attribute("gen_ai.response.finish_reasons", v);
        }
        #[cfg(not(feature = "otel"))]
        self.span.record(
            "gen_ai.response.finish_reasons",
            format!("[{:?}]", reason.as_str()).as_str(),
        );
    }

    /// Returns the attributes of this call's `gen_ai.client.*` metrics.
    fn gen_ai(&self) -> crate::metrics::GenAi<'_> {
        crate::metrics::GenAi {
            operation: self.operation,
            model: &self.label,
            server: &self.server,
        }
    }

    /// Records the time to the first event of a stream.
    pub(crate) fn first_token(&mut self) {
        self.first_event = Some(Instant::now());
        crate::metrics::gen_ai_first_chunk(&self.gen_ai(), self.started.elapsed());
        for g in [&self.guard, &self.region_guard] {
            g.first_token();
        }
    }

    /// Retires the connection the answer arrives on (a stream that stalled or broke); counts
    /// it once.
    pub(crate) fn retire_connection(&self) {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.retire("stream stalled or broke"))
        {
            for g in [&self.guard, &self.region_guard] {
                g.retired(1);
            }
        }
    }

    /// Ends the call with `e`: `error.type` is the service's error code when there is one,
    /// else the [`ErrorKind`] name.
    pub(crate) fn fail(&mut self, e: &Error) {
        self.end(Outcome::Failure(e.kind()), e.code());
    }

    /// Ends the call's and the region's figures with `outcome` (once; later calls do nothing).
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        self.end(outcome, None);
    }

    fn end(&mut self, outcome: Outcome, code: Option<&str>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.routing.is_some() {
            // A router's call whose answer never named the model that answered.
            self.span
                .record("gen_ai.response.model", self.info.model_id.as_str());
        }
        let elapsed = self.started.elapsed();
        self.span
            .record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        self.span.record(
            "outcome",
            match outcome {
                Outcome::Success => "success",
                Outcome::Failure(k) => k.as_str(),
                Outcome::Cancelled => "cancelled",
            },
        );
        match outcome {
            Outcome::Success => crate::metrics::gen_ai_duration(&self.gen_ai(), None, elapsed),
            Outcome::Failure(k) => {
                record_error(&self.span, code.unwrap_or(k.as_str()));
                crate::metrics::gen_ai_duration(&self.gen_ai(), Some(k.as_str()), elapsed);
            }
            Outcome::Cancelled => {}
        }
        self.guard.end(outcome);
        self.region_guard.end(outcome);
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        // A stream dropped before its end: the span and figures say cancelled.
        self.finish(Outcome::Cancelled);
    }
}
