//! The model's answer on the wire: each reply block as Converse JSON (unary), and as the
//! ConverseStream events the service model defines for its kind.

use bytes::Bytes;
use serde_json::{Value, json};

use super::model::{ImageSource, ReplyBlock, ToolResultContent, split_pieces};
use super::state::Shared;
use super::{surface, wire};

/// Returns the Converse JSON of one reply block; a reasoning block without a signature gets
/// the server's own, which it accepts when the block comes back as history.
pub(crate) fn block_json(shared: &Shared, block: &ReplyBlock) -> Value {
    match block {
        ReplyBlock::Text(t) => json!({ "text": t }),
        ReplyBlock::ToolUse { id, name, input } => {
            json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } })
        }
        ReplyBlock::Reasoning { text, signature } => {
            let signature = signature
                .clone()
                .unwrap_or_else(|| surface::sign_reasoning(shared, text));
            json!({ "reasoningContent": { "reasoningText": { "text": text, "signature": signature } } })
        }
        ReplyBlock::Image { format, source } => json!({ "image": image_json(format, source) }),
        ReplyBlock::Cited { text, citations } => json!({ "citationsContent": {
            "content": [{ "text": text }],
            "citations": citations,
        } }),
        ReplyBlock::ToolResult {
            tool_use_id,
            status,
            content,
        } => {
            let content: Vec<Value> = content
                .iter()
                .map(|c| match c {
                    ToolResultContent::Json(j) => json!({ "json": j }),
                    ToolResultContent::Text(t) => json!({ "text": t }),
                    ToolResultContent::Image { format, source } => {
                        json!({ "image": image_json(format, source) })
                    }
                    ToolResultContent::Raw(v) => v.clone(),
                })
                .collect();
            let mut result = json!({ "toolUseId": tool_use_id, "content": content });
            if let Some(s) = status {
                result["status"] = json!(s);
            }
            json!({ "toolResult": result })
        }
    }
}

/// Returns the Converse JSON of an image (`format`, `source`).
fn image_json(format: &str, source: &ImageSource) -> Value {
    json!({ "format": format, "source": source_json(source) })
}

/// Returns the Converse JSON of an image source.
fn source_json(source: &ImageSource) -> Value {
    match source {
        ImageSource::Bytes(b) => json!({ "bytes": aws_smithy_types::base64::encode(b) }),
        ImageSource::S3 { uri, bucket_owner } => {
            let mut s3 = json!({ "uri": uri });
            if let Some(owner) = bucket_owner {
                s3["bucketOwner"] = json!(owner);
            }
            json!({ "s3Location": s3 })
        }
    }
}

/// Returns one `contentBlockDelta` frame.
fn delta(index: usize, delta: Value) -> Bytes {
    wire::event_frame(
        "contentBlockDelta",
        &json!({ "contentBlockIndex": index, "delta": delta }),
    )
}

/// Returns one `contentBlockStart` frame.
fn start(index: usize, start: Value) -> Bytes {
    wire::event_frame(
        "contentBlockStart",
        &json!({ "contentBlockIndex": index, "start": start }),
    )
}

/// Returns the event frames of an answer: messageStart, blocks, messageStop, metadata.
pub(crate) fn stream_frames(content: &[Value], stop: &Value, metadata: &Value) -> Vec<Bytes> {
    let mut frames = vec![wire::event_frame(
        "messageStart",
        &json!({ "role": "assistant" }),
    )];
    for (i, block) in content.iter().enumerate() {
        block_frames(i, block, &mut frames);
        frames.push(wire::event_frame(
            "contentBlockStop",
            &json!({ "contentBlockIndex": i }),
        ));
    }
    frames.push(wire::event_frame("messageStop", stop));
    frames.push(wire::event_frame("metadata", metadata));
    frames
}

/// Appends the start and delta frames of block `i` (Converse JSON).
fn block_frames(i: usize, block: &Value, frames: &mut Vec<Bytes>) {
    let texts = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    if let Some(text) = block.get("text").and_then(Value::as_str) {
        for piece in split_pieces(text) {
            frames.push(delta(i, json!({ "text": piece })));
        }
    } else if let Some(reasoning) = block.pointer("/reasoningContent/reasoningText") {
        let text = reasoning.get("text").and_then(Value::as_str).unwrap_or("");
        for piece in split_pieces(text) {
            frames.push(delta(i, json!({ "reasoningContent": { "text": piece } })));
        }
        if let Some(sig) = reasoning.get("signature") {
            frames.push(delta(
                i,
                json!({ "reasoningContent": { "signature": sig } }),
            ));
        }
    } else if let Some(cited) = block.get("citationsContent") {
        for text in texts(cited.get("content")) {
            for piece in split_pieces(&text) {
                frames.push(delta(i, json!({ "text": piece })));
            }
        }
        for citation in cited
            .get("citations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            frames.push(delta(i, json!({ "citation": citation })));
        }
    } else if let Some(tool) = block.get("toolUse") {
        frames.push(start(
            i,
            json!({ "toolUse": { "toolUseId": tool["toolUseId"], "name": tool["name"] } }),
        ));
        for piece in halves(&tool["input"].to_string()) {
            frames.push(delta(i, json!({ "toolUse": { "input": piece } })));
        }
    } else if let Some(image) = block.get("image") {
        image_frames(i, image, frames);
    } else if let Some(result) = block.get("toolResult") {
        let mut head = json!({ "toolUseId": result["toolUseId"] });
        if let Some(status) = result.get("status") {
            head["status"] = status.clone();
        }
        frames.push(start(i, json!({ "toolResult": head })));
        // The service model's tool-result delta carries text and JSON only.
        for c in result
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = c.get("text").and_then(Value::as_str) {
                for piece in split_pieces(text) {
                    frames.push(delta(i, json!({ "toolResult": [{ "text": piece }] })));
                }
            } else if let Some(j) = c.get("json") {
                frames.push(delta(i, json!({ "toolResult": [{ "json": j }] })));
            }
        }
    }
}

/// Appends an image's frames: its format in the start, then its bytes in two deltas (each
/// half base64 on its own), or its S3 location in one.
fn image_frames(i: usize, image: &Value, frames: &mut Vec<Bytes>) {
    frames.push(start(i, json!({ "image": { "format": image["format"] } })));
    let source = &image["source"];
    if let Some(bytes) = source
        .get("bytes")
        .and_then(Value::as_str)
        .and_then(|b| aws_smithy_types::base64::decode(b).ok())
    {
        let (a, b) = bytes.split_at(bytes.len() / 2);
        for half in [a, b].into_iter().filter(|h| !h.is_empty()) {
            let b64 = aws_smithy_types::base64::encode(half);
            frames.push(delta(i, json!({ "image": { "source": { "bytes": b64 } } })));
        }
    } else if source.get("s3Location").is_some() {
        frames.push(delta(i, json!({ "image": { "source": source } })));
    }
}

/// Splits a string into two pieces at the middle character.
fn halves(s: &str) -> [&str; 2] {
    let mid = s
        .char_indices()
        .nth(s.chars().count() / 2)
        .map_or(0, |(b, _)| b);
    [&s[..mid], &s[mid..]]
}
