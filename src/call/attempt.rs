//! One model's sends: [`send_to_model`] tries each allowed region in turn, and
//! [`send_to_region`] is one per-region attempt (the breaker's admission, the client-side
//! limit, the send itself, carried as a stream or unary, and what its outcome does to the
//! breaker, the region and the model's lane).

use super::{Dest, MAX_SENDS_PER_CALL, Progress, Sends, Target, share};
use crate::breaker::{Admit, Breaker};
use crate::error::{Error, ErrorKind, Result, from_sdk};
use crate::limit::Lease;
use crate::policy::{Cools, cools, fails_over};
use crate::region::{MAX_REGIONS_PER_CALL, RegionClient};
use crate::stats::{CallGuard, Outcome};
use crate::transport::{CALL, CallScope, RetryRule};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures_util::FutureExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Returns true when the service refused a unary call carried as a stream before any model
/// work, so that the call goes unary instead: no permission for
/// `bedrock:InvokeModelWithResponseStream` (which both stream operations need), or a model
/// without streaming for this request ("This model doesn't support tool use in streaming
/// mode.").
fn refuses_streams(e: &Error) -> bool {
    let m = e.message().to_ascii_lowercase();
    match e.kind() {
        ErrorKind::AccessDenied => m.contains("invokemodelwithresponsestream"),
        ErrorKind::Validation => m.contains("stream") && m.contains("support"),
        _ => false,
    }
}

/// A half-open breaker's trial call: reports its outcome, and frees the trial when dropped
/// without one (a cancelled call).
struct Trial<'a>(Option<&'a Breaker>);

impl Trial<'_> {
    /// Reports the trial's failure; returns true when it opened the breaker again.
    fn failure(&mut self, e: &Error, what: impl FnOnce() -> String) -> bool {
        self.0.take().is_some_and(|b| b.failure(e, true, what))
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.release();
        }
    }
}

/// What one model's sends ended with.
pub(super) struct Answered<O> {
    pub(super) output: Box<O>,
    pub(super) region: String,
    pub(super) attempts: u32,
    pub(super) region_guard: CallGuard,
    pub(super) connection: Option<crate::transport::ConnectionWatch>,
    pub(super) lease: Option<Lease>,
}

/// One model's sends in progress: what each per-region attempt needs, and what they share.
struct ToModel<'a, V, S> {
    target: &'a Target,
    to: Sends,
    input: &'a V,
    send: &'a mut S,
    span: &'a tracing::Span,
    /// How many regions the model's order holds.
    regions: usize,
    /// Sends to this model so far (at most [`MAX_REGIONS_PER_CALL`]).
    region_sends: usize,
    /// The fleet's shared-limit admission, for the first region of the order.
    admitted: Option<Lease>,
    /// The index of the region `admitted` was taken for.
    first_region: Option<usize>,
}

/// How one per-region attempt ended, short of a failure that ends the model's sends.
enum Step<O> {
    Answered(Answered<O>),
    /// Skipped or failed regionally: the next region may be tried.
    Next(Error),
}

/// Sends the call to one model: to each allowed region in turn until one answers or the
/// failure is not regional.
pub(super) async fn send_to_model<V, O, E, Fut>(
    target: &Target,
    to: Sends,
    input: &V,
    send: &mut impl FnMut(&V, &str, &Dest<'_>) -> Fut,
    span: &tracing::Span,
    p: &mut Progress,
) -> Result<Answered<O>>
where
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let shared = &target.shared;
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut order = shared.regions.order(&target.id, target.lanes.as_deref());
    // With a fleet: the shared limit's admission for the first send, and its cooldowns applied.
    // Not when every region's breaker would skip the model: it must take no shared slot (nor
    // wait for one) for a call it will not send.
    let blocked = order
        .iter()
        .all(|r| target.breaker(r).is_some_and(Breaker::blocked));
    // Admitted in the first region of the order (its limit).
    let first_region = order.first().map(|r| r.index);
    let admitted = if blocked {
        None
    } else {
        share::before_model(target, &order, to.tokens).await?
    };
    // The fleet's region cooldowns, just applied, put those regions last.
    #[cfg(feature = "redis")]
    if shared.fleet.is_some() && order.len() > 1 {
        order.sort_by_key(|r| !shared.regions.is_healthy_for(r, target.lanes.as_deref()));
    }
    let mut m = ToModel {
        target,
        to,
        input,
        send,
        span,
        regions: order.len(),
        region_sends: 0,
        admitted,
        first_region,
    };
    let mut last: Option<Error> = None;
    for (i, region) in order.iter().enumerate() {
        if m.region_sends == MAX_REGIONS_PER_CALL || p.sends == MAX_SENDS_PER_CALL {
            break;
        }
        if m.region_sends > 0 && !crate::policy::operation_fails_over(m.to.op) {
            break;
        }
        match send_to_region(&mut m, p, region, i + 1 < order.len()).await? {
            Step::Answered(a) => return Ok(a),
            Step::Next(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorKind::Other, "no region to send the call to")))
}

