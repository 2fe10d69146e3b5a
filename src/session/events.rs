//! The events of a bidirectional session, as Amazon Nova Sonic defines them: what a session
//! sends ([`SessionInput`]) and what it receives ([`SessionOutput`]). Each travels as the JSON
//! `{"event":{"<name>":{...}}}` inside a `chunk` of the event stream.

use crate::collect::parse_json;
use crate::error::{Error, ErrorKind, Result};
use aws_smithy_types::{Document, Number};
use std::collections::HashMap;

/// The role of a content in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRole {
    /// The person speaking or typing.
    User,
    /// Instructions (the system prompt).
    System,
    /// The model (history replayed into a session).
    Assistant,
    /// A tool's result.
    Tool,
}

impl SessionRole {
    fn as_str(self) -> &'static str {
        match self {
            SessionRole::User => "USER",
            SessionRole::System => "SYSTEM",
            SessionRole::Assistant => "ASSISTANT",
            SessionRole::Tool => "TOOL",
        }
    }
}

/// One event a session sends: built by the constructors below (Nova Sonic's input events), or
/// [`raw`](Self::raw) for any other. A constructor given an empty name gives an event that
/// [`Session::send`](super::Session::send) refuses, naming the field, before it is sent.
#[derive(Clone, Debug)]
pub struct SessionInput {
    pub(super) event: Document,
    pub(super) invalid: Option<(&'static str, &'static str)>,
}

