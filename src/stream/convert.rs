//! What the stream's receives go through: the SDK's events turned into [`StreamEvent`]s,
//! recorded into the reply being collected, and the stream's errors mapped.

use super::StreamEvent;
use crate::collect::{Accumulator, Metadata};
use crate::error::{Error, ErrorKind, from_sdk, is_context_overflow, kind_for_code};
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockStart, ConverseStreamOutput as Event, ReasoningContentBlockDelta,
};
use std::time::Duration;

/// Returns the typed event for an SDK event.
pub(super) fn convert(ev: Event) -> StreamEvent {
    match ev {
        Event::MessageStart(_) => StreamEvent::MessageStart,
        Event::ContentBlockStart(s) => match s.start() {
            Some(ContentBlockStart::ToolUse(t)) => StreamEvent::ToolUseStart {
                index: s.content_block_index(),
                tool_use_id: t.tool_use_id().to_owned(),
                name: t.name().to_owned(),
            },
            Some(ContentBlockStart::Image(i)) => StreamEvent::ImageStart {
                index: s.content_block_index(),
                format: i.format().clone(),
            },
            Some(ContentBlockStart::ToolResult(t)) => StreamEvent::ToolResultStart {
                index: s.content_block_index(),
                start: t.clone(),
            },
            _ => StreamEvent::Other(Box::new(Event::ContentBlockStart(s))),
        },
        Event::ContentBlockDelta(d) => {
            let index = d.content_block_index();
            match d.delta() {
                Some(ContentBlockDelta::Text(t)) => StreamEvent::TextDelta {
                    index,
                    text: t.clone(),
                },
                Some(ContentBlockDelta::ToolUse(t)) => StreamEvent::ToolUseDelta {
                    index,
                    input: t.input().to_owned(),
                },
                Some(ContentBlockDelta::ReasoningContent(r)) => match r {
                    ReasoningContentBlockDelta::Text(text) => StreamEvent::ReasoningDelta {
                        index,
                        text: text.clone(),
                    },
                    ReasoningContentBlockDelta::Signature(signature) => {
                        StreamEvent::ReasoningSignature {
                            index,
                            signature: signature.clone(),
                        }
                    }
                    ReasoningContentBlockDelta::RedactedContent(data) => {
                        StreamEvent::RedactedReasoning {
                            index,
                            data: data.clone(),
                        }
                    }
                    _ => StreamEvent::Other(Box::new(Event::ContentBlockDelta(d))),
                },
                Some(ContentBlockDelta::Citation(c)) => StreamEvent::CitationDelta {
                    index,
                    delta: c.clone(),
                },
                Some(ContentBlockDelta::Image(i)) => StreamEvent::ImageDelta {
                    index,
                    delta: i.clone(),
                },
                Some(ContentBlockDelta::ToolResult(t)) => StreamEvent::ToolResultDelta {
                    index,
                    delta: t.clone(),
                },
                _ => StreamEvent::Other(Box::new(Event::ContentBlockDelta(d))),
            }
        }
        Event::ContentBlockStop(s) => StreamEvent::BlockStop {
            index: s.content_block_index(),
        },
        Event::MessageStop(s) => StreamEvent::MessageStop {
            stop_reason: s.stop_reason().clone(),
        },
        Event::Metadata(m) => StreamEvent::Metadata {
            usage: m.usage,
            latency: m
                .metrics
                .map(|x| Duration::from_millis(u64::try_from(x.latency_ms()).unwrap_or(0))),
            trace: m.trace,
            performance: m.performance_config,
            service_tier: m.service_tier,
        },
        other => StreamEvent::Other(Box::new(other)),
    }
}

/// Adds an event to what [`ReplyStream::collect`] returns.
pub(super) fn record(acc: &mut Accumulator, ev: &StreamEvent) {
    match ev {
        StreamEvent::TextDelta { index, text } => acc.text(*index, text),
        StreamEvent::ToolUseStart {
            index,
            tool_use_id,
            name,
        } => acc.tool_start(*index, tool_use_id, name),
        StreamEvent::ToolUseDelta { index, input } => acc.tool_input(*index, input),
        StreamEvent::ReasoningDelta { index, text } => acc.reasoning_text(*index, text),
        StreamEvent::ReasoningSignature { index, signature } => {
            acc.reasoning_signature(*index, signature)
        }
        StreamEvent::RedactedReasoning { index, data } => acc.redacted(*index, data),
        StreamEvent::CitationDelta { index, delta } => acc.citation(*index, delta),
        StreamEvent::ImageStart { index, format } => acc.image_start(*index, format),
        StreamEvent::ImageDelta { index, delta } => acc.image_delta(*index, delta),
        StreamEvent::ToolResultStart { index, start } => acc.tool_result_start(*index, start),
        StreamEvent::ToolResultDelta { index, delta } => acc.tool_result_delta(*index, delta),
        StreamEvent::MessageStop { stop_reason } => acc.stop_reason = Some(stop_reason.clone()),
        StreamEvent::Metadata {
            usage,
            latency,
            trace,
            performance,
            service_tier,
        } => acc.metadata(Metadata {
            usage: usage.clone(),
            latency_ms: latency.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            trace: trace.clone(),
            performance: performance.clone(),
            service_tier: service_tier.clone(),
        }),
        StreamEvent::MessageStart | StreamEvent::BlockStop { .. } | StreamEvent::Other(_) => {}
    }
}

/// Maps a receive error; in-stream exceptions come without a code, so map by variant.
pub(super) fn map_stream_error(
    e: aws_sdk_bedrockruntime::error::SdkError<
        ConverseStreamOutputError,
        aws_smithy_types::event_stream::RawMessage,
    >,
) -> Error {
    let name = match e.as_service_error() {
        Some(ConverseStreamOutputError::ThrottlingException(_)) => Some("ThrottlingException"),
        Some(ConverseStreamOutputError::InternalServerException(_)) => {
            Some("InternalServerException")
        }
        Some(ConverseStreamOutputError::ServiceUnavailableException(_)) => {
            Some("ServiceUnavailableException")
        }
        Some(ConverseStreamOutputError::ValidationException(_)) => Some("ValidationException"),
        Some(ConverseStreamOutputError::ModelStreamErrorException(_)) => {
            Some("ModelStreamErrorException")
        }
        _ => None,
    };
    in_stream_error("converse_stream", name, e)
}

/// Maps a receive error of an event stream whose in-stream exception is the variant `name`
/// (the exceptions come without a code); other errors as the SDK's, a stream that broke as
/// [`ErrorKind::Network`].
pub(crate) fn in_stream_error<E, R>(
    what: &str,
    name: Option<&'static str>,
    e: aws_sdk_bedrockruntime::error::SdkError<E, R>,
) -> Error
where
    E: aws_sdk_bedrockruntime::error::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match name {
        Some(code) => {
            let msg = e
                .as_service_error()
                .and_then(|s| s.message())
                .unwrap_or("no message")
                .to_owned();
            let kind = match kind_for_code(Some(code), None) {
                ErrorKind::Validation if is_context_overflow(&msg) => {
                    ErrorKind::ContextWindowExceeded
                }
                kind => kind,
            };
            Error::new(kind, format!("{what} failed: in-stream {code}: {msg}"))
                .with_code(code)
                .with_source(e)
        }
        None => {
            let mut mapped = from_sdk(what, e);
            if mapped.kind() == ErrorKind::Other {
                mapped =
                    Error::new(ErrorKind::Network, mapped.message().to_owned()).with_source(mapped);
            }
            mapped
        }
    }
}
