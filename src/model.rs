//! `Model`: a cheap handle on one model id, and the converse request builder.

use crate::error::{Error, ErrorKind, Result, from_sdk};
use crate::factory::{RegionClient, Shared};
use crate::stats::{CallGuard, Outcome, RequestCounters};
use crate::transport::{CALL, CallScope, ConnectionWatch};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, StopReason,
    SystemContentBlock, TokenUsage, Tool, ToolConfiguration, ToolUseBlock,
};
use aws_smithy_types::timeout::TimeoutConfig;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tracing::Instrument;

/// Inference defaults carried by a handle; a request's own values win.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct InferenceDefaults {
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<i32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) system: Option<String>,
}

pub(crate) struct ModelInner {
    pub(crate) id: String,
    /// The id again, shared cheaply with each call's statistics guard.
    pub(crate) label: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<RequestCounters>,
    pub(crate) defaults: InferenceDefaults,
    /// Why the id is unusable, reported on every call.
    pub(crate) invalid: Option<Error>,
}

impl ModelInner {
    /// Starts the statistics of one call: overall and this model's figures.
    pub(crate) fn call_guard(&self) -> CallGuard {
        CallGuard::start(
            vec![self.shared.overall.clone(), self.counters.clone()],
            self.shared.activity.clone(),
            Some(self.label.clone()),
        )
    }

    pub(crate) fn new(id: String, shared: Arc<Shared>, invalid: Option<Error>) -> Self {
        let counters = shared.model_counters(&id);
        ModelInner {
            label: Arc::from(id.as_str()),
            id,
            shared,
            counters,
            defaults: InferenceDefaults::default(),
            invalid,
        }
    }
}

/// A cheap, cloneable handle on one model id of a factory, with optional inference defaults.
///
/// Get one with [`LlmFactory::model`](crate::LlmFactory::model); every handle reuses the
/// factory's shared client and pool.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.inner.id)
            .field("defaults", &self.inner.defaults)
            .finish_non_exhaustive()
    }
}

impl Model {
    pub(crate) fn from_inner(inner: ModelInner) -> Self {
        Model {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn inner(&self) -> &ModelInner {
        &self.inner
    }

    /// Returns the model id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Returns true when `other` is the same handle (the same cached allocation).
    pub fn same_handle(&self, other: &Model) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn with(&self, f: impl FnOnce(&mut InferenceDefaults)) -> Model {
        let mut defaults = self.inner.defaults.clone();
        f(&mut defaults);
        Model::from_inner(ModelInner {
            id: self.inner.id.clone(),
            label: self.inner.label.clone(),
            shared: self.inner.shared.clone(),
            counters: self.inner.counters.clone(),
            defaults,
            invalid: self.inner.invalid.as_ref().map(Error::shallow_clone),
        })
    }

    /// Returns a handle whose calls default to this temperature (checked when sent: `0..=1`).
    pub fn with_temperature(&self, temperature: f32) -> Model {
        self.with(|d| d.temperature = Some(temperature))
    }

    /// Returns a handle whose calls default to this output token limit (checked when sent: >= 1).
    pub fn with_max_tokens(&self, max_tokens: i32) -> Model {
        self.with(|d| d.max_tokens = Some(max_tokens))
    }

    /// Returns a handle whose calls default to this nucleus sampling value (`0..=1`).
    pub fn with_top_p(&self, top_p: f32) -> Model {
        self.with(|d| d.top_p = Some(top_p))
    }

    /// Returns a handle whose calls default to this system prompt.
    pub fn with_system(&self, system: impl Into<String>) -> Model {
        self.with(|d| d.system = Some(system.into()))
    }

    /// Starts a Converse call.
    pub fn converse(&self) -> ConverseRequest {
        ConverseRequest::new(self.clone())
    }

    /// Starts a ConverseStream call: the same inputs, a stream of events as the answer.
    pub fn converse_stream(&self) -> crate::stream::ConverseStreamRequest {
        ConverseRequest::new(self.clone())
    }
}

/// Fills a Converse or ConverseStream fluent builder (the same setters on two types) from
/// validated inputs, with the per-call timeout override when there is one.
macro_rules! prepared_call {
    ($builder:expr, $id:expr, $v:expr) => {{
        let mut call = $builder
            .model_id($id)
            .set_messages(Some($v.messages.clone()))
            .set_system($v.system.clone())
            .set_inference_config($v.inference.clone())
            .set_tool_config($v.tools.clone())
            .customize();
        if let Some(t) = &$v.timeouts {
            call = call.config_override(
                aws_sdk_bedrockruntime::config::Builder::default().timeout_config(t.clone()),
            );
        }
        call
    }};
}
pub(crate) use prepared_call;

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
        if let Some(e) = &m.invalid {
            return Err(e.shallow_clone());
        }
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
                .connect_timeout(m.shared.config.timeouts.connect)
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

/// Longest model id the service accepts.
const MAX_MODEL_ID: usize = 2048;

/// Checks a model id's syntax as the service does (length, no whitespace or control bytes).
pub(crate) fn validate_model_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("model_id", "the model id is empty"));
    }
    if id.len() > MAX_MODEL_ID {
        return Err(Error::invalid(
            "model_id",
            format!("{} bytes, at most {MAX_MODEL_ID}", id.len()),
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "model_id",
            format!("{id:?} contains whitespace or control characters"),
        ));
    }
    Ok(())
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

/// The answer of a Converse call.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) output: ConverseOutput,
    pub(crate) region: String,
    pub(crate) attempts: u32,
    pub(crate) latency: Duration,
}

