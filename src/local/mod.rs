//! A local Bedrock Runtime + STS server for offline tests.
//!
//! [`LocalServer`] runs in-process on 127.0.0.1 and speaks the real wire protocols, so the real
//! AWS SDK (or boto3, or any other SDK) talks to it over real sockets:
//!
//! - **Bedrock Runtime** (restJson1, SigV4 signing name `bedrock`) on one listener:
//!   `POST /model/{modelId}/converse`, `POST /model/{modelId}/converse-stream` (binary
//!   `application/vnd.amazon.eventstream` frames), `POST /model/{modelId}/count-tokens` and
//!   `GET /async-invoke` (ListAsyncInvokes, always empty).
//! - **STS** `GetCallerIdentity` (awsQuery, signing name `sts`) on a second listener, a different
//!   origin as on AWS: the caller is `arn:aws:iam::123456789012:user/local`.
//! - **TLS** by default: a CA generated at start ([`LocalServer::ca_pem`]) signs a certificate for
//!   `127.0.0.1` and `localhost`; ALPN offers `h2` and `http/1.1` ([`Protocol`] selects HTTP/1.1
//!   only, or plain HTTP).
//! - **SigV4** is verified by recomputing each request's signature (the canonical request from
//!   the client's own `SignedHeaders`, `:authority` included over h2; `aws-sigv4`'s signing key
//!   and signature functions): the key id, secret, region, service and a 5-minute clock skew are
//!   checked and rejected with the errors AWS sends
//!   (`UnrecognizedClientException`, `InvalidSignatureException`, STS `InvalidClientTokenId`,
//!   `SignatureDoesNotMatch`, `MissingAuthenticationTokenException`).
//! - **Validation** as the service does it (the SDK checks nothing client-side): a `400
//!   ValidationException` whose message starts with the field, e.g. `inferenceConfig.maxTokens:
//!   must be >= 1`, for empty or non-alternating messages, blank text, content blocks without
//!   exactly one member, out-of-range `maxTokens`, `temperature`, `topP`, `stopSequences`, and an
//!   invalid model id.
//! - **A fake model**: [`Responder::echo`] (the default) answers the last user text back, counts
//!   words as tokens, honours `maxTokens` and stop sequences; [`Responder::from_fn`] answers
//!   anything, tool use included. Streams split text into one `contentBlockDelta` per word.
//!
//! # Faults
//!
//! Faults are values, changeable while the server runs:
//!
//! - [`FaultRule`]s ([`LocalServer::push_fault`]) pick requests by operation, model id and count,
//!   and apply a [`Fault`]: a [`ServiceError`] (status, `x-amzn-ErrorType`, body; XML on STS), a
//!   delay before the headers, a reset (RST) or clean close (FIN) instead of an answer, a reset
//!   after the headers, or a broken stream (stall, in-stream exception, cut without
//!   `messageStop`). [`Fault::GoSilent`] kills the request's connection while it is busy: it
//!   turns into a black hole at once, so this request and every other request in flight on it
//!   (over HTTP/2, every stream of the one shared connection) never get an answer or a close.
//!   [`FaultRule::skip`] lets the first requests pass, so that the fault hits the N-th one while
//!   the others are still in flight.
//! - [`LocalServer::silence_connections`] does the same to every open Bedrock connection at once
//!   (typically after [`LocalServer::wait_for_requests`] saw the requests to catch in flight);
//!   [`LocalServer::goaway`] closes them gracefully instead, as AWS does when it rotates a host:
//!   over HTTP/2 a GOAWAY, the streams in flight finish, new requests need a new connection; over
//!   HTTP/1.1 the response in flight carries `Connection: close`. Both hit only the connections
//!   open at the call: the listener keeps accepting, and later connections work normally.
//! - An [`IdleFault`] ([`LocalServer::set_idle_fault`]) plays the middlebox that kills idle
//!   connections: after a connection carried no byte for `after` it turns into a black hole, is
//!   closed, or is reset on its next request. Scale `after` down (hundreds of milliseconds) to
//!   reproduce in a test what a NAT gateway does after 350 s.
//! - [`Latency`] delays model answers.
//!
//! Every request is recorded ([`LocalServer::requests`]: operation, model, SDK attempt number,
//! connection id, HTTP version, body, outcome; a request whose connection went silent keeps the
//! outcome 0), and connections are counted per listener ([`LocalServer::bedrock_connections`]:
//! accepted, open, silenced, sent away).
//!
//! # Limits versus real Bedrock
//!
//! - No model runs: the replies are echoes or what a [`Responder`] returns, tokens are words.
//! - Only Converse, ConverseStream, CountTokens, ListAsyncInvokes and GetCallerIdentity exist;
//!   InvokeModel, guardrails, documents and images are not interpreted (content blocks other than
//!   text are accepted as opaque).
//! - Validation covers the rules above, not every constraint of the service model; messages are
//!   worded for tests, not copied from AWS.
//! - Any session token is accepted; the model id is checked for syntax only, any id "exists".
//! - The idle faults act on this server's side of the socket, not in the kernel: a "silently
//!   dead" connection still ACKs at the TCP level, which a real black hole does not. Idle means no
//!   byte either way, even while a request waits for a slow answer (as on a real load balancer).
//! - A reset (per-request fault or idle fault) kills the whole connection: over HTTP/2 every
//!   request in flight on it fails.
//! - A silenced connection (busy death) stays open on this side until the server is dropped; its
//!   kernel still ACKs, and the client times out (read timeout for headers, its own bound on a
//!   stream's `recv()`). Over HTTP/2 the SDK keeps it in the pool after the timeouts (see the
//!   design notes): test recovery with a new client or a poisoning interceptor.
//! - GOAWAY is hyper's graceful shutdown: a first GOAWAY with last stream id 2^31-1, a PING,
//!   then the final GOAWAY; streams the client opened before it saw the GOAWAY are still served.
//!   No deadline is set: a stream that never ends keeps its connection open.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use bedrock_pool::local::LocalServer;
//!
//! let server = LocalServer::start().await?;
//! let client = aws_sdk_bedrockruntime::Client::new(&server.sdk_config()?);
//! let out = client
//!     .list_async_invokes()
//!     .max_results(1)
//!     .send()
//!     .await?;
//! assert!(out.async_invoke_summaries().is_empty());
//! # Ok(())
//! # }
//! ```

