//! The one mapping of the SDK's errors (service errors, timeouts, dispatch and response
//! failures) into [`Error`], keeping the SDK error as its source.

use super::{Error, ErrorKind, TimeoutKind};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use std::error::Error as StdError;
use std::fmt;

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

/// What Bedrock says when the input does not fit the model's context window, in
/// `ValidationException` messages (lowercased): the service's own "Input is too long for
/// requested model.", Anthropic's "prompt is too long: N tokens > M maximum" (as "The model
/// returned the following errors: ..."), "input length and `max_tokens` exceed context limit"
/// and "too many total text bytes", and the "maximum context length" wording of other models.
const CONTEXT_OVERFLOW: [&str; 5] = [
    "input is too long",
    "prompt is too long",
    "input length and `max_tokens` exceed context limit",
    "too many total text bytes",
    "maximum context length",
];

/// Returns true when a validation message says the input exceeds the context window.
pub(crate) fn is_context_overflow(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    CONTEXT_OVERFLOW.iter().any(|m| lower.contains(m))
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
/// "HTTP connect timeout"); `tests/client/factory.rs` pins it by provoking both for real.
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
            let msg = ctx.err().message().unwrap_or("no message");
            let kind = match kind_for_code(code.as_deref(), status) {
                ErrorKind::Validation if is_context_overflow(msg) => {
                    ErrorKind::ContextWindowExceeded
                }
                kind => kind,
            };
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
