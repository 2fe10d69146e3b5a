//! The Bedrock Runtime listener: routing, validation, Converse, ConverseStream, CountTokens,
//! ListAsyncInvokes.

use std::time::Instant;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::conn::ConnShared;
use super::fault::{Fault, ServiceError};
use super::model::{ConverseCall, ModelReply, ReplyBlock, count_words, split_pieces};
use super::record::{Listener, Operation, RecordedRequest};
use super::sigv4::{self, Expected};
use super::state::{Answer, Shared};
use super::wire::{self, Step};

/// The message of an invalid model id, as Bedrock words it.
const INVALID_MODEL_ID: &str = "The provided model identifier is invalid.";

/// Returns the operation and decoded model id a request path names.
pub(crate) fn route(parts: &http::request::Parts) -> (Operation, Option<String>) {
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    match segments.as_slice() {
        ["", "model", label, action] => {
            let model = wire::percent_decode(label, false);
            let op = match (&parts.method, *action) {
                (&Method::POST, "converse") => Operation::Converse,
                (&Method::POST, "converse-stream") => Operation::ConverseStream,
                (&Method::POST, "count-tokens") => Operation::CountTokens,
                _ => Operation::Other,
            };
            (op, model)
        }
        ["", "async-invoke"] if parts.method == Method::GET => (Operation::ListAsyncInvokes, None),
        _ => (Operation::Other, None),
    }
}

/// Returns whether a model id is plausible: 1..=2048 characters of the id/ARN charset.
fn valid_model_id(id: &str) -> bool {
    (1..=2048).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '/'))
}

/// Handles one authenticated-or-not Bedrock request.
pub(crate) async fn handle(
    shared: &Shared,
    conn: &std::sync::Arc<ConnShared>,
    parts: &http::request::Parts,
    body: &[u8],
    rec: &RecordedRequest,
    started: Instant,
) -> Answer {
    let fail = |err: ServiceError| Answer::error(Listener::Bedrock, &err);
    if rec.operation == Operation::Other {
        return fail(ServiceError::custom(
            404,
            "UnknownOperationException",
            format!("unknown operation: {} {}", parts.method, parts.uri.path()),
        ));
    }
    let expected = Expected {
        access_key_id: &shared.access_key_id,
        secret_access_key: &shared.secret_access_key,
        region: &shared.region,
        service: "bedrock",
    };
    if let Err(err) = sigv4::verify(parts, body, &expected) {
        return fail(err);
    }

    let mut reset_after_headers = false;
    let mut stream_fault = None;
    match shared.take_fault(rec) {
        None => {}
        Some(Fault::Error(err)) => return fail(err),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetBeforeHeaders) => return Answer::Reset,
        Some(Fault::CloseBeforeHeaders) => return Answer::Close,
        Some(Fault::ResetAfterHeaders) => reset_after_headers = true,
        Some(f) => stream_fault = Some(f),
    }

    let model_id = match rec.operation {
        Operation::ListAsyncInvokes => {
            let res = wire::json_response(200, &json!({ "asyncInvokeSummaries": [] }));
            return Answer::Respond(res, None);
        }
        _ => match rec.model_id.clone() {
            Some(id) if valid_model_id(&id) => id,
            _ => return fail(ServiceError::Validation(INVALID_MODEL_ID.to_owned())),
        },
    };

    if rec.operation == Operation::CountTokens {
        let tokens = match count_tokens(&rec.body) {
            Ok(n) => n,
            Err(msg) => return fail(ServiceError::Validation(msg)),
        };
        tokio::time::sleep(shared.latency().for_request(rec)).await;
        let bytes = Bytes::from(json!({ "inputTokens": tokens }).to_string());
        return unary(bytes, conn, reset_after_headers);
    }

    if let Err(msg) = validate_converse(&rec.body) {
        return fail(ServiceError::Validation(msg));
    }
    let input_tokens = request_words(&rec.body);
    let call = ConverseCall::from_body(model_id, rec.body.clone());
    let reply = shared.responder().reply(&call);
    tokio::time::sleep(shared.latency().for_request(rec)).await;
    let usage = usage(input_tokens, reply.output_tokens());
    let metrics = json!({ "latencyMs": started.elapsed().as_millis() as u64 });

    if rec.operation == Operation::Converse {
        let content: Vec<Value> = reply.content.iter().map(block_json).collect();
        let body = json!({
            "output": { "message": { "role": "assistant", "content": content } },
            "stopReason": reply.stop_reason,
            "usage": usage,
            "metrics": metrics,
        });
        return unary(Bytes::from(body.to_string()), conn, reset_after_headers);
    }

    let frames = stream_frames(&reply, &usage, &metrics);
    let mut error = None;
    let steps = if reset_after_headers {
        vec![
            Step::Data(frames.first().cloned().unwrap_or_default()),
            Step::Reset(conn.clone()),
        ]
    } else {
        apply_stream_fault(frames, stream_fault, &mut error)
    };
    let res = wire::response(
        200,
        "application/vnd.amazon.eventstream",
        wire::scripted(steps),
    );
    Answer::Respond(res, error)
}

