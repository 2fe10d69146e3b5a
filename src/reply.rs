//! `Reply`: the answer of a Converse call (or of a collected stream).

use crate::collect::parse_json;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{CallInfo, CallMetadata};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    CitationsContentBlock, ContentBlock, ConverseTrace, GuardrailTraceAssessment, Message,
    PerformanceConfiguration, ReasoningContentBlock, ServiceTier, StopReason, TokenUsage,
    ToolUseBlock,
};
use aws_smithy_types::{Blob, Document};
use std::time::Duration;

/// The answer of a Converse call.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) output: ConverseOutput,
    pub(crate) info: CallInfo,
}

impl CallMetadata for Reply {
    fn call_info(&self) -> &CallInfo {
        &self.info
    }
}

impl Reply {
    /// Returns the text of the assistant message: its text blocks and the text of its
    /// citations blocks, concatenated in order (reasoning is left out).
    pub fn text(&self) -> String {
        let Some(m) = self.message() else {
            return String::new();
        };
        let mut text = String::new();
        for b in m.content() {
            match b {
                ContentBlock::Text(t) => text.push_str(t),
                ContentBlock::CitationsContent(c) => c
                    .content()
                    .iter()
                    .filter_map(|g| g.as_text().ok())
                    .for_each(|t| text.push_str(t)),
                _ => {}
            }
        }
        text
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

    /// Returns the model's reasoning (extended thinking), `None` if the answer has none.
    ///
    /// Send the assistant [`message`](Self::message) back unchanged as history to keep the
    /// reasoning blocks and their signatures, as multi-turn thinking with tool use requires.
    pub fn reasoning(&self) -> Option<Reasoning<'_>> {
        let content = self.message()?.content();
        content
            .iter()
            .any(ContentBlock::is_reasoning_content)
            .then_some(Reasoning { content })
    }

    /// Returns the text blocks that come with citations (their text is part of
    /// [`text`](Self::text)), in order.
    pub fn citations(&self) -> Vec<&CitationsContentBlock> {
        self.message()
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|b| b.as_citations_content().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Returns the input tokens read from the prompt cache, if the service reported them.
    pub fn cache_read_tokens(&self) -> Option<i32> {
        self.usage()?.cache_read_input_tokens()
    }

    /// Returns the input tokens written to the prompt cache, if the service reported them.
    pub fn cache_write_tokens(&self) -> Option<i32> {
        self.usage()?.cache_write_input_tokens()
    }

    /// Returns the trace (guardrail, prompt router), present when the request enabled it.
    pub fn trace(&self) -> Option<&ConverseTrace> {
        self.output.trace()
    }

    /// Returns the guardrail's assessment, present when the request enabled the trace.
    pub fn guardrail_trace(&self) -> Option<&GuardrailTraceAssessment> {
        self.trace()?.guardrail()
    }

    /// Returns whether a guardrail intervened (stop reason `guardrail_intervened`).
    pub fn guardrail_intervened(&self) -> bool {
        matches!(self.stop_reason(), StopReason::GuardrailIntervened)
    }

    /// Returns the performance configuration the call ran with, if the service reported it.
    pub fn performance(&self) -> Option<&PerformanceConfiguration> {
        self.output.performance_config()
    }

    /// Returns the service tier that served the call, if the service reported it.
    pub fn service_tier(&self) -> Option<&ServiceTier> {
        self.output.service_tier()
    }

    /// Returns the structured output: the [`text`](Self::text) parsed as JSON, `None` if the
    /// answer has no text block.
    ///
    /// # Errors
    /// The text is not one valid JSON value (an error of kind [`ErrorKind::Other`] naming the
    /// parse failure).
    pub fn structured_output(&self) -> Option<Result<Document>> {
        let content = self.message()?.content();
        if !content
            .iter()
            .any(|b| b.is_text() || b.is_citations_content())
        {
            return None;
        }
        Some(parse_json(&self.text()).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("structured output: the reply text is not valid JSON: {e}"),
            )
        }))
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

/// The reasoning (extended thinking) blocks of a [`Reply`], read through the SDK's own
/// [`ReasoningContentBlock`]s.
#[derive(Clone, Copy, Debug)]
pub struct Reasoning<'a> {
    content: &'a [ContentBlock],
}

