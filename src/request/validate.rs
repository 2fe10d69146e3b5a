//! Validation of a Converse request as the service does it, before any network call: each rule
//! names the field it refuses. The result, [`Validated`], is what the SDK call is filled from.

use super::inputs::Inputs;
use crate::error::{Error, Result};
use crate::model::{ModelInner, is_prompt_arn};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, GuardrailConfiguration, GuardrailStreamConfiguration,
    GuardrailStreamProcessingMode, GuardrailTrace, InferenceConfiguration, JsonSchemaDefinition,
    Message, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType,
    PerformanceConfigLatency, PerformanceConfiguration, PromptVariableValues, ServiceTier,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration,
};
use aws_smithy_types::Document;
use aws_smithy_types::timeout::TimeoutConfig;
use std::collections::HashMap;

/// Smallest thinking budget Anthropic's models accept.
pub(crate) const MIN_THINKING_BUDGET: i32 = 1024;
/// Output tokens added to the thinking budget when `max_tokens` is unset: room for the answer.
pub(crate) const THINKING_ANSWER_TOKENS: i32 = 4096;
/// The Anthropic beta flag that lets thinking interleave with tool calls, and lets the budget
/// exceed `max_tokens`.
pub(crate) const INTERLEAVED_THINKING_BETA: &str = "interleaved-thinking-2025-05-14";
/// Most cache points one request may carry (system, messages and tools together).
const MAX_CACHE_POINTS: usize = 4;
/// Most request metadata entries.
const MAX_METADATA: usize = 16;
/// Most bytes of text one call may carry (a guard against runaway inputs, far above any
/// model's context window).
const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;

/// The guardrail of a call, for the unary or the stream configuration type.
pub(crate) struct GuardrailSpec {
    id: String,
    version: String,
    trace: Option<GuardrailTrace>,
    stream_mode: Option<GuardrailStreamProcessingMode>,
}

/// Inputs checked and ready for the SDK.
pub(crate) struct Validated {
    pub(crate) system: Option<Vec<SystemContentBlock>>,
    pub(crate) messages: Option<Vec<Message>>,
    pub(crate) inference: Option<InferenceConfiguration>,
    pub(crate) tools: Option<ToolConfiguration>,
    pub(crate) additional_fields: Option<Document>,
    pub(crate) response_field_paths: Option<Vec<String>>,
    pub(crate) guardrail: Option<GuardrailSpec>,
    pub(crate) performance: Option<PerformanceConfiguration>,
    pub(crate) service_tier: Option<ServiceTier>,
    pub(crate) request_metadata: Option<HashMap<String, String>>,
    pub(crate) prompt_variables: Option<HashMap<String, PromptVariableValues>>,
    pub(crate) output_config: Option<OutputConfig>,
    pub(crate) timeouts: Option<TimeoutConfig>,
}

impl Validated {
    /// Returns the guardrail configuration of a unary call.
    pub(crate) fn guardrail_config(&self) -> Option<GuardrailConfiguration> {
        self.guardrail.as_ref().map(|g| {
            GuardrailConfiguration::builder()
                .guardrail_identifier(&g.id)
                .guardrail_version(&g.version)
                .set_trace(g.trace.clone())
                .build()
        })
    }

    /// Returns the guardrail configuration of a stream.
    pub(crate) fn guardrail_stream_config(&self) -> Option<GuardrailStreamConfiguration> {
        self.guardrail.as_ref().map(|g| {
            GuardrailStreamConfiguration::builder()
                .guardrail_identifier(&g.id)
                .guardrail_version(&g.version)
                .set_trace(g.trace.clone())
                .set_stream_processing_mode(g.stream_mode.clone())
                .build()
        })
    }
}