/// Returns a 200 JSON answer, or headers and half the body followed by a reset.
fn unary(bytes: Bytes, conn: &std::sync::Arc<ConnShared>, reset_after_headers: bool) -> Answer {
    if !reset_after_headers {
        return Answer::Respond(
            wire::response(200, "application/json", wire::full(bytes)),
            None,
        );
    }
    let len = bytes.len();
    let steps = vec![
        Step::Data(bytes.slice(..len / 2)),
        Step::Reset(conn.clone()),
    ];
    let mut res = wire::response(200, "application/json", wire::scripted(steps));
    res.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    Answer::Respond(res, None)
}

/// Returns the steps of a stream body with a stream fault applied.
fn apply_stream_fault(
    frames: Vec<Bytes>,
    fault: Option<Fault>,
    error: &mut Option<String>,
) -> Vec<Step> {
    // The frames before messageStop (the last two frames are messageStop and metadata).
    let before_stop = frames.len().saturating_sub(2);
    let data = |frames: &[Bytes]| frames.iter().cloned().map(Step::Data).collect::<Vec<_>>();
    match fault {
        Some(Fault::StreamStall {
            after_events,
            duration,
        }) => {
            let n = after_events.min(frames.len());
            let mut steps = data(&frames[..n]);
            steps.push(Step::Sleep(duration));
            steps.extend(data(&frames[n..]));
            steps
        }
        Some(Fault::StreamException {
            after_events,
            error: err,
        }) => {
            let n = after_events.min(before_stop);
            let mut steps = data(&frames[..n]);
            steps.push(Step::Data(wire::exception_frame(&err)));
            *error = Some(err.name().to_owned());
            steps
        }
        Some(Fault::StreamCut { after_events }) => data(&frames[..after_events.min(before_stop)]),
        _ => data(&frames),
    }
}

/// Returns the usage object.
fn usage(input: u64, output: u64) -> Value {
    json!({ "inputTokens": input, "outputTokens": output, "totalTokens": input + output })
}

/// Returns the Converse JSON of one reply block.
fn block_json(block: &ReplyBlock) -> Value {
    match block {
        ReplyBlock::Text(t) => json!({ "text": t }),
        ReplyBlock::ToolUse { id, name, input } => {
            json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } })
        }
        ReplyBlock::Reasoning { text, signature } => {
            let mut reasoning = json!({ "text": text });
            if let Some(s) = signature {
                reasoning["signature"] = json!(s);
            }
            json!({ "reasoningContent": { "reasoningText": reasoning } })
        }
    }
}

