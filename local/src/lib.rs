//! A local Bedrock Runtime + STS server for offline tests: a library, and a binary
//! (`bedrock-pool-local`) that any SDK can be pointed at.
//!
//! [`LocalServer`] runs in-process on 127.0.0.1 and speaks the real wire protocols, so the real
//! AWS SDK (or boto3, or any other SDK) talks to it over real sockets:
//!
//! - **Bedrock Runtime** (restJson1, SigV4 signing name `bedrock`) on one listener:
//!   `POST /model/{modelId}/converse`, `POST /model/{modelId}/converse-stream` (binary
//!   `application/vnd.amazon.eventstream` frames), `POST /model/{modelId}/invoke`,
//!   `POST /model/{modelId}/invoke-with-response-stream`, `POST /model/{modelId}/count-tokens`
//!   (Converse or InvokeModel input, words as tokens), and async invocations: `POST
//!   /async-invoke` (StartAsyncInvoke), `GET /async-invoke/{invocationArn}` (GetAsyncInvoke) and
//!   `GET /async-invoke` (ListAsyncInvokes): jobs end after the async delay
//!   ([`LocalServerBuilder::async_invoke_delay`]), `Failed` when their input holds [`FAIL_JOB`],
//!   and write no output; `POST /guardrail/{id}/version/{version}/apply` (ApplyGuardrail) with
//!   the known guardrails (the trigger word intervenes) and `POST /guardrail-checks/invoke`
//!   (InvokeGuardrailChecks: a trigger word scores 0.9 in every requested category, e-mail
//!   addresses are the sensitive information found); and `POST
//!   /model/{modelId}/invoke-with-bidirectional-stream` (InvokeModelWithBidirectionalStream,
//!   HTTP/2 only, refused over HTTP/1.1): an event stream both ways, each input message's SigV4
//!   envelope verified along its signature chain, answered by an echo model speaking Amazon Nova
//!   Sonic's events (a user text comes back as the assistant's text, a user audio as its
//!   transcript `[audio: N bytes]` and the same audio; a `usageEvent` after each turn;
//!   [`FAIL_SESSION`] fails the session).
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
//! - **Bedrock API keys**: `Authorization: Bearer <key>` is accepted on the Bedrock listener when
//!   the key is [`LocalServer::api_key`] ([`TEST_API_KEY`], or
//!   [`LocalServerBuilder::api_key`]); another key gets `403 AccessDeniedException`
//!   (`Authentication failed: Please make sure your API Key is valid.`). STS never accepts bearer
//!   auth. No key is ever logged.
//! - **Validation** as the service does it (the SDK checks nothing client-side): a `400
//!   ValidationException` whose message starts with the field, e.g. `inferenceConfig.maxTokens:
//!   must be >= 1`, for empty or non-alternating messages, blank text, content blocks without
//!   exactly one member, out-of-range `maxTokens`, `temperature`, `topP`, `stopSequences`, an
//!   invalid model id, and the optional members: `guardrailConfig` (identifier and version
//!   patterns, `trace`, on streams `streamProcessingMode`), `requestMetadata` (1 to 16 entries,
//!   lengths, charset), `performanceConfig.latency`, `serviceTier.type`,
//!   `outputConfig.textFormat` (`json_schema` with a schema string that parses to an object),
//!   `cachePoint` blocks (`type` `default`, `ttl` `5m`/`1h`), `promptVariables` (only with a
//!   prompt ARN model id, which in turn refuses `system`, `inferenceConfig`, `toolConfig` and
//!   `additionalModelRequestFields` and makes `messages` optional). What Anthropic models check
//!   behind Bedrock comes as Bedrock wraps it, `The model returned the following errors: ...`:
//!   more than 4 cache points, `top_k < 1`, and with `additionalModelRequestFields.thinking`
//!   enabled a `budget_tokens` under 1024 or not under `maxTokens` (unless `anthropic_beta`
//!   holds `interleaved-thinking-2025-05-14`), `temperature` other than 1, `topP` under 0.95,
//!   `top_k`, and a forced tool choice (`any`, `tool`).
//! - **A fake model**: [`Responder::echo`] (the default) answers the last user text back, counts
//!   words as tokens, honours `maxTokens` and stop sequences; [`Responder::from_fn`] answers
//!   anything: text, tool use, reasoning, images, cited text and tool results ([`ReplyBlock`]).
//!   Streams split text into one `contentBlockDelta` per word.
//! - **Every streamed block kind**, each as the service model defines it: a request's
//!   `image`, `toolResult` (with `json`, `text`, `image`, `document`, `video` and
//!   `searchResult` contents), `searchResult` and `citationsContent` blocks are checked (image
//!   formats and sources, a tool result's id, status and content members, a search result's
//!   source, title and texts; the field named) and answered. The echo answers each back in a
//!   kind a stream carries too, after the text: an image as the same image (streamed: a
//!   `contentBlockStart` with its format, its bytes in two `image` deltas, or its S3 location
//!   in one); a search result with citations enabled as a `citationsContent` block of its texts
//!   citing it (`searchResultLocation`), without as a text block; a tool result as a
//!   `toolResult` block with its id, status, text and JSON contents (streamed: a start with the
//!   id and status, then `toolResult` deltas, text one per word, each JSON value whole), its
//!   image and search-result contents following as blocks of their own. A streamed answer
//!   collected by the client equals the unary answer.
//! - **Scripted with the client's types**: a [`Responder::from_fn`] closure gives tool inputs
//!   and JSON tool results as the SDK's `Document` (`bedrock_pool::sdk::Document`) or as
//!   `serde_json::Value` ([`IntoJson`]: [`ReplyBlock::tool_use`], [`ModelReply::tool_use`],
//!   [`ToolResultContent::json`]), and reads the request back as a `Document`
//!   ([`ConverseCall::document`]); [`document_to_json`] and [`json_to_document`] convert
//!   without loss (`PosInt`, `NegInt`, `Float`).
//! - **InvokeModel** and its stream: an Anthropic Messages body (`anthropic_version`,
//!   `max_tokens`, `messages`; the field named when one is missing or wrong) is answered by the
//!   responder as Anthropic's message JSON (`{"id","type":"message","role":"assistant","content":
//!   [{"type":"text","text":..}],"stop_reason","stop_sequence","usage":{"input_tokens",
//!   "output_tokens"}}`, the responder seeing the Converse equivalent of the body); the stream
//!   sends `chunk` events whose `bytes` carry the JSON of `message_start`, `content_block_start`,
//!   `content_block_delta` (one per word), `content_block_stop`, `message_delta` and
//!   `message_stop` (with `amazon-bedrock-invocationMetrics`). Any other body: the text of its
//!   `inputText` or `prompt` (else the body) goes to the responder and comes back as
//!   `{"outputText","inputTextTokenCount","outputTextTokenCount","completionReason":"FINISH"}`
//!   (streamed as `{"outputText":piece,"index":0}` chunks). Unary answers carry
//!   `X-Amzn-Bedrock-Input-Token-Count` and `-Output-Token-Count`.
//! - **Embeddings** through InvokeModel, with the documented bodies: Titan Text Embeddings V2
//!   (`amazon.titan-embed-text-v2:0`: `inputText` up to 50,000 characters and 8,192 tokens,
//!   `dimensions` 256/512/1024, `normalize`, `embeddingTypes` float/binary; answers `embedding`,
//!   `inputTextTokenCount`, `embeddingsByType`), Cohere Embed v3 (`cohere.embed-english-v3`,
//!   `cohere.embed-multilingual-v3`: `texts` 1 to 96 of at most 2,048 characters and 512 tokens
//!   unless `truncate` is START/END, required `input_type`, `embedding_types`; 1024 dimensions;
//!   answers `embeddings` as a list, or by type when `embedding_types` is given, `id`,
//!   `response_type`, `texts`) and Cohere Embed v4 (`cohere.embed-v4:0`: `truncate`
//!   NONE/LEFT/RIGHT, `output_dimension` 256/512/1024/1536 (default 1536), `max_tokens`; always
//!   answers `embeddings` by type, float by default). Vectors are deterministic (seeded from a
//!   hash of the text: same text, same vector), unit-norm for Cohere and for Titan with
//!   `normalize`; tokens are words. Embedding models refuse the response stream.
//! - **The rest of the Converse surface**, unary and streamed alike:
//!   - thinking on: a `reasoningContent` block (`reasoningText` with a signature, an HMAC of the
//!     text under a per-server secret) comes first; streams send its text pieces and then its
//!     signature on their own block index. A later request whose assistant turn holds a reasoning
//!     block with a wrong or missing signature is refused as Anthropic on Bedrock does
//!     ("Invalid signature in thinking block", in Anthropic's words); `redactedContent` is
//!     accepted unread;
//!   - tool histories, refused as the service refuses them: `toolUse` or `toolResult` blocks
//!     without `toolConfig`, a `toolUse` not answered in the next message, a `toolResult` that
//!     answers no `toolUse` of the message before it (Anthropic's messages), and `system`
//!     messages' `toolAddition` / `toolRemoval` blocks, which change the tools a later
//!     `toolUse` may call;
//!   - prompt routers: a Converse or ConverseStream call whose model id is a prompt router's
//!     ARN (`default-prompt-router/NAME` or `prompt-router/ID`) is answered by the smaller or the
//!     larger model of its family by the last user message's length ([`routed_model`]), named
//!     in `trace.promptRouter.invokedModelId`;
//!   - cache points: the prompt prefix (tools, system, messages, per model id) up to each
//!     `cachePoint` is remembered; a prefix seen before is reported as `cacheReadInputTokens`, the
//!     rest up to the last cache point as `cacheWriteInputTokens`, and `inputTokens` excludes both
//!     ([`LocalServer::clear_prompt_cache`] forgets them); `cacheDetails` splits the written
//!     tokens by time to live, each part between two cache points taking the `ttl` of the cache
//!     point that ends it (`5m` unless it says `1h`);
//!   - guardrails: a request naming a known [`Guardrail`] ([`Guardrail::test`] by default, more
//!     with [`LocalServerBuilder::guardrail`] or [`LocalServer::set_guardrail`]) by id or ARN,
//!     with its version or `DRAFT`, is blocked when the last user message holds its trigger word:
//!     stop reason `guardrail_intervened`, the blocked message as output, and with `trace`
//!     enabled a `trace.guardrail` input assessment naming the word. An unknown guardrail is a
//!     `ValidationException` (`The provided guardrail identifier is invalid.`);
//!   - structured output: with `outputConfig.textFormat` (`json_schema`) the echo responder answers
//!     a minimal instance of the schema (required properties, `const`, first `enum` value or
//!     `anyOf` branch, local `$ref`s, `minimum`/`minItems`/`minLength`);
//!   - citations: a `document` with `citations.enabled` in the last user message turns the text
//!     answer into a `citationsContent` block citing it (`documentChar` location); streams send the
//!     text, then a `citation` delta;
//!   - `performanceConfig` and `serviceTier` are echoed (response, stream metadata event);
//!     `additionalModelResponseFieldPaths` `/stop_sequence` is answered (the stop sequence that
//!     ended the answer, or null), other paths are accepted and ignored.
//!
//! # Quotas and context windows
//!
//! Per model id, after validation and authentication and before the model answers:
//!
//! - A context window ([`LocalServerBuilder::context_window`],
//!   [`LocalServer::set_context_window`]): a Converse, ConverseStream or InvokeModel request whose
//!   input tokens plus max tokens exceed it gets `400 ValidationException` with Bedrock's
//!   message: for an id containing `anthropic`, `The model returned the following errors:
//!   prompt is too long: {input} tokens > {window} maximum` (the prompt alone too long) or
//!   `... input length and `max_tokens` exceed context limit: {input} + {max} > {window}, ...`;
//!   `Input is too long for requested model.` otherwise.
//! - A [`Quota`] ([`LocalServerBuilder::quota`], [`LocalServer::set_quota`]), Bedrock's requests
//!   and tokens per minute over a sliding window whose length a test scales down: a request past
//!   it gets `429 ThrottlingException` (`Too many requests, please wait before trying again.`, or
//!   `Too many tokens, ...`) and is not counted. Tokens are charged up front (input plus max
//!   tokens) and corrected to input plus output once the answer is known, as Bedrock does.
//!   CountTokens is free. [`LocalServer::quota_stats`] returns a [`QuotaStats`]: admitted,
//!   throttled, and the busiest window of the run, so a test can assert that no window ever
//!   held more than the quota.
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
//! - Only Converse, ConverseStream, InvokeModel (and its stream), CountTokens, the three async
//!   invocation operations, ApplyGuardrail, InvokeGuardrailChecks,
//!   InvokeModelWithBidirectionalStream (an echo, no speech recognition) and GetCallerIdentity
//!   exist; async invocations write nothing to S3.
//!   Documents (beyond citations), videos and audio are accepted unread. A streamed tool
//!   result carries only its text and JSON contents (the service model has no delta for the
//!   others), and two texts in a row come back joined.
//! - Guardrails are one word filter each; an intervention does not call the model (output tokens
//!   0). Thinking, cache and citation checks apply to every model id, not only Anthropic ones.
//!   Prompt ARNs need no prompt to exist: the echo answers the messages, or `ok`.
//! - Validation covers the rules above, not every constraint of the service model; messages are
//!   worded for tests, not copied from AWS.
//! - Any session token is accepted; the model id is checked for syntax only, any id "exists".
//! - Quotas and context windows are per exact model id on one server (Bedrock's quotas are per
//!   account, region and model, inference profiles apart), and tokens are words.
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
//! use bedrock_pool_local::LocalServer;
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
mod bidi;
mod blocks;
mod canonical;
mod conn;
mod content;
mod dispatch;
mod doc;
mod echo;
mod embed;
mod fault;
mod guardrail;
mod identity;
mod invoke;
mod jobs;
mod limits;
mod lock;
mod model;
mod options;
mod plain;
mod quota;
mod record;
mod reply;
mod reply_block;
mod router;
mod sdk;
mod server;
mod server_limits;
mod sigv4;
mod sonic;
mod state;
mod sts;
mod surface;
mod tls;
mod tools;
mod validate;
mod wire;

