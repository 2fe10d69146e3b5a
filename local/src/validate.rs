//! Request validation as the service does it: a `400 ValidationException` whose message starts
//! with the field path (Bedrock's own checks), or with `The model returned the following errors: `
//! (the checks Anthropic models run behind Bedrock).

use serde_json::Value;

use super::model::count_words;
use super::options;

use super::wire::MODEL_ERRORS;

/// Returns whether a model id is plausible: 1..=2048 characters of the id/ARN charset.
pub(crate) fn valid_model_id(id: &str) -> bool {
    (1..=2048).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '/'))
}

/// Returns whether a model id is a Prompt Management ARN (`arn:aws:bedrock:REGION:ACCOUNT:prompt/ID`).
pub(crate) fn is_prompt_arn(id: &str) -> bool {
    let parts: Vec<&str> = id.splitn(6, ':').collect();
    matches!(parts.as_slice(), [arn, partition, "bedrock", region, account, resource]
        if *arn == "arn"
            && partition.starts_with("aws")
            && !region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("prompt/").is_some_and(|r| !r.is_empty()))
}

/// Returns the words of every text in messages and system prompts.
pub(crate) fn request_words(body: &Value) -> u64 {
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
pub(crate) fn count_tokens(body: &Value, model_id: &str) -> Result<u64, String> {
    let input = body
        .get("input")
        .and_then(Value::as_object)
        .ok_or("input: member must not be null")?;
    if input.len() != 1 {
        return Err("input: must have exactly one of converse, invokeModel".to_owned());
    }
    if let Some(converse) = input.get("converse") {
        validate_converse(converse, model_id, false).map_err(|m| {
            if m.starts_with(MODEL_ERRORS) {
                m
            } else {
                format!("input.converse.{m}")
            }
        })?;
        return Ok(request_words(converse));
    }
    match input
        .get("invokeModel")
        .and_then(|m| m.get("body"))
        .and_then(Value::as_str)
    {
        Some(b) => Ok(invoke_body_words(b)),
        None => Err("input.invokeModel.body: member must not be null".to_owned()),
    }
}

/// Returns the words of an InvokeModel body as CountTokens receives it (a base64 blob): the
/// words of every string in its JSON but the format fields, or of its text if not JSON.
fn invoke_body_words(b64: &str) -> u64 {
    const SKIP: [&str; 9] = [
        "anthropic_version",
        "role",
        "type",
        "id",
        "tool_use_id",
        "input_type",
        "truncate",
        "embedding_types",
        "embeddingTypes",
    ];
    fn walk(v: &Value) -> u64 {
        match v {
            Value::String(s) => count_words(s),
            Value::Array(a) => a.iter().map(walk).sum(),
            Value::Object(o) => o
                .iter()
                .filter(|(k, _)| !SKIP.contains(&k.as_str()))
                .map(|(_, v)| walk(v))
                .sum(),
            _ => 0,
        }
    }
    let bytes = aws_smithy_types::base64::decode(b64).unwrap_or_else(|_| b64.as_bytes().to_vec());
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => walk(&v),
        Err(_) => count_words(&String::from_utf8_lossy(&bytes)),
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
    if let Some(cache) = obj.get("cachePoint") {
        options::validate_cache_point(cache, &format!("{path}.cachePoint"))?;
    }
    super::content::validate_kind(obj, path)
}

/// Checks a Converse (`stream` false) or ConverseStream body as the service does; the error
/// names the field.
pub(crate) fn validate_converse(body: &Value, model_id: &str, stream: bool) -> Result<(), String> {
    if !body.is_object() {
        return Err("body: must be a JSON object".to_owned());
    }
    let prompt = is_prompt_arn(model_id);
    if prompt {
        options::validate_prompt_request(body)?;
    } else if body.get("promptVariables").is_some_and(|v| !v.is_null()) {
        return Err(
            "promptVariables: only allowed when modelId is a prompt ARN \
             (arn:aws:bedrock:REGION:ACCOUNT:prompt/ID)"
                .to_owned(),
        );
    }
    let messages = body.get("messages").filter(|m| !m.is_null());
    match messages.map(Value::as_array) {
        None if prompt => {}
        None | Some(None) => return Err("messages: member must not be null".to_owned()),
        Some(Some(messages)) => {
            validate_messages(messages)?;
            super::tools::validate_tool_history(body)?;
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
    if stream && body.get("toolConfig").is_some_and(|t| !t.is_null()) && !streams_tool_use(model_id)
    {
        return Err("This model doesn't support tool use in streaming mode.".to_owned());
    }
    options::validate_options(body, stream)
}

/// Returns false for the model families Bedrock serves tool use to in Converse only, not in
/// ConverseStream (its model-features table: Meta Llama, Mistral AI, Cohere Command R, AI21
/// Jamba), after any cross-region profile prefix.
fn streams_tool_use(model_id: &str) -> bool {
    let base = [
        "us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.",
    ]
    .iter()
    .find_map(|p| model_id.strip_prefix(p))
    .unwrap_or(model_id);
    !["meta.llama", "mistral.", "cohere.command-r", "ai21.jamba"]
        .iter()
        .any(|p| base.starts_with(p))
}

/// Checks the messages: non-empty, alternating from a user message, valid blocks.
fn validate_messages(messages: &[Value]) -> Result<(), String> {
    if messages.is_empty() {
        return Err("messages: must contain at least one message".to_owned());
    }
    let mut previous = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        match role {
            Some("user" | "assistant") => {}
            // Between turns: the tools the conversation may use change (`tools.rs`).
            Some("system") => {
                let content = message.get("content").and_then(Value::as_array);
                let changes = content.filter(|c| !c.is_empty()).is_some_and(|c| {
                    c.iter()
                        .all(|b| b.get("toolAddition").is_some() || b.get("toolRemoval").is_some())
                });
                if !changes {
                    return Err(format!(
                        "messages.{i}.content: a system message may hold only toolAddition and \
                         toolRemoval blocks"
                    ));
                }
                continue;
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: must be one of user, assistant, system"
                ));
            }
        }
        if previous.is_none() && role != Some("user") {
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
    use serde_json::json;

    fn msg(role: &str, text: &str) -> Value {
        json!({ "role": role, "content": [{ "text": text }] })
    }

    #[test]
    fn validation_names_fields() {
        let ok = json!({ "messages": [msg("user", "hi")] });
        assert_eq!(validate_converse(&ok, "m", false), Ok(()));
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
            let err = validate_converse(&body, "m", false).expect_err(field);
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
        assert!(is_prompt_arn(
            "arn:aws:bedrock:us-west-2:123456789012:prompt/PROMPT12AB:1"
        ));
        assert!(!is_prompt_arn(
            "arn:aws:bedrock:us-west-2:123456789012:inference-profile/x"
        ));
    }
}