impl<'a> Reasoning<'a> {
    /// Returns the reasoning blocks, in order.
    pub fn blocks(&self) -> impl Iterator<Item = &'a ReasoningContentBlock> + use<'a> {
        self.content
            .iter()
            .filter_map(|b| b.as_reasoning_content().ok())
    }

    /// Returns the reasoning text, the readable blocks concatenated.
    pub fn text(&self) -> String {
        self.blocks()
            .filter_map(|r| r.as_reasoning_text().ok())
            .map(|t| t.text())
            .collect()
    }

    /// Returns the signature of the last readable block that has one.
    pub fn signature(&self) -> Option<&'a str> {
        self.blocks()
            .filter_map(|r| r.as_reasoning_text().ok())
            .filter_map(|t| t.signature())
            .last()
    }

    /// Returns the redacted (encrypted) reasoning blocks, in order.
    pub fn redacted(&self) -> Vec<&'a Blob> {
        self.blocks()
            .filter_map(|r| r.as_redacted_content().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{
        CitationGeneratedContent, ConversationRole, ReasoningTextBlock,
    };

    fn reply(content: Vec<ContentBlock>, stop: StopReason) -> Reply {
        let message = Message::builder()
            .role(ConversationRole::Assistant)
            .set_content(Some(content))
            .build()
            .unwrap();
        Reply {
            output: ConverseOutput::builder()
                .output(aws_sdk_bedrockruntime::types::ConverseOutput::Message(
                    message,
                ))
                .stop_reason(stop)
                .build()
                .unwrap(),
            info: CallInfo {
                model_id: "m".to_owned(),
                router: None,
                region: "r".into(),
                attempts: 1,
                latency: Duration::ZERO,
            },
        }
    }

    fn thought(text: &str, sig: Option<&str>) -> ContentBlock {
        ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
            ReasoningTextBlock::builder()
                .text(text)
                .set_signature(sig.map(str::to_owned))
                .build()
                .unwrap(),
        ))
    }

    #[test]
    fn reasoning_reads_text_signature_and_redacted() {
        let r = reply(
            vec![
                thought("a ", Some("s1")),
                ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(Blob::new(
                    b"x".to_vec(),
                ))),
                thought("b", Some("s2")),
                ContentBlock::Text("answer".into()),
            ],
            StopReason::EndTurn,
        );
        let reasoning = r.reasoning().expect("reasoning");
        assert_eq!(reasoning.text(), "a b");
        assert_eq!(reasoning.signature(), Some("s2"));
        assert_eq!(reasoning.redacted(), vec![&Blob::new(b"x".to_vec())]);
        assert_eq!(reasoning.blocks().count(), 3);
        assert_eq!(r.text(), "answer");
        let cited = reply(
            vec![
                ContentBlock::Text("The sky ".into()),
                ContentBlock::CitationsContent(
                    CitationsContentBlock::builder()
                        .content(CitationGeneratedContent::Text("is blue".into()))
                        .build(),
                ),
            ],
            StopReason::EndTurn,
        );
        assert_eq!(cited.text(), "The sky is blue");
        assert_eq!(cited.citations().len(), 1);
        assert!(!r.guardrail_intervened());
        let plain = reply(vec![ContentBlock::Text("x".into())], StopReason::EndTurn);
        assert!(plain.reasoning().is_none());
    }

    #[test]
    fn structured_output_parses_the_text_or_names_the_failure() {
        let ok = reply(
            vec![ContentBlock::Text("{\"n\": [1, true]} ".into())],
            StopReason::EndTurn,
        );
        let doc = ok.structured_output().unwrap().unwrap();
        assert_eq!(
            doc.as_object()
                .and_then(|o| o.get("n"))
                .map(|n| n.is_array()),
            Some(true)
        );
        let bad = reply(
            vec![ContentBlock::Text("{\"n\":".into())],
            StopReason::EndTurn,
        );
        let e = bad.structured_output().unwrap().unwrap_err();
        assert!(e.to_string().contains("structured output"), "{e}");
        let none = reply(vec![thought("t", None)], StopReason::GuardrailIntervened);
        assert!(none.structured_output().is_none());
        assert!(none.guardrail_intervened());
    }
}
