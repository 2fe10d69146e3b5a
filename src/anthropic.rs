//! Anthropic's Messages stream events (InvokeModelWithResponseStream chunks) back into the
//! message body unary InvokeModel answers, so that an InvokeModel call with an Anthropic body
//! can be carried as a stream (see `call/carry.rs`).
//!
//! The events are Anthropic's documented ones: `message_start` (the message without content),
//! `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`,
//! `thinking_delta`, `signature_delta`, `citations_delta`), `content_block_stop`,
//! `message_delta` (stop reason and output usage) and `message_stop`; `ping` and Bedrock's
//! `amazon-bedrock-invocationMetrics` (which the unary answer carries as headers) are dropped.

use crate::error::{Error, ErrorKind, Result};
use aws_smithy_types::{Document, Number};
use std::collections::HashMap;

/// Returns true when a native body is an Anthropic Messages API request (Bedrock requires its
/// `anthropic_version` with `messages`).
pub(crate) fn is_messages_body(doc: &Document) -> bool {
    doc.as_object()
        .is_some_and(|o| o.contains_key("anthropic_version") && o.contains_key("messages"))
}

/// A message being rebuilt from its stream events.
#[derive(Default)]
pub(crate) struct MessageBuilder {
    message: Option<HashMap<String, Document>>,
    /// Content blocks by index, with the partial JSON of a `tool_use` block's input.
    blocks: Vec<(i64, HashMap<String, Document>, String)>,
}

fn bad(what: &str) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("invoke_model: the carried stream sent {what}"),
    )
}

fn string_of(d: Option<&Document>) -> &str {
    d.and_then(Document::as_string).unwrap_or_default()
}

fn append(block: &mut HashMap<String, Document>, key: &str, piece: &str) {
    let mut s = string_of(block.get(key)).to_owned();
    s.push_str(piece);
    block.insert(key.to_owned(), Document::String(s));
}

fn index_of(o: &HashMap<String, Document>) -> Result<i64> {
    match o.get("index").and_then(Document::as_number) {
        Some(Number::PosInt(i)) => i64::try_from(*i).map_err(|_| bad("a bad block index")),
        Some(Number::NegInt(i)) => Ok(*i),
        _ => Err(bad("a content block event without an index")),
    }
}

impl MessageBuilder {
    fn block(&mut self, index: i64) -> Result<&mut (i64, HashMap<String, Document>, String)> {
        self.blocks
            .iter_mut()
            .find(|(i, ..)| *i == index)
            .ok_or_else(|| bad("a delta for a block that never started"))
    }

