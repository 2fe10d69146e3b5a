//! The Converse request builder (the whole Converse surface), and the unary `send`.
//!
//! `inputs.rs` holds what a request was given, `rules.rs` the service's rules one function
//! each, `tools.rs` tool declarations, tool results and the tool history's rules,
//! `validate.rs` applies them in order; the streaming `send` lives in `crate::stream`.

mod media;
mod rules;
mod stream;
mod tools;
mod validate;

pub(crate) use media::valid_s3_uri;
pub use media::{
    MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, MAX_IMAGE_BYTES, MAX_IMAGES, MAX_VIDEO_BYTES, Media,
};
pub(crate) use rules::check_guardrail;
pub use stream::ConverseStreamRequest;
pub(crate) use validate::Validated;

use crate::call::carry::{Carried, send_carried};
use crate::call::{check_unary_bound, drive, unary_rule};
use crate::error::Result;
use crate::inputs::{Inputs, LastAdded};
use crate::model::{Model, is_prompt_arn};
use crate::op::Op;
use crate::policy::CallPolicy;
use crate::reply::Reply;
use crate::stats::Outcome;
use crate::stream::ReplyStream;
use aws_sdk_bedrockruntime::types::{
    CacheTtl, ContentBlock, ConversationRole, GuardrailTrace, Message, ServiceTierType,
    SystemContentBlock, ToolConfiguration,
};
use aws_smithy_types::Document;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

impl Model {
    /// Starts a Converse call.
    pub fn converse(&self) -> ConverseRequest {
        ConverseRequest::new(self.clone())
    }
}

/// Fills a Converse or ConverseStream fluent builder (the same setters on two types) from
/// validated inputs, with the operation's own guardrail configuration, and returns the future
/// that sends it (see `send_with_timeouts!`).
macro_rules! prepared_send {
    ($builder:expr, $id:expr, $v:expr, $guardrail:expr) => {{
        // Only the members the request has: each fluent setter moves the whole builder (its
        // config override included, about 1 KB), so the absent ones cost a copy for nothing.
        let mut builder = $builder.model_id($id);
        macro_rules! set {
            ($setter:ident, $value:expr) => {
                if let Some(value) = $value {
                    builder = builder.$setter(Some(value));
                }
            };
        }
        set!(set_messages, $v.messages.clone());
        set!(set_system, $v.system.clone());
        set!(set_inference_config, $v.inference.clone());
        set!(set_tool_config, $v.tools.clone());
        set!(
            set_additional_model_request_fields,
            $v.additional_fields.clone()
        );
        set!(
            set_additional_model_response_field_paths,
            $v.response_field_paths.clone()
        );
        set!(set_guardrail_config, $guardrail);
        set!(set_performance_config, $v.performance.clone());
        set!(set_service_tier, $v.service_tier.clone());
        set!(set_request_metadata, $v.request_metadata.clone());
        set!(set_prompt_variables, $v.prompt_variables.clone());
        set!(set_output_config, $v.output_config.clone());
        $crate::call::send_with_timeouts!(builder, $v.timeouts.clone())
    }};
}
pub(crate) use prepared_send;

/// Marker of a unary Converse request.
#[derive(Debug, Clone, Copy)]
pub struct Unary;

/// Marker of a ConverseStream request.
#[derive(Debug, Clone, Copy)]
pub struct Streaming;

/// A Converse (or, with [`Streaming`], ConverseStream) request being built.
///
/// Nothing is checked or sent until `send()`: then invalid input is reported as an error naming
/// the field, before any network call. Every option of the service's Converse request is here;
/// each defaults to the handle's value where the handle has one (see [`Model`]).
#[must_use = "a request does nothing until `.send().await`"]
#[derive(Clone)]
pub struct ConverseRequest<K = Unary> {
    pub(crate) model: Model,
    pub(crate) inputs: Inputs,
    kind: PhantomData<K>,
}

impl<K> fmt::Debug for ConverseRequest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages, metadata and prompt variables may be sensitive: counts only.
        let i = &self.inputs;
        f.debug_struct("ConverseRequest")
            .field("model", &self.model.id())
            .field("messages", &i.messages.len())
            .field("temperature", &i.temperature)
            .field("max_tokens", &i.max_tokens)
            .field("top_p", &i.top_p)
            .field("top_k", &i.top_k)
            .field("thinking", &i.thinking)
            .field("request_metadata", &i.request_metadata.len())
            .finish_non_exhaustive()
    }
}

