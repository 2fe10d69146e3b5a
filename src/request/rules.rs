//! The service's rules for single fields and combinations, one function each; `validate.rs`
//! applies them in order.

use crate::error::{Error, Result};
use crate::inputs::Inputs;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, JsonSchemaDefinition, Message, OutputConfig, OutputFormat,
    OutputFormatStructure, OutputFormatType, Tool, ToolChoice, ToolConfiguration,
};
use aws_smithy_types::Document;
use std::collections::HashMap;

/// Smallest thinking budget Anthropic's models accept.
const MIN_THINKING_BUDGET: i32 = 1024;
/// Output tokens added to the thinking budget when `max_tokens` is unset: room for the answer.
const THINKING_ANSWER_TOKENS: i32 = 4096;
/// The Anthropic beta flag that lets thinking interleave with tool calls, and lets the budget
/// exceed `max_tokens`.
const INTERLEAVED_THINKING_BETA: &str = "interleaved-thinking-2025-05-14";
/// Most request metadata entries.
const MAX_METADATA: usize = 16;
/// Most bytes of text one call may carry (a guard against runaway inputs, far above any
/// model's context window).
const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;

/// Refuses what the service refuses with a prompt ARN.
pub(super) fn refuse_with_prompt(i: &Inputs) -> Result<()> {
    let refused = [
        ("system", !i.system.is_empty()),
        (
            "inference_config",
            i.temperature.is_some()
                || i.top_p.is_some()
                || i.max_tokens.is_some()
                || i.stop_sequences.is_some(),
        ),
        ("tool_config", i.tool_config.is_some()),
        (
            "additional_model_request_fields",
            i.additional_fields.is_some()
                || i.thinking.is_some()
                || i.top_k.is_some()
                || i.interleaved_thinking,
        ),
    ];
    match refused.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(Error::invalid(
            field,
            "a prompt ARN carries its own; the service refuses it with a prompt from Prompt management",
        )),
        None => Ok(()),
    }
}

/// Checks extended thinking against the rest of the request as Anthropic's models on Bedrock
/// do; returns the `max_tokens` to send.
pub(super) fn check_thinking(
    budget: i32,
    max_tokens: Option<i32>,
    interleaved: bool,
    (temperature, top_p, top_k): (Option<f32>, Option<f32>, Option<i32>),
    tools: Option<&ToolConfiguration>,
) -> Result<i32> {
    if budget < MIN_THINKING_BUDGET {
        return Err(Error::invalid(
            "thinking",
            format!("a budget of {budget} tokens is below the minimum of {MIN_THINKING_BUDGET}"),
        ));
    }
    let max = match max_tokens {
        Some(max) => max,
        None => budget.saturating_add(THINKING_ANSWER_TOKENS),
    };
    if budget >= max && !interleaved {
        return Err(Error::invalid(
            "thinking",
            format!(
                "the budget ({budget}) must be below max_tokens ({max}), unless interleaved thinking is on"
            ),
        ));
    }
    if let Some(t) = temperature
        && t != 1.0
    {
        return Err(Error::invalid(
            "temperature",
            "cannot be changed while thinking is on (leave it unset or 1)",
        ));
    }
    if let Some(p) = top_p
        && p < 0.95
    {
        return Err(Error::invalid(
            "top_p",
            "must be between 0.95 and 1 while thinking is on",
        ));
    }
    if top_k.is_some() {
        return Err(Error::invalid(
            "top_k",
            "cannot be set while thinking is on",
        ));
    }
    if let Some(choice) = tools.and_then(|t| t.tool_choice())
        && matches!(choice, ToolChoice::Any(_) | ToolChoice::Tool(_))
    {
        return Err(Error::invalid(
            "tool_config",
            "a forced tool choice (any or a named tool) cannot be used while thinking is on",
        ));
    }
    Ok(max)
}