/// Returns the event frames of a reply: messageStart, blocks, messageStop, metadata.
fn stream_frames(reply: &ModelReply, usage: &Value, metrics: &Value) -> Vec<Bytes> {
    let mut frames = vec![wire::event_frame(
        "messageStart",
        &json!({ "role": "assistant" }),
    )];
    for (i, block) in reply.content.iter().enumerate() {
        match block {
            ReplyBlock::Text(text) => {
                for piece in split_pieces(text) {
                    frames.push(wire::event_frame(
                        "contentBlockDelta",
                        &json!({ "contentBlockIndex": i, "delta": { "text": piece } }),
                    ));
                }
            }
            ReplyBlock::Reasoning { text, signature } => {
                let pieces = split_pieces(text).into_iter().map(|p| json!({ "text": p }));
                let sig = signature.iter().map(|s| json!({ "signature": s }));
                for delta in pieces.chain(sig) {
                    frames.push(wire::event_frame(
                        "contentBlockDelta",
                        &json!({ "contentBlockIndex": i, "delta": { "reasoningContent": delta } }),
                    ));
                }
            }
            ReplyBlock::ToolUse { id, name, input } => {
                frames.push(wire::event_frame(
                    "contentBlockStart",
                    &json!({ "contentBlockIndex": i,
                             "start": { "toolUse": { "toolUseId": id, "name": name } } }),
                ));
                let json = input.to_string();
                let mid = json
                    .char_indices()
                    .nth(json.chars().count() / 2)
                    .map_or(0, |(b, _)| b);
                for piece in [&json[..mid], &json[mid..]] {
                    frames.push(wire::event_frame(
                        "contentBlockDelta",
                        &json!({ "contentBlockIndex": i, "delta": { "toolUse": { "input": piece } } }),
                    ));
                }
            }
        }
        frames.push(wire::event_frame(
            "contentBlockStop",
            &json!({ "contentBlockIndex": i }),
        ));
    }
    frames.push(wire::event_frame(
        "messageStop",
        &json!({ "stopReason": reply.stop_reason }),
    ));
    frames.push(wire::event_frame(
        "metadata",
        &json!({ "usage": usage, "metrics": metrics }),
    ));
    frames
}

/// Returns the words of every text in messages and system prompts.
fn request_words(body: &Value) -> u64 {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten();
    let system = body
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    messages
        .chain(system)
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(count_words)
        .sum()
}

/// Returns the CountTokens answer for a body, or a validation message naming the field.
fn count_tokens(body: &Value) -> Result<u64, String> {
    let input = body
        .get("input")
        .and_then(Value::as_object)
        .ok_or("input: member must not be null")?;
    if input.len() != 1 {
        return Err("input: must have exactly one of converse, invokeModel".to_owned());
    }
    if let Some(converse) = input.get("converse") {
        validate_converse(converse).map_err(|m| format!("input.converse.{m}"))?;
        return Ok(request_words(converse));
    }
    match input
        .get("invokeModel")
        .and_then(|m| m.get("body"))
        .and_then(Value::as_str)
    {
        Some(b) => Ok(count_words(b)),
        None => Err("input.invokeModel.body: member must not be null".to_owned()),
    }
}

/// Checks a content block: exactly one member, non-blank text.
fn validate_block(block: &Value, path: &str) -> Result<(), String> {
    let Some(obj) = block.as_object() else {
        return Err(format!("{path}: must be an object"));
    };
    if obj.values().filter(|v| !v.is_null()).count() != 1 {
        return Err(format!(
            "{path}: a content block must have exactly one member"
        ));
    }
    if let Some(text) = obj.get("text") {
        match text.as_str() {
            Some(t) if !t.trim().is_empty() => {}
            _ => return Err(format!("{path}.text: must not be blank")),
        }
    }
    Ok(())
}