impl Reply {
    /// Returns the text blocks of the assistant message, concatenated.
    pub fn text(&self) -> String {
        self.message()
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|b| b.as_text().ok())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Returns the assistant message.
    pub fn message(&self) -> Option<&Message> {
        match self.output.output() {
            Some(aws_sdk_bedrockruntime::types::ConverseOutput::Message(m)) => Some(m),
            _ => None,
        }
    }

    /// Returns the tool calls the model asked for, in order.
    pub fn tool_uses(&self) -> Vec<&ToolUseBlock> {
        self.message()
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|b| b.as_tool_use().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Returns why the model stopped.
    pub fn stop_reason(&self) -> &StopReason {
        self.output.stop_reason()
    }

    /// Returns the token counts.
    pub fn usage(&self) -> Option<&TokenUsage> {
        self.output.usage()
    }

    /// Returns the latency the service reported (`metrics.latencyMs`).
    pub fn service_latency(&self) -> Option<Duration> {
        self.output
            .metrics()
            .map(|m| Duration::from_millis(u64::try_from(m.latency_ms()).unwrap_or(0)))
    }

    /// Returns the latency measured by the client, retries included.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Returns the region that answered.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Returns the attempts the SDK made in the region that answered.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Returns the SDK's output.
    pub fn raw(&self) -> &ConverseOutput {
        &self.output
    }

    /// Returns the SDK's output, consuming the reply.
    pub fn into_raw(self) -> ConverseOutput {
        self.output
    }
}

/// Runs `call` in each allowed region in turn (primary first, at most one failover), with
/// attempts counted and statistics recorded. Shared by converse and converse_stream.
///
/// On success it also returns the answering region's still-open guard: a stream finishes it
/// when the stream ends, so the region's figures count the whole call, not just the headers.
pub(crate) async fn with_failover<T, F, Fut>(
    model: &Model,
    guard: &mut CallGuard,
    mut call: F,
) -> Result<(T, u32, String, CallGuard, Option<ConnectionWatch>)>
where
    F: FnMut(&RegionClient) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let shared = &model.inner().shared;
    let order = shared.region_order(model.id());
    let tries = order.len().min(2);
    for (i, region) in order.iter().take(tries).enumerate() {
        let region_guard =
            CallGuard::start(vec![region.counters.clone()], region.activity.clone(), None);
        let scope = Arc::new(CallScope::default());
        let fut = call(region);
        shared.check_exhaustion(region);
        let result = CALL.scope(scope.clone(), fut).await;
        let n = scope.attempts.load(Relaxed);
        let extra = u64::from(n.saturating_sub(1));
        let retired = u64::from(scope.retired.load(Relaxed));
        for g in [&*guard, &region_guard] {
            g.retries(extra);
            g.retired(retired);
        }
        match result {
            Ok(v) => {
                shared.mark_healthy(region);
                let watch = shared.transport.last_connection(&scope);
                return Ok((v, n, region.region.clone(), region_guard, watch));
            }
            Err(e) => {
                region_guard.finish(Outcome::Failure(e.kind()));
                let regional = e.is_regional();
                if regional && order.len() > 1 {
                    shared.mark_unhealthy(region);
                }
                if !regional || i + 1 == tries {
                    return Err(e);
                }
                region.failovers.fetch_add(1, Relaxed);
                tracing::warn!(region = %region.region, error = %e, "regional failure, trying the next region");
            }
        }
    }
    Err(Error::new(
        ErrorKind::Other,
        "no region to send the call to",
    ))
}

impl ConverseRequest<Unary> {
    /// Sends the call and waits for the whole answer.
    ///
    /// # Errors
    /// Invalid input (naming the field) before any network call; otherwise the SDK's error
    /// mapped to an [`ErrorKind`], after the SDK's retries (and one failover to the next
    /// region when several are configured and the failure is regional).
    pub async fn send(self) -> Result<Reply> {
        let model = self.model.clone();
        let m = model.inner();
        let span = tracing::debug_span!(
            "bedrock.converse",
            model_id = %m.id,
            region = tracing::field::Empty,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let mut guard = m.call_guard();
        let result = async {
            let v = self.validate()?;
            with_failover(&model, &mut guard, |region| {
                let call = prepared_call!(region.client.converse(), &m.id, v);
                async move { call.send().await.map_err(|e| from_sdk("converse", e)) }
            })
            .await
        }
        .instrument(span.clone())
        .await;
        let latency = guard.elapsed();
        span.record("latency_ms", latency.as_secs_f64() * 1000.0);
        match result {
            Ok((output, attempts, region, region_guard, _)) => {
                region_guard.finish(Outcome::Success);
                span.record("attempts", attempts);
                span.record("region", region.as_str());
                span.record("outcome", "success");
                guard.finish(Outcome::Success);
                Ok(Reply {
                    output,
                    region,
                    attempts,
                    latency,
                })
            }
            Err(e) => {
                span.record("outcome", e.kind().as_str());
                guard.finish(Outcome::Failure(e.kind()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_checked() {
        assert!(validate_model_id("anthropic.claude-3-haiku-20240307-v1:0").is_ok());
        assert!(validate_model_id("arn:aws:bedrock:us-east-1:1:inference-profile/x").is_ok());
        for bad in ["", "a b", "tab\there", &"x".repeat(3000)] {
            let e = validate_model_id(bad).unwrap_err();
            assert_eq!(e.field(), Some("model_id"), "{bad:?}");
        }
    }

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
