//! The one call driver: every operation runs through [`drive`], which owns the span, the
//! statistics, validation, the client-side limits, the circuit breakers, region order and
//! failover, model fallback and error mapping. An operation supplies only "build this SDK call
//! for this model in this region" (and turns the answer into its own output).
//!
//! `span.rs` names the operations and starts their spans; `open.rs` holds a call that got its
//! answer until it is over.

pub(crate) mod carry;
mod open;
mod share;
mod span;

pub(crate) use open::OpenCall;
pub(crate) use span::Op;

use crate::breaker::{Admit, Breaker};
use crate::error::{Error, ErrorKind, Result, from_sdk};
use crate::lanes::Lane;
use crate::limit::{Lease, Limiter};
use crate::policy::{Cools, cools, fails_over, operation_falls_back};
use crate::region::{MAX_REGIONS_PER_CALL, RegionClient};
use crate::shared::Shared;
use crate::stats::{CallGuard, Outcome, RequestCounters};
use crate::transport::{CALL, CallScope, RetryRule};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures_util::FutureExt;
use span::record_error;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Most fallback models a handle may list.
pub(crate) const MAX_FALLBACKS: usize = 3;

/// Most sends of one call, over every model and region it tries: region failover (at most
/// [`MAX_REGIONS_PER_CALL`] regions per model) and model fallback together. Each send is one
/// SDK call with its own retries.
pub(crate) const MAX_SENDS_PER_CALL: usize = 4;

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
    /// The circuit breaker of the id in each region (in the regions' order); none when
    /// breakers are off, for invalid ids and past the tracked cap.
    pub(crate) breakers: Option<Arc<[Breaker]>>,
    /// The id's client-side limits (one per region, in the regions' order), when set.
    pub(crate) limiters: Option<crate::shared::RegionLimiters>,
    /// The id's lanes (its own SDK client and state in each region, in the regions' order);
    /// none for invalid ids and past the tracked cap (those use the regions' own clients).
    pub(crate) lanes: Option<Arc<[Lane]>>,
}

impl Target {
    /// Returns the target of `id`: its figures, breakers and limit (`invalid` says why the id
    /// is unusable; such an id allocates nothing).
    pub(crate) fn new(id: &str, shared: Arc<Shared>, invalid: Option<Error>) -> Self {
        let (counters, label, breakers, lanes) = match invalid {
            None => {
                let (c, l) = shared.models.entry(id);
                let lanes = shared.lanes.get(id, &shared.regions);
                (Some(c), l, shared.breakers.get(id), lanes)
            }
            // Counted overall only; in metric labels with the untracked ids.
            Some(_) => (None, Arc::from(crate::stats::OTHER_MODELS), None, None),
        };
        Target {
            limiters: shared.limits.get(id).cloned(),
            id: id.to_owned(),
            label,
            shared,
            counters,
            invalid,
            breakers,
            lanes,
        }
    }

    /// Returns a copy sharing the figures, breakers and limit.
    pub(crate) fn share(&self) -> Self {
        Target {
            id: self.id.clone(),
            label: self.label.clone(),
            shared: self.shared.clone(),
            counters: self.counters.clone(),
            invalid: self.invalid.as_ref().map(Error::shallow_clone),
            breakers: self.breakers.clone(),
            limiters: self.limiters.clone(),
            lanes: self.lanes.clone(),
        }
    }

    /// Starts the statistics of one call: overall and this model's figures.
    fn call_guard(&self) -> CallGuard {
        CallGuard::start(
            [Some(self.shared.overall.clone()), self.counters.clone()],
            self.shared.activity.clone(),
            Some(self.label.clone()),
        )
    }

    fn breaker(&self, region: &RegionClient) -> Option<&Breaker> {
        self.breakers.as_deref().and_then(|b| b.get(region.index))
    }

    /// Returns the id's client-side limit in `region`, when it has one there.
    pub(crate) fn limiter(&self, region: &RegionClient) -> Option<&Arc<Limiter>> {
        self.limiters
            .as_deref()
            .and_then(|l| l.get(region.index))
            .and_then(Option::as_ref)
    }

    /// Returns the id's lane in `region`, when it has lanes.
    pub(crate) fn lane(&self, region: &RegionClient) -> Option<&Lane> {
        self.lanes.as_deref().and_then(|l| l.get(region.index))
    }

    /// Returns where a send of this id to `region` goes; `carry` asks for a unary call carried
    /// as a stream, which the lane may have learnt the service refuses there.
    fn dest<'a>(&'a self, region: &'a RegionClient, carry: bool) -> Dest<'a> {
        let lane = self.lane(region);
        Dest {
            client: lane.map_or(&region.client, |l| &l.client),
            carried: carry && !lane.is_some_and(Lane::stream_refused),
        }
    }
}

/// Where one send goes: the model's SDK client in one region (on the model's own retry
/// partition there), and how to send the call.
pub(crate) struct Dest<'a> {
    pub(crate) client: &'a aws_sdk_bedrockruntime::Client,
    /// Send the unary call as the matching stream operation (collected by the caller).
    pub(crate) carried: bool,
}

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

