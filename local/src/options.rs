//! Validation of the optional Converse members: `guardrailConfig`, `requestMetadata`,
//! `performanceConfig`, `serviceTier`, `outputConfig`, `additionalModelRequestFields` (Anthropic
//! thinking, `top_k`), cache points and prompt ARNs.

use serde_json::Value;

use super::wire::MODEL_ERRORS;

/// The `anthropic_beta` flag that lets the thinking budget exceed `maxTokens`.
pub(crate) const INTERLEAVED_THINKING: &str = "interleaved-thinking-2025-05-14";

/// The most cache points a request may hold (Anthropic's limit).
const MAX_CACHE_POINTS: usize = 4;

/// Returns the member unless it is absent or null.
fn member<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|m| !m.is_null())
}

/// Checks that an optional member is one of `allowed`.
fn check_enum(v: Option<&Value>, path: &str, allowed: &[&str]) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(v) if v.as_str().is_some_and(|s| allowed.contains(&s)) => Ok(()),
        Some(_) => Err(format!("{path}: must be one of {}", allowed.join(", "))),
    }
}

/// Returns whether `id` matches `(|([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))`.
pub(crate) fn valid_guardrail_id(id: &str) -> bool {
    let lower_alnum = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if lower_alnum(id) {
        return true;
    }
    let parts: Vec<&str> = id.splitn(6, ':').collect();
    let [arn, partition, "bedrock", region, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && (*partition == "aws"
            || partition
                .strip_prefix("aws-")
                .is_some_and(|p| !p.is_empty()))
        && (1..=20).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("guardrail/")
            .is_some_and(|g| !g.is_empty() && lower_alnum(g))
}

/// Returns whether `v` matches `(|([1-9][0-9]{0,7})|(DRAFT))`.
fn valid_guardrail_version(v: &str) -> bool {
    v.is_empty()
        || v == "DRAFT"
        || (v.len() <= 8 && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks every optional member of a Converse body.
pub(crate) fn validate_options(body: &Value, stream: bool) -> Result<(), String> {
    if let Some(g) = member(body, "guardrailConfig") {
        validate_guardrail(g, stream)?;
    }
    if let Some(m) = member(body, "requestMetadata") {
        validate_metadata(m)?;
    }
    if let Some(p) = member(body, "performanceConfig") {
        check_enum(
            member(p, "latency"),
            "performanceConfig.latency",
            &["standard", "optimized"],
        )?;
    }
    if let Some(t) = member(body, "serviceTier") {
        let Some(kind) = member(t, "type") else {
            return Err("serviceTier.type: member must not be null".to_owned());
        };
        check_enum(
            Some(kind),
            "serviceTier.type",
            &["priority", "default", "flex", "reserved"],
        )?;
    }
    if let Some(o) = member(body, "outputConfig") {
        validate_output(o)?;
    }
    if let Some(tools) = body.pointer("/toolConfig/tools").and_then(Value::as_array) {
        for (k, tool) in tools.iter().enumerate() {
            if let Some(cache) = member(tool, "cachePoint") {
                validate_cache_point(cache, &format!("toolConfig.tools.{k}.cachePoint"))?;
            }
        }
    }
    let points = cache_point_count(body);
    if points > MAX_CACHE_POINTS {
        return Err(format!(
            "{MODEL_ERRORS}A maximum of {MAX_CACHE_POINTS} blocks with cache_control may be \
             provided. Found {points}."
        ));
    }
    validate_thinking(body)
}

/// Checks `guardrailConfig` (and `streamProcessingMode` on streams).
fn validate_guardrail(g: &Value, stream: bool) -> Result<(), String> {
    let id = member(g, "guardrailIdentifier");
    let Some(id) = id else {
        return Err("guardrailConfig.guardrailIdentifier: member must not be null".to_owned());
    };
    match id.as_str() {
        Some(s) if s.len() <= 2048 && valid_guardrail_id(s) => {}
        _ => {
            return Err("guardrailConfig.guardrailIdentifier: must match the pattern \
                 (|([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)) \
                 and have at most 2048 characters"
                .to_owned());
        }
    }
    let Some(version) = member(g, "guardrailVersion") else {
        return Err("guardrailConfig.guardrailVersion: member must not be null".to_owned());
    };
    if !version.as_str().is_some_and(valid_guardrail_version) {
        return Err(
            "guardrailConfig.guardrailVersion: must match the pattern (|([1-9][0-9]{0,7})|(DRAFT))"
                .to_owned(),
        );
    }
    check_enum(
        member(g, "trace"),
        "guardrailConfig.trace",
        &["enabled", "disabled", "enabled_full"],
    )?;
    if stream {
        check_enum(
            member(g, "streamProcessingMode"),
            "guardrailConfig.streamProcessingMode",
            &["sync", "async"],
        )?;
    }
    Ok(())
}

/// Returns whether every character is in `[a-zA-Z0-9\s:_@$#=/+,-.]`.
fn metadata_chars(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || c.is_whitespace()
            || matches!(
                c,
                ':' | '_' | '@' | '$' | '#' | '=' | '/' | '+' | ',' | '-' | '.'
            )
    })
}

/// Checks `requestMetadata`: 1..=16 entries, keys 1..=256 and values 0..=256 allowed characters.
fn validate_metadata(m: &Value) -> Result<(), String> {
    let Some(map) = m.as_object() else {
        return Err("requestMetadata: must be a map".to_owned());
    };
    if !(1..=16).contains(&map.len()) {
        return Err("requestMetadata: must have between 1 and 16 entries".to_owned());
    }
    for (key, value) in map {
        let n = key.chars().count();
        if !(1..=256).contains(&n) || !metadata_chars(key) {
            return Err(format!(
                "requestMetadata.{key}: keys must have 1 to 256 characters of [a-zA-Z0-9\\s:_@$#=/+,-.]"
            ));
        }
        match value.as_str() {
            Some(v) if v.chars().count() <= 256 && metadata_chars(v) => {}
            _ => {
                return Err(format!(
                    "requestMetadata.{key}: values must have 0 to 256 characters of [a-zA-Z0-9\\s:_@$#=/+,-.]"
                ));
            }
        }
    }
    Ok(())
}

/// Checks `outputConfig.textFormat`: type `json_schema`, a schema string parsing to an object.
fn validate_output(o: &Value) -> Result<(), String> {
    let Some(format) = member(o, "textFormat") else {
        return Ok(());
    };
    let Some(kind) = member(format, "type") else {
        return Err("outputConfig.textFormat.type: member must not be null".to_owned());
    };
    check_enum(Some(kind), "outputConfig.textFormat.type", &["json_schema"])?;
    let Some(schema) = format.pointer("/structure/jsonSchema/schema") else {
        return Err(
            "outputConfig.textFormat.structure.jsonSchema.schema: member must not be null"
                .to_owned(),
        );
    };
    let parsed = schema
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    if !parsed.as_ref().is_some_and(Value::is_object) {
        return Err(
            "outputConfig.textFormat.structure.jsonSchema.schema: must be a JSON object \
             (a JSON schema, as a string)"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks a `cachePoint` block: type `default`, ttl `5m` or `1h`.
pub(crate) fn validate_cache_point(cache: &Value, path: &str) -> Result<(), String> {
    let Some(kind) = member(cache, "type") else {
        return Err(format!("{path}.type: member must not be null"));
    };
    check_enum(Some(kind), &format!("{path}.type"), &["default"])?;
    check_enum(member(cache, "ttl"), &format!("{path}.ttl"), &["5m", "1h"])
}

/// Returns the cache points across tools, system and messages.
pub(crate) fn cache_point_count(body: &Value) -> usize {
    let has = |b: &Value| member(b, "cachePoint").is_some();
    let list = |p: &str| {
        body.pointer(p)
            .and_then(Value::as_array)
            .map_or(0, |l| l.iter().filter(|b| has(b)).count())
    };
    let in_messages = body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|b| has(b))
        .count();
    list("/toolConfig/tools") + list("/system") + in_messages
}

/// Returns the thinking budget if `additionalModelRequestFields.thinking` enables thinking.
pub(crate) fn thinking_budget(body: &Value) -> Option<u64> {
    let thinking = body.pointer("/additionalModelRequestFields/thinking")?;
    (thinking.get("type").and_then(Value::as_str) == Some("enabled"))
        .then(|| thinking.get("budget_tokens").and_then(Value::as_u64))
        .flatten()
}

/// Checks `additionalModelRequestFields` as Anthropic models do: thinking budget, sampling and
/// forced tool choice with thinking, `top_k`.
// Long because it lists the service's thinking rules in the order the service checks them.
fn validate_thinking(body: &Value) -> Result<(), String> {
    let Some(fields) = member(body, "additionalModelRequestFields") else {
        return Ok(());
    };
    let top_k = member(fields, "top_k");
    if let Some(k) = top_k
        && k.as_i64().is_none_or(|k| k < 1)
    {
        return Err(format!(
            "{MODEL_ERRORS}top_k: Input should be greater than or equal to 1"
        ));
    }
    let Some(thinking) = member(fields, "thinking") else {
        return Ok(());
    };
    match member(thinking, "type").and_then(Value::as_str) {
        Some("enabled") => {}
        Some("disabled") => return Ok(()),
        _ => {
            return Err(format!(
                "{MODEL_ERRORS}thinking.type: Input should be 'enabled' or 'disabled'"
            ));
        }
    }
    let budget = match member(thinking, "budget_tokens") {
        None => {
            return Err(format!(
                "{MODEL_ERRORS}thinking.enabled.budget_tokens: Field required"
            ));
        }
        Some(b) => b.as_i64().unwrap_or(i64::MIN),
    };
    if budget < 1024 {
        return Err(format!(
            "{MODEL_ERRORS}thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        ));
    }
    let betas = member(fields, "anthropic_beta")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>();
    let max_tokens = body
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_i64);
    if let Some(max) = max_tokens
        && budget >= max
        && !betas.contains(&INTERLEAVED_THINKING)
    {
        return Err(format!(
            "{MODEL_ERRORS}`max_tokens` must be greater than `thinking.budget_tokens`. \
             Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
        ));
    }
    if let Some(t) = body
        .pointer("/inferenceConfig/temperature")
        .filter(|v| !v.is_null())
        && t.as_f64() != Some(1.0)
    {
        return Err(format!(
            "{MODEL_ERRORS}`temperature` may only be set to 1 when thinking is enabled. \
             Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#important-considerations-when-using-extended-thinking"
        ));
    }
    if let Some(p) = body
        .pointer("/inferenceConfig/topP")
        .filter(|v| !v.is_null())
        && p.as_f64().is_none_or(|p| p < 0.95)
    {
        return Err(format!(
            "{MODEL_ERRORS}`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
        ));
    }
    if top_k.is_some() {
        return Err(format!(
            "{MODEL_ERRORS}`top_k` must be unset when thinking is enabled."
        ));
    }
    let choice = body.pointer("/toolConfig/toolChoice");
    if choice.is_some_and(|c| member(c, "any").is_some() || member(c, "tool").is_some()) {
        return Err(format!(
            "{MODEL_ERRORS}Thinking may not be enabled when tool_choice forces tool use."
        ));
    }
    Ok(())
}

/// Checks a request whose model id is a prompt ARN: no `system`, `inferenceConfig`,
/// `toolConfig` or `additionalModelRequestFields`; `promptVariables` values are `{text}`.
pub(crate) fn validate_prompt_request(body: &Value) -> Result<(), String> {
    for field in [
        "system",
        "inferenceConfig",
        "toolConfig",
        "additionalModelRequestFields",
    ] {
        if member(body, field).is_some() {
            return Err(format!(
                "{field}: must not be set when modelId is a prompt ARN (the prompt defines it)"
            ));
        }
    }
    if let Some(vars) = member(body, "promptVariables") {
        let Some(vars) = vars.as_object() else {
            return Err("promptVariables: must be a map".to_owned());
        };
        for (name, value) in vars {
            if member(value, "text").and_then(Value::as_str).is_none() {
                return Err(format!(
                    "promptVariables.{name}.text: member must not be null"
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

    #[test]
    fn guardrail_patterns() {
        assert!(valid_guardrail_id("abc123"));
        assert!(valid_guardrail_id(""));
        assert!(valid_guardrail_id(
            "arn:aws:bedrock:us-west-2:123456789012:guardrail/abc123"
        ));
        assert!(!valid_guardrail_id("ABC"));
        assert!(!valid_guardrail_id(
            "arn:aws:bedrock:us-west-2:1234:guardrail/abc"
        ));
        assert!(valid_guardrail_version("DRAFT"));
        assert!(valid_guardrail_version("12345678"));
        assert!(!valid_guardrail_version("0"));
        assert!(!valid_guardrail_version("123456789"));
    }

    #[test]
    fn cache_points_are_counted_everywhere() {
        let cp = json!({ "cachePoint": { "type": "default" } });
        let body = json!({
            "system": [{ "text": "s" }, cp],
            "toolConfig": { "tools": [cp] },
            "messages": [{ "role": "user", "content": [{ "text": "a" }, cp, cp] }],
        });
        assert_eq!(cache_point_count(&body), 4);
    }
}
