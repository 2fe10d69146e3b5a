//! The Bedrock Runtime listener: routing, authentication (SigV4 or API key), Converse,
//! ConverseStream, CountTokens (InvokeModel and its stream in `invoke`, the operations that
//! name no model in `plain`).

use std::time::Instant;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::blocks::{block_json, stream_frames};
use super::conn::ConnShared;
use super::fault::{Fault, ServiceError};
use super::limits::converse_max_tokens;
use super::model::{ConverseCall, ModelReply};
use super::options::{cache_point_count, thinking_budget};
use super::record::{Listener, Operation, RecordedRequest};
use super::reply::{apply_stream_fault, pace, unary};
use super::sigv4::{self, Expected};
use super::state::{Answer, Shared};
use super::validate::{count_tokens, request_words, valid_model_id, validate_converse};
use super::wire;
use super::{invoke, surface};

/// The message of a refused Bedrock API key, as Bedrock words it.
const INVALID_API_KEY: &str = "Authentication failed: Please make sure your API Key is valid.";

/// The message of an invalid model id, as Bedrock words it.
pub(crate) const INVALID_MODEL_ID: &str = "The provided model identifier is invalid.";

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
                (&Method::POST, "invoke") => Operation::InvokeModel,
                (&Method::POST, "invoke-with-response-stream") => {
                    Operation::InvokeModelWithResponseStream
                }
                (&Method::POST, "invoke-with-bidirectional-stream") => {
                    Operation::InvokeModelWithBidirectionalStream
                }
                _ => Operation::Other,
            };
            (op, model)
        }
        ["", "async-invoke"] if parts.method == Method::GET => (Operation::ListAsyncInvokes, None),
        ["", "async-invoke"] if parts.method == Method::POST => (Operation::StartAsyncInvoke, None),
        ["", "guardrail-checks", "invoke"] if parts.method == Method::POST => {
            (Operation::InvokeGuardrailChecks, None)
        }
        ["", "guardrail", id, "version", version, "apply"] if parts.method == Method::POST => (
            Operation::ApplyGuardrail,
            wire::percent_decode(id, false)
                .zip(wire::percent_decode(version, false))
                .map(|(id, version)| format!("{id}/{version}")),
        ),
        ["", "async-invoke", arn] if parts.method == Method::GET => {
            (Operation::GetAsyncInvoke, wire::percent_decode(arn, false))
        }
        _ => (Operation::Other, None),
    }
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
    if let Err(err) = authenticate(shared, parts, body, rec) {
        return fail(err);
    }
    let faults = match take_faults(shared, rec).await {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let job = super::plain::without_model(shared, parts, rec);
    if let Some(answer) = job {
        return match answer {
            Ok(body) => Answer::Respond(wire::json_response(200, &body), None),
            Err(msg) => fail(ServiceError::Validation(msg)),
        };
    }
    let model_id = match rec.model_id.clone() {
        Some(id) if valid_model_id(&id) => id,
        _ => return fail(ServiceError::Validation(INVALID_MODEL_ID.to_owned())),
    };
    match rec.operation {
        Operation::InvokeModel | Operation::InvokeModelWithResponseStream => {
            invoke::handle(invoke::Invoke {
                shared,
                conn,
                parts,
                raw: body,
                rec,
                model_id: &model_id,
                faults,
                started,
            })
            .await
        }
        Operation::CountTokens => {
            let tokens = match count_tokens(&rec.body, &model_id) {
                Ok(n) => n,
                Err(msg) => return fail(ServiceError::Validation(msg)),
            };
            tokio::time::sleep(shared.latency().for_request(rec)).await;
            let bytes = Bytes::from(json!({ "inputTokens": tokens }).to_string());
            unary(bytes, conn, faults.reset_after_headers)
        }
        _ => {
            let to = Converse {
                shared,
                conn,
                rec,
                model_id,
                started,
            };
            converse(to, faults).await
        }
    }
}

/// Returns the error answer of `err`.
pub(crate) fn fail(err: ServiceError) -> Answer {
    Answer::error(Listener::Bedrock, &err)
}