impl<K> ConverseRequest<K> {
    /// Starts a request of `model` from the handle's defaults (its prototype request).
    pub(crate) fn new(model: Model) -> Self {
        let inner = model.inner();
        let inputs = Inputs::start_from(&inner.defaults, is_prompt_arn(&inner.target.id));
        ConverseRequest {
            model,
            inputs,
            kind: PhantomData,
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Inputs)) -> Self {
        f(&mut self.inputs);
        self
    }

    fn push(self, role: ConversationRole, text: String) -> Self {
        match Message::builder()
            .role(role)
            .content(ContentBlock::Text(text))
            .build()
        {
            Ok(m) => self.message(m),
            // A role and one block always build; keep the request unchanged otherwise.
            Err(_) => self,
        }
    }

    /// Adds a system prompt text block (the request's system blocks replace the handle's).
    pub fn system(self, text: impl Into<String>) -> Self {
        self.system_blocks([SystemContentBlock::Text(text.into())])
    }

    /// Adds SDK system content blocks: text, guard content, cache points.
    pub fn system_blocks(self, blocks: impl IntoIterator<Item = SystemContentBlock>) -> Self {
        self.with(|i| {
            for b in blocks {
                i.push_system(b);
            }
            i.last = LastAdded::System;
        })
    }

    /// Appends a user message with one text block.
    pub fn user(self, text: impl Into<String>) -> Self {
        self.push(ConversationRole::User, text.into())
    }

    /// Appends an assistant message with one text block.
    pub fn assistant(self, text: impl Into<String>) -> Self {
        self.push(ConversationRole::Assistant, text.into())
    }

    /// Appends SDK messages (any content: text, images, documents, tool use and results,
    /// reasoning, ...).
    pub fn messages(self, messages: impl IntoIterator<Item = Message>) -> Self {
        self.with(|i| {
            let before = i.messages.len();
            i.messages.extend(messages);
            if i.messages.len() > before {
                i.last = LastAdded::Message;
            }
        })
    }

    /// Appends one SDK message.
    pub fn message(self, message: Message) -> Self {
        self.messages([message])
    }

    /// Adds a prompt-caching point after what was added last: the system prompt, the tools, or
    /// the latest message. Everything before it is cached by the service; a repeat of the same
    /// prefix reads it from the cache (see `Reply::usage`). At most 4 per request.
    pub fn cache_point(self) -> Self {
        self.with(|i| i.add_cache_point(None))
    }

    /// Adds a cache point with this time to live (`5m` or `1h`, where the model offers it).
    pub fn cache_point_with_ttl(self, ttl: CacheTtl) -> Self {
        self.with(|i| i.add_cache_point(Some(ttl)))
    }

    /// Sets the temperature, `0..=1`.
    pub fn temperature(self, temperature: f32) -> Self {
        self.with(|i| i.temperature = Some(temperature))
    }

    /// Sets the output token limit, at least 1.
    pub fn max_tokens(self, max_tokens: i32) -> Self {
        self.with(|i| i.max_tokens = Some(max_tokens))
    }

    /// Sets nucleus sampling, `0..=1`.
    pub fn top_p(self, top_p: f32) -> Self {
        self.with(|i| i.top_p = Some(top_p))
    }

    /// Sets `top_k` (at least 1), written as `top_k` in the additional model request fields:
    /// Anthropic's name, the most used. Other families name it otherwise (Amazon Nova:
    /// `inferenceConfig.topK`, Mistral: `top_k`); use
    /// [`additional_model_request_fields`](Self::additional_model_request_fields) for them.
    /// Refused together with [`thinking`](Self::thinking).
    pub fn top_k(self, top_k: i32) -> Self {
        self.with(|i| i.top_k = Some(top_k))
    }

    /// Sets stop sequences (each non-empty, at most 2500).
    pub fn stop_sequences<I, S>(self, stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let stops = stops.into_iter().map(Into::into).collect();
        self.with(|i| i.stop_sequences = Some(stops))
    }