/// A model a call may move to when the models before it failed (see [`Error::falls_back`]).
pub(crate) struct Fallback {
    pub(crate) target: Target,
    /// Declared compatible by the user: it takes the same native body and gives the same
    /// vector space, so `invoke` and `embed` may move to it too.
    pub(crate) compatible: bool,
}

/// The models one call may use: the handle's own, then its fallbacks.
#[derive(Clone, Copy)]
pub(crate) struct Chain<'a> {
    pub(crate) first: &'a Target,
    pub(crate) fallbacks: &'a [Fallback],
    /// Why the fallback list is unusable, reported on every call.
    pub(crate) invalid: Option<&'a Error>,
}

/// The request values a call's span carries: those the validated call sends.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RequestAttrs {
    pub(crate) max_tokens: Option<i32>,
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
}

/// A validated input of an operation: what the driver records of it on the call's span, and
/// its size for the client-side token limits.
pub(crate) trait CallInput {
    /// Returns the request values for the span.
    fn request_attrs(&self) -> RequestAttrs;

    /// Returns the bytes of input the model reads, for the token estimate of the limits.
    fn input_bytes(&self) -> usize;
}

/// A call that got its answer: the SDK's output, and the figures still open.
pub(crate) struct Answer<O> {
    /// Boxed: the SDK's outputs are large, and the box moves cheaply.
    pub(crate) output: Box<O>,
    pub(crate) call: OpenCall,
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
struct Answered<O> {
    output: Box<O>,
    region: String,
    attempts: u32,
    region_guard: CallGuard,
    connection: Option<crate::transport::ConnectionWatch>,
    lease: Option<Lease>,
}

/// Runs one call of `op` for `chain`: starts its span and statistics, validates its input,
/// then sends it to the first model: to each allowed region in turn (healthy ones first,
/// primary first, at most [`MAX_REGIONS_PER_CALL`], skipping those whose breaker is open, each
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
    let result = async {
        if let Some(e) = first.invalid.as_ref().or(chain.invalid) {
            return Err(e.shallow_clone());
        }
        let input = validate()?;
        let attrs = input.request_attrs();
        span::record_request(&span, &attrs);
        // The models this operation may move to: none for a plain handle (no allocation).
        let rest: Vec<&Target> = chain
            .fallbacks
            .iter()
            .filter(|f| operation_falls_back(op, f.compatible))
            .map(|f| &f.target)
            .collect();
        let p = &mut progress;
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
            let tried = send_to_model(target, to, &input, &mut send, &span, p).await;
            let e = match tried {
                Ok(answered) => return Ok((answered, target)),
                Err(e) => e,
            };
            let moves = e.falls_back() && p.sends < MAX_SENDS_PER_CALL;
            let Some(following) = next.next().filter(|_| moves) else {
                return Err(e);
            };
            tracing::warn!(model = %target.id, next = %following.id, error = %e, "model failed, falling back to the next model");
            p.guard
                .move_model(following.counters.clone(), following.label.clone(), e.kind());
            target = following;
        }
    }
    .instrument(span.clone())
    .await;
    let Progress { guard, server, .. } = progress;
    match result {
        Ok((a, target)) => {
            span.record("gen_ai.response.model", target.id.as_str());
            Ok(Answer {
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
                }),
            })
        }
        Err(e) => {
            let elapsed = started.elapsed();
            span.record("outcome", e.kind().as_str());
            span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
            record_error(&span, e.code().unwrap_or(e.kind().as_str()));
            let m = crate::metrics::GenAi {
                operation: op.operation(),
                model: &first.label,
                server: &server,
            };
            crate::metrics::gen_ai_duration(&m, Some(e.kind().as_str()), elapsed);
            guard.finish(Outcome::Failure(e.kind()));
            Err(e)
        }
    }
}

/// What one call has done so far, over the models it tried.
struct Progress {
    /// The call's figures: overall, and the model it is on.
    guard: CallGuard,
    /// `server.address` of the last region tried, for the failure's metrics.
    server: String,
    /// Sends made so far (at most [`MAX_SENDS_PER_CALL`]).
    sends: usize,
}

/// What the sends to one model share: the operation, the retry rule and the token estimate.
#[derive(Clone, Copy)]
struct Sends {
    op: Op,
    rule: RetryRule,
    tokens: u64,
}

