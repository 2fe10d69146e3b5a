//! The crate's rules in one place: what one call will do about time (whether a unary call is
//! carried as a stream, its timeouts and its retry rule: [`CallPolicy`], and the bound a unary
//! call that is not carried must fit in), and what it does after each kind of failure (one
//! table: [`error_rule`]).
//!
#![doc = include_str!("errors_table.md")]

mod errors;

pub use errors::{Cools, ErrorRule, error_rule};
pub(crate) use errors::{
    cools, fails_over, opens_breaker, operation_fails_over, operation_falls_back,
};

use crate::config::RetryMode;
use std::time::Duration;

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
