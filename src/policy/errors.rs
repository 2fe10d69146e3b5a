//! What the crate does after each kind of failure, as one table: [`error_rule`]. The table as
//! the docs show it is `errors_table.md` (in the `policy` module's docs); a test checks that
//! both say the same.
//!

use crate::error::{Error, ErrorKind};
use crate::op::Op;

/// What a failure cools down: the calls after it try it last until its cooldown ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cools {
    /// Nothing: the failure is the caller's or the request's.
    Nothing,
    /// The model in the region it came from (a throttle is one model's quota there).
    ModelInRegion,
    /// The whole region, for every model of the factory (timeouts, network errors, 5xx).
    Region,
}

/// How the crate treats one kind of failure: one row of the table in [`crate::policy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorRule {
    /// The kind of failure this row is for.
    pub kind: ErrorKind,
    /// May succeed when tried again later ([`Error::is_retryable`]).
    pub retryable: bool,
    /// Moves the call to the next region: another region might not have it
    /// ([`Error::is_regional`]).
    pub fails_over: bool,
    /// What it cools down.
    pub cools: Cools,
    /// Moves the call to the next model of a fallback chain ([`Error::falls_back`]).
    pub falls_back: bool,
    /// Counts against the circuit breaker of the model and region it came from: only failures
    /// that say the model is in trouble there. Timeouts and network errors do not count: one
    /// dead or closing connection fails every call on it at once (over h2, all of them), which
    /// would open the breaker of a healthy model; the crate retires such a connection, and a
    /// region that keeps failing cools down instead.
    pub opens_breaker: bool,
}

const fn row(
    kind: ErrorKind,
    retryable: bool,
    fails_over: bool,
    cools: Cools,
    falls_back: bool,
    opens_breaker: bool,
) -> ErrorRule {
    ErrorRule {
        kind,
        retryable,
        fails_over,
        cools,
        falls_back,
        opens_breaker,
    }
}

/// Returns the row of the table for one kind of failure.
pub const fn error_rule(kind: ErrorKind) -> ErrorRule {
    use Cools::{ModelInRegion, Nothing, Region};
    use ErrorKind::*;
    match kind {
        //                            retry  region  cools          model  breaker
        InvalidInput => row(kind, false, false, Nothing, false, false),
        Timeout => row(kind, true, true, Region, false, false),
        Throttled => row(kind, true, true, ModelInRegion, true, true),
        AccessDenied => row(kind, false, false, Nothing, false, false),
        ModelNotFound => row(kind, false, false, Nothing, false, false),
        Validation => row(kind, false, false, Nothing, false, false),
        ServiceUnavailable => row(kind, true, true, Region, true, true),
        ContextWindowExceeded => row(kind, false, false, Nothing, true, false),
        ModelFailure => row(kind, true, false, Nothing, true, true),
        Network => row(kind, true, true, Region, false, false),
        Other => row(kind, false, false, Nothing, false, false),
    }
}

// The error's own reading of its row: public methods of `Error`, defined beside the table
// they read (the error module stays below the rules).
impl Error {
    /// Returns true for failures that may succeed when tried again later: timeouts, throttling
    /// (`ModelNotReadyException` included), service unavailability, model failures (a model
    /// that timed out or failed) and network errors.
    ///
    /// The SDK has already retried these (3 attempts by default); this tells a caller whether a
    /// retry of its own, later or in another region, makes sense.
    ///
    /// The rule is a row of the table in [`crate::policy`].
    pub fn is_retryable(&self) -> bool {
        error_rule(self.kind()).retryable
    }

    /// Returns true for failures that another region might not have: timeouts, network errors,
    /// 5xx, and throttling left after the SDK's retries (a row of the table in
    /// [`crate::policy`]). Such a failure moves the call to the next region unless it
    /// [`may_have_reached_model`](Error::may_have_reached_model).
    pub fn is_regional(&self) -> bool {
        error_rule(self.kind()).fails_over
    }

    /// Returns true when the call moves to the next model of a fallback chain after this
    /// failure: throttling (`ModelNotReadyException` included, and a client-side limit), the
    /// service unavailable, the model failing, the context window exceeded, or an open circuit
    /// breaker ([`Error::is_circuit_open`]). Invalid input,
    /// validation, access denied, unknown models, timeouts and network errors never move
    /// (timeouts and network errors fail over to another region instead). The rule is a row
    /// of the table in [`crate::policy`].
    pub fn falls_back(&self) -> bool {
        self.is_circuit_open() || error_rule(self.kind()).falls_back
    }
}

/// Returns true when this failure moves the call to the next region: its kind fails over and
/// the request cannot have reached the model.
pub(crate) fn fails_over(e: &Error) -> bool {
    error_rule(e.kind()).fails_over && !e.may_have_reached_model()
}

/// Returns what a failure that moved the call on cools down.
pub(crate) fn cools(e: &Error) -> Cools {
    if fails_over(e) {
        error_rule(e.kind()).cools
    } else {
        Cools::Nothing
    }
}

