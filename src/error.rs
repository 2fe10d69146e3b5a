//! The crate's one error type, and the one place that maps the SDK's errors into it.
//!
//! Over 500 lines on purpose: the type and its one mapping function belong together (the
//! mapping sets the type's private fields), and a fifth of the file is their unit tests.

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
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
            ErrorKind::ModelFailure => "model_failure",
            ErrorKind::Network => "network",
            ErrorKind::Other => "other",
        }
    }

    /// Every kind, in a stable order (used to index statistics).
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidInput,
        ErrorKind::Timeout,
        ErrorKind::Throttled,
        ErrorKind::AccessDenied,
        ErrorKind::ModelNotFound,
        ErrorKind::Validation,
        ErrorKind::ServiceUnavailable,
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

    /// Returns true for failures that may succeed when tried again later: timeouts, throttling
    /// (`ModelNotReadyException` included), service unavailability, model failures (a model
    /// that timed out or failed) and network errors.
    ///
    /// The SDK has already retried these (3 attempts by default); this tells a caller whether a
    /// retry of its own, later or in another region, makes sense.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Timeout
                | ErrorKind::Throttled
                | ErrorKind::ServiceUnavailable
                | ErrorKind::ModelFailure
                | ErrorKind::Network
        )
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

    /// Returns true for failures that another region might not have: timeouts, network errors,
    /// 5xx, and throttling left after the SDK's retries.
    pub fn is_regional(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Timeout
                | ErrorKind::Throttled
                | ErrorKind::ServiceUnavailable
                | ErrorKind::Network
        )
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

/// Classifies a service error code (and HTTP status) into a kind.
pub(crate) fn kind_for_code(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match code.unwrap_or_default() {
        "ThrottlingException"
        | "ModelNotReadyException"
        | "Throttling"
        | "TooManyRequestsException" => ErrorKind::Throttled,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignature" => ErrorKind::AccessDenied,
        "ResourceNotFoundException" => ErrorKind::ModelNotFound,
        "ValidationException" => ErrorKind::Validation,
        "InternalServerException" | "ServiceUnavailableException" | "InternalFailure" => {
            ErrorKind::ServiceUnavailable
        }
        "ModelTimeoutException" | "ModelErrorException" | "ModelStreamErrorException" => {
            ErrorKind::ModelFailure
        }
        _ => match status {
            Some(400) => ErrorKind::Validation,
            Some(401 | 403) => ErrorKind::AccessDenied,
            Some(404) => ErrorKind::ModelNotFound,
            Some(429) => ErrorKind::Throttled,
            Some(s) if s >= 500 => ErrorKind::ServiceUnavailable,
            _ => ErrorKind::Other,
        },
    }
}

/// Walks an error's source chain looking for a message fragment.
fn chain_contains(err: &(dyn StdError + 'static), needle: &str) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.to_string().contains(needle) {
            return true;
        }
        next = e.source();
    }
    false
}

