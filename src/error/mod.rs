//! The crate's one error type, and the one place that maps the SDK's errors into it.
//!
//! The type and its one mapping function belong together (the mapping sets the type's private
//! fields); `error/sdk.rs` maps the SDK's errors, `error/tests.rs` holds the unit tests.

use std::error::Error as StdError;
use std::fmt;

/// Boxed source error kept inside [`Error`].
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Shorthand for `std::result::Result<T, bedrock_pool::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarse enough to branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input or configuration was rejected before any network call.
    InvalidInput,
    /// A connect, read, operation or stream-stall timeout fired; see [`Error::timeout_kind`].
    Timeout,
    /// The service throttled the request (429) and the SDK's retries did not get through.
    Throttled,
    /// The credentials were rejected or missing, or the caller lacks permission.
    AccessDenied,
    /// The model (or another named resource) does not exist or is not available to the caller.
    ModelNotFound,
    /// The service rejected the request as invalid (400 `ValidationException`).
    Validation,
    /// The service failed or was unavailable (5xx), after the SDK's retries.
    ServiceUnavailable,
    /// The input (plus the output token limit) does not fit the model's context window: the
    /// service's "input is too long" validation errors. Another model with a larger window
    /// may take it (see [`Model::with_fallbacks`](crate::Model::with_fallbacks)).
    ContextWindowExceeded,
    /// The model itself failed or timed out (408 `ModelTimeoutException`, 424 `ModelErrorException`,
    /// in-stream `ModelStreamErrorException`).
    ModelFailure,
    /// The connection failed: reset, refused, closed early, a truncated response or stream.
    Network,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Returns a short lowercase name, as used in logs and statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Throttled => "throttled",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::Validation => "validation",
            ErrorKind::ServiceUnavailable => "service_unavailable",
            ErrorKind::ContextWindowExceeded => "context_window_exceeded",
            ErrorKind::ModelFailure => "model_failure",
            ErrorKind::Network => "network",
            ErrorKind::Other => "other",
        }
    }

    /// Every kind, in a stable order (used to index statistics).
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidInput,
        ErrorKind::Timeout,
        ErrorKind::Throttled,
        ErrorKind::AccessDenied,
        ErrorKind::ModelNotFound,
        ErrorKind::Validation,
        ErrorKind::ServiceUnavailable,
        ErrorKind::ContextWindowExceeded,
        ErrorKind::ModelFailure,
        ErrorKind::Network,
        ErrorKind::Other,
    ];

    pub(crate) fn index(self) -> usize {
        ErrorKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(ErrorKind::ALL.len() - 1)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Establishing a connection (DNS, TCP, TLS) took longer than the connect timeout.
    Connect,
    /// No response headers arrived within the read timeout (this includes waiting for a pooled
    /// connection and, for unary Converse, the whole generation).
    Read,
    /// The SDK's operation or attempt timeout fired.
    Operation,
    /// A response stream produced no event within the stall timeout.
    StreamStall,
}

/// The error of every fallible call in this crate.
///
/// Branch on [`Error::kind`] or the predicates. The SDK error, when there is one, is kept as
/// [`source`](StdError::source); `Display` shows this error's own message only, so print the
/// chain with your error reporter (or `{:?}`). Messages never contain credentials. One pointer
/// wide, as `Result<T, Error>` travels on every call's hot path.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    field: Option<&'static str>,
    timeout: Option<TimeoutKind>,
    status: Option<u16>,
    code: Option<String>,
    retry_after: Option<std::time::Duration>,
    /// Refused by an open circuit breaker, without being sent.
    circuit_open: bool,
    /// A unary call's read timeout fired after the request may have reached the model.
    reached_model: bool,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                field: None,
                timeout: None,
                status: None,
                code: None,
                retry_after: None,
                circuit_open: false,
                reached_model: false,
                source: None,
            }),
        }
    }

    /// Builds an invalid-input error naming `field`.
    pub(crate) fn invalid(field: &'static str, message: impl fmt::Display) -> Self {
        let mut e = Error::new(
            ErrorKind::InvalidInput,
            format!("invalid {field}: {message}"),
        );
        e.inner.field = Some(field);
        e
    }

    pub(crate) fn timeout(kind: TimeoutKind, message: impl Into<String>) -> Self {
        let mut e = Error::new(ErrorKind::Timeout, message);
        e.inner.timeout = Some(kind);
        e
    }

    /// Copies the error without its source (invalid-input errors have none).
    pub(crate) fn shallow_clone(&self) -> Error {
        let i = &self.inner;
        Error {
            inner: Box::new(Inner {
                kind: i.kind,
                message: i.message.clone(),
                field: i.field,
                timeout: i.timeout,
                status: i.status,
                code: i.code.clone(),
                retry_after: i.retry_after,
                circuit_open: i.circuit_open,
                reached_model: i.reached_model,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn with_code(mut self, code: impl Into<String>) -> Self {
        self.inner.code = Some(code.into());
        self
    }

    pub(crate) fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.inner.retry_after = Some(after);
        self
    }

    pub(crate) fn with_circuit_open(mut self) -> Self {
        self.inner.circuit_open = true;
        self
    }

    /// Marks a unary call's read timeout that was not sent again because the request may
    /// have reached the model, and says so in the message.
    pub(crate) fn with_reached_model(mut self) -> Self {
        self.inner.reached_model = true;
        self.inner.message.push_str(
            " (the request may have reached a slow model, so it was not sent again: a long \
             generation goes as a stream, or with a longer read_timeout on the call)",
        );
        self
    }

    /// Returns true when the call was not sent because the circuit breaker of its model (in
    /// every region it could use) is open; [`Error::kind`] is the kind of failure that opened
    /// it. Such a call moves to the next model of a fallback chain whatever that kind.
    pub fn is_circuit_open(&self) -> bool {
        self.inner.circuit_open
    }

    /// Returns true when a unary call's read timeout fired after the request may have reached
    /// the model: the model may still be generating, and billing, the answer. Such a call is
    /// not sent again, to another region or a fallback model either, unless the factory was
    /// built with [`retry_slow_calls`](crate::LlmFactoryBuilder::retry_slow_calls).
    pub fn may_have_reached_model(&self) -> bool {
        self.inner.reached_model
    }

    /// Returns how long to wait before the call can go through, when the crate knows: a
    /// client-side limit that refused the call, or a circuit breaker that is open.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.inner.retry_after
    }

    /// Returns the kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Returns the human-readable message (without the source chain).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Returns the input field or builder knob that was rejected, for invalid input.
    pub fn field(&self) -> Option<&'static str> {
        self.inner.field
    }

    /// Returns which timeout fired, for [`ErrorKind::Timeout`].
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        self.inner.timeout
    }

    /// Returns the HTTP status of the service's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// Returns the service's error code (`ThrottlingException`, `ExpiredToken`, ...), when known.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// Returns true when a connect, read, operation or stream-stall timeout fired.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// Returns true when the service throttled the request.
    pub fn is_throttled(&self) -> bool {
        self.inner.kind == ErrorKind::Throttled
    }

    /// Returns true when the input or configuration was rejected before any network call.
    pub fn is_invalid_input(&self) -> bool {
        self.inner.kind == ErrorKind::InvalidInput
    }

    /// Returns true when credentials were rejected or missing, or permission was denied.
    pub fn is_access_denied(&self) -> bool {
        self.inner.kind == ErrorKind::AccessDenied
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind).field("message", &i.message);
        if let Some(field) = i.field {
            d.field("field", &field);
        }
        if let Some(t) = i.timeout {
            d.field("timeout", &t);
        }
        if let Some(s) = i.status {
            d.field("status", &s);
        }
        if let Some(c) = &i.code {
            d.field("code", c);
        }
        if let Some(r) = i.retry_after {
            d.field("retry_after", &r);
        }
        if i.circuit_open {
            d.field("circuit_open", &true);
        }
        if i.reached_model {
            d.field("reached_model", &true);
        }
        if let Some(s) = &i.source {
            d.field("source", &DisplayChain(s.as_ref()));
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source.as_ref().map(|s| s.as_ref() as _)
    }
}

/// Formats an error and its sources on one line (`a: b: c`).
pub(crate) struct DisplayChain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Debug for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

mod sdk;

pub(crate) use sdk::{from_sdk, is_context_overflow, kind_for_code};

#[cfg(test)]
mod tests;
