//! Unary calls carried as streams: the answer of one send is either the unary operation's or
//! its stream operation's, and so is its error, behind one type the driver maps in one place.
//!
//! Why: a unary Converse or InvokeModel sends its response headers only when the whole answer
//! is ready, so the read timeout would cap a generation, and a read timeout could not tell a
//! dead connection from a slow model. The stream operations send their headers before the
//! model works: the read timeout then finds a dead connection (and its retry never pays for a
//! generation twice), the stall timeout bounds each gap, and the answer takes as long as the
//! model needs. The caller collects the stream into the unary answer.

use aws_sdk_bedrockruntime::error::{ErrorMetadata, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::fmt;

/// The answer of one send: the unary operation's output, or its stream operation's.
pub(crate) enum Carried<U, S> {
    Unary(U),
    Stream(S),
}

/// The service error of one send, of the unary operation or of its stream operation.
#[derive(Debug)]
pub(crate) enum CarriedError<U, S> {
    Unary(U),
    Stream(S),
}

impl<U: fmt::Display, S: fmt::Display> fmt::Display for CarriedError<U, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CarriedError::Unary(e) => e.fmt(f),
            CarriedError::Stream(e) => e.fmt(f),
        }
    }
}

impl<U, S> std::error::Error for CarriedError<U, S>
where
    U: std::error::Error + 'static,
    S: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CarriedError::Unary(e) => e.source(),
            CarriedError::Stream(e) => e.source(),
        }
    }
}

impl<U: ProvideErrorMetadata, S: ProvideErrorMetadata> ProvideErrorMetadata for CarriedError<U, S> {
    fn meta(&self) -> &ErrorMetadata {
        match self {
            CarriedError::Unary(e) => e.meta(),
            CarriedError::Stream(e) => e.meta(),
        }
    }
}

/// The SDK error of one operation's send.
type SendError<E> = SdkError<E, HttpResponse>;

/// Wraps a stream operation's answer.
#[allow(clippy::result_large_err)] // the SDK's own error, moved once and mapped by the driver
pub(crate) fn as_stream<U, S, UE, SE>(
    r: Result<S, SendError<SE>>,
) -> Result<Carried<U, S>, SendError<CarriedError<UE, SE>>> {
    r.map(Carried::Stream)
        .map_err(|e| e.map_service_error(CarriedError::Stream))
}

/// Wraps a unary operation's answer.
#[allow(clippy::result_large_err)] // the SDK's own error, moved once and mapped by the driver
pub(crate) fn as_unary<U, S, UE, SE>(
    r: Result<U, SendError<UE>>,
) -> Result<Carried<U, S>, SendError<CarriedError<UE, SE>>> {
    r.map(Carried::Unary)
        .map_err(|e| e.map_service_error(CarriedError::Unary))
}

/// Sends a unary call, or its stream operation when the destination carries it: takes the
/// destination, the unary builder's send and the stream builder's send (each an expression
/// that builds and sends its SDK call, evaluated only for the one chosen) and gives one future.
macro_rules! send_carried {
    ($to:expr, unary: $unary:expr, stream: $stream:expr $(,)?) => {{
        use futures_util::FutureExt as _;
        if $to.carried {
            futures_util::future::Either::Left($stream.map($crate::call::carry::as_stream))
        } else {
            futures_util::future::Either::Right($unary.map($crate::call::carry::as_unary))
        }
    }};
}
pub(crate) use send_carried;
