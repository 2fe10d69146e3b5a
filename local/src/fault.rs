//! Faults as values: service errors, per-request network faults, idle-connection faults, latency.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::record::{Listener, Operation, RecordedRequest};

/// Names an error the server answers with, as the real service encodes it.
///
/// Bedrock errors go out as `x-amzn-ErrorType` plus a JSON `{"message":..}` body; on the STS listener
/// any error goes out as an awsQuery `ErrorResponse` XML document.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// Returns `400 ValidationException`.
    Validation(String),
    /// Returns `403 AccessDeniedException`.
    AccessDenied(String),
    /// Returns `404 ResourceNotFoundException`.
    ResourceNotFound(String),
    /// Returns `408 ModelTimeoutException` (not retried by the SDK).
    ModelTimeout(String),
    /// Returns `424 ModelErrorException`.
    ModelError(String),
    /// Returns `429 ThrottlingException` (retried by the SDK).
    Throttling(String),
    /// Returns `429 ModelNotReadyException` (retried by the SDK).
    ModelNotReady(String),
    /// Returns `500 InternalServerException` (retried by the SDK).
    InternalServer(String),
    /// Returns `503 ServiceUnavailableException` (retried by the SDK).
    ServiceUnavailable(String),
    /// Returns `424 ModelStreamErrorException` (meant for in-stream exceptions).
    ModelStreamError(String),
    /// Returns STS `400 ExpiredToken`.
    ExpiredToken(String),
    /// Returns STS `403 InvalidClientTokenId`.
    InvalidClientTokenId(String),
    /// Returns STS `403 AccessDenied`.
    StsAccessDenied(String),
    /// Returns any status with any error type name.
    Custom {
        /// The HTTP status.
        status: u16,
        /// The error type name (`x-amzn-ErrorType`, STS `Code`).
        name: String,
        /// The message.
        message: String,
    },
}

impl ServiceError {
    /// Returns the HTTP status the error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Validation(_) | Self::ExpiredToken(_) => 400,
            Self::AccessDenied(_) | Self::InvalidClientTokenId(_) | Self::StsAccessDenied(_) => 403,
            Self::ResourceNotFound(_) => 404,
            Self::ModelTimeout(_) => 408,
            Self::ModelError(_) | Self::ModelStreamError(_) => 424,
            Self::Throttling(_) | Self::ModelNotReady(_) => 429,
            Self::InternalServer(_) => 500,
            Self::ServiceUnavailable(_) => 503,
            Self::Custom { status, .. } => *status,
        }
    }

    /// Returns the error type name, e.g. `ValidationException`.
    pub fn name(&self) -> &str {
        match self {
            Self::Validation(_) => "ValidationException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ModelTimeout(_) => "ModelTimeoutException",
            Self::ModelError(_) => "ModelErrorException",
            Self::Throttling(_) => "ThrottlingException",
            Self::ModelNotReady(_) => "ModelNotReadyException",
            Self::InternalServer(_) => "InternalServerException",
            Self::ServiceUnavailable(_) => "ServiceUnavailableException",
            Self::ModelStreamError(_) => "ModelStreamErrorException",
            Self::ExpiredToken(_) => "ExpiredToken",
            Self::InvalidClientTokenId(_) => "InvalidClientTokenId",
            Self::StsAccessDenied(_) => "AccessDenied",
            Self::Custom { name, .. } => name,
        }
    }

    /// Returns the error message.
    pub fn message(&self) -> &str {
        match self {
            Self::Validation(m)
            | Self::AccessDenied(m)
            | Self::ResourceNotFound(m)
            | Self::ModelTimeout(m)
            | Self::ModelError(m)
            | Self::Throttling(m)
            | Self::ModelNotReady(m)
            | Self::InternalServer(m)
            | Self::ServiceUnavailable(m)
            | Self::ModelStreamError(m)
            | Self::ExpiredToken(m)
            | Self::InvalidClientTokenId(m)
            | Self::StsAccessDenied(m) => m,
            Self::Custom { message, .. } => message,
        }
    }

    /// Returns a custom error (shorthand used by the server itself).
    pub(crate) fn custom(status: u16, name: &str, message: impl Into<String>) -> Self {
        Self::Custom {
            status,
            name: name.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.status(), self.message())
    }
}

/// Describes what the server does to a request a [`FaultRule`] matches.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answers with this error (status, `x-amzn-ErrorType`, JSON body; STS errors as XML).
    Error(ServiceError),
    /// Waits this long before sending headers, then answers normally.
    Delay(Duration),
    /// Reads the request, then resets the connection (RST, no response).
    ResetBeforeHeaders,
    /// Sends `200` headers and part of the body (for a stream, the first event), then resets.
    ResetAfterHeaders,
    /// Reads the request, then closes the connection cleanly (FIN) without answering.
    CloseBeforeHeaders,
    /// Sends `after_events` stream events, pauses for `duration`, then continues (streams only).
    StreamStall {
        /// Events sent before the pause.
        after_events: usize,
        /// The pause.
        duration: Duration,
    },
    /// Sends `after_events` events, then an in-stream exception frame, then ends (streams only).
    StreamException {
        /// Events sent before the exception.
        after_events: usize,
        /// The exception (`:exception-type` is its name in lower camel case).
        error: ServiceError,
    },
    /// Sends `after_events` events, then ends the body cleanly on a frame boundary, with no
    /// `messageStop` (streams only; on InvokeModelWithResponseStream, no `message_stop` chunk).
    StreamCut {
        /// Events sent before the end.
        after_events: usize,
    },
    /// Turns the request's connection into a black hole at once, as a middlebox that dies while
    /// the connection is busy: it swallows what it reads, drops what it writes and never closes.
    ///
    /// The request never gets an answer, and neither does any other request in flight on the same
    /// connection (over HTTP/2, every stream of it: unary calls wait for headers, streams get no
    /// more events). Requests not answered yet keep the recorded outcome 0 (a stream whose
    /// headers went out keeps its 200). Connections opened later work normally.
    GoSilent,
}