fn obj<const N: usize>(pairs: [(&str, Document); N]) -> Document {
    Document::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn s(v: &str) -> Document {
    Document::String(v.to_owned())
}

fn int(v: u64) -> Document {
    Document::Number(Number::PosInt(v))
}

fn float(v: f64) -> Document {
    Document::Number(Number::Float(v))
}

impl SessionInput {
    fn event(name: &str, body: Document) -> Self {
        SessionInput {
            event: obj([("event", obj([(name, body)]))]),
            invalid: None,
        }
    }

    fn names(mut self, names: &[(&'static str, &str)]) -> Self {
        if let Some((field, _)) = names.iter().find(|(_, v)| v.is_empty()) {
            self.invalid = Some((field, "must not be empty"));
        }
        self
    }

    /// `sessionStart`: the inference parameters of the whole session.
    pub fn session_start(max_tokens: u32, top_p: f32, temperature: f32) -> Self {
        let config = obj([
            ("maxTokens", int(u64::from(max_tokens))),
            ("topP", float(f64::from(top_p))),
            ("temperature", float(f64::from(temperature))),
        ]);
        Self::event("sessionStart", obj([("inferenceConfiguration", config)]))
    }

    /// `promptStart`: opens the prompt `prompt_name`; the model answers in text and in speech
    /// with the voice `voice_id` (e.g. `matthew`, `tiffany`), 24 kHz 16-bit mono LPCM.
    pub fn prompt_start(prompt_name: &str, voice_id: &str) -> Self {
        let audio = obj([
            ("mediaType", s("audio/lpcm")),
            ("sampleRateHertz", int(24_000)),
            ("sampleSizeBits", int(16)),
            ("channelCount", int(1)),
            ("voiceId", s(voice_id)),
            ("encoding", s("base64")),
            ("audioType", s("SPEECH")),
        ]);
        Self::event(
            "promptStart",
            obj([
                ("promptName", s(prompt_name)),
                (
                    "textOutputConfiguration",
                    obj([("mediaType", s("text/plain"))]),
                ),
                ("audioOutputConfiguration", audio),
            ]),
        )
        .names(&[("prompt_name", prompt_name), ("voice_id", voice_id)])
    }

    /// `contentStart` of a text content in `role` (`interactive`: a turn the model answers).
    pub fn text_start(
        prompt_name: &str,
        content_name: &str,
        role: SessionRole,
        interactive: bool,
    ) -> Self {
        Self::event(
            "contentStart",
            obj([
                ("promptName", s(prompt_name)),
                ("contentName", s(content_name)),
                ("type", s("TEXT")),
                ("interactive", Document::Bool(interactive)),
                ("role", s(role.as_str())),
                (
                    "textInputConfiguration",
                    obj([("mediaType", s("text/plain"))]),
                ),
            ]),
        )
        .names(&[("prompt_name", prompt_name), ("content_name", content_name)])
    }

    /// `textInput`: text of an open text content.
    pub fn text(prompt_name: &str, content_name: &str, text: &str) -> Self {
        Self::event(
            "textInput",
            obj([
                ("promptName", s(prompt_name)),
                ("contentName", s(content_name)),
                ("content", s(text)),
            ]),
        )
        .names(&[("prompt_name", prompt_name), ("content_name", content_name)])
    }

    /// `contentStart` of the user's audio: 16 kHz 16-bit mono LPCM, interactive.
    pub fn audio_start(prompt_name: &str, content_name: &str) -> Self {
        let config = obj([
            ("mediaType", s("audio/lpcm")),
            ("sampleRateHertz", int(16_000)),
            ("sampleSizeBits", int(16)),
            ("channelCount", int(1)),
            ("audioType", s("SPEECH")),
            ("encoding", s("base64")),
        ]);
        Self::event(
            "contentStart",
            obj([
                ("promptName", s(prompt_name)),
                ("contentName", s(content_name)),
                ("type", s("AUDIO")),
                ("interactive", Document::Bool(true)),
                ("role", s("USER")),
                ("audioInputConfiguration", config),
            ]),
        )
        .names(&[("prompt_name", prompt_name), ("content_name", content_name)])
    }

    /// `audioInput`: a piece of an open audio content (raw PCM; sent base64-encoded).
    pub fn audio(prompt_name: &str, content_name: &str, pcm: &[u8]) -> Self {
        Self::event(
            "audioInput",
            obj([
                ("promptName", s(prompt_name)),
                ("contentName", s(content_name)),
                ("content", s(&aws_smithy_types::base64::encode(pcm))),
            ]),
        )
        .names(&[("prompt_name", prompt_name), ("content_name", content_name)])
    }

    /// `contentEnd`: closes a content (a user's interactive content makes the model answer).
    pub fn content_end(prompt_name: &str, content_name: &str) -> Self {
        Self::event(
            "contentEnd",
            obj([
                ("promptName", s(prompt_name)),
                ("contentName", s(content_name)),
            ]),
        )
        .names(&[("prompt_name", prompt_name), ("content_name", content_name)])
    }

    /// `promptEnd`: closes the prompt.
    pub fn prompt_end(prompt_name: &str) -> Self {
        Self::event("promptEnd", obj([("promptName", s(prompt_name))]))
            .names(&[("prompt_name", prompt_name)])
    }

    /// `sessionEnd`: the model ends the session (its output stream ends).
    pub fn session_end() -> Self {
        Self::event("sessionEnd", obj([]))
    }

    /// A whole user text turn: [`text_start`](Self::text_start) (user, interactive),
    /// [`text`](Self::text), [`content_end`](Self::content_end).
    pub fn user_text(prompt_name: &str, content_name: &str, text: &str) -> [Self; 3] {
        [
            Self::text_start(prompt_name, content_name, SessionRole::User, true),
            Self::text(prompt_name, content_name, text),
            Self::content_end(prompt_name, content_name),
        ]
    }

    /// Any event, given whole: `{"event":{"<name>":{...}}}` (one name).
    ///
    /// # Errors
    /// `event` (invalid input) when it does not have that shape.
    pub fn raw(event: Document) -> Result<Self> {
        let one = event
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("event"))
            .and_then(Document::as_object)
            .is_some_and(|o| o.len() == 1 && o.values().all(|v| v.as_object().is_some()));
        if !one {
            return Err(Error::invalid(
                "event",
                "must be {\"event\":{\"<name>\":{...}}} with one name",
            ));
        }
        Ok(SessionInput {
            event,
            invalid: None,
        })
    }

    /// Returns the event's name (`textInput`, ...).
    pub fn name(&self) -> &str {
        self.event
            .as_object()
            .and_then(|o| o.get("event"))
            .and_then(Document::as_object)
            .and_then(|o| o.keys().next())
            .map_or("", String::as_str)
    }

    /// Returns the event as JSON bytes, or the error naming its invalid field.
    pub(super) fn to_json(&self) -> Result<Vec<u8>> {
        if let Some((field, why)) = self.invalid {
            return Err(Error::invalid(field, why));
        }
        let mut json = String::new();
        aws_smithy_json::serialize::JsonValueWriter::new(&mut json).document(&self.event);
        Ok(json.into_bytes())
    }
}

/// The cumulative token counts of a session, as its last `usageEvent` gave them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionUsage {
    /// Input tokens (speech and text).
    pub input_tokens: u64,
    /// Output tokens (speech and text).
    pub output_tokens: u64,
    /// Input speech tokens.
    pub input_speech_tokens: u64,
    /// Output speech tokens.
    pub output_speech_tokens: u64,
}

/// One event a session receives.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionOutput {
    /// The model starts answering a prompt.
    CompletionStart {
        /// The completion's id.
        completion_id: String,
    },
    /// A content starts (`kind`: `TEXT`, `AUDIO` or `TOOL`; `role`: `USER` for the transcript
    /// of the user's speech, `ASSISTANT` for the model).
    ContentStart {
        /// The content's id.
        content_id: String,
        /// `TEXT`, `AUDIO` or `TOOL`.
        kind: String,
        /// `USER` or `ASSISTANT`.
        role: String,
    },
    /// Text: the model's, or the transcript of the user's speech (`role` `USER`).
    Text {
        /// The content's id.
        content_id: String,
        /// `USER` or `ASSISTANT`.
        role: String,
        /// The text.
        text: String,
    },
    /// Speech from the model: raw PCM (decoded from base64).
    Audio {
        /// The content's id.
        content_id: String,
        /// The PCM bytes.
        pcm: Vec<u8>,
    },
    /// The model calls a tool.
    ToolUse {
        /// The tool use's id, to answer with.
        tool_use_id: String,
        /// The tool's name.
        name: String,
        /// The tool's input.
        input: Document,
    },
    /// A content ends (`stop_reason`: `PARTIAL_TURN`, `END_TURN`, `INTERRUPTED`, ...).
    ContentEnd {
        /// The content's id.
        content_id: String,
        /// Why it ended, when given.
        stop_reason: Option<String>,
    },
    /// The model finished answering a prompt.
    CompletionEnd {
        /// Why it ended, when given.
        stop_reason: Option<String>,
    },
    /// The session's token counts so far.
    Usage(SessionUsage),
    /// Any other event, whole (`{"event":{...}}`).
    Other(Document),
}

