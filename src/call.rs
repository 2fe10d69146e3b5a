//! The one call driver: every operation runs through [`drive`], which owns the span, the
//! statistics, validation, region order, failover and error mapping. An operation supplies only
//! "build this SDK call for this region" (and turns the answer into its own output).

use crate::error::{Error, ErrorKind, Result, from_sdk};
use crate::metrics::PROVIDER;
use crate::region::{MAX_REGIONS_PER_CALL, RegionClient, fails_over};
use crate::shared::Shared;
use crate::stats::{CallGuard, Outcome, Prices, RequestCounters, Tokens};
use crate::transport::{CALL, CallScope, ConnectionWatch};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::TokenUsage;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures_util::FutureExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Sends an SDK fluent builder with the per-call timeout override when there is one.
///
/// Without an override the builder is sent as is: `customize()` would box the SDK's future and
/// add an (empty) config-override layer to every call, which the profile showed as the
/// largest part of the factory's own cost per call. It returns an `Either` of the two unstarted
/// futures, not an `async` block awaiting one of them: the block would move the SDK's (large)
/// future into its own state on its first poll.
macro_rules! send_with_timeouts {
    ($builder:expr, $timeouts:expr) => {
        match $timeouts {
            None => futures_util::future::Either::Left($builder.send()),
            Some(t) => futures_util::future::Either::Right(
                $builder
                    .customize()
                    .config_override(
                        aws_sdk_bedrockruntime::config::Builder::default().timeout_config(t),
                    )
                    .send(),
            ),
        }
    };
}
pub(crate) use send_with_timeouts;

/// What a call is sent for: one model id of one factory.
pub(crate) struct Target {
    pub(crate) id: String,
    /// The statistics label of the id (`other` beyond the tracked cap).
    pub(crate) label: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    /// This model's figures; none for an invalid id, which allocates nothing.
    pub(crate) counters: Option<Arc<RequestCounters>>,
    /// Why the id is unusable, reported on every call before anything else.
    pub(crate) invalid: Option<Error>,
}

impl Target {
    /// Starts the statistics of one call: overall and this model's figures.
    fn call_guard(&self) -> CallGuard {
        CallGuard::start(
            [Some(self.shared.overall.clone()), self.counters.clone()],
            self.shared.activity.clone(),
            Some(self.label.clone()),
        )
    }
}

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
    fn span(self, model_id: &str, level: tracing::Level) -> tracing::Span {
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

/// The request values a call's span carries: those the validated call sends.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RequestAttrs {
    pub(crate) max_tokens: Option<i32>,
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
}

/// A validated input of an operation: what the driver records of it on the call's span.
pub(crate) trait CallInput {
    /// Returns the request values for the span.
    fn request_attrs(&self) -> RequestAttrs;
}