/// True when the chain holds a credentials-provider failure (no or unusable credentials).
fn is_credentials_failure(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Tells a read timeout from a connect timeout in a dispatch failure's chain.
///
/// The SDK's timeout error type is private, so this reads its wording ("HTTP read timeout",
/// "HTTP connect timeout"); `tests/factory.rs` pins it by provoking both for real.
fn timeout_kind_of(err: &(dyn StdError + 'static)) -> TimeoutKind {
    if chain_contains(err, "read timeout") {
        TimeoutKind::Read
    } else if chain_contains(err, "connect timeout") || chain_contains(err, "HTTP connect") {
        TimeoutKind::Connect
    } else {
        TimeoutKind::Read
    }
}

/// Maps any SDK error into an [`Error`], keeping the SDK error as its source.
///
/// `what` names the operation for the message (`converse`, `get_caller_identity`, ...). The
/// message says what happened in words of this crate; the SDK's own chain stays in `source()`.
pub(crate) fn from_sdk<E, R>(what: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let err_ref: &(dyn StdError + 'static) = &err;
    let mapped = match &err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().map(str::to_owned);
            let status = raw_status(ctx.raw());
            let kind = kind_for_code(code.as_deref(), status);
            let msg = ctx.err().message().unwrap_or("no message");
            let mut e = Error::new(
                kind,
                format!(
                    "{what} failed: {} ({}): {msg}",
                    code.as_deref().unwrap_or("service error"),
                    status.map(|s| s.to_string()).unwrap_or_default()
                ),
            );
            e.inner.status = status;
            e.inner.code = code;
            e
        }
        SdkError::TimeoutError(_) => Error::timeout(
            TimeoutKind::Operation,
            format!("{what} failed: the operation timed out"),
        ),
        SdkError::DispatchFailure(df) if df.is_timeout() => match timeout_kind_of(err_ref) {
            TimeoutKind::Connect => Error::timeout(
                TimeoutKind::Connect,
                format!("{what} failed: connect timeout"),
            ),
            kind => Error::timeout(kind, format!("{what} failed: read timeout")),
        },
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if is_credentials_failure(err_ref) =>
        {
            Error::new(
                ErrorKind::AccessDenied,
                format!("{what} failed: no usable credentials"),
            )
        }
        SdkError::DispatchFailure(df) if df.is_io() => {
            Error::new(ErrorKind::Network, format!("{what} failed: network error"))
        }
        SdkError::DispatchFailure(df) if df.is_user() => Error::new(
            ErrorKind::InvalidInput,
            format!("{what} failed: request rejected by the client"),
        ),
        SdkError::DispatchFailure(_) => Error::new(
            ErrorKind::Network,
            format!("{what} failed: the request could not be sent"),
        ),
        SdkError::ResponseError(_) => Error::new(
            ErrorKind::Network,
            format!("{what} failed: bad or truncated response"),
        ),
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::Other,
            format!("{what} failed: could not build the request"),
        ),
        _ => Error::new(ErrorKind::Other, format!("{what} failed")),
    };
    mapped.with_source(err)
}

/// Reads the HTTP status from the SDK's raw response type without naming it.
fn raw_status<R: fmt::Debug + 'static>(raw: &R) -> Option<u16> {
    // The raw type is the orchestrator's HttpResponse; reach it through Any to avoid a
    // generic bound every call site would have to repeat.
    let any: &dyn std::any::Any = raw as &dyn std::any::Any;
    any.downcast_ref::<aws_smithy_runtime_api::client::orchestrator::HttpResponse>()
        .map(|r| r.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind_for_code(Some("ThrottlingException"), Some(429)),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_for_code(Some("ExpiredToken"), Some(400)),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            kind_for_code(Some("ResourceNotFoundException"), Some(404)),
            ErrorKind::ModelNotFound
        );
        assert_eq!(
            kind_for_code(None, Some(502)),
            ErrorKind::ServiceUnavailable
        );
        assert_eq!(kind_for_code(Some("Odd"), None), ErrorKind::Other);
    }

    #[test]
    fn invalid_input_names_the_field() {
        let e = Error::invalid("temperature", "1.5 is outside [0, 1]");
        assert!(e.is_invalid_input());
        assert_eq!(e.field(), Some("temperature"));
        assert!(e.to_string().contains("temperature"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn error_is_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Result<()>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn display_does_not_repeat_the_source() {
        let source = std::io::Error::other("the socket said no");
        let e =
            Error::new(ErrorKind::Network, "converse failed: network error").with_source(source);
        assert_eq!(e.to_string(), "converse failed: network error");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("the socket said no")
        );
        assert!(format!("{e:?}").contains("the socket said no"));
    }

    #[test]
    fn model_failures_are_retryable_and_stay_in_their_region() {
        let e = Error::new(ErrorKind::ModelFailure, "model timed out");
        assert!(e.is_retryable());
        assert!(!e.is_regional());
        assert!(!Error::new(ErrorKind::Validation, "bad").is_retryable());
    }

    #[test]
    fn kinds_have_distinct_indices() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
