//! The policy of one call to a target, by the rules in `crate::policy`: whether a unary call
//! is carried as a stream, its timeouts and retry rule ([`CallPolicy`]), and the bound a unary
//! call that is not carried must fit in.

use super::Target;
use crate::error::{Error, Result};
use crate::policy::{CallPolicy, ReadTimeoutRetry};
use crate::transport::RetryRule;
use std::time::Duration;

/// Output tokens a unary call is assumed to take an hour for, at worst: the rate Anthropic's
/// SDKs use to refuse long unary calls (one hour per 128k `max_tokens`, 35.6 tokens/s).
pub(crate) const UNARY_TOKENS_PER_HOUR: u64 = 128_000;

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
        .is_some_and(crate::region::Lane::stream_refused)
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