/// Checks every input of a request for the handle `m` and returns what the SDK call needs.
///
/// With a prompt ARN (Prompt management) the service refuses `system`, `inferenceConfig`,
/// `toolConfig` and additional fields and makes messages optional: the request's own values
/// for those are refused here, and the handle's defaults for them are not applied.
pub(crate) fn validate(i: Inputs, m: &ModelInner) -> Result<Validated> {
    let prompt = is_prompt_arn(&m.target.id);
    let d = if prompt {
        &crate::model::InferenceDefaults {
            guardrail: m.defaults.guardrail.clone(),
            latency_optimized: m.defaults.latency_optimized,
            service_tier: m.defaults.service_tier.clone(),
            request_metadata: m.defaults.request_metadata.clone(),
            ..Default::default()
        }
    } else {
        &m.defaults
    };
    if i.misplaced_cache_point {
        return Err(Error::invalid(
            "cache_point",
            "nothing to cache before it: add a system prompt, tools or a message first",
        ));
    }
    if prompt {
        refuse_with_prompt(&i)?;
    } else if !i.prompt_variables.is_empty() {
        return Err(Error::invalid(
            "prompt_variables",
            "prompt variables need a prompt ARN (arn:aws:bedrock:...:prompt/...) as the model id",
        ));
    }

    // System prompt: the request's blocks, else the handle's.
    let system = if i.system.is_empty() {
        d.system.clone().unwrap_or_default()
    } else {
        i.system
    };
    for (n, b) in system.iter().enumerate() {
        if let SystemContentBlock::Text(t) = b
            && t.trim().is_empty()
        {
            return Err(Error::invalid(
                "system",
                format!("system block {n}: the text is empty"),
            ));
        }
    }
    if !prompt || !i.messages.is_empty() {
        validate_messages(&i.messages)?;
    }

    let temperature = i.temperature.or(d.temperature);
    let top_p = i.top_p.or(d.top_p);
    let top_k = i.top_k.or(d.top_k);
    let thinking = i.thinking.or(d.thinking);
    let mut max_tokens = i.max_tokens.or(d.max_tokens);
    if let Some(t) = temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(Error::invalid(
            "temperature",
            format!("{t} is outside 0..=1"),
        ));
    }
    if let Some(p) = top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(Error::invalid("top_p", format!("{p} is outside 0..=1")));
    }
    if let Some(k) = top_k
        && k < 1
    {
        return Err(Error::invalid("top_k", format!("{k} is below 1")));
    }
    if let Some(n) = max_tokens
        && n < 1
    {
        return Err(Error::invalid("max_tokens", format!("{n} is below 1")));
    }
    if let Some(stops) = &i.stop_sequences {
        if stops.len() > 2500 {
            return Err(Error::invalid(
                "stop_sequences",
                format!("{} sequences, at most 2500", stops.len()),
            ));
        }
        if let Some(n) = stops.iter().position(|s| s.is_empty()) {
            return Err(Error::invalid(
                "stop_sequences",
                format!("sequence {n} is empty"),
            ));
        }
    }
    if let Some(tc) = &i.tool_config {
        validate_tools(tc)?;
    }
    if let Some(budget) = thinking {
        max_tokens = Some(check_thinking(
            budget,
            max_tokens,
            i.interleaved_thinking,
            (temperature, top_p, top_k),
            i.tool_config.as_ref(),
        )?);
    }
    let cache_points = system.iter().filter(|b| b.is_cache_point()).count()
        + i.messages
            .iter()
            .flat_map(|m| m.content())
            .filter(|b| b.is_cache_point())
            .count()
        + i.tool_config
            .iter()
            .flat_map(|t| t.tools())
            .filter(|t| matches!(t, Tool::CachePoint(_)))
            .count();
    if cache_points > MAX_CACHE_POINTS {
        return Err(Error::invalid(
            "cache_point",
            format!("{cache_points} cache points, at most {MAX_CACHE_POINTS} per request"),
        ));
    }
    for (field, t) in [
        ("read_timeout", i.read_timeout),
        ("stream_stall_timeout", i.stall_timeout),
    ] {
        if let Some(t) = t
            && t.is_zero()
        {
            return Err(Error::invalid(field, "must be greater than zero"));
        }
    }

    let additional_fields = additional_fields(
        d.additional_fields.as_ref(),
        i.additional_fields,
        thinking,
        top_k,
        i.interleaved_thinking,
    )?;
    let guardrail = match i.guardrail.or_else(|| d.guardrail.clone()) {
        Some((id, version)) => {
            check_guardrail(&id, &version)?;
            Some(GuardrailSpec {
                id,
                version,
                trace: i.guardrail_trace,
                stream_mode: i.stream_processing_mode,
            })
        }
        None if i.guardrail_trace.is_some() || i.stream_processing_mode.is_some() => {
            return Err(Error::invalid(
                "guardrail",
                "a guardrail trace or processing mode needs a guardrail: add .guardrail(id, version)",
            ));
        }
        None => None,
    };
    let mut metadata = d.request_metadata.clone();
    for (k, v) in i.request_metadata {
        metadata.retain(|(key, _)| *key != k);
        metadata.push((k, v));
    }
    check_metadata(&metadata)?;
    let output_config = match i.output_schema {
        Some((name, schema)) => Some(output_config(name, &schema)?),
        None => None,
    };

    let inference = (temperature.is_some()
        || top_p.is_some()
        || max_tokens.is_some()
        || i.stop_sequences.is_some())
    .then(|| {
        InferenceConfiguration::builder()
            .set_temperature(temperature)
            .set_top_p(top_p)
            .set_max_tokens(max_tokens)
            .set_stop_sequences(i.stop_sequences)
            .build()
    });
    let timeouts = i.read_timeout.map(|rt| {
        TimeoutConfig::builder()
            .connect_timeout(m.target.shared.config.timeouts.connect)
            .read_timeout(rt)
            .build()
    });
    Ok(Validated {
        system: (!system.is_empty()).then_some(system),
        messages: (!i.messages.is_empty()).then_some(i.messages),
        inference,
        tools: i.tool_config,
        additional_fields,
        response_field_paths: (!i.response_field_paths.is_empty())
            .then_some(i.response_field_paths),
        guardrail,
        performance: (i.latency_optimized || d.latency_optimized).then(|| {
            PerformanceConfiguration::builder()
                .latency(PerformanceConfigLatency::Optimized)
                .build()
        }),
        service_tier: i
            .service_tier
            .or_else(|| d.service_tier.clone())
            .map(|t| ServiceTier::builder().r#type(t).build())
            .transpose()
            .map_err(|e| Error::invalid("service_tier", e))?,
        request_metadata: (!metadata.is_empty()).then(|| metadata.into_iter().collect()),
        prompt_variables: (!i.prompt_variables.is_empty()).then(|| {
            i.prompt_variables
                .into_iter()
                .map(|(k, v)| (k, PromptVariableValues::Text(v)))
                .collect()
        }),
        output_config,
        timeouts,
    })
}

/// Refuses what the service refuses with a prompt ARN.
fn refuse_with_prompt(i: &Inputs) -> Result<()> {
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
fn check_thinking(
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
fn additional_fields(
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
fn check_guardrail(id: &str, version: &str) -> Result<()> {
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
fn check_metadata(entries: &[(String, String)]) -> Result<()> {
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
fn output_config(name: String, schema: &Document) -> Result<OutputConfig> {
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
            other => {
                return Err(Error::invalid(
                    "messages",
                    format!("message {i} has an unknown role {other:?}"),
                ));
            }
        }
        if i == 0 && *role != ConversationRole::User {
            return Err(Error::invalid(
                "messages",
                "the first message must come from the user",
            ));
        }
        if prev == Some(role) {
            return Err(Error::invalid(
                "messages",
                format!(
                    "messages {} and {i} have the same role: roles must alternate",
                    i - 1
                ),
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

fn validate_tools(tc: &ToolConfiguration) -> Result<()> {
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
