//! The fake model: what a Converse call asked and what the model replies.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::doc::{IntoJson, json_to_document};
pub use super::reply_block::{ImageSource, ReplyBlock, ToolResultContent};

/// Describes one validated Converse or ConverseStream request, as handed to a [`Responder`].
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct ConverseCall {
    /// The decoded model id from the path.
    pub model_id: String,
    /// The whole JSON request body.
    pub body: Value,
    /// The text of the last user message (its text blocks joined by newlines), if it has any.
    pub last_user_text: Option<String>,
    /// `inferenceConfig.maxTokens`, if given.
    pub max_tokens: Option<u64>,
    /// `inferenceConfig.stopSequences`.
    pub stop_sequences: Vec<String>,
    /// Whether `toolConfig.tools` lists at least one tool.
    pub has_tools: bool,
}

impl ConverseCall {
    /// Returns the member of the request body at a JSON pointer as the SDK's `Document` (what
    /// the client sent, in the client's own type), e.g.
    /// `/messages/0/content/0/toolResult/content/0/json`.
    pub fn document(&self, pointer: &str) -> Option<aws_smithy_types::Document> {
        self.body.pointer(pointer).map(json_to_document)
    }

    /// Returns the call described by a (validated) request body.
    pub(crate) fn from_body(model_id: String, body: Value) -> Self {
        let last_user_text = body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|msgs| {
                msgs.iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            })
            .and_then(|m| {
                let texts: Vec<&str> = m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect();
                (!texts.is_empty()).then(|| texts.join("\n"))
            });
        let inference = body.get("inferenceConfig");
        let max_tokens = inference
            .and_then(|c| c.get("maxTokens"))
            .and_then(Value::as_u64);
        let stop_sequences = inference
            .and_then(|c| c.get("stopSequences"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        let has_tools = body
            .pointer("/toolConfig/tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        Self {
            model_id,
            body,
            last_user_text,
            max_tokens,
            stop_sequences,
            has_tools,
        }
    }
}

/// Describes the model's answer to one call.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelReply {
    /// The content blocks, in order.
    pub content: Vec<ReplyBlock>,
    /// The stop reason, e.g. `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`.
    pub stop_reason: String,
}

impl ModelReply {
    /// Returns a single-text reply with stop reason `end_turn`.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![ReplyBlock::Text(text.into())],
            stop_reason: "end_turn".to_owned(),
        }
    }

    /// Returns a single tool-use reply with stop reason `tool_use`; the input is a
    /// `serde_json::Value` or the SDK's `Document`.
    pub fn tool_use(id: impl Into<String>, name: impl Into<String>, input: impl IntoJson) -> Self {
        Self {
            content: vec![ReplyBlock::tool_use(id, name, input)],
            stop_reason: "tool_use".to_owned(),
        }
    }

    /// Returns the reply with another stop reason.
    pub fn with_stop_reason(mut self, stop_reason: impl Into<String>) -> Self {
        self.stop_reason = stop_reason.into();
        self
    }

    /// Returns the reply with one more block appended.
    pub fn with_block(mut self, block: ReplyBlock) -> Self {
        self.content.push(block);
        self
    }
}

type ResponderFn = dyn Fn(&ConverseCall) -> ModelReply + Send + Sync;

/// Decides what the fake model answers to a Converse or ConverseStream call.
#[derive(Clone)]
pub struct Responder {
    f: Arc<ResponderFn>,
    echo: bool,
}

impl Responder {
    /// Returns the default responder, which echoes the last user message.
    ///
    /// The reply text is the last user message's text (`"ok"` if it has neither text nor a
    /// block echoed below); tokens are whitespace-separated words. A stop sequence cuts the text
    /// there (`stop_sequence`); more words than `maxTokens` are cut to `maxTokens` words
    /// (`max_tokens`); otherwise `end_turn`.
    ///
    /// After the text, the message's other blocks come back in order, each as a block kind a
    /// stream carries too (so a collected stream equals the unary answer): an `image` as the
    /// same image; a `searchResult` as a `citationsContent` block of its texts citing it
    /// (`searchResultLocation`: its index among the message's search results, content blocks 0
    /// to the last) when its citations are enabled, else as a text block of its texts; a
    /// `toolResult` as a `toolResult` block with the same id and status and its text and JSON
    /// contents, followed by its image and search-result contents echoed as above. Documents
    /// (beyond citations), videos and audio are read by no one.
    pub fn echo() -> Self {
        Self {
            f: Arc::new(echo_reply),
            echo: true,
        }
    }

