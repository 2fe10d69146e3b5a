//! The retry classifier that fits the SDK's retries to model calls. It runs after the SDK's own
//! classifiers and can only take a retry away, never add one:
//!
//! - **A throttle moves on.** When the call has a fallback model left, a throttle or a server
//!   error is retried on the same model only until `fallback_after_attempts`: the next model
//!   answers within one round trip instead of after the adaptive limiter's waits.
//! - **A slow model is not paid twice.** A unary call's response headers come with the whole
//!   answer, so its read timeout is either a dead connection (send again: the seed's
//!   promise) or a slow model that got the request (do not). The evidence: a connection opened
//!   for this very attempt was alive when the request went out, so its read timeout is the
//!   model's. A call whose read timeout the caller set chose that bound for the model, and is
//!   not sent again either. Otherwise (a reused connection, which may have died while idle) the
//!   call is sent again, counted as a repeat. `retry_slow_calls` sends every such call again.
//!   A unary body that broke after its headers was generated already: not sent again either.
//!   Calls carried as streams need none of this: their headers come before the model works, so
//!   a read timeout there never reached a healthy model and is always retried.
//!
//! The call's rule comes from the task-local [`CALL`] scope, so one classifier on the shared
//! config serves every call without a per-call config override.

use super::watch::{CALL, CallScope};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_types::retry::ErrorKind;
use std::sync::atomic::Ordering::Relaxed;

/// The classifier every SDK client of a factory carries (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ModelCallClassifier;

impl ClassifyRetry for ModelCallClassifier {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        let RetryAction::RetryIndicated(RetryReason::RetryableError { kind, .. }) = previous else {
            return RetryAction::NoActionIndicated;
        };
        let failure = Failure {
            timed_out: read_timed_out(ctx),
            answered: ctx.response().is_some(),
        };
        CALL.try_with(|scope| decide(scope, *kind, failure))
            .unwrap_or(RetryAction::NoActionIndicated)
    }

    fn name(&self) -> &'static str {
        "bedrock_pool::ModelCallClassifier"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After every classifier of the SDK's: it refines their verdict.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Returns true when the attempt failed because a timeout fired in the connector.
fn read_timed_out(ctx: &InterceptorContext) -> bool {
    match ctx.output_or_error() {
        Some(Err(e)) => {
            e.is_timeout_error() || e.as_connector_error().is_some_and(|c| c.is_timeout())
        }
        _ => false,
    }
}

/// What is known of a failed attempt.
#[derive(Clone, Copy, Default)]
struct Failure {
    /// A timeout fired in the connector.
    timed_out: bool,
    /// The response headers had arrived (the body then broke).
    answered: bool,
}

/// Decides on a retry the SDK's classifiers want, for the call `scope` describes.
fn decide(scope: &CallScope, kind: ErrorKind, failure: Failure) -> RetryAction {
    let rule = scope.rule;
    match kind {
        ErrorKind::ThrottlingError | ErrorKind::ServerError => {
            let attempts = scope.attempts.load(Relaxed);
            if rule.fallback_after > 0 && attempts >= rule.fallback_after {
                scope.moved_on.store(true, Relaxed);
                return RetryAction::RetryForbidden;
            }
            RetryAction::NoActionIndicated
        }
        // A unary answer's headers come with the whole generation: a body that broke after
        // them was generated, and paid for, already.
        ErrorKind::TransientError if rule.unary && failure.answered && !rule.resend => {
            scope.delivered.store(true, Relaxed);
            RetryAction::RetryForbidden
        }
        ErrorKind::TransientError if failure.timed_out && rule.unary && scope.dispatched() => {
            if !rule.resend && (rule.explicit_timeout || scope.fresh.load(Relaxed)) {
                scope.delivered.store(true, Relaxed);
                return RetryAction::RetryForbidden;
            }
            scope.repeat_next.store(true, Relaxed);
            RetryAction::NoActionIndicated
        }
        _ => RetryAction::NoActionIndicated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RetryRule;

    const TIMEOUT: Failure = Failure {
        timed_out: true,
        answered: false,
    };

    fn scope(rule: RetryRule, attempts: u32) -> CallScope {
        let s = CallScope::new(rule);
        s.attempts.store(attempts, Relaxed);
        s
    }

    #[test]
    fn throttles_move_on_only_when_a_fallback_is_left() {
        let with = RetryRule {
            fallback_after: 1,
            ..RetryRule::default()
        };
        let s = scope(with, 1);
        assert_eq!(
            decide(&s, ErrorKind::ThrottlingError, Failure::default()),
            RetryAction::RetryForbidden
        );
        assert!(s.moved_on.load(Relaxed));
        let two = RetryRule {
            fallback_after: 2,
            ..RetryRule::default()
        };
        assert_eq!(
            decide(&scope(two, 1), ErrorKind::ServerError, Failure::default()),
            RetryAction::NoActionIndicated
        );
        assert_eq!(
            decide(&scope(two, 2), ErrorKind::ServerError, Failure::default()),
            RetryAction::RetryForbidden
        );
        let none = scope(RetryRule::default(), 2);
        assert_eq!(
            decide(&none, ErrorKind::ThrottlingError, Failure::default()),
            RetryAction::NoActionIndicated
        );
        // Dead connections are retried whatever the fallbacks.
        assert_eq!(
            decide(&scope(with, 1), ErrorKind::TransientError, TIMEOUT),
            RetryAction::NoActionIndicated
        );
    }

    #[test]
    fn undispatched_timeouts_and_streams_are_retried() {
        let unary = RetryRule {
            unary: true,
            explicit_timeout: true,
            ..RetryRule::default()
        };
        // No connection was dispatched (connect timeout): never reached a model.
        let s = scope(unary, 1);
        assert_eq!(
            decide(&s, ErrorKind::TransientError, TIMEOUT),
            RetryAction::NoActionIndicated
        );
        assert!(!s.delivered.load(Relaxed));
        // A stream's read timeout: retried.
        let s = scope(RetryRule::default(), 1);
        assert_eq!(
            decide(&s, ErrorKind::TransientError, TIMEOUT),
            RetryAction::NoActionIndicated
        );
        assert!(!s.repeat_next.load(Relaxed));
    }

    #[test]
    fn a_unary_body_broken_after_its_headers_is_not_sent_again() {
        let unary = RetryRule {
            unary: true,
            ..RetryRule::default()
        };
        let answered = Failure {
            timed_out: false,
            answered: true,
        };
        let s = scope(unary, 1);
        assert_eq!(
            decide(&s, ErrorKind::TransientError, answered),
            RetryAction::RetryForbidden
        );
        assert!(s.delivered.load(Relaxed));
        // A stream's body breaking is the stream's: the SDK never retries it anyway.
        let s = scope(RetryRule::default(), 1);
        assert_eq!(
            decide(&s, ErrorKind::TransientError, answered),
            RetryAction::NoActionIndicated
        );
        let resend = RetryRule {
            resend: true,
            ..unary
        };
        assert_eq!(
            decide(&scope(resend, 1), ErrorKind::TransientError, answered),
            RetryAction::NoActionIndicated
        );
    }
}
