//! The Converse request builder: its inputs, their validation, and the unary `send`.

use crate::call::{Op, drive};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::reply::Reply;
use crate::stats::Outcome;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SystemContentBlock, Tool,
    ToolConfiguration,
};
use aws_smithy_types::timeout::TimeoutConfig;
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
/// validated inputs and returns the future that sends it, with the per-call timeout override
/// when there is one.
///
/// Without an override the builder is sent as is: `customize()` would box the SDK's future and
/// add an (empty) config-override layer to every call, which the profile showed as the
/// largest part of the factory's own cost per call.
macro_rules! prepared_send {
    ($builder:expr, $id:expr, $v:expr) => {{
        let builder = $builder
            .model_id($id)
            .set_messages(Some($v.messages.clone()))
            .set_system($v.system.clone())
            .set_inference_config($v.inference.clone())
            .set_tool_config($v.tools.clone());
        let timeouts = $v.timeouts.clone();
        async move {
            match timeouts {
                None => builder.send().await,
                Some(t) => {
                    builder
                        .customize()
                        .config_override(
                            aws_sdk_bedrockruntime::config::Builder::default().timeout_config(t),
                        )
                        .send()
                        .await
                }
            }
        }
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
/// the field, before any network call.
#[must_use = "a request does nothing until `.send().await`"]
pub struct ConverseRequest<K = Unary> {
    pub(crate) model: Model,
    pub(crate) system: Vec<String>,
    pub(crate) messages: Vec<Message>,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<i32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) stop_sequences: Option<Vec<String>>,
    pub(crate) tool_config: Option<ToolConfiguration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    kind: PhantomData<K>,
}

impl<K> fmt::Debug for ConverseRequest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConverseRequest")
            .field("model", &self.model.id())
            .field("messages", &self.messages.len())
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("top_p", &self.top_p)
            .finish_non_exhaustive()
    }
}

impl<K> ConverseRequest<K> {
    pub(crate) fn new(model: Model) -> Self {
        ConverseRequest {
            model,
            system: Vec::new(),
            messages: Vec::new(),
            temperature: None,
            max_tokens: None,
            top_p: None,
            stop_sequences: None,
            tool_config: None,
            read_timeout: None,
            stall_timeout: None,
            kind: PhantomData,
        }
    }

    fn push(mut self, role: ConversationRole, text: String) -> Self {
        self.messages.push(
            Message::builder()
                .role(role)
                .content(ContentBlock::Text(text))
                .build()
                .unwrap_or_else(|_| unreachable_message()),
        );
        self
    }