impl Fault {
    /// Returns whether the fault only applies to streams (ConverseStream, InvokeModelWithResponseStream).
    fn stream_only(&self) -> bool {
        matches!(
            self,
            Self::StreamStall { .. } | Self::StreamException { .. } | Self::StreamCut { .. }
        )
    }
}

/// Pairs a [`Fault`] with the requests it applies to.
///
/// Rules are checked in push order; the first matching rule with a remaining count applies. A
/// rule still skipping ([`FaultRule::skip`]) counts the request and lets the later rules check it.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub(crate) fault: Fault,
    pub(crate) skip: usize,
    pub(crate) remaining: Option<usize>,
    pub(crate) model: Option<String>,
    pub(crate) operation: Option<Operation>,
}

impl FaultRule {
    /// Returns a rule matching every request on the Bedrock listener, forever.
    ///
    /// Stream faults (`StreamStall`, `StreamException`, `StreamCut`) only match ConverseStream and
    /// InvokeModelWithResponseStream.
    pub fn new(fault: Fault) -> Self {
        Self {
            fault,
            skip: 0,
            remaining: None,
            model: None,
            operation: None,
        }
    }

    /// Returns the rule limited to the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Returns the rule letting the first `n` matching requests pass before it applies, e.g.
    /// `FaultRule::new(Fault::GoSilent).skip(24).times(1)` silences the connection of the 25th
    /// request, when the 24 before it are still in flight (with a [`Latency`]).
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Returns the rule limited to requests for this model id (the decoded path label).
    pub fn model(mut self, model_id: impl Into<String>) -> Self {
        self.model = Some(model_id.into());
        self
    }

    /// Returns the rule limited to one operation; `GetCallerIdentity` moves it to the STS listener.
    pub fn operation(mut self, op: Operation) -> Self {
        self.operation = Some(op);
        self
    }

    /// Returns whether the rule applies to this request (ignoring its count).
    pub(crate) fn matches(&self, req: &RecordedRequest) -> bool {
        let listener = if self.operation == Some(Operation::GetCallerIdentity) {
            Listener::Sts
        } else {
            Listener::Bedrock
        };
        req.listener == listener
            && self.operation.is_none_or(|op| op == req.operation)
            && self
                .model
                .as_deref()
                .is_none_or(|m| req.model_id.as_deref() == Some(m))
            && (!self.fault.stream_only()
                || matches!(
                    req.operation,
                    Operation::ConverseStream | Operation::InvokeModelWithResponseStream
                ))
            && self.remaining != Some(0)
    }
}

/// Describes a middlebox fault hitting connections that stay idle (no bytes either way) too long.
///
/// It applies to both listeners; connections never idle that long are unaffected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleFault {
    /// Makes the connection a black hole once idle for `after`: it swallows what it reads, never
    /// writes, and stays open until the server is dropped.
    SilentlyDead {
        /// The idle time that kills it.
        after: Duration,
    },
    /// Closes the connection (FIN) when it has been idle for `after`.
    Close {
        /// The idle time before the close.
        after: Duration,
    },
    /// Resets (RST) the connection when bytes arrive after it has been idle for `after`, as a NAT
    /// gateway that forgot the flow.
    Reset {
        /// The idle time after which the flow is forgotten.
        after: Duration,
    },
}

impl IdleFault {
    /// Returns the idle time that triggers the fault.
    pub fn after(&self) -> Duration {
        match *self {
            Self::SilentlyDead { after } | Self::Close { after } | Self::Reset { after } => after,
        }
    }
}

type LatencyFn = dyn Fn(&RecordedRequest) -> Duration + Send + Sync;

/// Describes the model latency added before a model answer (after validation).
///
/// It applies to Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream (before
/// the headers) and CountTokens.
#[derive(Clone, Default)]
pub struct Latency {
    f: Option<Arc<LatencyFn>>,
}

impl Latency {
    /// Returns no added latency (the default).
    pub fn none() -> Self {
        Self { f: None }
    }

    /// Returns a fixed latency for every model request.
    pub fn fixed(d: Duration) -> Self {
        Self::from_fn(move |_| d)
    }

    /// Returns a latency computed per request.
    pub fn from_fn(f: impl Fn(&RecordedRequest) -> Duration + Send + Sync + 'static) -> Self {
        Self {
            f: Some(Arc::new(f)),
        }
    }

    /// Returns the latency for this request.
    pub(crate) fn for_request(&self, req: &RecordedRequest) -> Duration {
        self.f.as_ref().map_or(Duration::ZERO, |f| f(req))
    }
}

impl fmt::Debug for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.f.is_some() {
            "Latency(..)"
        } else {
            "Latency(none)"
        })
    }
}