/// Checks a Converse body as the service does; the error names the field.
pub(crate) fn validate_converse(body: &Value) -> Result<(), String> {
    if !body.is_object() {
        return Err("body: must be a JSON object".to_owned());
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err("messages: member must not be null".to_owned());
    };
    if messages.is_empty() {
        return Err("messages: must contain at least one message".to_owned());
    }
    let mut previous = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        match role {
            Some("user" | "assistant") => {}
            _ => return Err(format!("messages.{i}.role: must be one of user, assistant")),
        }
        if i == 0 && role != Some("user") {
            return Err("messages.0.role: a conversation must start with a user message".into());
        }
        if previous == role {
            return Err(format!(
                "messages.{i}.role: roles must alternate between user and assistant"
            ));
        }
        previous = role;
        let content = message.get("content").and_then(Value::as_array);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            return Err(format!(
                "messages.{i}.content: must contain at least one content block"
            ));
        };
        for (j, block) in content.iter().enumerate() {
            validate_block(block, &format!("messages.{i}.content.{j}"))?;
        }
    }
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        let Some(system) = system.as_array() else {
            return Err("system: must be a list".to_owned());
        };
        for (k, block) in system.iter().enumerate() {
            validate_block(block, &format!("system.{k}"))?;
        }
    }
    if let Some(config) = body.get("inferenceConfig").filter(|c| !c.is_null()) {
        validate_inference(config)?;
    }
    Ok(())
}

/// Checks `inferenceConfig` ranges.
fn validate_inference(config: &Value) -> Result<(), String> {
    if let Some(max) = config.get("maxTokens").filter(|v| !v.is_null())
        && max.as_i64().is_none_or(|m| m < 1)
    {
        return Err("inferenceConfig.maxTokens: must be >= 1".to_owned());
    }
    for field in ["temperature", "topP"] {
        if let Some(v) = config.get(field).filter(|v| !v.is_null())
            && v.as_f64().is_none_or(|x| !(0.0..=1.0).contains(&x))
        {
            return Err(format!("inferenceConfig.{field}: must be between 0 and 1"));
        }
    }
    if let Some(stops) = config.get("stopSequences").filter(|v| !v.is_null()) {
        let Some(stops) = stops.as_array() else {
            return Err("inferenceConfig.stopSequences: must be a list".to_owned());
        };
        if stops.len() > 2500 {
            return Err("inferenceConfig.stopSequences: must have at most 2500 items".to_owned());
        }
        for (k, s) in stops.iter().enumerate() {
            if s.as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "inferenceConfig.stopSequences.{k}: must not be empty"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, text: &str) -> Value {
        json!({ "role": role, "content": [{ "text": text }] })
    }

    #[test]
    fn validation_names_fields() {
        let ok = json!({ "messages": [msg("user", "hi")] });
        assert_eq!(validate_converse(&ok), Ok(()));
        let cases = [
            (json!({ "messages": [] }), "messages:"),
            (
                json!({ "messages": [msg("assistant", "hi")] }),
                "messages.0.role",
            ),
            (
                json!({ "messages": [msg("user", "a"), msg("user", "b")] }),
                "messages.1.role",
            ),
            (
                json!({ "messages": [msg("user", " ")] }),
                "messages.0.content.0.text",
            ),
            (
                json!({ "messages": [{ "role": "user", "content": [{ "text": "a", "image": {} }] }] }),
                "messages.0.content.0:",
            ),
            (
                json!({ "messages": [msg("user", "a")], "inferenceConfig": { "maxTokens": 0 } }),
                "inferenceConfig.maxTokens",
            ),
            (
                json!({ "messages": [msg("user", "a")], "inferenceConfig": { "temperature": 7.0 } }),
                "inferenceConfig.temperature",
            ),
            (
                json!({ "messages": [msg("user", "a")], "inferenceConfig": { "topP": -0.1 } }),
                "inferenceConfig.topP",
            ),
            (
                json!({ "messages": [msg("user", "a")], "inferenceConfig": { "stopSequences": [""] } }),
                "inferenceConfig.stopSequences.0",
            ),
            (
                json!({ "messages": [msg("user", "a")], "system": [{ "text": "" }] }),
                "system.0.text",
            ),
        ];
        for (body, field) in cases {
            let err = validate_converse(&body).expect_err(field);
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn model_ids() {
        assert!(valid_model_id("anthropic.claude-3-haiku-20240307-v1:0"));
        assert!(valid_model_id(
            "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.x.y"
        ));
        assert!(!valid_model_id(""));
        assert!(!valid_model_id("has space"));
        assert!(!valid_model_id(&"a".repeat(2049)));
    }
}
