//! What the server observed: recorded requests and connection counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// Names the listener a request or connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The Bedrock Runtime listener (`bedrock_url`).
    Bedrock,
    /// The STS listener (`sts_url`).
    Sts,
}

/// Names the API operation a request addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /model/{modelId}/converse`.
    Converse,
    /// `POST /model/{modelId}/converse-stream`.
    ConverseStream,
    /// `POST /model/{modelId}/count-tokens`.
    CountTokens,
    /// `POST /model/{modelId}/invoke`.
    InvokeModel,
    /// `POST /model/{modelId}/invoke-with-response-stream`.
    InvokeModelWithResponseStream,
    /// `POST /model/{modelId}/invoke-with-bidirectional-stream` (HTTP/2 only).
    InvokeModelWithBidirectionalStream,
    /// `GET /async-invoke`.
    ListAsyncInvokes,
    /// `POST /async-invoke`.
    StartAsyncInvoke,
    /// `GET /async-invoke/{invocationArn}`.
    GetAsyncInvoke,
    /// `POST /guardrail/{guardrailIdentifier}/version/{guardrailVersion}/apply`.
    ApplyGuardrail,
    /// `POST /guardrail-checks/invoke`.
    InvokeGuardrailChecks,
    /// STS `Action=GetCallerIdentity` on the STS listener.
    GetCallerIdentity,
    /// Anything else (unknown path, method or STS action).
    Other,
}

/// Describes one request the server received, on either listener.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The listener it arrived on.
    pub listener: Listener,
    /// The operation its path (or STS action) names.
    pub operation: Operation,
    /// The percent-decoded `{modelId}` path label (GetAsyncInvoke: its `{invocationArn}`;
    /// ApplyGuardrail: `{guardrailIdentifier}/{guardrailVersion}`), if
    /// the path has one.
    pub model_id: Option<String>,
    /// The `attempt=N` of the `amz-sdk-request` header.
    pub attempt: Option<u32>,
    /// The `max=M` of the `amz-sdk-request` header.
    pub max_attempts: Option<u32>,
    /// The `amz-sdk-invocation-id` header (the same for every attempt of one call).
    pub invocation_id: Option<String>,
    /// The id of the connection it arrived on, unique per accepted connection of one server.
    pub connection_id: u64,
    /// The HTTP version it used (`HTTP_2` when h2 was negotiated).
    pub http_version: http::Version,
    /// The parsed JSON body (`Null` if none or not JSON; for STS the form fields as an object).
    pub body: serde_json::Value,
    /// The HTTP status answered, or 0 if the server reset or closed instead, its connection went
    /// silent before the answer (see [`Fault::GoSilent`](super::Fault::GoSilent)), or it is still
    /// busy.
    pub outcome: u16,
    /// The error type name if the request was rejected or its stream ended in an exception.
    pub error: Option<String>,
}

/// Counts the connections of one listener.
///
/// The counts are read from relaxed atomics: approximate while connections come and go.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// The high-water mark of simultaneously open connections.
    pub max_open: u64,
    /// Connections turned into black holes ([`Fault::GoSilent`](super::Fault::GoSilent),
    /// [`LocalServer::silence_connections`](super::LocalServer::silence_connections),
    /// [`IdleFault::SilentlyDead`](super::IdleFault::SilentlyDead)).
    pub silenced: u64,
    /// Connections told to close gracefully by [`LocalServer::goaway`](super::LocalServer::goaway).
    pub goaway: u64,
    /// Connections the server's HTTP stack ended on an error of the connection: for h2, a
    /// `GOAWAY` of its own, such as the one it sends after too many streams reset by the
    /// client (cancelled calls), or a protocol error.
    pub errors: u64,
}

/// Holds the live connection counters of one listener.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
    silenced: AtomicU64,
    goaway: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// Counts a newly accepted connection.
    pub(crate) fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_open.fetch_max(open, Ordering::Relaxed);
    }

    /// Counts a closed connection.
    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a connection turned into a black hole.
    pub(crate) fn silenced(&self) {
        self.silenced.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection told to close gracefully.
    pub(crate) fn goaway(&self) {
        self.goaway.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection the HTTP stack ended on an error.
    pub(crate) fn errored(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns a snapshot.
    pub(crate) fn snapshot(&self) -> ConnectionCounts {
        ConnectionCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            max_open: self.max_open.load(Ordering::Relaxed),
            silenced: self.silenced.load(Ordering::Relaxed),
            goaway: self.goaway.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