    /// Adds a system prompt block (replacing the handle's default system prompt).
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.system.push(text.into());
        self
    }

    /// Appends a user message with one text block.
    pub fn user(self, text: impl Into<String>) -> Self {
        self.push(ConversationRole::User, text.into())
    }

    /// Appends an assistant message with one text block.
    pub fn assistant(self, text: impl Into<String>) -> Self {
        self.push(ConversationRole::Assistant, text.into())
    }

    /// Appends SDK messages (any content: text, images, tool use and results, ...).
    pub fn messages(mut self, messages: impl IntoIterator<Item = Message>) -> Self {
        self.messages.extend(messages);
        self
    }

    /// Appends one SDK message.
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Sets the temperature, `0..=1`.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the output token limit, at least 1.
    pub fn max_tokens(mut self, max_tokens: i32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets nucleus sampling, `0..=1`.
    pub fn top_p(mut self, top_p: f32) -> Self {
        self.top_p = Some(top_p);
        self
    }

    /// Sets stop sequences (each non-empty, at most 2500).
    pub fn stop_sequences<I, S>(mut self, stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stop_sequences = Some(stops.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the tools the model may call.
    pub fn tool_config(mut self, tools: ToolConfiguration) -> Self {
        self.tool_config = Some(tools);
        self
    }

    /// Overrides the read timeout for this call, for long unary generations (the service sends
    /// the response headers only when the whole answer is ready). Default is the factory's.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Checks every input and returns what the SDK call needs.
    pub(crate) fn validate(self) -> Result<Validated> {
        let m = self.model.inner();
        let d = &m.defaults;
        let system_texts: Vec<&String> = if self.system.is_empty() {
            d.system.iter().collect()
        } else {
            self.system.iter().collect()
        };
        let mut system = Vec::new();
        for s in system_texts {
            if s.trim().is_empty() {
                return Err(Error::invalid("system", "the system prompt is empty"));
            }
            system.push(SystemContentBlock::Text(s.clone()));
        }
        validate_messages(&self.messages)?;
        let temperature = self.temperature.or(d.temperature);
        let top_p = self.top_p.or(d.top_p);
        let max_tokens = self.max_tokens.or(d.max_tokens);
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
        if let Some(n) = max_tokens
            && n < 1
        {
            return Err(Error::invalid("max_tokens", format!("{n} is below 1")));
        }
        if let Some(stops) = &self.stop_sequences {
            if stops.len() > 2500 {
                return Err(Error::invalid(
                    "stop_sequences",
                    format!("{} sequences, at most 2500", stops.len()),
                ));
            }
            if let Some(i) = stops.iter().position(|s| s.is_empty()) {
                return Err(Error::invalid(
                    "stop_sequences",
                    format!("sequence {i} is empty"),
                ));
            }
        }
        if let Some(tc) = &self.tool_config {
            validate_tools(tc)?;
        }
        for (field, t) in [
            ("read_timeout", self.read_timeout),
            ("stream_stall_timeout", self.stall_timeout),
        ] {
            if let Some(t) = t
                && t.is_zero()
            {
                return Err(Error::invalid(field, "must be greater than zero"));
            }
        }
        let inference = if temperature.is_some()
            || top_p.is_some()
            || max_tokens.is_some()
            || self.stop_sequences.is_some()
        {
            Some(
                InferenceConfiguration::builder()
                    .set_temperature(temperature)
                    .set_top_p(top_p)
                    .set_max_tokens(max_tokens)
                    .set_stop_sequences(self.stop_sequences.clone())
                    .build(),
            )
        } else {
            None
        };
        let timeouts = self.read_timeout.map(|rt| {
            TimeoutConfig::builder()
                .connect_timeout(m.target.shared.config.timeouts.connect)
                .read_timeout(rt)
                .build()
        });
        Ok(Validated {
            system: (!system.is_empty()).then_some(system),
            messages: self.messages,
            inference,
            tools: self.tool_config,
            timeouts,
        })
    }
}

/// Inputs checked and ready for the SDK.
pub(crate) struct Validated {
    pub(crate) system: Option<Vec<SystemContentBlock>>,
    pub(crate) messages: Vec<Message>,
    pub(crate) inference: Option<InferenceConfiguration>,
    pub(crate) tools: Option<ToolConfiguration>,
    pub(crate) timeouts: Option<TimeoutConfig>,
}

/// A `Message` with a role and one block always builds; this is never reached.
fn unreachable_message() -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .set_content(Some(Vec::new()))
        .build()
        .unwrap_or_else(|_| unreachable!("role and content are set"))
}

/// Most bytes of text one call may carry (a guard against runaway inputs, far above any
/// model's context window).
const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;

fn validate_messages(messages: &[Message]) -> Result<()> {
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

impl ConverseRequest<Unary> {
    /// Sends the call and waits for the whole answer.
    ///
    /// # Errors
    /// Invalid input (naming the field) before any network call; otherwise the SDK's error
    /// mapped to an [`ErrorKind`](crate::ErrorKind), after the SDK's retries (and one failover
    /// to the next region when several are configured and the failure is regional).
    pub async fn send(self) -> Result<Reply> {
        let model = self.model.clone();
        let target = &model.inner().target;
        let answer = drive(
            target,
            Op::Converse,
            || self.validate(),
            |v, region| prepared_send!(region.client.converse(), &target.id, v),
        )
        .await?;
        let mut call = answer.call;
        call.finish(Outcome::Success);
        Ok(Reply {
            output: answer.output,
            region: call.region().to_owned(),
            attempts: call.attempts(),
            latency: call.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