    /// Returns a responder computing each reply with `f`, used as-is (no truncation applied).
    pub fn from_fn(f: impl Fn(&ConverseCall) -> ModelReply + Send + Sync + 'static) -> Self {
        Self {
            f: Arc::new(f),
            echo: false,
        }
    }

    /// Returns whether this is the echo responder.
    pub(crate) fn is_echo(&self) -> bool {
        self.echo
    }

    /// Returns the reply to a call.
    pub(crate) fn reply(&self, call: &ConverseCall) -> ModelReply {
        (self.f)(call)
    }
}

impl Default for Responder {
    fn default() -> Self {
        Self::echo()
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.echo {
            "Responder(echo)"
        } else {
            "Responder(..)"
        })
    }
}

/// Returns the number of whitespace-separated words.
pub(crate) fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Computes the echo reply.
fn echo_reply(call: &ConverseCall) -> ModelReply {
    let full = call.last_user_text.as_deref().unwrap_or("ok");
    let mut text = full;
    let mut stop_reason = "end_turn";
    if let Some(cut) = call
        .stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| full.find(s.as_str()))
        .min()
    {
        text = &full[..cut];
        stop_reason = "stop_sequence";
    }
    if let Some(max) = call.max_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let words: Vec<(usize, usize)> = word_ends(text).collect();
        if words.len() > max {
            let keep = max
                .checked_sub(1)
                .and_then(|i| words.get(i))
                .map_or(0, |w| w.1);
            text = &text[..keep];
            stop_reason = "max_tokens";
        }
    }
    let echoed = super::echo::echo_blocks(&call.body);
    let mut content = Vec::with_capacity(echoed.len() + 1);
    if call.last_user_text.is_some() || echoed.is_empty() {
        content.push(ReplyBlock::Text(text.to_owned()));
    }
    content.extend(echoed);
    ModelReply {
        content,
        stop_reason: stop_reason.to_owned(),
    }
}

/// Returns the (start, end) byte offsets of each whitespace-separated word.
fn word_ends(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let rest = &text[pos..];
        let start = pos + rest.find(|c: char| !c.is_whitespace())?;
        let len = text[start..]
            .find(char::is_whitespace)
            .unwrap_or(text.len() - start);
        pos = start + len;
        Some((start, pos))
    })
}

/// Splits text into pieces of one word each (with the whitespace after it) that concatenate back
/// to the exact text.
pub(crate) fn split_pieces(text: &str) -> Vec<String> {
    let ends: Vec<(usize, usize)> = word_ends(text).collect();
    if ends.len() <= 1 {
        return vec![text.to_owned()];
    }
    let mut pieces = Vec::with_capacity(ends.len());
    let mut from = 0;
    for (i, _) in ends.iter().enumerate() {
        let to = ends.get(i + 1).map_or(text.len(), |(s, _)| *s);
        pieces.push(text[from..to].to_owned());
        from = to;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(text: &str, max: Option<u64>, stops: &[&str]) -> ConverseCall {
        let mut inference = json!({});
        if let Some(m) = max {
            inference["maxTokens"] = json!(m);
        }
        inference["stopSequences"] = json!(stops);
        ConverseCall::from_body(
            "m".into(),
            json!({"messages":[{"role":"user","content":[{"text":text}]}],"inferenceConfig":inference}),
        )
    }

    #[test]
    fn echo_truncates_and_stops() {
        let r = echo_reply(&call("one two  three four", Some(2), &[]));
        assert_eq!(r.content, vec![ReplyBlock::Text("one two".into())]);
        assert_eq!(r.stop_reason, "max_tokens");
        let r = echo_reply(&call("one two three", Some(3), &[]));
        assert_eq!(r.stop_reason, "end_turn");
        let r = echo_reply(&call("one two STOP three", None, &["STOP"]));
        assert_eq!(r.content, vec![ReplyBlock::Text("one two ".into())]);
        assert_eq!(r.stop_reason, "stop_sequence");
    }

    #[test]
    fn pieces_concatenate() {
        for t in ["", "a", " a b  c ", "hello world"] {
            assert_eq!(split_pieces(t).concat(), t);
        }
        assert_eq!(split_pieces("a b c").len(), 3);
    }
}
