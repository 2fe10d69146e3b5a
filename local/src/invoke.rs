//! InvokeModel and InvokeModelWithResponseStream: Anthropic Messages bodies, embedding models
//! (see `embed`), and a plain text shape for any other body.
//!
//! - Anthropic Messages (`anthropic_version`, `max_tokens`, `messages`): the body is turned into
//!   its Converse equivalent for the [`Responder`](super::Responder) (text, tool use and tool
//!   result blocks, `system`, `stop_sequences`, `tools`), and the reply comes back as Anthropic's
//!   `{"id","type":"message","role","model","content","stop_reason","stop_sequence","usage"}`;
//!   streamed as `chunk` events carrying the base64 JSON of `message_start`,
//!   `content_block_start`, `content_block_delta`..., `content_block_stop`, `message_delta`,
//!   `message_stop` (with `amazon-bedrock-invocationMetrics`).
//! - Any other JSON body: the text of `inputText` or `prompt` (else the body itself) goes to the
//!   responder; the answer is `{"outputText","inputTextTokenCount","outputTextTokenCount",
//!   "completionReason":"FINISH"}`, streamed as `{"outputText":piece,"index":0}` chunks, then a
//!   completion chunk and a metrics chunk.

use std::sync::Arc;
use std::time::Instant;

use aws_smithy_types::base64;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Value, json};

use super::conn::ConnShared;
use super::embed;
use super::fault::{Fault, ServiceError};
use super::limits::invoke_max_tokens;
use super::model::{ConverseCall, ReplyBlock, count_words, split_pieces};
use super::record::{Listener, Operation, RecordedRequest};
use super::reply::{apply_stream_fault, pace, unary};
use super::state::{Answer, Shared};
use super::surface;
use super::validate::request_words;
use super::wire::{self, Step};

/// The faults the Bedrock handler took for this request and left to the answer.
pub(crate) struct Faults {
    pub(crate) reset_after_headers: bool,
    pub(crate) stream: Option<Fault>,
}

/// Returns an error answer.
fn fail(msg: impl Into<String>) -> Answer {
    Answer::error(Listener::Bedrock, &ServiceError::Validation(msg.into()))
}

/// Checks a media type header: absent, JSON, or (Content-Type only) the SDK's blob default.
fn check_media(parts: &http::request::Parts, name: &str, accept: bool) -> Result<(), String> {
    let Some(v) = parts.headers.get(name) else {
        return Ok(());
    };
    let v = v.to_str().unwrap_or("").to_ascii_lowercase();
    let ok = v.contains("json")
        || (accept && (v.contains("*/*") || v.is_empty()))
        || (!accept && v.starts_with("application/octet-stream"));
    if ok {
        Ok(())
    } else {
        Err(format!("{name}: must be application/json, got {v}"))
    }
}

/// An InvokeModel or InvokeModelWithResponseStream request to answer (authenticated, model id
/// valid), with what the Bedrock handler took for it.
pub(crate) struct Invoke<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) conn: &'a Arc<ConnShared>,
    pub(crate) parts: &'a http::request::Parts,
    /// The body as received (`rec.body` is its JSON).
    pub(crate) raw: &'a [u8],
    pub(crate) rec: &'a RecordedRequest,
    pub(crate) model_id: &'a str,
    pub(crate) faults: Faults,
    pub(crate) started: Instant,
}