/// Marks the span failed: `error.type` and the OpenTelemetry status.
fn record_error(span: &tracing::Span, error_type: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

/// A call that got its answer: the SDK's output, and the figures still open.
pub(crate) struct Answer<O> {
    /// Boxed: the SDK's outputs are large, and the box moves cheaply.
    pub(crate) output: Box<O>,
    pub(crate) call: OpenCall,
}

/// The figures of a call that has an answer but may not be over (a stream is over when its
/// last event arrived): finish it with [`OpenCall::finish`]; dropping it counts as cancelled.
pub(crate) struct OpenCall {
    /// The model's prices when the call started, for its cost.
    prices: Option<Prices>,
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
    region: String,
    attempts: u32,
    connection: Option<ConnectionWatch>,
}

impl OpenCall {
    /// Returns the region that answered.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// Returns the attempts the SDK made in that region.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Returns the time since the call started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
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
        };
        let generation = self.first_event.map(|t| t.elapsed());
        for g in [&self.guard, &self.region_guard] {
            g.tokens(tokens, self.prices.as_ref(), generation);
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

/// Runs one call of `op` for `target`: starts its span and statistics, validates its input,
/// then sends it to each allowed region in turn (healthy ones first, primary first, at most
/// [`MAX_REGIONS_PER_CALL`]) until one answers or the failure is not regional.
///
/// `validate` checks the input before any network call; `send` builds and sends the SDK call
/// for one region (its future must not borrow). SDK errors are mapped here, in one place.
///
/// # Errors
/// Invalid input, then the mapped SDK error of the last region tried.
pub(crate) async fn drive<V, O, E, Fut>(
    target: &Target,
    op: Op,
    validate: impl FnOnce() -> Result<V>,
    mut send: impl FnMut(&V, &RegionClient) -> Fut,
) -> Result<Answer<O>>
where
    V: CallInput,
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let span = op.span(&target.id, target.shared.config.span_level);
    let started = Instant::now();
    let guard = target.call_guard();
    // `server.address` of the last region tried, for the failure's metrics.
    let mut server = String::new();
    let result = async {
        if let Some(e) = &target.invalid {
            return Err(e.shallow_clone());
        }
        let input = validate()?;
        let attrs = input.request_attrs();
        if let Some(n) = attrs.max_tokens {
            span.record("gen_ai.request.max_tokens", i64::from(n));
        }
        if let Some(t) = attrs.temperature {
            span.record("gen_ai.request.temperature", f64::from(t));
        }
        if let Some(p) = attrs.top_p {
            span.record("gen_ai.request.top_p", f64::from(p));
        }
        let shared = &target.shared;
        let order = shared.regions.order(&target.id);
        let tries = order.len().min(MAX_REGIONS_PER_CALL);
        for (i, region) in order.iter().take(tries).enumerate() {
            let region_guard =
                CallGuard::start([Some(region.counters.clone()), None], region.activity.clone(), None);
            let (host, port) = &region.server;
            span.record("cloud.region", region.region.as_str());
            span.record("server.address", host.as_str());
            if let Some(p) = port {
                span.record("server.port", i64::from(*p));
            }
            server.clone_from(host);
            let scope = Arc::new(CallScope::default());
            // Boxed: the SDK's future is large (7 KB for Converse), and moving it through the
            // task-local scope and this future's states copied it several times per call. The
            // box is allocated first so that the future is built in it, not copied into it.
            // Its output is boxed and its error mapped inside, so what moves out of it through
            // the scope, the span and this loop is two words, not the SDK's large `Result`. The
            // mapping is a `Map` combinator, which polls the SDK's future where it lies: an
            // `async` block awaiting it would move all of it into its own state on the first poll.
            let fut = Box::into_pin(Box::write(
                Box::new_uninit(),
                send(&input, region).map(move |r| r.map(Box::new).map_err(|e| from_sdk(op.name(), e))),
            ));
            shared.check_exhaustion(region);
            let result = CALL.scope(scope.clone(), fut).await;
            let attempts = scope.attempts.load(Relaxed);
            span.record("aws.bedrock.attempts", i64::from(attempts));
            let extra = u64::from(attempts.saturating_sub(1));
            let retired = u64::from(scope.retired.load(Relaxed));
            for g in [&guard, &region_guard] {
                g.retries(extra);
                g.retired(retired);
            }
            match result {
                Ok(output) => {
                    shared.regions.mark_healthy(region);
                    let connection = shared.transport.last_connection(&scope);
                    return Ok((output, region.region.clone(), attempts, region_guard, connection));
                }
                Err(e) => {
                    region_guard.finish(Outcome::Failure(e.kind()));
                    let regional = fails_over(&e);
                    if regional && order.len() > 1 {
                        shared.regions.mark_unhealthy(region);
                    }
                    if !regional || i + 1 == tries {
                        return Err(e);
                    }
                    region.failovers.fetch_add(1, Relaxed);
                    tracing::warn!(region = %region.region, error = %e, "regional failure, trying the next region");
                }
            }
        }
        Err(Error::new(ErrorKind::Other, "no region to send the call to"))
    }
    .instrument(span.clone())
    .await;
    match result {
        Ok((output, region, attempts, region_guard, connection)) => Ok(Answer {
            output,
            call: OpenCall {
                prices: target.shared.prices(&target.id),
                first_event: None,
                guard,
                region_guard,
                finished: false,
                span,
                operation: op.operation(),
                label: target.label.clone(),
                server,
                started,
                region,
                attempts,
                connection,
            },
        }),
        Err(e) => {
            let elapsed = started.elapsed();
            span.record("outcome", e.kind().as_str());
            span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
            record_error(&span, e.code().unwrap_or(e.kind().as_str()));
            let m = crate::metrics::GenAi {
                operation: op.operation(),
                model: &target.label,
                server: &server,
            };
            crate::metrics::gen_ai_duration(&m, Some(e.kind().as_str()), elapsed);
            guard.finish(Outcome::Failure(e.kind()));
            Err(e)
        }
    }
}