/// Merges the handle's and the request's additional fields (the request's keys win) and writes
/// the thinking, `top_k` and beta shortcuts in Anthropic's shape.
pub(super) fn additional_fields(
    defaults: Option<&Document>,
    request: Option<Document>,
    thinking: Option<i32>,
    top_k: Option<i32>,
    interleaved: bool,
) -> Result<Option<Document>> {
    let mut map = HashMap::new();
    for doc in defaults.into_iter().chain(request.as_ref()) {
        match doc {
            Document::Object(o) => map.extend(o.iter().map(|(k, v)| (k.clone(), v.clone()))),
            _ => {
                return Err(Error::invalid(
                    "additional_model_request_fields",
                    "must be a JSON object",
                ));
            }
        }
    }
    if let Some(budget) = thinking {
        let mut t = HashMap::new();
        t.insert("type".to_owned(), Document::String("enabled".to_owned()));
        t.insert(
            "budget_tokens".to_owned(),
            Document::Number(aws_smithy_types::Number::PosInt(budget as u64)),
        );
        map.insert("thinking".to_owned(), Document::Object(t));
    }
    if let Some(k) = top_k {
        map.insert(
            "top_k".to_owned(),
            Document::Number(aws_smithy_types::Number::PosInt(k as u64)),
        );
    }
    if interleaved {
        let mut betas = match map.remove("anthropic_beta") {
            Some(Document::Array(a)) => a,
            Some(other) => vec![other],
            None => Vec::new(),
        };
        let flag = Document::String(INTERLEAVED_THINKING_BETA.to_owned());
        if !betas.contains(&flag) {
            betas.push(flag);
        }
        map.insert("anthropic_beta".to_owned(), Document::Array(betas));
    }
    Ok((!map.is_empty()).then_some(Document::Object(map)))
}

/// Checks a guardrail identifier and version against the service model's patterns.
pub(crate) fn check_guardrail(id: &str, version: &str) -> Result<()> {
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let arn_ok = || {
        let parts: Vec<&str> = id.split(':').collect();
        parts.len() == 6
            && parts[0] == "arn"
            && (parts[1] == "aws" || parts[1].starts_with("aws-"))
            && parts[2] == "bedrock"
            && (1..=20).contains(&parts[3].len())
            && parts[3]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5].strip_prefix("guardrail/").is_some_and(simple)
    };
    if id.len() > 2048 || !(simple(id) || arn_ok()) {
        return Err(Error::invalid(
            "guardrail",
            format!("identifier {id:?} is neither a guardrail id ([a-z0-9]+) nor a guardrail ARN"),
        ));
    }
    let version_ok = version == "DRAFT"
        || (!version.is_empty()
            && version.len() <= 8
            && !version.starts_with('0')
            && version.bytes().all(|b| b.is_ascii_digit()));
    if !version_ok {
        return Err(Error::invalid(
            "guardrail",
            format!("version {version:?} is neither DRAFT nor a number from 1"),
        ));
    }
    Ok(())
}

