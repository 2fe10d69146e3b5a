//! `Reply`: the answer of a Converse call (or of a collected stream).

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{Message, StopReason, TokenUsage, ToolUseBlock};
use std::time::Duration;

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