/// Sends the call to one model: to each allowed region in turn until one answers or the
/// failure is not regional.
async fn send_to_model<V, O, E, Fut>(
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
    let Sends { op, rule, tokens } = to;
    let shared = &target.shared;
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut order = shared.regions.order(&target.id, target.lanes.as_deref());
    let pair = |r: &RegionClient| format!("{} in {}", target.id, r.region);
    let mut last: Option<Error> = None;
    let mut region_sends = 0;
    // With a fleet: the shared limit's admission for the first send, and its cooldowns applied.
    // Not when every region's breaker would skip the model: it must take no shared slot (nor
    // wait for one) for a call it will not send.
    let blocked = order
        .iter()
        .all(|r| target.breaker(r).is_some_and(Breaker::blocked));
    // Admitted in the first region of the order (its limit).
    let first_region = order.first().map(|r| r.index);
    let mut admitted = if blocked {
        None
    } else {
        share::before_model(target, &order, tokens).await?
    };
    // The fleet's region cooldowns, just applied, put those regions last.
    #[cfg(feature = "redis")]
    if shared.fleet.is_some() && order.len() > 1 {
        order.sort_by_key(|r| !shared.regions.is_healthy_for(r, target.lanes.as_deref()));
    }
    for (i, region) in order.iter().enumerate() {
        if region_sends == MAX_REGIONS_PER_CALL || p.sends == MAX_SENDS_PER_CALL {
            break;
        }
        let breaker = target.breaker(region);
        let mut trial = Trial(None);
        match breaker.map(|b| b.admit(|| pair(region))) {
            None | Some(Admit::Closed) => {}
            Some(Admit::Trial) => {
                let b = breaker.expect("a trial comes from a breaker");
                // With a fleet, one process sends the trial; the others skip the pair a little
                // longer (jittered, so that they do not all ask again at once).
                if !share::claim_trial(target, region, b.cooldown()).await {
                    let retry =
                        crate::limit::jittered(b.cooldown().min(Duration::from_secs(1)) / 4);
                    last = Some(b.lost_trial(retry, || pair(region)));
                    continue;
                }
                trial.0 = breaker;
            }
            Some(Admit::Skip(e)) => {
                last = Some(e);
                continue;
            }
        }
        // A lease taken for another region (the fleet's cooldowns moved that one back) ends
        // unused; this region's limit admits the call.
        let lease_here = admitted
            .take()
            .filter(|_| first_region == Some(region.index));
        let lease = match (lease_here, target.limiter(region)) {
            (Some(lease), _) => Some(lease),
            (None, None) => None,
            // Each region has its own limit, as Bedrock's quotas; a refusal moves the call to
            // the next model, not to the next region (a region the call would not have chosen).
            (None, Some(l)) => Some(l.acquire(&target.id, tokens).await?),
        };
        p.sends += 1;
        region_sends += 1;
        let region_guard = CallGuard::start(
            [Some(region.counters.clone()), None],
            region.activity.clone(),
            None,
        );
        let (host, port) = &region.server;
        span.record("cloud.region", region.region.as_str());
        span.record("server.address", host.as_str());
        if let Some(port) = port {
            span.record("server.port", i64::from(*port));
        }
        p.server.clone_from(host);
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
                send(input, &target.id, &dest)
                    .map(move |r| r.map(Box::new).map_err(|e| from_sdk(op.name(), e))),
            ));
            shared.check_exhaustion(region);
            let result = CALL.scope(scope.clone(), fut).await;
            attempts += scope.attempts.load(Relaxed);
            let retired = u64::from(scope.retired.load(Relaxed));
            let repeats = u64::from(scope.repeats.load(Relaxed));
            for g in [&p.guard, &region_guard] {
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
        span.record("aws.bedrock.attempts", i64::from(attempts));
        let extra = u64::from(attempts.saturating_sub(1));
        for g in [&p.guard, &region_guard] {
            g.retries(extra);
        }
        // A read timeout that was not sent again because the request may have reached the
        // model: it must not go to another region or model either.
        let result = match result {
            Err(e) if scope.delivered.load(Relaxed) => Err(e.with_reached_model()),
            r => r,
        };
        match result {
            Ok(output) => {
                // The trial's success closes a half-open breaker; a straggler's does not.
                let was_trial = trial.0.take().is_some();
                if was_trial {
                    share::trial_over(target, region);
                }
                if breaker.is_some_and(|b| b.success(was_trial)) {
                    share::breaker_closed(target, region);
                }
                shared.regions.mark_healthy(region);
                if let Some(lane) = target.lane(region) {
                    lane.warm();
                }
                return Ok(Answered {
                    output,
                    region: region.region.clone(),
                    attempts,
                    region_guard,
                    connection: shared.transport.last_connection(&scope),
                    lease,
                });
            }
            Err(e) => {
                region_guard.finish(Outcome::Failure(e.kind()));
                let opened = if trial.0.is_some() {
                    share::trial_over(target, region);
                    trial.failure(&e, || pair(region))
                } else {
                    breaker.is_some_and(|b| b.failure(&e, false, || pair(region)))
                };
                if opened {
                    crate::metrics::breaker_opened(&target.label, &region.region);
                    share::breaker_opened(target, region);
                }
                let regional = fails_over(&e);
                if regional && order.len() > 1 {
                    // A throttle is the model's quota in this region: it cools the model
                    // there, and every other model keeps the region.
                    match cools(&e) {
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
                if !regional {
                    return Err(e);
                }
                let more = i + 1 < order.len()
                    && region_sends < MAX_REGIONS_PER_CALL
                    && p.sends < MAX_SENDS_PER_CALL;
                if more {
                    region.failovers.fetch_add(1, Relaxed);
                    tracing::warn!(region = %region.region, error = %e, "regional failure, trying the next region");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorKind::Other, "no region to send the call to")))
}