pub use doc::{IntoJson, document_to_json, json_to_document};
pub use fault::{Fault, FaultRule, IdleFault, Latency, ServiceError};
pub use guardrail::{
    DEFAULT_BLOCKED_MESSAGE, Guardrail, TEST_GUARDRAIL_ID, TEST_GUARDRAIL_TRIGGER,
    TEST_GUARDRAIL_VERSION,
};
pub use identity::{
    TEST_ACCESS_KEY_ID, TEST_ACCOUNT_ID, TEST_API_KEY, TEST_REGION, TEST_SECRET_ACCESS_KEY,
};
pub use jobs::{DEFAULT_ASYNC_DELAY, FAIL_JOB};
pub use model::{ConverseCall, ImageSource, ModelReply, ReplyBlock, Responder, ToolResultContent};
pub use quota::{Quota, QuotaStats, burndown_rate};
pub use record::{ConnectionCounts, Listener, Operation, RecordedRequest};
pub use router::{ROUTER_SHORT_PROMPT_WORDS, routed_model};
pub use server::{LocalServer, LocalServerBuilder};
pub use sonic::{AUDIO_CHUNK, FAIL_SESSION, SPEECH_BYTES_PER_TOKEN};
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
        send_sync::<Quota>();
        send_sync::<QuotaStats>();
    }
}