/// One per-region attempt: the breaker's admission, the limit's, the send, and what its
/// outcome does. `later` says whether regions follow this one in the order. An error ends the
/// model's sends (a limit's refusal or a failure that is not regional).
async fn send_to_region<V, O, E, Fut, S>(
    m: &mut ToModel<'_, V, S>,
    p: &mut Progress,
    region: &RegionClient,
    later: bool,
) -> Result<Step<O>>
where
    S: FnMut(&V, &str, &Dest<'_>) -> Fut,
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let target = m.target;
    let breaker = target.breaker(region);
    let mut trial = match admit(target, region, breaker).await {
        Ok(trial) => trial,
        Err(skipped) => return Ok(Step::Next(skipped)),
    };
    // A lease taken for another region (the fleet's cooldowns moved that one back) ends
    // unused; this region's limit admits the call.
    let lease_here = m
        .admitted
        .take()
        .filter(|_| m.first_region == Some(region.index));
    let lease = match (lease_here, target.limiter(region)) {
        (Some(lease), _) => Some(lease),
        (None, None) => None,
        // Each region has its own limit, as Bedrock's quotas; a refusal moves the call to
        // the next model, not to the next region (a region the call would not have chosen).
        (None, Some(l)) => Some(l.acquire(&target.id, m.to.tokens).await?),
    };
    p.sends += 1;
    m.region_sends += 1;
    let region_guard = CallGuard::start(
        [Some(region.counters.clone()), None],
        region.activity.clone(),
        None,
    );
    super::span::record_region(m.span, region);
    p.server.clone_from(&region.server.0);
    let (result, scope, attempts) = send_once(m, p, region, &region_guard).await;
    let shared = &target.shared;
    match result {
        Ok(output) => {
            succeeded(target, region, breaker, &mut trial);
            Ok(Step::Answered(Answered {
                output,
                region: region.region.clone(),
                attempts,
                region_guard,
                connection: shared.transport.last_connection(&scope),
                lease,
            }))
        }
        Err(e) => {
            region_guard.finish(Outcome::Failure(e.kind()));
            if !failed(target, region, breaker, &mut trial, &e, m.regions > 1) {
                return Err(e);
            }
            let more =
                later && m.region_sends < MAX_REGIONS_PER_CALL && p.sends < MAX_SENDS_PER_CALL;
            if more {
                region.failovers.fetch_add(1, Relaxed);
                tracing::warn!(region = %region.region, error = %e, "regional failure, trying the next region");
            }
            Ok(Step::Next(e))
        }
    }
}

/// Asks the pair's breaker to admit a send: a trial when it is half-open (with a fleet, only
/// the process that claims it sends it). An error says why the region is skipped.
async fn admit<'a>(
    target: &Target,
    region: &RegionClient,
    breaker: Option<&'a Breaker>,
) -> Result<Trial<'a>> {
    let pair = || format!("{} in {}", target.id, region.region);
    let mut trial = Trial(None);
    match breaker.map(|b| b.admit(pair)) {
        None | Some(Admit::Closed) => {}
        Some(Admit::Trial) => {
            let b = breaker.expect("a trial comes from a breaker");
            // With a fleet, one process sends the trial; the others skip the pair a little
            // longer (jittered, so that they do not all ask again at once).
            if !share::claim_trial(target, region, b.cooldown()).await {
                let retry = crate::limit::jittered(b.cooldown().min(Duration::from_secs(1)) / 4);
                return Err(b.lost_trial(retry, pair));
            }
            trial.0 = breaker;
        }
        Some(Admit::Skip(e)) => return Err(e),
    }
    Ok(trial)
}

