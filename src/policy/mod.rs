//! The crate's rules in one place: what one call will do about time (whether a unary call is
//! carried as a stream, its timeouts and its retry rule: [`CallPolicy`], and the bound a unary
//! call that is not carried must fit in), and what it does after each kind of failure (one
//! table: [`error_rule`]).
//!
#![doc = include_str!("errors_table.md")]

mod errors;

pub use errors::{Cools, ErrorRule, error_rule};
pub(crate) use errors::{cools, fails_over, opens_breaker, operation_falls_back};

use crate::call::Target;
use crate::config::RetryMode;
use crate::error::{Error, Result};
use crate::transport::RetryRule;
use std::time::Duration;

/// Output tokens a unary call is assumed to take an hour for, at worst: the rate Anthropic's
/// SDKs use to refuse long unary calls (one hour per 128k `max_tokens`, 35.6 tokens/s).
pub(crate) const UNARY_TOKENS_PER_HOUR: u64 = 128_000;

/// What happens to an attempt whose read timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadTimeoutRetry {
    /// Sent again: the call is a stream, whose headers come before the model works, so a
    /// read timeout never reached a healthy model (a dead connection, found and retired).
    Always,
    /// Sent again only when the request went out on a reused connection, which may have
    /// died while idle (counted in `RequestStats::repeats`); on a connection opened for it,
    /// the request reached a slow model and is not sent again.
    UnlessModelReached,
    /// Never sent again: the call set its own read timeout, the bound it chose for the model.
    Never,
    /// Always sent again, even when the request may have reached the model (the factory's
    /// `retry_slow_calls`), counted in `RequestStats::repeats`.
    Repeated,
}

/// The timeouts and retry rule one call will use, as the request's `policy()` tells before
/// it is sent (see the README's "Retries and timeouts").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallPolicy {
    /// True when a unary call goes as its stream operation (ConverseStream,
    /// InvokeModelWithResponseStream) and is collected into the unary answer.
    pub carried_as_stream: bool,
    /// Time allowed to connect (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// Time allowed from sending an attempt to its response headers: for a stream (carried
    /// or not) the time to a live answer; for a unary call, the whole generation.
    pub read_timeout: Duration,
    /// Longest gap between two events, for a stream (carried or not).
    pub stall_timeout: Option<Duration>,
    /// The SDK's retry mode (its rate limiter and retry budget are the model's own, per region).
    pub retry_mode: RetryMode,
    /// Attempts per model and region, the first included.
    pub max_attempts: u32,
    /// Attempts on one model after which a throttle or a server error moves the call to its
    /// next fallback model; `None` for a handle without fallbacks for this operation.
    pub fallback_after_attempts: Option<u32>,
    /// What happens to an attempt whose read timeout fired.
    pub read_timeout_retry: ReadTimeoutRetry,
}

impl CallPolicy {
    /// Returns the policy of a call to `target` with fallbacks or not, by `rule`, with the
    /// call's own read timeout if it set one.
    pub(crate) fn of(
        target: &Target,
        rule: RetryRule,
        stream: bool,
        falls_back: bool,
        read_timeout: Option<Duration>,
    ) -> CallPolicy {
        let c = &target.shared.config;
        let carried = rule.carry && !stream_refused(target);
        let streams = stream || carried;
        let read_timeout_retry = if streams {
            ReadTimeoutRetry::Always
        } else if rule.resend {
            ReadTimeoutRetry::Repeated
        } else if rule.explicit_timeout {
            ReadTimeoutRetry::Never
        } else {
            ReadTimeoutRetry::UnlessModelReached
        };
        CallPolicy {
            carried_as_stream: carried,
            connect_timeout: c.timeouts.connect,
            read_timeout: read_timeout.unwrap_or(c.timeouts.read),
            stall_timeout: streams.then_some(c.timeouts.stream_stall),
            retry_mode: c.retry.mode,
            max_attempts: c.retry.max_attempts,
            fallback_after_attempts: falls_back.then_some(c.retry.fallback_after_attempts),
            read_timeout_retry,
        }
    }
}

/// Returns the retry rule of a unary generation (Converse, InvokeModel) of `target`, carried
/// as a stream when `carry` and the factory allows it, with the call's own read timeout if it
/// set one.
pub(crate) fn unary_rule(
    target: &Target,
    carry: bool,
    read_timeout: Option<Duration>,
) -> RetryRule {
    let c = &target.shared.config;
    RetryRule {
        fallback_after: 0,
        unary: true,
        explicit_timeout: read_timeout.is_some(),
        resend: c.retry.retry_slow_calls,
        carry: carry && c.timeouts.unary_over_stream,
    }
}

/// Returns true when the service refused to carry the model's calls as streams in its
/// primary region (the call will go unary there).
fn stream_refused(target: &Target) -> bool {
    target
        .lanes
        .as_deref()
        .and_then(|l| l.first())
        .is_some_and(crate::lanes::Lane::stream_refused)
}

/// Checks a unary generation before the network: one that is not carried as a stream, asks
/// for `max_tokens` that may take longer than the read timeout to generate, and did not set
/// its own read timeout, is refused, naming `field` and the ways out.
///
/// # Errors
/// An invalid-input error naming `field`.
pub(crate) fn check_unary_bound(
    target: &Target,
    rule: RetryRule,
    max_tokens: Option<i64>,
    field: &'static str,
) -> Result<()> {
    let Some(max) = max_tokens.and_then(|m| u64::try_from(m).ok()) else {
        return Ok(());
    };
    if (rule.carry && !stream_refused(target)) || rule.explicit_timeout {
        return Ok(());
    }
    let read = target.shared.config.timeouts.read;
    let expected = Duration::from_secs(max.saturating_mul(3600) / UNARY_TOKENS_PER_HOUR);
    if expected <= read {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!(
            "{max} tokens may take up to {expected:?} to generate (at {UNARY_TOKENS_PER_HOUR} \
             tokens an hour), longer than the read timeout of {read:?}, and a unary call gets \
             its answer only when the whole generation is done: stream it, or set the call's \
             read_timeout"
        ),
    ))
}