mod accept;
mod bedrock;
mod canonical;
mod conn;
mod dispatch;
mod fault;
mod guardrail;
mod identity;
mod lock;
mod model;
mod options;
mod record;
mod server;
mod sigv4;
mod state;
mod sts;
mod surface;
mod tls;
mod validate;
mod wire;

pub use fault::{Fault, FaultRule, IdleFault, Latency, ServiceError};
pub use guardrail::{
    DEFAULT_BLOCKED_MESSAGE, Guardrail, TEST_GUARDRAIL_ID, TEST_GUARDRAIL_TRIGGER,
    TEST_GUARDRAIL_VERSION,
};
pub use identity::{
    TEST_ACCESS_KEY_ID, TEST_ACCOUNT_ID, TEST_API_KEY, TEST_REGION, TEST_SECRET_ACCESS_KEY,
};
pub use model::{ConverseCall, ModelReply, ReplyBlock, Responder};
pub use record::{ConnectionCounts, Listener, Operation, RecordedRequest};
pub use server::{LocalServer, LocalServerBuilder};
pub use state::Protocol;

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<LocalServer>();
        send_sync::<LocalServerBuilder>();
        send_sync::<FaultRule>();
        send_sync::<Fault>();
        send_sync::<IdleFault>();
        send_sync::<Latency>();
        send_sync::<Responder>();
        send_sync::<RecordedRequest>();
        send_sync::<ConverseCall>();
        send_sync::<ModelReply>();
        send_sync::<ConnectionCounts>();
        send_sync::<Guardrail>();
    }
}
