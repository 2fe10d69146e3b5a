//! [`drive`], the call driver's entry: the span and statistics of one call, its validation,
//! and the models it moves through (each tried by [`attempt::send_to_model`]), then the call's
//! opening on an answer or its failure's records.

use super::attempt::{Answered, send_to_model};
use super::open::{self, OpenCall};
use super::span::{self, record_error};
use super::{Answer, CallInput, Chain, Dest, MAX_SENDS_PER_CALL, Progress, Sends, Target};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::stats::Outcome;
use crate::transport::RetryRule;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// Runs one call of `op` for `chain`: starts its span and statistics, validates its input,
/// then sends it to the first model: to each allowed region in turn (healthy ones first,
/// primary first, at most [`MAX_REGIONS_PER_CALL`](crate::region::MAX_REGIONS_PER_CALL), skipping those whose breaker is open, each
/// after the model's client-side limit admits it) until one answers or the failure is not
/// regional. A failure that falls back moves the call to the next model the operation may
/// use, for at most [`MAX_SENDS_PER_CALL`] sends in all.
///
/// `rule` says how the SDK retries this call's read timeouts (the driver adds when a throttle
/// moves on to the next model). `validate` checks the input before any network call; `send`
/// builds and sends the SDK call for one model id to one destination (its future must not
/// borrow). SDK errors are mapped here, in one place.
///
/// # Errors
/// Invalid input, then the mapped SDK error (or the refusal of a limit or a breaker) of the
/// last model tried.
pub(crate) async fn drive<V, O, E, Fut>(
    chain: Chain<'_>,
    op: Op,
    rule: RetryRule,
    validate: impl FnOnce() -> Result<V>,
    mut send: impl FnMut(&V, &str, &Dest<'_>) -> Fut,
) -> Result<Answer<O>>
where
    V: CallInput,
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let first = chain.first;
    let span = op.span(&first.id, first.shared.config.span_level);
    let started = Instant::now();
    let mut progress = Progress {
        guard: first.call_guard(),
        server: String::new(),
        sends: 0,
    };
    let to = Models { chain, op, rule };
    let result = through_models(to, validate, &mut send, &span, &mut progress)
        .instrument(span.clone())
        .await;
    match result {
        Ok((a, target)) => Ok(opened(a, target, progress, span, op, started)),
        Err(e) => {
            failed(&e, first, progress, &span, op, started);
            Err(e)
        }
    }
}

/// What a call goes through: its models, its operation and its retry rule.
#[derive(Clone, Copy)]
struct Models<'a> {
    chain: Chain<'a>,
    op: Op,
    rule: RetryRule,
}

/// Validates the input, then sends it to each model the operation may use in turn, until one
/// answers or the failure does not fall back; returns the answer and the model that gave it.
async fn through_models<'a, V, O, E, Fut>(
    to: Models<'a>,
    validate: impl FnOnce() -> Result<V>,
    send: &mut impl FnMut(&V, &str, &Dest<'_>) -> Fut,
    span: &tracing::Span,
    p: &mut Progress,
) -> Result<(Answered<O>, &'a Target)>
where
    V: CallInput,
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Models { chain, op, rule } = to;
    let first = chain.first;
    if let Some(e) = first.invalid.as_ref().or(chain.invalid) {
        return Err(e.shallow_clone());
    }
    let input = validate()?;
    let attrs = input.request_attrs();
    span::record_request(span, &attrs);
    // The models this operation may move to: none for a plain handle (no allocation).
    let rest: Vec<&Target> = chain
        .fallbacks
        .iter()
        .filter(|f| crate::policy::operation_falls_back(op, f.compatible))
        .map(|f| &f.target)
        .collect();
    let mut target = first;
    let mut next = rest.iter();
    loop {
        let tokens = match &target.limiters {
            Some(_) => crate::limit::estimate(input.input_bytes(), attrs.max_tokens),
            None => 0,
        };
        let mut rule = rule;
        if next.len() > 0 {
            rule.fallback_after = target.shared.config.retry.fallback_after_attempts;
        }
        let to = Sends { op, rule, tokens };
        let tried = send_to_model(target, to, &input, send, span, p).await;
        let e = match tried {
            Ok(answered) => return Ok((answered, target)),
            Err(e) => e,
        };
        let moves = e.falls_back() && p.sends < MAX_SENDS_PER_CALL;
        let Some(following) = next.next().filter(|_| moves) else {
            return Err(e);
        };
        tracing::warn!(model = %target.id, next = %following.id, error = %e, "model failed, falling back to the next model");
        p.guard.move_model(
            following.counters.clone(),
            following.label.clone(),
            e.kind(),
            following.router,
        );
        target = following;
    }
}

/// Returns the answer of `target`, with the call's figures still open.
fn opened<O>(
    a: Answered<O>,
    target: &Target,
    progress: Progress,
    span: tracing::Span,
    op: Op,
    started: Instant,
) -> Answer<O> {
    let Progress { guard, server, .. } = progress;
    // A prompt router's answer names the model that answered later (`OpenCall::route`).
    if !target.router {
        span.record("gen_ai.response.model", target.id.as_str());
    }
    Answer {
        output: a.output,
        call: OpenCall::new(open::Opened {
            prices: target.shared.prices(&target.id),
            guard,
            region_guard: a.region_guard,
            span,
            operation: op.operation(),
            model_id: target.id.clone(),
            label: target.label.clone(),
            server,
            started,
            region: a.region,
            attempts: a.attempts,
            connection: a.connection,
            lease: a.lease,
            routing: target.router.then(|| target.shared.clone()),
        }),
    }
}

/// Records a failed call: its span, its duration metric and its figures.
fn failed(
    e: &Error,
    first: &Target,
    progress: Progress,
    span: &tracing::Span,
    op: Op,
    started: Instant,
) {
    let Progress { guard, server, .. } = progress;
    let elapsed = started.elapsed();
    span.record("outcome", e.kind().as_str());
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    record_error(span, e.code().unwrap_or(e.kind().as_str()));
    let m = crate::metrics::GenAi {
        operation: op.operation(),
        model: &first.label,
        server: &server,
    };
    crate::metrics::gen_ai_duration(&m, Some(e.kind().as_str()), elapsed);
    guard.finish(Outcome::Failure(e.kind()));
}
