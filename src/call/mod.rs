//! The one call driver: every operation runs through [`drive`], which owns the span, the
//! statistics, validation, the client-side limits, the circuit breakers, region order and
//! failover, model fallback and error mapping. An operation supplies only "build this SDK call
//! for this model in this region" (and turns the answer into its own output).
//!
//! This file holds what the driver's parts share (a call's target, its models, its input's
//! trait, its progress); `drive.rs` runs a call over its models, `attempt.rs` sends it to one model, region
//! by region; `span.rs` starts the operations' spans; `open.rs` holds a call
//! that got its answer until it is over; `policy.rs` tells a call's policy before it is sent.

pub(crate) mod ahead;
mod attempt;
pub(crate) mod carry;
mod drive;
mod open;
mod plain;
mod policy;
mod share;
mod span;
pub(crate) mod stall;

pub(crate) use drive::drive;
pub(crate) use open::OpenCall;
pub(crate) use plain::plain_call;
pub(crate) use policy::{check_unary_bound, unary_rule};

use crate::breaker::Breaker;
use crate::error::Error;
use crate::limit::Limiter;
use crate::op::Op;
use crate::region::{Lane, RegionClient};
use crate::shared::Shared;
use crate::stats::{CallGuard, RequestCounters};
use crate::transport::RetryRule;
use std::sync::Arc;

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
    /// The id is a prompt router's: the model that answers is named by the answer's trace,
    /// and the call's figures, cost and span move to it.
    pub(crate) router: bool,
}

/// Returns true when `id` is a prompt router's ARN
/// (`arn:aws:bedrock:REGION:ACCOUNT:default-prompt-router/NAME` or `...:prompt-router/ID`).
pub(crate) fn is_prompt_router(id: &str) -> bool {
    id.starts_with("arn:")
        && id.split(':').nth(5).is_some_and(|resource| {
            resource.starts_with("default-prompt-router/") || resource.starts_with("prompt-router/")
        })
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
            router: is_prompt_router(id),
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
            router: self.router,
        }
    }

    /// Starts the statistics of one call: overall and this model's figures.
    fn call_guard(&self) -> CallGuard {
        let guard = CallGuard::start(
            [Some(self.shared.overall.clone()), self.counters.clone()],
            self.shared.activity.clone(),
            Some(self.label.clone()),
        );
        if self.router { guard.routable() } else { guard }
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

/// Where one send goes: the model's SDK client in one region (on the model's own retry
/// partition there), and how to send the call.
pub(crate) struct Dest<'a> {
    pub(crate) client: &'a aws_sdk_bedrockruntime::Client,
    /// Send the unary call as the matching stream operation (collected by the caller).
    pub(crate) carried: bool,
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