/// Returns true when a failure counts against the breaker of its model and region.
pub(crate) fn opens_breaker(e: &Error) -> bool {
    error_rule(e.kind()).opens_breaker
}

/// Returns true when a call of this operation may move to a fallback model: Converse calls
/// to any, `invoke` and `embed` only to those declared compatible (another family's native
/// body is wrong, another embedding model's vectors live in another space), counting tokens
/// to none (the count is the asked model's).
pub(crate) fn operation_falls_back(op: Op, compatible: bool) -> bool {
    match op {
        Op::Converse | Op::ConverseStream => true,
        Op::Invoke | Op::InvokeStream | Op::Embed | Op::Session => compatible,
        // An async invocation sent again starts a second paid job.
        Op::CountTokens
        | Op::StartAsyncInvoke
        | Op::GetAsyncInvoke
        | Op::ListAsyncInvokes
        | Op::ApplyGuardrail
        | Op::InvokeGuardrailChecks => false,
    }
}

/// Returns whether a call of `op` that failed in one region may go to the next: every
/// operation but StartAsyncInvoke, which is sent to one region at most (the SDK's own retries
/// there reuse the call's client request token, which the service deduplicates; another
/// region would start a second paid job).
pub(crate) fn operation_fails_over(op: Op) -> bool {
    op != Op::StartAsyncInvoke
}

#[cfg(test)]
mod tests {
    use super::*;
    use Cools::{ModelInRegion as M, Nothing as N, Region as R};

    /// The table as the module docs state it, row by row.
    #[test]
    fn the_table_is_the_documented_one() {
        #[rustfmt::skip]
        let expected: [(&str, bool, bool, Cools, bool, bool); 11] = [
            // kind                      retry  region cools model  breaker
            ("invalid_input",            false, false, N,    false, false),
            ("timeout",                  true,  true,  R,    false, false),
            ("throttled",                true,  true,  M,    true,  true),
            ("access_denied",            false, false, N,    false, false),
            ("model_not_found",          false, false, N,    false, false),
            ("validation",               false, false, N,    false, false),
            ("service_unavailable",      true,  true,  R,    true,  true),
            ("context_window_exceeded",  false, false, N,    true,  false),
            ("model_failure",            true,  false, N,    true,  true),
            ("network",                  true,  true,  R,    false, false),
            ("other",                    false, false, N,    false, false),
        ];
        assert_eq!(ErrorKind::ALL.len(), expected.len());
        let docs = include_str!("errors_table.md");
        for (kind, want) in ErrorKind::ALL.into_iter().zip(expected) {
            let r = error_rule(kind);
            assert_eq!(r.kind, kind);
            let got = (
                kind.as_str(),
                r.retryable,
                r.fails_over,
                r.cools,
                r.falls_back,
                r.opens_breaker,
            );
            assert_eq!(got, want);
            // The docs' row says the same.
            let yes = |b: bool| if b { "yes" } else { "no" };
            let cools = match r.cools {
                N => "nothing",
                M => "the model in that region",
                R => "the region",
            };
            let line = format!(
                "| `{}` | {} | {} | {} | {} | {} |",
                kind.as_str(),
                yes(r.retryable),
                yes(r.fails_over),
                cools,
                yes(r.falls_back),
                yes(r.opens_breaker)
            );
            assert!(docs.contains(&line), "the docs lack {line}");
        }
    }

    /// Each error's methods and the driver's decisions read the table, with the error's own
    /// flags on top.
    #[test]
    fn errors_and_decisions_follow_the_table() {
        for kind in ErrorKind::ALL {
            let rule = error_rule(kind);
            let e = Error::new(kind, "x");
            assert_eq!(e.is_retryable(), rule.retryable, "{kind:?}");
            assert_eq!(e.is_regional(), rule.fails_over, "{kind:?}");
            assert_eq!(e.falls_back(), rule.falls_back, "{kind:?}");
            assert_eq!(fails_over(&e), rule.fails_over, "{kind:?}");
            assert_eq!(opens_breaker(&e), rule.opens_breaker, "{kind:?}");
            assert_eq!(cools(&e), rule.cools, "{kind:?}");
            // A call that may have reached the model moves nowhere and cools nothing.
            let reached = Error::new(kind, "x").with_reached_model();
            assert!(!fails_over(&reached), "{kind:?}");
            assert_eq!(cools(&reached), Cools::Nothing, "{kind:?}");
            // An open breaker always falls back.
            assert!(Error::new(kind, "x").with_circuit_open().falls_back());
        }
    }

    #[test]
    fn operations_that_fall_back() {
        #[rustfmt::skip]
        let table = [
            // operation           compatible  incompatible
            (Op::Converse,         true,       true),
            (Op::ConverseStream,   true,       true),
            (Op::Invoke,           true,       false),
            (Op::InvokeStream,     true,       false),
            (Op::Embed,            true,       false),
            (Op::CountTokens,      false,      false),
        ];
        for (op, compatible, incompatible) in table {
            assert_eq!(operation_falls_back(op, true), compatible, "{op:?}");
            assert_eq!(operation_falls_back(op, false), incompatible, "{op:?}");
        }
    }
}
