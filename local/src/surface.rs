//! The Converse surface beyond plain text: reasoning signatures, prompt-cache accounting,
//! guardrail intervention, structured output, citations and echoed response members.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::fault::ServiceError;
use super::guardrail::Guardrail;
use super::model::count_words;
use super::state::Shared;
use super::wire::MODEL_ERRORS;

/// Returns HMAC-SHA256(key, data).
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Returns the signature of a reasoning text: base64 of its HMAC with the server secret.
pub(crate) fn sign_reasoning(shared: &Shared, text: &str) -> String {
    aws_smithy_types::base64::encode(hmac_sha256(&shared.signing_secret, text.as_bytes()))
}

/// Checks the signature of every reasoning block in the assistant turns, as Anthropic models on
/// Bedrock do; `redactedContent` is accepted unread.
pub(crate) fn check_signatures(shared: &Shared, body: &Value) -> Result<(), String> {
    let messages = body.get("messages").and_then(Value::as_array);
    for (i, message) in messages.into_iter().flatten().enumerate() {
        if message.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let content = message.get("content").and_then(Value::as_array);
        for (j, block) in content.into_iter().flatten().enumerate() {
            let Some(reasoning) = block.pointer("/reasoningContent/reasoningText") else {
                continue;
            };
            let text = reasoning.get("text").and_then(Value::as_str).unwrap_or("");
            match reasoning.get("signature").and_then(Value::as_str) {
                None | Some("") => {
                    return Err(format!(
                        "{MODEL_ERRORS}messages.{i}.content.{j}.thinking.signature: Field required"
                    ));
                }
                Some(sig) if sig != sign_reasoning(shared, text) => {
                    return Err(format!(
                        "{MODEL_ERRORS}messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Returns the reasoning text the fake model "thinks" before answering.
pub(crate) fn reasoning_text(last_user_text: Option<&str>) -> String {
    let words = last_user_text.map_or(0, count_words);
    format!("The user wrote {words} words. I will answer them back.")
}

/// The prompt cache's part of a request's input tokens.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheUsage {
    pub(crate) read: u64,
    pub(crate) write: u64,
    /// The written tokens by time to live (`cacheDetails`): `5m` then `1h`, those above 0.
    pub(crate) write_by_ttl: Vec<(&'static str, u64)>,
}

/// Returns the cache read and write input tokens: the prompt prefix up to each cache point
/// (tools, then system, then messages) is hashed; the longest prefix seen before is read, the
/// rest up to the last cache point is written, each part between two cache points with the
/// time to live of the cache point that ends it (`5m` unless it says `1h`).
pub(crate) fn cache_usage(shared: &Shared, model_id: &str, body: &Value) -> CacheUsage {
    let mut prefix = Sha256::new().chain_update(model_id.as_bytes());
    let mut tokens = 0;
    let mut points: Vec<([u8; 32], u64, &'static str)> = Vec::new();
    let mut visit = |role: &str, block: &Value| {
        if let Some(c) = block.get("cachePoint").filter(|c| !c.is_null()) {
            let ttl = match c.get("ttl").and_then(Value::as_str) {
                Some("1h") => "1h",
                _ => "5m",
            };
            points.push((prefix.clone().finalize().into(), tokens, ttl));
            return;
        }
        prefix.update(role.as_bytes());
        prefix.update(block.to_string().as_bytes());
        tokens += block
            .get("text")
            .and_then(Value::as_str)
            .map_or(0, count_words);
    };
    let list = |p: &str| body.pointer(p).and_then(Value::as_array).cloned();
    for tool in list("/toolConfig/tools").into_iter().flatten() {
        visit("tool", &tool);
    }
    for block in list("/system").into_iter().flatten() {
        visit("system", &block);
    }
    for message in list("/messages").into_iter().flatten() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        for block in message
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            visit(role, block);
        }
    }
    let Some(&(_, last, _)) = points.last() else {
        return CacheUsage::default();
    };
    let hashes: Vec<[u8; 32]> = points.iter().map(|(h, ..)| *h).collect();
    let read = shared.cache_lookup(&hashes).map_or(0, |k| points[k].1);
    let mut by_ttl = [("5m", 0), ("1h", 0)];
    let mut start = read;
    for &(_, end, ttl) in &points {
        if end > start {
            let slot = usize::from(ttl == "1h");
            by_ttl[slot].1 += end - start;
            start = end;
        }
    }
    CacheUsage {
        read,
        write: last - read,
        write_by_ttl: by_ttl.into_iter().filter(|(_, n)| *n > 0).collect(),
    }
}

/// Describes a guardrail's intervention.
pub(crate) struct Intervention {
    pub(crate) guardrail: Guardrail,
    /// The trace object (`trace.guardrail`), if the request enabled the trace.
    pub(crate) trace: Option<Value>,
}

/// Returns the intervention of the guardrail a request names, if its trigger is in the last
/// user message, or the error for an unknown guardrail.
pub(crate) fn guardrail_check(
    shared: &Shared,
    body: &Value,
    last_user_text: Option<&str>,
) -> Result<Option<Intervention>, ServiceError> {
    let Some(config) = body.get("guardrailConfig").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let id = config
        .get("guardrailIdentifier")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = config
        .get("guardrailVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(guardrail) = shared.guardrails().into_iter().find(|g| g.named_by(id)) else {
        return Err(ServiceError::Validation(
            "The provided guardrail identifier is invalid.".to_owned(),
        ));
    };
    if version != "DRAFT" && version != guardrail.version {
        return Err(ServiceError::Validation(
            "The provided guardrail version is invalid.".to_owned(),
        ));
    }
    if !last_user_text.is_some_and(|t| guardrail.triggered_by(t)) {
        return Ok(None);
    }
    let traced = matches!(
        config.get("trace").and_then(Value::as_str),
        Some("enabled" | "enabled_full")
    );
    let trace = traced.then(|| {
        json!({ "guardrail": {
            "inputAssessment": { guardrail.id.clone(): {
                "wordPolicy": {
                    "customWords": [{
                        "match": guardrail.trigger_word, "action": "BLOCKED", "detected": true,
                    }],
                    "managedWordLists": [],
                },
                "invocationMetrics": {
                    "guardrailProcessingLatency": 1,
                    "usage": { "wordPolicyUnits": 1 },
                    "guardrailCoverage": { "textCharacters": {
                        "guarded": last_user_text.map_or(0, |t| t.chars().count()),
                        "total": last_user_text.map_or(0, |t| t.chars().count()),
                    } },
                },
            } },
            "actionReason": "Guardrail blocked.",
        } })
    });
    Ok(Some(Intervention { guardrail, trace }))
}

/// Returns the JSON schema `outputConfig.textFormat` asks the text to follow, if any.
pub(crate) fn output_schema(body: &Value) -> Option<Value> {
    body.pointer("/outputConfig/textFormat/structure/jsonSchema/schema")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Returns a minimal instance of a JSON schema: objects with their required properties,
/// `const`, the first `enum` value or `anyOf`/`oneOf` branch, local `$ref`s followed.
pub(crate) fn schema_instance(root: &Value) -> Value {
    instance(root, root, 0)
}

fn instance(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > 32 {
        return Value::Null;
    }
    let next = |s: &Value| instance(s, root, depth + 1);
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r.strip_prefix('#').and_then(|p| root.pointer(p));
        return target.map_or(Value::Null, next);
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return next(first);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    let min = |k: &str| schema.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    match kind {
        "object" => {
            let props = schema.get("properties").and_then(Value::as_object);
            let mut out = Map::new();
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let prop = props.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                out.insert(name.to_owned(), next(prop));
            }
            Value::Object(out)
        }
        "array" => {
            let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = schema.get("items").unwrap_or(&Value::Null);
            Value::Array((0..n.min(64)).map(|_| next(item)).collect())
        }
        "string" => {
            let n = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            Value::String("x".repeat(usize::try_from(n.min(4096)).unwrap_or(0)))
        }
        "integer" => json!(min("minimum").ceil() as i64),
        "number" => json!(min("minimum")),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

/// Returns the citation of the first document with citations enabled in the last user message:
/// its title and a character location over the start of its text.
pub(crate) fn citation(body: &Value) -> Option<Value> {
    let last_user = body
        .get("messages")
        .and_then(Value::as_array)?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let documents = last_user
        .get("content")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|b| b.get("document"));
    for (index, doc) in documents.enumerate() {
        if doc.pointer("/citations/enabled").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let source = doc.get("source");
        let text = source
            .and_then(|s| s.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                let texts: Vec<&str> = source?
                    .get("content")?
                    .as_array()?
                    .iter()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect();
                Some(texts.join("\n"))
            })
            .unwrap_or_default();
        let quoted: String = text.chars().take(100).collect();
        return Some(json!({
            "title": doc.get("name").and_then(Value::as_str).unwrap_or("document"),
            "sourceContent": [{ "text": quoted }],
            "location": { "documentChar": {
                "documentIndex": index, "start": 0, "end": quoted.chars().count(),
            } },
        }));
    }
    None
}

/// Returns `additionalModelResponseFields` for the requested paths this server knows
/// (`/stop_sequence`: the stop sequence that ended the answer, or null); unknown paths are
/// ignored.
pub(crate) fn response_fields(body: &Value, stop_reason: &str, full_text: &str) -> Option<Value> {
    let paths = body
        .get("additionalModelResponseFieldPaths")
        .and_then(Value::as_array)?;
    let mut out = Map::new();
    for path in paths.iter().filter_map(Value::as_str) {
        if path == "/stop_sequence" {
            let seq = (stop_reason == "stop_sequence")
                .then(|| {
                    body.pointer("/inferenceConfig/stopSequences")
                        .and_then(Value::as_array)?
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .filter_map(|s| full_text.find(s).map(|at| (at, s)))
                        .min()
                        .map(|(_, s)| s.to_owned())
                })
                .flatten();
            out.insert("stop_sequence".to_owned(), json!(seq));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Returns the words of a Converse content block (text, reasoning, citations, tool input, tool
/// result texts and JSON); an image counts none.
pub(crate) fn block_tokens(block: &Value) -> u64 {
    if let Some(t) = block.get("text").and_then(Value::as_str) {
        return count_words(t);
    }
    if let Some(t) = block
        .pointer("/reasoningContent/reasoningText/text")
        .and_then(Value::as_str)
    {
        return count_words(t);
    }
    if let Some(content) = block
        .pointer("/citationsContent/content")
        .and_then(Value::as_array)
    {
        return content
            .iter()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .map(count_words)
            .sum();
    }
    if let Some(content) = block
        .pointer("/toolResult/content")
        .and_then(Value::as_array)
    {
        return content
            .iter()
            .map(|c| match c.get("text").and_then(Value::as_str) {
                Some(t) => count_words(t),
                None => c.get("json").map_or(0, |j| count_words(&j.to_string())),
            })
            .sum();
    }
    block
        .pointer("/toolUse/input")
        .map_or(0, |i| count_words(&i.to_string()).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn schema_instances_are_minimal() {
        let schema = json!({
            "type": "object",
            "required": ["name", "age", "tags", "kind", "inner", "ok"],
            "properties": {
                "name": { "type": "string" },
                "age": { "type": "integer", "minimum": 3 },
                "tags": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                "kind": { "enum": ["a", "b"] },
                "inner": { "$ref": "#/$defs/Inner" },
                "ok": { "type": "boolean" },
                "optional": { "type": "string" },
            },
            "$defs": { "Inner": { "type": "object", "required": ["x"],
                                  "properties": { "x": { "type": ["number", "null"] } } } },
        });
        assert_eq!(
            schema_instance(&schema),
            json!({ "name": "", "age": 3, "tags": [""], "kind": "a",
                    "inner": { "x": 0.0 }, "ok": false })
        );
    }
}