/// Answers an InvokeModel or InvokeModelWithResponseStream request.
pub(crate) async fn handle(c: Invoke<'_>) -> Answer {
    let stream = c.rec.operation == Operation::InvokeModelWithResponseStream;
    if let Err(m) = check_request(&c, stream) {
        return fail(m);
    }
    let (shared, body, model_id) = (c.shared, &c.rec.body, c.model_id);
    if let Some(family) = embed::family(model_id) {
        return embed_answer(&c, family, stream).await;
    }
    let anthropic = body.get("anthropic_version").is_some() || body.get("messages").is_some();
    let converse = if anthropic {
        match converse_body(body) {
            Ok(c) => c,
            Err(m) => return fail(m),
        }
    } else {
        let text = ["inputText", "prompt"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_str))
            .map_or_else(|| body.to_string(), str::to_owned);
        json!({ "messages": [{ "role": "user", "content": [{ "text": text }] }] })
    };
    let input_tokens = request_words(&converse);
    let ticket = match shared
        .limits
        .admit(model_id, input_tokens, invoke_max_tokens(body))
    {
        Ok(t) => t,
        Err(err) => return Answer::error(Listener::Bedrock, &err),
    };
    let call = ConverseCall::from_body(model_id.to_owned(), converse.clone());
    let reply = shared.responder().reply(&call);
    let (content, output_tokens) = reply_content(shared, &reply.content);
    shared.limits.settle(ticket, input_tokens, 0, output_tokens);
    let stop_reason = reply.stop_reason.clone();
    tokio::time::sleep(shared.latency().for_request(c.rec)).await;
    let generation = shared.generation().for_request(c.rec);
    if !stream {
        // A unary answer's headers wait for the whole generation.
        tokio::time::sleep(generation).await;
    }
    let latency_ms = c.started.elapsed().as_millis() as u64;
    let metrics = json!({
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
        "invocationLatency": latency_ms,
        "firstByteLatency": latency_ms,
    });
    let tokens = (input_tokens, output_tokens);
    let out = if anthropic {
        anthropic_message(&call, model_id, content, &stop_reason, tokens)
    } else {
        text_output(&content, tokens)
    };
    if !stream {
        let ans = unary(
            Bytes::from(out.to_string()),
            c.conn,
            c.faults.reset_after_headers,
        );
        return with_usage(ans, input_tokens, output_tokens, c.started);
    }
    let events = if anthropic {
        anthropic_events(&out, &metrics)
    } else {
        text_events(&out, metrics)
    };
    stream_answer(c.conn, &events, c.faults, generation)
}

/// Checks the media type headers and that the body is a JSON object.
fn check_request(c: &Invoke<'_>, stream: bool) -> Result<(), String> {
    let accept = if stream {
        "x-amzn-bedrock-accept"
    } else {
        "accept"
    };
    check_media(c.parts, "content-type", false).and(check_media(c.parts, accept, true))?;
    let body = &c.rec.body;
    if !body.is_object() {
        return Err(if c.raw.is_empty() || !body.is_null() {
            "body: must be a JSON object"
        } else {
            "body: malformed JSON"
        }
        .to_owned());
    }
    Ok(())
}

/// Answers an embedding model's request (never streamed).
async fn embed_answer(c: &Invoke<'_>, family: embed::Family, stream: bool) -> Answer {
    if stream {
        return fail("The model is unsupported for streaming.");
    }
    let e = match embed::answer(family, &c.rec.body) {
        Ok(e) => e,
        Err(m) => return fail(m),
    };
    // Embeddings answer no tokens: they are charged their input only.
    if let Err(err) = c.shared.limits.admit(c.model_id, e.input_tokens, 0) {
        return Answer::error(Listener::Bedrock, &err);
    }
    tokio::time::sleep(c.shared.latency().for_request(c.rec)).await;
    let ans = unary(
        Bytes::from(e.body.to_string()),
        c.conn,
        c.faults.reset_after_headers,
    );
    with_usage(ans, e.input_tokens, 0, c.started)
}

/// Returns the reply's blocks in Anthropic's shape (a reasoning block without a signature gets
/// the server's own; cited text is text; images and tool results, which an Anthropic message
/// does not answer with, are left out) and their output tokens.
fn reply_content(shared: &Shared, blocks: &[ReplyBlock]) -> (Vec<Value>, u64) {
    let content: Vec<Value> = blocks
        .iter()
        .filter_map(|b| {
            Some(match b {
                ReplyBlock::Text(t) | ReplyBlock::Cited { text: t, .. } => {
                    json!({ "type": "text", "text": t })
                }
                ReplyBlock::ToolUse { id, name, input } => {
                    json!({ "type": "tool_use", "id": id, "name": name, "input": input })
                }
                ReplyBlock::Reasoning { text, signature } => {
                    let signature = signature
                        .clone()
                        .unwrap_or_else(|| surface::sign_reasoning(shared, text));
                    json!({ "type": "thinking", "thinking": text, "signature": signature })
                }
                _ => return None,
            })
        })
        .collect();
    let output_tokens: u64 = content
        .iter()
        .map(|b| match b["type"].as_str() {
            Some("text") => count_words(b["text"].as_str().unwrap_or("")),
            Some("thinking") => count_words(b["thinking"].as_str().unwrap_or("")),
            _ => count_words(&b["input"].to_string()),
        })
        .sum();
    (content, output_tokens)
}

