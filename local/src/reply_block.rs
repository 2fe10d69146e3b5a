//! The blocks a model's reply is made of ([`ReplyBlock`]), apart from the responders that
//! build them (`model`) and the echo that answers a request's blocks back (`echo`).

use serde_json::Value;

use super::doc::IntoJson;

/// Describes one block of the model's answer.
///
/// Streamed, each block is the `contentBlockStart` / `contentBlockDelta` / `contentBlockStop`
/// events the service model defines for its kind: text one delta per word, tool input in two
/// pieces after a start naming the tool, reasoning text then its signature, cited text then one
/// `citation` delta per citation, an image's format in its start and its bytes in two deltas
/// (an S3 location in one), a tool result's id and status in its start and then its text (one
/// delta per word) and JSON contents (one delta each) in order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ReplyBlock {
    /// A text block.
    Text(String),
    /// A tool-use request.
    ToolUse {
        /// The tool-use id (`toolUseId`).
        id: String,
        /// The tool name.
        name: String,
        /// The tool input (a JSON document).
        input: Value,
    },
    /// A reasoning (extended thinking) block.
    Reasoning {
        /// The reasoning text.
        text: String,
        /// The signature the client sends back with the block in later turns.
        signature: Option<String>,
    },
    /// An image the model generated.
    Image {
        /// The format: `png`, `jpeg`, `gif` or `webp`.
        format: String,
        /// The bytes or S3 location.
        source: ImageSource,
    },
    /// Text with citations (a `citationsContent` block).
    Cited {
        /// The generated text.
        text: String,
        /// The citations, each as Converse JSON (`title`, `source`, `sourceContent`,
        /// `location`: `documentChar`, `documentPage`, `documentChunk`, `searchResultLocation`
        /// or `web`).
        citations: Vec<Value>,
    },
    /// The result of a tool the service ran (a server-side tool): a `toolResult` block of the
    /// assistant's message.
    ToolResult {
        /// The `toolUseId` it answers.
        tool_use_id: String,
        /// `success` or `error`, if given.
        status: Option<String>,
        /// The contents, in order. A stream carries only the text and JSON contents (the service
        /// model has no delta for the others): give a streamed tool result no other kind, and no
        /// two texts in a row (a stream joins them), for its collected stream to equal its unary
        /// answer.
        content: Vec<ToolResultContent>,
    },
}

impl ReplyBlock {
    /// Returns a tool-use block; the input is a `serde_json::Value` or the SDK's `Document`.
    pub fn tool_use(id: impl Into<String>, name: impl Into<String>, input: impl IntoJson) -> Self {
        Self::ToolUse {
            id: id.into(),
            name: name.into(),
            input: input.into_json(),
        }
    }

    /// Returns an image block of `format` (`png`, `jpeg`, `gif`, `webp`) from its bytes.
    pub fn image(format: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self::Image {
            format: format.into(),
            source: ImageSource::Bytes(bytes.into()),
        }
    }

    /// Returns a successful tool result with these contents.
    pub fn tool_result(
        tool_use_id: impl Into<String>,
        content: impl IntoIterator<Item = ToolResultContent>,
    ) -> Self {
        Self::ToolResult {
            tool_use_id: tool_use_id.into(),
            status: Some("success".to_owned()),
            content: content.into_iter().collect(),
        }
    }
}

/// Where an image's data is.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ImageSource {
    /// The image bytes (base64 on the wire).
    Bytes(Vec<u8>),
    /// An S3 object.
    S3 {
        /// `s3://bucket/key`.
        uri: String,
        /// The bucket owner's account id, if given.
        bucket_owner: Option<String>,
    },
}

/// One content of a [`ReplyBlock::ToolResult`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ToolResultContent {
    /// A JSON value (see [`ToolResultContent::json`] to give it as a `Document`).
    Json(Value),
    /// Text.
    Text(String),
    /// An image.
    Image {
        /// The format: `png`, `jpeg`, `gif` or `webp`.
        format: String,
        /// The bytes or S3 location.
        source: ImageSource,
    },
    /// Any other content as Converse JSON, e.g. `{"searchResult": {...}}` or
    /// `{"document": {...}}`; unary answers only.
    Raw(Value),
}

impl ToolResultContent {
    /// Returns a JSON content; the value is a `serde_json::Value` or the SDK's `Document`.
    pub fn json(value: impl IntoJson) -> Self {
        Self::Json(value.into_json())
    }
}
