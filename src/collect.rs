//! The accumulator behind `ReplyStream::collect`: stream events back into the `ConverseOutput`
//! unary Converse returns for the same answer.

use crate::error::{Error, ErrorKind, Result};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    Citation, CitationGeneratedContent, CitationSourceContent, CitationsContentBlock,
    CitationsDelta, ContentBlock, ConversationRole, ConverseMetrics, ConverseStreamTrace,
    ConverseTrace, ErrorBlock, ImageBlock, ImageBlockDelta, ImageFormat, ImageSource, Message,
    PerformanceConfiguration, ReasoningContentBlock, ReasoningTextBlock, S3Location, ServiceTier,
    StopReason, TokenUsage, ToolResultBlock, ToolResultBlockDelta, ToolResultBlockStart,
    ToolResultContentBlock, ToolResultStatus, ToolUseBlock,
};
use aws_smithy_types::{Blob, Document};

/// Content gathered from stream events, block by block.
#[derive(Default)]
pub(crate) struct Accumulator {
    blocks: Vec<(i32, Block)>,
    pub(crate) stop_reason: Option<StopReason>,
    usage: Option<TokenUsage>,
    latency_ms: Option<i64>,
    trace: Option<ConverseStreamTrace>,
    performance: Option<PerformanceConfiguration>,
    service_tier: Option<ServiceTier>,
}

/// One content block being rebuilt.
#[derive(Debug)]
enum Block {
    Text(String),
    /// Text with citations: a `citationsContent` block.
    Cited {
        text: String,
        citations: Vec<Citation>,
    },
    Tool {
        id: String,
        name: String,
        input: String,
    },
    Reasoning {
        text: String,
        signature: Option<String>,
    },
    Redacted(Vec<u8>),
    /// An image: its format from the start event, its bytes appended delta by delta (or an S3
    /// location), and the error a delta may report.
    Image {
        format: Option<ImageFormat>,
        bytes: Vec<u8>,
        s3: Option<S3Location>,
        error: Option<ErrorBlock>,
    },
    /// A tool result (a server-side tool's): text pieces join the text content they follow,
    /// each JSON value is a content of its own.
    ToolResult {
        tool_use_id: String,
        kind: Option<String>,
        status: Option<ToolResultStatus>,
        content: Vec<ToolResultContentBlock>,
    },
}

/// The figures of a stream's `metadata` event.
pub(crate) struct Metadata {
    pub(crate) usage: Option<TokenUsage>,
    pub(crate) latency_ms: Option<i64>,
    pub(crate) trace: Option<ConverseStreamTrace>,
    pub(crate) performance: Option<PerformanceConfiguration>,
    pub(crate) service_tier: Option<ServiceTier>,
}

fn text() -> Block {
    Block::Text(String::new())
}

fn image() -> Block {
    Block::Image {
        format: None,
        bytes: Vec::new(),
        s3: None,
        error: None,
    }
}

fn reasoning() -> Block {
    Block::Reasoning {
        text: String::new(),
        signature: None,
    }
}

impl Accumulator {
    /// Returns block `index`, made with `make` if it is new.
    fn block(&mut self, index: i32, make: impl FnOnce() -> Block) -> &mut Block {
        let pos = match self.blocks.iter().position(|(i, _)| *i == index) {
            Some(p) => p,
            None => {
                self.blocks.push((index, make()));
                self.blocks.len() - 1
            }
        };
        &mut self.blocks[pos].1
    }

    /// Adds a piece of text; a cited block keeps its citations.
    pub(crate) fn text(&mut self, index: i32, piece: &str) {
        match self.block(index, text) {
            Block::Text(t) | Block::Cited { text: t, .. } => t.push_str(piece),
            _ => {}
        }
    }

    /// Adds one citation; the block becomes a `citationsContent` block.
    pub(crate) fn citation(&mut self, index: i32, delta: &CitationsDelta) {
        let block = self.block(index, text);
        if let Block::Text(t) = block {
            *block = Block::Cited {
                text: std::mem::take(t),
                citations: Vec::new(),
            };
        }
        if let Block::Cited { citations, .. } = block {
            citations.push(citation(delta));
        }
    }

    /// Starts a tool-use block.
    pub(crate) fn tool_start(&mut self, index: i32, id: &str, name: &str) {
        *self.block(index, text) = Block::Tool {
            id: id.to_owned(),
            name: name.to_owned(),
            input: String::new(),
        };
    }