/// Sends the call to `region` once (with the SDK's retries): carried as a stream when asked,
/// and again unary when the service refuses the stream. Returns the result (marked as having
/// reached the model when a read timeout was not sent again), the call's scope and its
/// attempts.
async fn send_once<V, O, E, Fut, S>(
    m: &mut ToModel<'_, V, S>,
    p: &Progress,
    region: &RegionClient,
    region_guard: &CallGuard,
) -> (Result<Box<O>>, Arc<CallScope>, u32)
where
    S: FnMut(&V, &str, &Dest<'_>) -> Fut,
    Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (target, Sends { op, rule, .. }) = (m.target, m.to);
    let mut attempts = 0;
    let mut unary = false;
    let (result, scope) = loop {
        let dest = target.dest(region, rule.carry && !unary);
        let scope = Arc::new(CallScope::new(RetryRule {
            unary: rule.unary && !dest.carried,
            // The last send a call may make has no model left to move to.
            fallback_after: if p.sends < MAX_SENDS_PER_CALL {
                rule.fallback_after
            } else {
                0
            },
            ..rule
        }));
        // Boxed: the SDK's future is large (7 KB for Converse), and moving it through the
        // task-local scope and this future's states copied it several times per call. The
        // box is allocated first so that the future is built in it, not copied into it.
        // Its output is boxed and its error mapped inside, so what moves out of it through
        // the scope, the span and this loop is two words, not the SDK's large `Result`.
        // The mapping is a `Map` combinator, which polls the SDK's future where it lies:
        // an `async` block awaiting it would move all of it into its own state.
        let fut = Box::into_pin(Box::write(
            Box::new_uninit(),
            (m.send)(m.input, &target.id, &dest)
                .map(move |r| r.map(Box::new).map_err(|e| from_sdk(op.name(), e))),
        ));
        target.shared.check_exhaustion(region);
        let result = CALL.scope(scope.clone(), fut).await;
        attempts += scope.attempts.load(Relaxed);
        let retired = u64::from(scope.retired.load(Relaxed));
        let repeats = u64::from(scope.repeats.load(Relaxed));
        for g in [&p.guard, region_guard] {
            g.retired(retired);
            g.repeats(repeats);
        }
        match &result {
            // The service refused the stream before the model did any work: send the
            // call as it was asked, unary, and remember it for this model and region.
            Err(e) if dest.carried && refuses_streams(e) => {
                if let Some(lane) = target.lane(region) {
                    lane.refuse_streams();
                }
                tracing::warn!(model = %target.id, region = %region.region, error = %e,
                    "the service refused to carry a unary call as a stream; it goes unary (and stays unary for this model and region)");
                unary = true;
            }
            _ => break (result, scope),
        }
    };
    m.span.record("aws.bedrock.attempts", i64::from(attempts));
    let extra = u64::from(attempts.saturating_sub(1));
    for g in [&p.guard, region_guard] {
        g.retries(extra);
    }
    // A read timeout that was not sent again because the request may have reached the
    // model: it must not go to another region or model either.
    let result = match result {
        Err(e) if scope.delivered.load(Relaxed) => Err(e.with_reached_model()),
        r => r,
    };
    (result, scope, attempts)
}

/// What an answer from `region` does: closes a half-open breaker (the trial's success; a
/// straggler's does not), marks the region healthy and the model's lane there warm.
fn succeeded(
    target: &Target,
    region: &RegionClient,
    breaker: Option<&Breaker>,
    trial: &mut Trial<'_>,
) {
    let was_trial = trial.0.take().is_some();
    if was_trial {
        share::trial_over(target, region);
    }
    if breaker.is_some_and(|b| b.success(was_trial)) {
        share::breaker_closed(target, region);
    }
    target.shared.regions.mark_healthy(region);
    if let Some(lane) = target.lane(region) {
        lane.warm();
    }
}

/// What a failure in `region` does: to the breaker, and (when regional and the model has
/// other regions, `several`) to the region or the model's lane there. Returns true when the
/// failure is regional (the next region may be tried).
fn failed(
    target: &Target,
    region: &RegionClient,
    breaker: Option<&Breaker>,
    trial: &mut Trial<'_>,
    e: &Error,
    several: bool,
) -> bool {
    let shared = &target.shared;
    let pair = || format!("{} in {}", target.id, region.region);
    let opened = if trial.0.is_some() {
        share::trial_over(target, region);
        trial.failure(e, pair)
    } else {
        breaker.is_some_and(|b| b.failure(e, false, pair))
    };
    if opened {
        crate::metrics::breaker_opened(&target.label, &region.region);
        share::breaker_opened(target, region);
    }
    let regional = fails_over(e);
    if regional && several {
        // A throttle is the model's quota in this region: it cools the model
        // there, and every other model keeps the region.
        match cools(e) {
            Cools::Region => {
                shared.regions.mark_unhealthy(region);
                share::region_failed(target, region);
            }
            Cools::ModelInRegion => {
                if let Some(lane) = target.lane(region) {
                    lane.cool_down(&shared.regions, shared.regions.cooldown());
                    share::model_throttled(target, region);
                }
            }
            Cools::Nothing => {}
        }
    }
    regional
}