fn get<'a>(body: &'a HashMap<String, Document>, key: &str) -> &'a str {
    body.get(key)
        .and_then(Document::as_string)
        .unwrap_or_default()
}

fn count(doc: Option<&Document>) -> u64 {
    match doc {
        Some(Document::Number(Number::PosInt(n))) => *n,
        Some(Document::Number(Number::Float(f))) if *f >= 0.0 => *f as u64,
        _ => 0,
    }
}

fn path<'a>(doc: &'a Document, keys: &[&str]) -> Option<&'a Document> {
    keys.iter()
        .try_fold(doc, |d, k| d.as_object().and_then(|o| o.get(*k)))
}

impl SessionOutput {
    /// Parses the JSON of one received event.
    pub(super) fn parse(json: &[u8]) -> Result<Self> {
        let doc = std::str::from_utf8(json)
            .ok()
            .and_then(|t| parse_json(t).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    "invoke_model_with_bidirectional_stream: an event is not JSON",
                )
            })?;
        let Some((name, body)) = doc
            .as_object()
            .and_then(|o| o.get("event"))
            .and_then(Document::as_object)
            .and_then(|o| o.iter().next())
            .and_then(|(n, b)| Some((n.as_str(), b.as_object()?)))
        else {
            return Ok(SessionOutput::Other(doc));
        };
        let id = || get(body, "contentId").to_owned();
        let reason = || {
            body.get("stopReason")
                .and_then(Document::as_string)
                .map(str::to_owned)
        };
        Ok(match name {
            "completionStart" => SessionOutput::CompletionStart {
                completion_id: get(body, "completionId").to_owned(),
            },
            "contentStart" => SessionOutput::ContentStart {
                content_id: id(),
                kind: get(body, "type").to_owned(),
                role: get(body, "role").to_owned(),
            },
            "textOutput" => SessionOutput::Text {
                content_id: id(),
                role: get(body, "role").to_owned(),
                text: get(body, "content").to_owned(),
            },
            "audioOutput" => SessionOutput::Audio {
                content_id: id(),
                pcm: aws_smithy_types::base64::decode(get(body, "content")).map_err(|_| {
                    Error::new(ErrorKind::Other, "an audioOutput's content is not base64")
                })?,
            },
            "toolUse" => SessionOutput::ToolUse {
                tool_use_id: get(body, "toolUseId").to_owned(),
                name: get(body, "toolName").to_owned(),
                input: parse_json(get(body, "content")).unwrap_or(Document::Null),
            },
            "contentEnd" => SessionOutput::ContentEnd {
                content_id: id(),
                stop_reason: reason(),
            },
            "completionEnd" => SessionOutput::CompletionEnd {
                stop_reason: reason(),
            },
            "usageEvent" => {
                let root = Document::Object(body.clone());
                SessionOutput::Usage(SessionUsage {
                    input_tokens: count(body.get("totalInputTokens")),
                    output_tokens: count(body.get("totalOutputTokens")),
                    input_speech_tokens: count(path(
                        &root,
                        &["details", "total", "input", "speechTokens"],
                    )),
                    output_speech_tokens: count(path(
                        &root,
                        &["details", "total", "output", "speechTokens"],
                    )),
                })
            }
            _ => SessionOutput::Other(doc.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_serialize_as_nova_sonic_events_and_empty_names_are_refused() {
        let json =
            String::from_utf8(SessionInput::text("p", "c", "hi").to_json().unwrap()).unwrap();
        assert_eq!(
            parse_json(&json).unwrap(),
            parse_json(
                r#"{"event":{"textInput":{"promptName":"p","contentName":"c","content":"hi"}}}"#
            )
            .unwrap()
        );
        let e = SessionInput::content_end("p", "").to_json().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("content_name"), "{e}");
        assert!(SessionInput::raw(Document::Null).is_err());
        assert_eq!(SessionInput::session_end().name(), "sessionEnd");
    }

    #[test]
    fn outputs_parse_into_their_kinds() {
        let audio = format!(
            r#"{{"event":{{"audioOutput":{{"contentId":"a","content":"{}"}}}}}}"#,
            aws_smithy_types::base64::encode([1u8, 2, 3])
        );
        assert_eq!(
            SessionOutput::parse(audio.as_bytes()).unwrap(),
            SessionOutput::Audio {
                content_id: "a".into(),
                pcm: vec![1, 2, 3]
            }
        );
        let usage = br#"{"event":{"usageEvent":{"totalInputTokens":5,"totalOutputTokens":7,
            "details":{"total":{"input":{"speechTokens":2},"output":{"speechTokens":3}}}}}}"#;
        assert_eq!(
            SessionOutput::parse(usage).unwrap(),
            SessionOutput::Usage(SessionUsage {
                input_tokens: 5,
                output_tokens: 7,
                input_speech_tokens: 2,
                output_speech_tokens: 3
            })
        );
        assert!(matches!(
            SessionOutput::parse(br#"{"event":{"newKind":{}}}"#).unwrap(),
            SessionOutput::Other(_)
        ));
        assert!(SessionOutput::parse(b"not json").is_err());
    }
}
