//! Validation of a Converse request as the service does it, before any network call: each rule
//! names the field it refuses. The result, [`Validated`], is what the SDK call is filled from.

use super::rules::{
    additional_fields, check_guardrail, check_metadata, check_thinking, output_config,
    refuse_with_prompt, validate_messages, validate_tools,
};
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::model::{ModelInner, is_prompt_arn};
use aws_sdk_bedrockruntime::types::{
    GuardrailConfiguration, GuardrailStreamConfiguration, GuardrailStreamProcessingMode,
    GuardrailTrace, InferenceConfiguration, Message, OutputConfig, PerformanceConfigLatency,
    PerformanceConfiguration, PromptVariableValues, ServiceTier, SystemContentBlock, Tool,
    ToolConfiguration,
};
use aws_smithy_types::Document;
use aws_smithy_types::timeout::TimeoutConfig as SdkTimeoutConfig;
use std::collections::HashMap;

/// Most cache points one request may carry (system, messages and tools together).
const MAX_CACHE_POINTS: usize = 4;

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
    pub(crate) timeouts: Option<SdkTimeoutConfig>,
}

impl crate::call::CallInput for Validated {
    fn request_attrs(&self) -> crate::call::RequestAttrs {
        let i = self.inference.as_ref();
        crate::call::RequestAttrs {
            max_tokens: i.and_then(|i| i.max_tokens()),
            temperature: i.and_then(|i| i.temperature()),
            top_p: i.and_then(|i| i.top_p()),
        }
    }

