//! What a Converse request was given, before validation: plain data, no rules (a handle's
//! defaults are one too, the prototype of its requests).

use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, CacheTtl, ContentBlock, GuardrailStreamProcessingMode,
    GuardrailTrace, Message, ServiceTierType, SystemContentBlock, Tool, ToolConfiguration,
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

/// The inputs of a request, as given; also a handle's defaults (its prototype request, which
/// each of its requests starts from: see [`Inputs::start_from`]).
#[derive(Clone, Debug, Default)]
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
    /// `system` holds the handle's blocks: the request's first block replaces them.
    pub(crate) system_inherited: bool,
    /// The handle's additional model request fields, which the request's are merged over.
    pub(crate) inherited_fields: Option<Document>,
}

impl Inputs {
    /// Returns the inputs a request of a handle starts from: a copy of the handle's prototype
    /// `defaults`. For a prompt ARN (`prompt`) only the guardrail, latency, service tier and
    /// request metadata apply: the service refuses the rest with a prompt.
    pub(crate) fn start_from(defaults: &Inputs, prompt: bool) -> Inputs {
        if prompt {
            return Inputs {
                guardrail: defaults.guardrail.clone(),
                latency_optimized: defaults.latency_optimized,
                service_tier: defaults.service_tier.clone(),
                request_metadata: defaults.request_metadata.clone(),
                ..Inputs::default()
            };
        }
        let mut i = defaults.clone();
        i.system_inherited = !i.system.is_empty();
        i.inherited_fields = i.additional_fields.take();
        i
    }

    /// Appends a system block of the request; its first replaces the handle's blocks.
    pub(crate) fn push_system(&mut self, block: SystemContentBlock) {
        if self.system_inherited {
            self.system.clear();
            self.system_inherited = false;
        }
        self.system.push(block);
    }

    /// Appends a cache point after what was added last: the system prompt, the tools, or the
    /// latest message.
    pub(crate) fn add_cache_point(&mut self, ttl: Option<CacheTtl>) {
        let cp = cache_point(ttl);
        match self.last {
            LastAdded::Nothing => self.misplaced_cache_point = true,
            LastAdded::System => self.push_system(SystemContentBlock::CachePoint(cp)),
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

/// Returns a cache point block, with a time to live where one is asked for.
pub(crate) fn cache_point(ttl: Option<CacheTtl>) -> CachePointBlock {
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .set_ttl(ttl)
        .build()
        .unwrap_or_else(|_| unreachable!("the type is set"))
}