    /// Folds one chunk's JSON into the message.
    ///
    /// # Errors
    /// An `error` event, or an event out of order.
    // Long because one match over Anthropic's stream event types reads best whole.
    pub(crate) fn push(&mut self, event: &Document) -> Result<()> {
        let Some(o) = event.as_object() else {
            return Err(bad("a chunk that is not a JSON object"));
        };
        match string_of(o.get("type")) {
            "message_start" => {
                let m = o.get("message").and_then(Document::as_object);
                self.message = Some(
                    m.cloned()
                        .ok_or_else(|| bad("message_start without a message"))?,
                );
            }
            "content_block_start" => {
                let index = index_of(o)?;
                let block = o
                    .get("content_block")
                    .and_then(Document::as_object)
                    .cloned()
                    .ok_or_else(|| bad("content_block_start without a block"))?;
                self.blocks.push((index, block, String::new()));
            }
            "content_block_delta" => {
                let (_, block, json) = self.block(index_of(o)?)?;
                let Some(d) = o.get("delta").and_then(Document::as_object) else {
                    return Ok(());
                };
                match string_of(d.get("type")) {
                    "text_delta" => append(block, "text", string_of(d.get("text"))),
                    "thinking_delta" => append(block, "thinking", string_of(d.get("thinking"))),
                    "signature_delta" => append(block, "signature", string_of(d.get("signature"))),
                    "input_json_delta" => json.push_str(string_of(d.get("partial_json"))),
                    "citations_delta" => {
                        if let Some(c) = d.get("citation") {
                            let list = block
                                .entry("citations".to_owned())
                                .or_insert_with(|| Document::Array(Vec::new()));
                            if let Document::Array(v) = list {
                                v.push(c.clone());
                            } else {
                                *list = Document::Array(vec![c.clone()]);
                            }
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let (_, block, json) = self.block(index_of(o)?)?;
                if !json.is_empty() {
                    let input = crate::collect::parse_json(json)
                        .map_err(|e| bad(&format!("a tool input that is not JSON: {e}")))?;
                    block.insert("input".to_owned(), input);
                }
            }
            "message_delta" => {
                let m = self
                    .message
                    .as_mut()
                    .ok_or_else(|| bad("message_delta before message_start"))?;
                if let Some(d) = o.get("delta").and_then(Document::as_object) {
                    for (k, v) in d {
                        m.insert(k.clone(), v.clone());
                    }
                }
                if let Some(u) = o.get("usage").and_then(Document::as_object) {
                    let usage = m
                        .entry("usage".to_owned())
                        .or_insert_with(|| Document::Object(HashMap::new()));
                    if let Document::Object(usage) = usage {
                        for (k, v) in u {
                            usage.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            "error" => {
                let message = o
                    .get("error")
                    .and_then(Document::as_object)
                    .map(|e| string_of(e.get("message")).to_owned())
                    .unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::ModelFailure,
                    format!("invoke_model failed: the model reported an error: {message}"),
                ));
            }
            // `message_stop` (with Bedrock's metrics), `ping` and unknown events.
            _ => {}
        }
        Ok(())
    }

    /// Returns the message as unary InvokeModel answers it.
    ///
    /// # Errors
    /// When the stream never started a message.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>> {
        let mut m = self.message.take().ok_or_else(|| bad("no message_start"))?;
        self.blocks.sort_by_key(|(i, ..)| *i);
        let content = self
            .blocks
            .into_iter()
            .map(|(_, b, _)| Document::Object(b))
            .collect();
        m.insert("content".to_owned(), Document::Array(content));
        let mut json = String::new();
        aws_smithy_json::serialize::JsonValueWriter::new(&mut json).document(&Document::Object(m));
        Ok(json.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::parse_json;

    #[test]
    fn events_fold_back_into_the_unary_message() {
        let events = [
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"let me "}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"see"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hel"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"lo"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\": "}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"[1, 2]}"}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":7,"outputTokenCount":15}}"#,
        ];
        let mut b = MessageBuilder::default();
        for e in events {
            b.push(&parse_json(e).unwrap()).unwrap();
        }
        let body = String::from_utf8(b.finish().unwrap()).unwrap();
        let m = parse_json(&body).unwrap();
        let o = m.as_object().unwrap();
        assert_eq!(o["stop_reason"].as_string(), Some("tool_use"));
        let usage = o["usage"].as_object().unwrap();
        assert_eq!(
            usage["output_tokens"].as_number(),
            Some(&Number::PosInt(15))
        );
        assert_eq!(usage["input_tokens"].as_number(), Some(&Number::PosInt(7)));
        let content = o["content"].as_array().unwrap();
        assert_eq!(content.len(), 3);
        let thinking = content[0].as_object().unwrap();
        assert_eq!(thinking["thinking"].as_string(), Some("let me see"));
        assert_eq!(thinking["signature"].as_string(), Some("sig"));
        assert_eq!(
            content[1].as_object().unwrap()["text"].as_string(),
            Some("Hello")
        );
        let input = content[2].as_object().unwrap()["input"]
            .as_object()
            .unwrap();
        assert_eq!(input["a"].as_array().unwrap().len(), 2);
        assert!(!body.contains("invocationMetrics"));
    }

    #[test]
    fn out_of_order_and_error_events_fail() {
        let mut b = MessageBuilder::default();
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#;
        assert!(b.push(&parse_json(delta).unwrap()).is_err());
        let err = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = b.push(&parse_json(err).unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ModelFailure);
        assert!(MessageBuilder::default().finish().is_err());
    }
}