    /// Counts the text the model reads (system prompt, messages, tool results and prompt
    /// variables), an image as 6400 bytes (about the 1600 tokens a large image costs) and a
    /// document as its size; tool specifications and other members are not counted.
    fn input_bytes(&self) -> usize {
        use aws_sdk_bedrockruntime::types::{ContentBlock, DocumentSource, ToolResultContentBlock};
        let block = |b: &ContentBlock| match b {
            ContentBlock::Text(t) => t.len(),
            ContentBlock::Image(_) => 6400,
            ContentBlock::Document(d) => match d.source() {
                Some(DocumentSource::Bytes(b)) => b.as_ref().len(),
                Some(DocumentSource::Text(t)) => t.len(),
                _ => 0,
            },
            ContentBlock::ToolResult(r) => r
                .content()
                .iter()
                .map(|c| match c {
                    ToolResultContentBlock::Text(t) => t.len(),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        };
        let system: usize = self
            .system
            .iter()
            .flatten()
            .map(|s| match s {
                SystemContentBlock::Text(t) => t.len(),
                _ => 0,
            })
            .sum();
        let messages: usize = self
            .messages
            .iter()
            .flatten()
            .flat_map(|m| m.content())
            .map(block)
            .sum();
        let variables: usize = self
            .prompt_variables
            .iter()
            .flatten()
            .map(|(_, v)| v.as_text().map_or(0, String::len))
            .sum();
        system + messages + variables
    }
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
/// The handle's defaults are already in `i` (see [`Inputs::start_from`]). With a prompt ARN
/// (Prompt management) the service refuses `system`, `inferenceConfig`, `toolConfig` and
/// additional fields and makes messages optional: the request's own values for those are
/// refused here.
pub(crate) fn validate(i: Inputs, m: &ModelInner) -> Result<Validated> {
    check_content(&i, is_prompt_arn(&m.target.id))?;
    let sampling = check_sampling(&i)?;
    check_sizes(&i)?;
    assemble(i, sampling, m)
}

/// The sampling values a request sends, checked; `max_tokens` as thinking needs it.
struct Sampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    thinking: Option<i32>,
    max_tokens: Option<i32>,
}

/// Checks what the request says: a cache point's place, the prompt ARN's rules, the system
/// blocks and the messages.
fn check_content(i: &Inputs, prompt: bool) -> Result<()> {
    if i.misplaced_cache_point {
        return Err(Error::invalid(
            "cache_point",
            "nothing to cache before it: add a system prompt, tools or a message first",
        ));
    }
    if prompt {
        refuse_with_prompt(i)?;
    } else if !i.prompt_variables.is_empty() {
        return Err(Error::invalid(
            "prompt_variables",
            "prompt variables need a prompt ARN (arn:aws:bedrock:...:prompt/...) as the model id",
        ));
    }
    for (n, b) in i.system.iter().enumerate() {
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
    super::media::check_media(&i.messages)?;
    super::tools::check_tool_history(&i.messages, i.tool_config.as_ref())
}

/// Checks the inference settings, stop sequences, tools and thinking; returns the sampling
/// values to send.
fn check_sampling(i: &Inputs) -> Result<Sampling> {
    let (temperature, top_p, top_k, thinking) = (i.temperature, i.top_p, i.top_k, i.thinking);
    let mut max_tokens = i.max_tokens;
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
    Ok(Sampling {
        temperature,
        top_p,
        top_k,
        thinking,
        max_tokens,
    })
}

/// Checks the count of cache points and the timeouts.
fn check_sizes(i: &Inputs) -> Result<()> {
    let cache_points = i.system.iter().filter(|b| b.is_cache_point()).count()
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
    Ok(())
}

/// Builds what the SDK call needs from checked inputs, checking the members built on the way
/// (additional fields, guardrail, metadata, output schema, service tier).
fn assemble(i: Inputs, s: Sampling, m: &ModelInner) -> Result<Validated> {
    let additional_fields = additional_fields(
        i.inherited_fields.as_ref(),
        i.additional_fields,
        s.thinking,
        s.top_k,
        i.interleaved_thinking,
    )?;
    let guardrail = guardrail_spec(i.guardrail, i.guardrail_trace, i.stream_processing_mode)?;
    let metadata = i.request_metadata;
    check_metadata(&metadata)?;
    let output_config = match i.output_schema {
        Some((name, schema)) => Some(output_config(name, &schema)?),
        None => None,
    };
    let inference = (s.temperature.is_some()
        || s.top_p.is_some()
        || s.max_tokens.is_some()
        || i.stop_sequences.is_some())
    .then(|| {
        InferenceConfiguration::builder()
            .set_temperature(s.temperature)
            .set_top_p(s.top_p)
            .set_max_tokens(s.max_tokens)
            .set_stop_sequences(i.stop_sequences)
            .build()
    });
    let timeouts = i.read_timeout.map(|rt| {
        SdkTimeoutConfig::builder()
            .connect_timeout(m.target.shared.config.timeouts.connect)
            .read_timeout(rt)
            .build()
    });
    let system = i.system;
    Ok(Validated {
        system: (!system.is_empty()).then_some(system),
        messages: (!i.messages.is_empty()).then_some(i.messages),
        inference,
        tools: i.tool_config,
        additional_fields,
        response_field_paths: (!i.response_field_paths.is_empty())
            .then_some(i.response_field_paths),
        guardrail,
        performance: i.latency_optimized.then(|| {
            PerformanceConfiguration::builder()
                .latency(PerformanceConfigLatency::Optimized)
                .build()
        }),
        service_tier: i
            .service_tier
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

/// Returns the guardrail of a call; a trace or processing mode needs one.
fn guardrail_spec(
    guardrail: Option<(String, String)>,
    trace: Option<GuardrailTrace>,
    stream_mode: Option<GuardrailStreamProcessingMode>,
) -> Result<Option<GuardrailSpec>> {
    Ok(match guardrail {
        Some((id, version)) => {
            check_guardrail(&id, &version)?;
            Some(GuardrailSpec {
                id,
                version,
                trace,
                stream_mode,
            })
        }
        None if trace.is_some() || stream_mode.is_some() => {
            return Err(Error::invalid(
                "guardrail",
                "a guardrail trace or processing mode needs a guardrail: add .guardrail(id, version)",
            ));
        }
        None => None,
    })
}