    /// Adds a piece of a tool call's JSON input.
    pub(crate) fn tool_input(&mut self, index: i32, piece: &str) {
        let make = || Block::Tool {
            id: String::new(),
            name: String::new(),
            input: String::new(),
        };
        if let Block::Tool { input, .. } = self.block(index, make) {
            input.push_str(piece);
        }
    }

    /// Adds a piece of reasoning text.
    pub(crate) fn reasoning_text(&mut self, index: i32, piece: &str) {
        if let Block::Reasoning { text, .. } = self.block(index, reasoning) {
            text.push_str(piece);
        }
    }

    /// Adds (a piece of) the reasoning signature.
    pub(crate) fn reasoning_signature(&mut self, index: i32, piece: &str) {
        if let Block::Reasoning { signature, .. } = self.block(index, reasoning) {
            signature.get_or_insert_with(String::new).push_str(piece);
        }
    }

    /// Adds (a piece of) redacted reasoning.
    pub(crate) fn redacted(&mut self, index: i32, data: &Blob) {
        if let Block::Redacted(d) = self.block(index, || Block::Redacted(Vec::new())) {
            d.extend_from_slice(data.as_ref());
        }
    }

    /// Starts an image block of `format`.
    pub(crate) fn image_start(&mut self, index: i32, format: &ImageFormat) {
        if let Block::Image { format: f, .. } = self.block(index, image) {
            *f = Some(format.clone());
        }
    }

    /// Adds a piece of an image: bytes are appended, an S3 location or an error is kept.
    pub(crate) fn image_delta(&mut self, index: i32, delta: &ImageBlockDelta) {
        let Block::Image {
            bytes, s3, error, ..
        } = self.block(index, image)
        else {
            return;
        };
        match &delta.source {
            Some(ImageSource::Bytes(b)) => bytes.extend_from_slice(b.as_ref()),
            Some(ImageSource::S3Location(l)) => *s3 = Some(l.clone()),
            // A source kind newer than this SDK: nothing to keep.
            _ => {}
        }
        if delta.error.is_some() {
            error.clone_from(&delta.error);
        }
    }

    /// Starts a tool-result block.
    pub(crate) fn tool_result_start(&mut self, index: i32, start: &ToolResultBlockStart) {
        *self.block(index, text) = Block::ToolResult {
            tool_use_id: start.tool_use_id.clone(),
            kind: start.r#type.clone(),
            status: start.status.clone(),
            content: Vec::new(),
        };
    }

    /// Adds pieces of a tool result: a text piece extends the text content it follows, a JSON
    /// value is a content of its own.
    pub(crate) fn tool_result_delta(&mut self, index: i32, pieces: &[ToolResultBlockDelta]) {
        let make = || Block::ToolResult {
            tool_use_id: String::new(),
            kind: None,
            status: None,
            content: Vec::new(),
        };
        let Block::ToolResult { content, .. } = self.block(index, make) else {
            return;
        };
        for piece in pieces {
            match piece {
                ToolResultBlockDelta::Text(t) => match content.last_mut() {
                    Some(ToolResultContentBlock::Text(last)) => last.push_str(t),
                    _ => content.push(ToolResultContentBlock::Text(t.clone())),
                },
                ToolResultBlockDelta::Json(d) => {
                    content.push(ToolResultContentBlock::Json(d.clone()))
                }
                // A delta kind newer than this SDK: nothing to keep.
                _ => {}
            }
        }
    }

    /// Keeps the metadata event's figures.
    pub(crate) fn metadata(&mut self, m: Metadata) {
        self.usage = m.usage;
        self.latency_ms = m.latency_ms;
        self.trace = m.trace;
        self.performance = m.performance;
        self.service_tier = m.service_tier;
    }

    /// Returns the content blocks in index order.
    fn content(mut self) -> Result<(Vec<ContentBlock>, Self)> {
        let mut blocks = std::mem::take(&mut self.blocks);
        blocks.sort_by_key(|(i, _)| *i);
        let content = blocks
            .into_iter()
            .map(|(i, b)| content_block(i, b))
            .collect::<Result<_>>()?;
        Ok((content, self))
    }