/// Returns Anthropic's message of a reply; `tokens` are the input and output tokens.
fn anthropic_message(
    call: &ConverseCall,
    model_id: &str,
    content: Vec<Value>,
    stop_reason: &str,
    tokens: (u64, u64),
) -> Value {
    let stop_sequence = (stop_reason == "stop_sequence")
        .then(|| {
            let text = call.last_user_text.as_deref().unwrap_or("");
            call.stop_sequences
                .iter()
                .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
                .min()
                .map(|(_, s)| s.clone())
        })
        .flatten();
    json!({
        "id": format!("msg_bdrk_{}", wire::request_id().replace('-', "")),
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": { "input_tokens": tokens.0, "output_tokens": tokens.1 },
    })
}

/// Returns the plain text answer of a reply; `tokens` are the input and output tokens.
fn text_output(content: &[Value], tokens: (u64, u64)) -> Value {
    let text: String = content
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    json!({
        "outputText": text,
        "inputTextTokenCount": tokens.0,
        "outputTextTokenCount": tokens.1,
        "completionReason": "FINISH",
    })
}

/// Returns the stream events of a plain text answer: its pieces, the completion, the metrics.
fn text_events(out: &Value, metrics: Value) -> Vec<Value> {
    let mut events: Vec<Value> = split_pieces(out["outputText"].as_str().unwrap_or(""))
        .into_iter()
        .map(|p| json!({ "outputText": p, "index": 0 }))
        .collect();
    events.push(
        json!({ "outputText": "", "index": 0, "completionReason": "FINISH",
                        "inputTextTokenCount": out["inputTextTokenCount"],
                        "totalOutputTextTokenCount": out["outputTextTokenCount"] }),
    );
    events.push(json!({ "amazon-bedrock-invocationMetrics": metrics }));
    events
}

/// Returns the stream answer of `events` (as `chunk` frames), paced over `generation`, with
/// the request's stream faults.
fn stream_answer(
    conn: &Arc<ConnShared>,
    events: &[Value],
    faults: Faults,
    generation: std::time::Duration,
) -> Answer {
    let frames: Vec<Bytes> = events.iter().map(chunk_frame).collect();
    let mut error = None;
    let steps = if faults.reset_after_headers {
        vec![
            Step::Data(frames.first().cloned().unwrap_or_default()),
            Step::Reset(conn.clone()),
        ]
    } else {
        pace(
            apply_stream_fault(frames, faults.stream, &mut error),
            generation,
        )
    };
    let mut res = wire::response(
        200,
        "application/vnd.amazon.eventstream",
        wire::scripted(steps),
    );
    res.headers_mut().insert(
        "x-amzn-bedrock-content-type",
        HeaderValue::from_static("application/json"),
    );
    Answer::Respond(res, error)
}

/// Returns one `chunk` event whose `bytes` carry the base64 of the JSON payload.
fn chunk_frame(payload: &Value) -> Bytes {
    let encoded = base64::encode(payload.to_string());
    wire::event_frame("chunk", &json!({ "bytes": encoded }))
}

/// Adds the token and latency headers Bedrock sends with an InvokeModel answer.
fn with_usage(answer: Answer, input: u64, output: u64, started: Instant) -> Answer {
    let Answer::Respond(mut res, err) = answer else {
        return answer;
    };
    let h = res.headers_mut();
    h.insert("x-amzn-bedrock-input-token-count", HeaderValue::from(input));
    h.insert(
        "x-amzn-bedrock-output-token-count",
        HeaderValue::from(output),
    );
    h.insert(
        "x-amzn-bedrock-invocation-latency",
        HeaderValue::from(started.elapsed().as_millis() as u64),
    );
    Answer::Respond(res, err)
}

