//! What a Converse request was given, before validation: plain data, no rules.

use aws_sdk_bedrockruntime::types::{
    CacheTtl, ContentBlock, GuardrailStreamProcessingMode, GuardrailTrace, Message,
    ServiceTierType, SystemContentBlock, Tool, ToolConfiguration,
};
use aws_smithy_types::Document;
use std::time::Duration;

/// Where the last thing added to a request went, for [`Inputs::add_cache_point`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LastAdded {
    #[default]
    Nothing,
    System,
    Tools,
    Message,
}

/// The inputs of a request, as given.
#[derive(Default)]
pub(crate) struct Inputs {
    pub(crate) system: Vec<SystemContentBlock>,
    pub(crate) messages: Vec<Message>,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<i32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) top_k: Option<i32>,
    pub(crate) stop_sequences: Option<Vec<String>>,
    pub(crate) tool_config: Option<ToolConfiguration>,
    pub(crate) additional_fields: Option<Document>,
    pub(crate) thinking: Option<i32>,
    pub(crate) interleaved_thinking: bool,
    pub(crate) response_field_paths: Vec<String>,
    pub(crate) guardrail: Option<(String, String)>,
    pub(crate) guardrail_trace: Option<GuardrailTrace>,
    pub(crate) stream_processing_mode: Option<GuardrailStreamProcessingMode>,
    pub(crate) latency_optimized: bool,
    pub(crate) service_tier: Option<ServiceTierType>,
    pub(crate) request_metadata: Vec<(String, String)>,
    pub(crate) prompt_variables: Vec<(String, String)>,
    pub(crate) output_schema: Option<(String, Document)>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) last: LastAdded,
    /// A cache point asked for with nothing before it, reported when the request is sent.
    pub(crate) misplaced_cache_point: bool,
}

impl Inputs {
    /// Appends a cache point after what was added last: the system prompt, the tools, or the
    /// latest message.
    pub(crate) fn add_cache_point(&mut self, ttl: Option<CacheTtl>) {
        let cp = crate::model::cache_point(ttl);
        match self.last {
            LastAdded::Nothing => self.misplaced_cache_point = true,
            LastAdded::System => self.system.push(SystemContentBlock::CachePoint(cp)),
            LastAdded::Tools => {
                if let Some(tc) = self.tool_config.take() {
                    let mut tools = tc.tools().to_vec();
                    tools.push(Tool::CachePoint(cp));
                    self.tool_config = ToolConfiguration::builder()
                        .set_tools(Some(tools))
                        .set_tool_choice(tc.tool_choice().cloned())
                        .build()
                        .ok()
                        .or(Some(tc));
                }
            }
            LastAdded::Message => {
                if let Some(m) = self.messages.pop() {
                    let mut content = m.content().to_vec();
                    content.push(ContentBlock::CachePoint(cp));
                    let rebuilt = Message::builder()
                        .role(m.role().clone())
                        .set_content(Some(content))
                        .build();
                    self.messages.push(rebuilt.unwrap_or(m));
                }
            }
        }
    }
}