    /// Sets the tools the model may call (a later [`cache_point`](Self::cache_point) caches
    /// them).
    pub fn tool_config(self, tools: ToolConfiguration) -> Self {
        self.with(|i| {
            i.tool_config = Some(tools);
            i.last = LastAdded::Tools;
        })
    }

    /// Turns on extended thinking with this token budget, written in Anthropic's shape
    /// (`thinking: {type: "enabled", budget_tokens}` in the additional model request fields);
    /// other families take their own fields through
    /// [`additional_model_request_fields`](Self::additional_model_request_fields).
    ///
    /// The budget is at least 1024 and below `max_tokens` (unless
    /// [`interleaved_thinking`](Self::interleaved_thinking) is on). When `max_tokens` is unset,
    /// the crate sends `max_tokens = budget + 4096`, room for the answer after the thinking.
    /// As the service does, it refuses a changed `temperature`, a `top_p` below 0.95, any
    /// `top_k`, and a forced tool choice while thinking is on.
    pub fn thinking(self, budget_tokens: i32) -> Self {
        self.with(|i| i.thinking = Some(budget_tokens))
    }

    /// Turns on Anthropic's interleaved-thinking beta (`anthropic_beta:
    /// ["interleaved-thinking-2025-05-14"]`): thinking between tool calls, and a budget that may
    /// exceed `max_tokens`.
    pub fn interleaved_thinking(self) -> Self {
        self.with(|i| i.interleaved_thinking = true)
    }

    /// Sets additional model request fields (a JSON object, model-specific), merged over the
    /// handle's; [`thinking`](Self::thinking) and [`top_k`](Self::top_k) write into them.
    pub fn additional_model_request_fields(self, fields: Document) -> Self {
        self.with(|i| i.additional_fields = Some(fields))
    }

    /// Asks for extra model response fields by JSON pointer (e.g. `/stop_sequence`); they come
    /// back in the reply's raw output.
    pub fn additional_model_response_field_paths<I, S>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.with(|i| {
            i.response_field_paths
                .extend(paths.into_iter().map(Into::into))
        })
    }

    /// Sends the call through this guardrail (identifier or ARN, and version: a number or
    /// `DRAFT`).
    pub fn guardrail(self, id: impl Into<String>, version: impl Into<String>) -> Self {
        let g = (id.into(), version.into());
        self.with(|i| i.guardrail = Some(g))
    }

    /// Sets the guardrail's trace (`enabled`, `enabled_full` or `disabled`); the trace comes
    /// back with the reply.
    pub fn guardrail_trace(self, trace: GuardrailTrace) -> Self {
        self.with(|i| i.guardrail_trace = Some(trace))
    }

    /// Asks for the latency-optimized version of the model (`performanceConfig.latency =
    /// optimized`, where the model and region offer it).
    pub fn latency_optimized(self) -> Self {
        self.with(|i| i.latency_optimized = true)
    }

    /// Asks for a service tier (`priority`, `default`, `flex`, `reserved`).
    pub fn service_tier(self, tier: ServiceTierType) -> Self {
        self.with(|i| i.service_tier = Some(tier))
    }

    /// Adds a request metadata entry (at most 16; keys 1 to 256 and values up to 256 characters
    /// of `[a-zA-Z0-9 :_@$#=/+,-.]`), for cost allocation and invocation logs.
    pub fn request_metadata(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let kv = (key.into(), value.into());
        self.with(|i| {
            i.request_metadata.retain(|(k, _)| *k != kv.0);
            i.request_metadata.push(kv)
        })
    }

    /// Sets a variable of a prompt from Prompt management (the model id is then the prompt's
    /// ARN). With a prompt ARN the service refuses `system`, inference settings, tools and
    /// additional fields, and messages are optional; this request follows those rules, and
    /// the handle's defaults for them are not applied.
    pub fn prompt_variable(self, name: impl Into<String>, text: impl Into<String>) -> Self {
        let kv = (name.into(), text.into());
        self.with(|i| i.prompt_variables.push(kv))
    }

    /// Asks for structured output: the answer's text is JSON matching this JSON schema (a
    /// JSON object) named `name`. Read it with `Reply::structured_output`.
    pub fn output_schema(self, name: impl Into<String>, schema: Document) -> Self {
        let s = (name.into(), schema);
        self.with(|i| i.output_schema = Some(s))
    }

    /// Overrides the read timeout for this call, for long unary generations (the service sends
    /// the response headers only when the whole answer is ready). Default is the factory's.
    pub fn read_timeout(self, timeout: Duration) -> Self {
        self.with(|i| i.read_timeout = Some(timeout))
    }

    /// Checks every input and returns what the SDK call needs.
    pub(crate) fn validate(self) -> Result<Validated> {
        validate::validate(self.inputs, self.model.inner())
    }
}

