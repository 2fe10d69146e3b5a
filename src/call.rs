//! The one call driver: every operation runs through [`drive`], which owns the span, the
//! statistics, validation, region order, failover and error mapping. An operation supplies only
//! "build this SDK call for this region" (and turns the answer into its own output).

use crate::error::{Error, ErrorKind, Result, from_sdk};
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
}

impl Op {
    /// Returns the operation's name as the SDK spells it, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Converse => "converse",
            Op::ConverseStream => "converse_stream",
        }
    }

    fn span(self, model_id: &str) -> tracing::Span {
        // Span names must be literals.
        macro_rules! span {
            ($name:literal) => {
                tracing::debug_span!(
                    $name,
                    model_id = %model_id,
                    region = tracing::field::Empty,
                    attempts = tracing::field::Empty,
                    outcome = tracing::field::Empty,
                    latency_ms = tracing::field::Empty,
                )
            };
        }
        match self {
            Op::Converse => span!("bedrock.converse"),
            Op::ConverseStream => span!("bedrock.converse_stream"),
        }
    }
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
    }

    /// Records the time to the first event of a stream.
    pub(crate) fn first_token(&mut self) {
        self.first_event = Some(Instant::now());
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

    /// Ends the call's and the region's figures with `outcome` (once; later calls do nothing).
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.span
            .record("latency_ms", self.started.elapsed().as_secs_f64() * 1000.0);
        self.span.record(
            "outcome",
            match outcome {
                Outcome::Success => "success",
                Outcome::Failure(k) => k.as_str(),
                Outcome::Cancelled => "cancelled",
            },
        );
        self.guard.end(outcome);
        self.region_guard.end(outcome);
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
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let span = op.span(&target.id);
    let started = Instant::now();
    let guard = target.call_guard();
    let result = async {
        if let Some(e) = &target.invalid {
            return Err(e.shallow_clone());
        }
        let input = validate()?;
        let shared = &target.shared;
        let order = shared.regions.order(&target.id);
        let tries = order.len().min(MAX_REGIONS_PER_CALL);
        for (i, region) in order.iter().take(tries).enumerate() {
            let region_guard =
                CallGuard::start(
                [Some(region.counters.clone()), None],
                region.activity.clone(),
                None,
            );
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
        Ok((output, region, attempts, region_guard, connection)) => {
            span.record("attempts", attempts);
            span.record("region", region.as_str());
            Ok(Answer {
                output,
                call: OpenCall {
                    prices: target.shared.prices(&target.id),
                    first_event: None,
                    guard,
                    region_guard,
                    finished: false,
                    span,
                    started,
                    region,
                    attempts,
                    connection,
                },
            })
        }
        Err(e) => {
            span.record("outcome", e.kind().as_str());
            span.record("latency_ms", started.elapsed().as_secs_f64() * 1000.0);
            guard.finish(Outcome::Failure(e.kind()));
            Err(e)
        }
    }
}