/// Refuses an unknown operation, then checks the request's API key or SigV4 signature.
pub(crate) fn authenticate(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    rec: &RecordedRequest,
) -> Result<(), ServiceError> {
    if rec.operation == Operation::Other {
        return Err(ServiceError::custom(
            404,
            "UnknownOperationException",
            format!("unknown operation: {} {}", parts.method, parts.uri.path()),
        ));
    }
    let expected = Expected {
        event_stream: rec.operation == Operation::InvokeModelWithBidirectionalStream,
        access_key_id: &shared.access_key_id,
        secret_access_key: &shared.secret_access_key,
        region: &shared.region,
        service: "bedrock",
    };
    match sigv4::bearer_key(parts) {
        Some(key) if key != shared.api_key => {
            Err(ServiceError::AccessDenied(INVALID_API_KEY.to_owned()))
        }
        Some(_) => Ok(()),
        None => sigv4::verify(parts, body, &expected),
    }
}

/// Takes the request's fault: one that answers now (an error, a reset or a close before the
/// headers) is the error; a delay is slept; the others are left to the answer.
pub(crate) async fn take_faults(
    shared: &Shared,
    rec: &RecordedRequest,
) -> Result<invoke::Faults, Answer> {
    let mut faults = invoke::Faults {
        reset_after_headers: false,
        stream: None,
    };
    match shared.take_fault(rec) {
        None => {}
        Some(Fault::Error(err)) => return Err(fail(err)),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetBeforeHeaders) => return Err(Answer::Reset),
        Some(Fault::CloseBeforeHeaders) => return Err(Answer::Close),
        Some(Fault::ResetAfterHeaders) => faults.reset_after_headers = true,
        Some(f) => faults.stream = Some(f),
    }
    Ok(faults)
}

/// A Converse or ConverseStream request to answer (authenticated, model id valid).
struct Converse<'a> {
    shared: &'a Shared,
    conn: &'a std::sync::Arc<ConnShared>,
    rec: &'a RecordedRequest,
    model_id: String,
    started: Instant,
}

/// What a Converse answer carries, in either shape.
struct ConverseOut {
    content: Vec<Value>,
    stop_reason: String,
    usage: Value,
    metrics: Value,
    /// Top-level members echoed (`performanceConfig`, `serviceTier`) and the guardrail's trace.
    extra: serde_json::Map<String, Value>,
    /// The additional model response fields asked for.
    fields: Option<Value>,
}

/// Answers a Converse or ConverseStream request: validation, guardrail, limits, the model's
/// answer, then the unary or stream shape.
// Long because the answer's figures (guardrail, tokens, cache, usage) follow the service's order in one pass.
async fn converse(c: Converse<'_>, faults: invoke::Faults) -> Answer {
    let (shared, rec, model_id) = (c.shared, c.rec, c.model_id.as_str());
    let body = &rec.body;
    let stream = rec.operation == Operation::ConverseStream;
    if let Err(msg) = validate_converse(body, model_id, stream)
        .and_then(|()| surface::check_signatures(shared, body))
    {
        return fail(ServiceError::Validation(msg));
    }
    let call = ConverseCall::from_body(model_id.to_owned(), body.clone());
    let last_user = call.last_user_text.as_deref();
    let intervention = match surface::guardrail_check(shared, body, last_user) {
        Ok(i) => i,
        Err(err) => return fail(err),
    };
    let input_tokens = request_words(body);
    let ticket = match shared
        .limits
        .admit(model_id, input_tokens, converse_max_tokens(body))
    {
        Ok(t) => t,
        Err(err) => return fail(err),
    };
    let (content, stop_reason, trace) = match intervention {
        Some(i) => {
            let blocked = vec![json!({ "text": i.guardrail.blocked_message })];
            (blocked, "guardrail_intervened".to_owned(), i.trace)
        }
        None => {
            let (content, stop_reason) = model_answer(shared, &call);
            (content, stop_reason, None)
        }
    };
    let output_tokens = if trace.is_some() || stop_reason == "guardrail_intervened" {
        0
    } else {
        content.iter().map(surface::block_tokens).sum()
    };
    let cache = surface::cache_usage(shared, model_id, body);
    let (cache_read, cache_write) = (cache.read, cache.write);
    let uncached = input_tokens.saturating_sub(cache_read + cache_write);
    shared
        .limits
        .settle(ticket, uncached, cache_write, output_tokens);
    tokio::time::sleep(shared.latency().for_request(rec)).await;
    let generation = shared.generation().for_request(rec);
    if !stream {
        // A unary answer's headers wait for the whole generation.
        tokio::time::sleep(generation).await;
    }
    let mut usage = json!({
        "inputTokens": input_tokens.saturating_sub(cache_read + cache_write),
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    });
    if cache_point_count(body) > 0 {
        usage["cacheReadInputTokens"] = json!(cache_read);
        usage["cacheWriteInputTokens"] = json!(cache_write);
        let details: Vec<Value> = cache
            .write_by_ttl
            .iter()
            .map(|(ttl, n)| json!({ "ttl": ttl, "inputTokens": n }))
            .collect();
        if !details.is_empty() {
            usage["cacheDetails"] = json!(details);
        }
    }
    let metrics = json!({ "latencyMs": c.started.elapsed().as_millis() as u64 });
    let mut extra = serde_json::Map::new();
    for member in ["performanceConfig", "serviceTier"] {
        if let Some(v) = body.get(member).filter(|v| !v.is_null()) {
            extra.insert(member.to_owned(), v.clone());
        }
    }
    let words = last_user.map_or(0, super::model::count_words);
    let trace = match super::router::routed_model(model_id, words) {
        Some(invoked) => Some(super::router::add_trace(trace, &invoked)),
        None => trace,
    };
    if let Some(t) = trace {
        extra.insert("trace".to_owned(), t);
    }
    let fields = surface::response_fields(body, &stop_reason, last_user.unwrap_or(""));
    let out = ConverseOut {
        content,
        stop_reason,
        usage,
        metrics,
        extra,
        fields,
    };
    if rec.operation == Operation::Converse {
        return converse_unary(out, c.conn, faults.reset_after_headers);
    }
    converse_stream(out, c.conn, faults, generation)
}