/// Returns the Anthropic stream events of a complete message.
fn anthropic_events(message: &Value, metrics: &Value) -> Vec<Value> {
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut events = vec![json!({ "type": "message_start", "message": start })];
    for (i, block) in message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (head, deltas) = match block["type"].as_str() {
            Some("text") => {
                let pieces = split_pieces(block["text"].as_str().unwrap_or(""));
                let deltas = pieces
                    .into_iter()
                    .map(|p| json!({ "type": "text_delta", "text": p }))
                    .collect();
                (json!({ "type": "text", "text": "" }), deltas)
            }
            Some("thinking") => {
                let pieces = split_pieces(block["thinking"].as_str().unwrap_or(""));
                let mut deltas: Vec<Value> = pieces
                    .into_iter()
                    .map(|p| json!({ "type": "thinking_delta", "thinking": p }))
                    .collect();
                deltas.push(json!({ "type": "signature_delta", "signature": block["signature"] }));
                (json!({ "type": "thinking", "thinking": "" }), deltas)
            }
            _ => {
                let input = block["input"].to_string();
                let mid = input
                    .char_indices()
                    .nth(input.chars().count() / 2)
                    .map_or(0, |(b, _)| b);
                let deltas = [&input[..mid], &input[mid..]]
                    .iter()
                    .map(|p| json!({ "type": "input_json_delta", "partial_json": p }))
                    .collect();
                let head = json!({ "type": "tool_use", "id": block["id"], "name": block["name"],
                                   "input": {} });
                (head, deltas)
            }
        };
        events.push(json!({ "type": "content_block_start", "index": i, "content_block": head }));
        for d in deltas {
            events.push(json!({ "type": "content_block_delta", "index": i, "delta": d }));
        }
        events.push(json!({ "type": "content_block_stop", "index": i }));
    }
    events.push(json!({
        "type": "message_delta",
        "delta": { "stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"] },
        "usage": { "output_tokens": message["usage"]["output_tokens"] },
    }));
    events.push(json!({ "type": "message_stop", "amazon-bedrock-invocationMetrics": metrics }));
    events
}

/// Returns the Converse blocks of an Anthropic `content` (a string or an array of blocks).
fn converse_blocks(content: &Value, path: &str) -> Result<Vec<Value>, String> {
    match content {
        Value::String(s) if s.trim().is_empty() => Err(format!("{path}: must not be empty")),
        Value::String(s) => Ok(vec![json!({ "text": s })]),
        Value::Array(blocks) if !blocks.is_empty() => Ok(blocks
            .iter()
            .filter_map(|b| match b["type"].as_str() {
                Some("text") => Some(json!({ "text": b["text"] })),
                Some("tool_use") => Some(json!({ "toolUse": {
                    "toolUseId": b["id"], "name": b["name"], "input": b["input"] } })),
                Some("tool_result") => {
                    let text = match &b["content"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    Some(json!({ "toolResult": {
                        "toolUseId": b["tool_use_id"], "content": [{ "text": text }] } }))
                }
                _ => None,
            })
            .collect()),
        _ => Err(format!(
            "{path}: must be a non-empty string or array of content blocks"
        )),
    }
}

/// Validates an Anthropic Messages body and returns its Converse equivalent.
pub(crate) fn converse_body(body: &Value) -> Result<Value, String> {
    match body.get("anthropic_version") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => return Err("anthropic_version: required key not found".into()),
        Some(_) => return Err("anthropic_version: must be a string".into()),
    }
    let max_tokens = match body.get("max_tokens") {
        None | Some(Value::Null) => return Err("max_tokens: required key not found".into()),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => return Err("max_tokens: must be an integer >= 1".into()),
        },
    };
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        None | Some(Value::Null) => return Err("messages: required key not found".into()),
        Some(_) => return Err("messages: must be a non-empty array".into()),
    };
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if !matches!(role, "user" | "assistant") {
            return Err(format!("messages.{i}.role: must be user or assistant"));
        }
        if i == 0 && role != "user" {
            return Err("messages.0.role: the first message must use the user role".into());
        }
        let content = converse_blocks(&m["content"], &format!("messages.{i}.content"))?;
        out.push(json!({ "role": role, "content": content }));
    }
    let mut converse = json!({
        "messages": out,
        "inferenceConfig": { "maxTokens": max_tokens },
    });
    if let Some(stops) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        converse["inferenceConfig"]["stopSequences"] = stops.clone();
    }
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(s) => converse["system"] = json!(converse_blocks(s, "system")?),
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| json!({ "toolSpec": { "name": t["name"], "inputSchema": { "json": t["input_schema"] } } }))
            .collect();
        converse["toolConfig"] = json!({ "tools": specs });
    }
    Ok(converse)
}