/// Checks request metadata as the service model does: at most 16 entries, keys of 1 to 256 and
/// values of 0 to 256 characters of `[a-zA-Z0-9 :_@$#=/+,-.]` (whitespace allowed).
pub(super) fn check_metadata(entries: &[(String, String)]) -> Result<()> {
    if entries.len() > MAX_METADATA {
        return Err(Error::invalid(
            "request_metadata",
            format!("{} entries, at most {MAX_METADATA}", entries.len()),
        ));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || c.is_whitespace() || ":_@$#=/+,-.".contains(c);
    for (k, v) in entries {
        if k.is_empty() || k.chars().count() > 256 || !k.chars().all(allowed) {
            return Err(Error::invalid(
                "request_metadata",
                format!("key {k:?} must be 1 to 256 characters of [a-zA-Z0-9 :_@$#=/+,-.]"),
            ));
        }
        if v.chars().count() > 256 || !v.chars().all(allowed) {
            return Err(Error::invalid(
                "request_metadata",
                format!(
                    "the value of {k:?} must be at most 256 characters of [a-zA-Z0-9 :_@$#=/+,-.]"
                ),
            ));
        }
    }
    Ok(())
}

/// Builds the structured-output configuration from a JSON schema.
pub(super) fn output_config(name: String, schema: &Document) -> Result<OutputConfig> {
    if !schema.is_object() {
        return Err(Error::invalid(
            "output_schema",
            "the JSON schema must be a JSON object",
        ));
    }
    if name.is_empty() {
        return Err(Error::invalid("output_schema", "the schema name is empty"));
    }
    let mut json = String::new();
    aws_smithy_json::serialize::JsonValueWriter::new(&mut json).document(schema);
    let definition = JsonSchemaDefinition::builder()
        .schema(json)
        .name(name)
        .build()
        .map_err(|e| Error::invalid("output_schema", e))?;
    let format = OutputFormat::builder()
        .r#type(OutputFormatType::JsonSchema)
        .structure(OutputFormatStructure::JsonSchema(definition))
        .build()
        .map_err(|e| Error::invalid("output_schema", e))?;
    Ok(OutputConfig::builder().text_format(format).build())
}

pub(crate) fn validate_messages(messages: &[Message]) -> Result<()> {
    if messages.is_empty() {
        return Err(Error::invalid(
            "messages",
            "no messages: add at least one user message",
        ));
    }
    let mut total = 0usize;
    let mut prev: Option<&ConversationRole> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m.role();
        match role {
            ConversationRole::User | ConversationRole::Assistant => {}
            // A system message changes the tools the history may use, between turns.
            ConversationRole::System => {
                let tool_changes = m.content().iter().all(|b| {
                    matches!(
                        b,
                        ContentBlock::ToolAddition(_) | ContentBlock::ToolRemoval(_)
                    )
                });
                if m.content().is_empty() || !tool_changes {
                    return Err(Error::invalid(
                        "messages",
                        format!(
                            "message {i}: a system message holds only toolAddition and                              toolRemoval blocks (the system prompt goes in `system`)"
                        ),
                    ));
                }
                continue;
            }
            other => {
                return Err(Error::invalid(
                    "messages",
                    format!("message {i} has an unknown role {other:?}"),
                ));
            }
        }
        if prev.is_none() && *role != ConversationRole::User {
            return Err(Error::invalid(
                "messages",
                "the first message must come from the user",
            ));
        }
        if prev == Some(role) {
            return Err(Error::invalid(
                "messages",
                format!("message {i} has the role of the turn before it: roles must alternate"),
            ));
        }
        prev = Some(role);
        if m.content().is_empty() {
            return Err(Error::invalid(
                "messages",
                format!("message {i} has no content"),
            ));
        }
        for (j, block) in m.content().iter().enumerate() {
            if let ContentBlock::Text(t) = block {
                if t.trim().is_empty() {
                    return Err(Error::invalid(
                        "messages",
                        format!("message {i} block {j}: the text is empty"),
                    ));
                }
                total += t.len();
            }
        }
    }
    if total > MAX_TEXT_BYTES {
        return Err(Error::invalid(
            "messages",
            format!("{total} bytes of text, at most {MAX_TEXT_BYTES}"),
        ));
    }
    Ok(())
}

pub(super) fn validate_tools(tc: &ToolConfiguration) -> Result<()> {
    if tc.tools().is_empty() {
        return Err(Error::invalid("tool_config", "no tools"));
    }
    let mut names = Vec::new();
    for (i, tool) in tc.tools().iter().enumerate() {
        let Tool::ToolSpec(spec) = tool else { continue };
        let name = spec.name();
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::invalid(
                "tool_config",
                format!("tool {i}: name {name:?} must be 1-64 of [a-zA-Z0-9_-]"),
            ));
        }
        if names.contains(&name) {
            return Err(Error::invalid(
                "tool_config",
                format!("tool {i}: name {name:?} is used twice"),
            ));
        }
        names.push(name);
        match spec.input_schema() {
            Some(aws_sdk_bedrockruntime::types::ToolInputSchema::Json(doc)) => {
                if !doc.is_object() {
                    return Err(Error::invalid(
                        "tool_config",
                        format!("tool {i} ({name}): the input schema must be a JSON object"),
                    ));
                }
            }
            _ => {
                return Err(Error::invalid(
                    "tool_config",
                    format!("tool {i} ({name}): no JSON input schema"),
                ));
            }
        }
    }
    Ok(())
}