/// Returns the unary Converse answer.
fn converse_unary(
    out: ConverseOut,
    conn: &std::sync::Arc<ConnShared>,
    reset_after_headers: bool,
) -> Answer {
    let mut json = json!({
        "output": { "message": { "role": "assistant", "content": out.content } },
        "stopReason": out.stop_reason,
        "usage": out.usage,
        "metrics": out.metrics,
    });
    if let Some(f) = out.fields {
        json["additionalModelResponseFields"] = f;
    }
    for (k, v) in out.extra {
        json[k.as_str()] = v;
    }
    unary(Bytes::from(json.to_string()), conn, reset_after_headers)
}

/// Returns the ConverseStream answer, paced over `generation`, with the request's stream
/// faults.
fn converse_stream(
    out: ConverseOut,
    conn: &std::sync::Arc<ConnShared>,
    faults: invoke::Faults,
    generation: std::time::Duration,
) -> Answer {
    let mut stop = json!({ "stopReason": out.stop_reason });
    if let Some(f) = out.fields {
        stop["additionalModelResponseFields"] = f;
    }
    let mut metadata = json!({ "usage": out.usage, "metrics": out.metrics });
    for (k, v) in out.extra {
        metadata[k.as_str()] = v;
    }
    let frames = stream_frames(&out.content, &stop, &metadata);
    let mut error = None;
    let steps = if faults.reset_after_headers {
        vec![
            wire::Step::Data(frames.first().cloned().unwrap_or_default()),
            wire::Step::Reset(conn.clone()),
        ]
    } else {
        pace(
            apply_stream_fault(frames, faults.stream, &mut error),
            generation,
        )
    };
    let res = wire::response(
        200,
        "application/vnd.amazon.eventstream",
        wire::scripted(steps),
    );
    Answer::Respond(res, error)
}

/// Returns the model's content blocks (Converse JSON) and stop reason: the responder's reply,
/// a schema instance for structured output (echo responder), a citation over a document with
/// citations enabled, and a signed reasoning block first when thinking is on.
fn model_answer(shared: &Shared, call: &ConverseCall) -> (Vec<Value>, String) {
    let body = &call.body;
    let responder = shared.responder();
    let mut reply = responder.reply(call);
    if responder.is_echo()
        && let Some(schema) = surface::output_schema(body)
    {
        reply = ModelReply::text(surface::schema_instance(&schema).to_string());
    }
    let mut content: Vec<Value> = reply
        .content
        .iter()
        .map(|b| block_json(shared, b))
        .collect();
    if let Some(citation) = surface::citation(body)
        && let Some(block) = content.iter_mut().find(|b| b.get("text").is_some())
    {
        let text = block["text"].take();
        *block = json!({ "citationsContent": {
            "content": [{ "text": text }],
            "citations": [citation],
        } });
    }
    if thinking_budget(body).is_some() {
        let text = surface::reasoning_text(call.last_user_text.as_deref());
        let signature = surface::sign_reasoning(shared, &text);
        content.insert(
            0,
            json!({ "reasoningContent": { "reasoningText": { "text": text, "signature": signature } } }),
        );
    }
    (content, reply.stop_reason)
}