    /// Returns the `ConverseOutput` unary Converse returns for the same answer.
    ///
    /// # Errors
    /// A tool call whose streamed input is not valid JSON; an image whose format never came
    /// (no `contentBlockStart`); a tool result without its id.
    pub(crate) fn into_output(self) -> Result<ConverseOutput> {
        let (content, acc) = self.content()?;
        let message = Message::builder()
            .role(ConversationRole::Assistant)
            .set_content(Some(content))
            .build()
            .map_err(other)?;
        let metrics = acc
            .latency_ms
            .map(|ms| ConverseMetrics::builder().latency_ms(ms).build())
            .transpose()
            .map_err(other)?;
        let trace = acc.trace.map(|t| {
            ConverseTrace::builder()
                .set_guardrail(t.guardrail)
                .set_prompt_router(t.prompt_router)
                .build()
        });
        ConverseOutput::builder()
            .output(aws_sdk_bedrockruntime::types::ConverseOutput::Message(
                message,
            ))
            .set_stop_reason(acc.stop_reason)
            .set_usage(acc.usage)
            .set_metrics(metrics)
            .set_trace(trace)
            .set_performance_config(acc.performance)
            .set_service_tier(acc.service_tier)
            .build()
            .map_err(other)
    }
}

/// Returns the SDK block for an accumulated one.
fn content_block(index: i32, b: Block) -> Result<ContentBlock> {
    Ok(match b {
        Block::Text(t) => ContentBlock::Text(t),
        Block::Cited { text, citations } => ContentBlock::CitationsContent(
            CitationsContentBlock::builder()
                .set_content((!text.is_empty()).then(|| vec![CitationGeneratedContent::Text(text)]))
                .set_citations(Some(citations))
                .build(),
        ),
        Block::Tool { id, name, input } => {
            let doc = json_to_document(&input).map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("tool {name}: the streamed input is not valid JSON: {e}"),
                )
            })?;
            ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id(id)
                    .name(name)
                    .input(doc)
                    .build()
                    .map_err(other)?,
            )
        }
        Block::Reasoning { text, signature } => {
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
                ReasoningTextBlock::builder()
                    .text(text)
                    .set_signature(signature)
                    .build()
                    .map_err(other)?,
            ))
        }
        Block::Redacted(d) => {
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(Blob::new(d)))
        }
        Block::Image {
            format,
            bytes,
            s3,
            error,
        } => {
            let Some(format) = format else {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "content block {index}: an image streamed without its format (no contentBlockStart)"
                    ),
                ));
            };
            let source = match s3 {
                Some(l) => ImageSource::S3Location(l),
                None => ImageSource::Bytes(Blob::new(bytes)),
            };
            ContentBlock::Image(
                ImageBlock::builder()
                    .format(format)
                    .source(source)
                    .set_error(error)
                    .build()
                    .map_err(other)?,
            )
        }
        Block::ToolResult {
            tool_use_id,
            kind,
            status,
            content,
        } => {
            if tool_use_id.is_empty() {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "content block {index}: a tool result streamed without its toolUseId (no contentBlockStart)"
                    ),
                ));
            }
            ContentBlock::ToolResult(
                ToolResultBlock::builder()
                    .tool_use_id(tool_use_id)
                    .set_content(Some(content))
                    .set_status(status)
                    .set_type(kind)
                    .build()
                    .map_err(other)?,
            )
        }
    })
}

/// Returns the citation a citations delta carries (each delta is one whole citation).
fn citation(d: &CitationsDelta) -> Citation {
    let source_content = d.source_content.as_ref().map(|v| {
        v.iter()
            .filter_map(|s| s.text.clone().map(CitationSourceContent::Text))
            .collect()
    });
    Citation::builder()
        .set_title(d.title.clone())
        .set_source(d.source.clone())
        .set_source_content(source_content)
        .set_location(d.location.clone())
        .build()
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Other, e.to_string())
}

/// Parses streamed tool input JSON into the SDK's `Document`; no input is an empty object.
pub(crate) fn json_to_document(s: &str) -> std::result::Result<Document, String> {
    if s.trim().is_empty() {
        return Ok(Document::Object(Default::default()));
    }
    parse_json(s)
}

/// Parses one JSON value into the SDK's `Document`.
pub(crate) fn parse_json(s: &str) -> std::result::Result<Document, String> {
    let mut tokens = aws_smithy_json::deserialize::json_token_iter(s.as_bytes()).peekable();
    let doc = aws_smithy_json::deserialize::token::expect_document(&mut tokens)
        .map_err(|e| e.to_string())?;
    match tokens.next() {
        None => Ok(doc),
        Some(_) => Err("trailing data after the JSON value".to_owned()),
    }
}