impl ConverseRequest<Unary> {
    /// Returns the timeouts and retry rule this call will use: carried as a ConverseStream
    /// (the default: see [`LlmFactoryBuilder::unary_over_stream`](crate::LlmFactoryBuilder::unary_over_stream)),
    /// its read and stall timeouts, and what a throttle or a read timeout does.
    pub fn policy(&self) -> CallPolicy {
        let target = &self.model.inner().target;
        let rule = unary_rule(target, true, self.inputs.read_timeout);
        let falls_back = !self.model.chain().fallbacks.is_empty();
        CallPolicy::of(target, rule, false, falls_back, self.inputs.read_timeout)
    }

    /// Sends the call and waits for the whole answer.
    ///
    /// The call goes as a ConverseStream collected into the same answer (see
    /// [`policy`](Self::policy)), so a long generation is neither cut by the read timeout nor
    /// sent twice; the service's refusal of the stream (no permission for
    /// `bedrock:InvokeModelWithResponseStream`, a model without streaming tool use) sends it
    /// as a unary Converse instead, and later calls of that model and region go unary.
    ///
    /// # Errors
    /// Invalid input (naming the field) before any network call, including a call that goes
    /// unary and whose `max_tokens` may take longer than the read timeout, without a
    /// read timeout of its own; otherwise the SDK's error mapped to an
    /// [`ErrorKind`](crate::ErrorKind), after the SDK's retries (and one failover to the next
    /// region when several are configured and the failure is regional).
    pub async fn send(self) -> Result<Reply> {
        let model = self.model.clone();
        let target = &model.inner().target;
        let rule = unary_rule(target, true, self.inputs.read_timeout);
        let stall = target.shared.config.timeouts.stream_stall;
        let answer = drive(
            model.chain(),
            Op::Converse,
            rule,
            || {
                let v = self.validate()?;
                let max = v.inference.as_ref().and_then(|i| i.max_tokens());
                check_unary_bound(target, rule, max.map(i64::from), "max_tokens")?;
                Ok(v)
            },
            |v, id, to| {
                send_carried!(
                    to,
                    unary: prepared_send!(to.client.converse(), id, v, v.guardrail_config()),
                    stream: prepared_send!(
                        to.client.converse_stream(),
                        id,
                        v,
                        v.guardrail_stream_config()
                    ),
                )
            },
        )
        .await?;
        let mut call = answer.call;
        let output = match *answer.output {
            Carried::Stream(s) => {
                let source = crate::call::ahead::EventSource::direct(s.stream);
                return ReplyStream::new(source, call, stall).collect().await;
            }
            Carried::Unary(o) => o,
        };
        call.route(
            output
                .trace()
                .and_then(|t| t.prompt_router())
                .and_then(|r| r.invoked_model_id()),
        );
        call.served_by(output.service_tier().map(|t| t.r#type()));
        if let Some(u) = output.usage() {
            call.usage(u);
        }
        call.finish_reason(output.stop_reason());
        call.finish(Outcome::Success);
        Ok(Reply {
            output,
            info: call.finished_info(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::rules::validate_messages;
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};

    fn msg(role: ConversationRole, text: &str) -> Message {
        Message::builder()
            .role(role)
            .content(ContentBlock::Text(text.into()))
            .build()
            .unwrap()
    }

    #[test]
    fn message_rules() {
        use ConversationRole::{Assistant, User};
        assert!(validate_messages(&[msg(User, "hi")]).is_ok());
        assert!(
            validate_messages(&[msg(User, "hi"), msg(Assistant, "yo"), msg(User, "q")]).is_ok()
        );
        assert!(validate_messages(&[]).is_err());
        assert!(validate_messages(&[msg(Assistant, "hi")]).is_err());
        assert!(validate_messages(&[msg(User, "a"), msg(User, "b")]).is_err());
        assert!(validate_messages(&[msg(User, "  ")]).is_err());
    }
}
