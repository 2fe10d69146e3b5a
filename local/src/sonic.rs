//! The echo model of a bidirectional session (InvokeModelWithBidirectionalStream), speaking
//! Amazon Nova Sonic's events: each input event is `{"event":{"<name>":{..}}}`, each output
//! event too.
//!
//! The session must open with `sessionStart`, then `promptStart` (a `promptName`); each content
//! is `contentStart` (`contentName`, `type` TEXT or AUDIO, `role`), its `textInput` or
//! `audioInput` events (`content`: text, or base64 audio), then `contentEnd`. When a USER
//! content ends the model answers it back:
//! - a text: `completionStart` (once per prompt), `contentStart` (TEXT, ASSISTANT),
//!   `textOutput` with the same text, `contentEnd` (`END_TURN`), then a `usageEvent`;
//! - an audio: its transcript as the user's `textOutput` (`[audio: N bytes]`), then
//!   `contentStart` (AUDIO, ASSISTANT), the same audio back in `audioOutput` events of at most
//!   [`AUDIO_CHUNK`] bytes, `contentEnd`, then a `usageEvent`.
//!
//! `promptEnd` answers `completionEnd`; `sessionEnd` ends the session. A text equal to
//! [`FAIL_SESSION`] answers a `modelStreamErrorException`. Tokens: a text token per word, a
//! speech token per [`SPEECH_BYTES_PER_TOKEN`] bytes of audio (40 ms of 16 kHz 16-bit mono).

use std::collections::HashMap;

use aws_smithy_types::base64;
use serde_json::{Value, json};

/// The user text that makes the echo model fail its session with a `modelStreamErrorException`.
pub const FAIL_SESSION: &str = "FAIL_SESSION";

/// The largest audio payload (decoded bytes) of one `audioOutput` event.
pub const AUDIO_CHUNK: usize = 16 * 1024;

/// Audio bytes counted as one speech token.
pub const SPEECH_BYTES_PER_TOKEN: usize = 1280;

/// What an input event makes the model do.
pub(crate) enum Step {
    /// These output events (each a whole `{"event":{..}}`), possibly none.
    Events(Vec<Value>),
    /// The session is over (after these events).
    End(Vec<Value>),
    /// The model fails the session: `(exception name, message)`.
    Fail(&'static str, String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Audio,
}

struct Content {
    kind: Kind,
    role: String,
    text: String,
    audio: Vec<u8>,
}

#[derive(Default, Clone, Copy)]
struct Tokens {
    speech: u64,
    text: u64,
}

/// One session's state.
pub(crate) struct Session {
    id: String,
    started: bool,
    prompt: Option<String>,
    completion: Option<String>,
    contents: HashMap<String, Content>,
    next_id: u64,
    input: Tokens,
    output: Tokens,
}

fn invalid(message: impl Into<String>) -> Step {
    Step::Fail("ValidationException", message.into())
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn speech_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(SPEECH_BYTES_PER_TOKEN) as u64
}

fn str_of<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

impl Session {
    pub(crate) fn new(id: String) -> Self {
        Session {
            id,
            started: false,
            prompt: None,
            completion: None,
            contents: HashMap::new(),
            next_id: 1,
            input: Tokens::default(),
            output: Tokens::default(),
        }
    }

    fn fresh_id(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("{what}-{}-{}", self.id, self.next_id)
    }

    /// Returns the event with the session, prompt and completion ids every output carries.
    fn out(&self, name: &str, mut body: Value) -> Value {
        if let Some(o) = body.as_object_mut() {
            o.insert("sessionId".into(), json!(self.id));
            if let Some(p) = &self.prompt {
                o.insert("promptName".into(), json!(p));
            }
            if let Some(c) = &self.completion {
                o.insert("completionId".into(), json!(c));
            }
        }
        json!({ "event": { name: body } })
    }

    /// Takes one input event (its JSON) and says what the model does.
    pub(crate) fn on_event(&mut self, event: &Value) -> Step {
        let Some((name, body)) = event
            .get("event")
            .and_then(Value::as_object)
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        else {
            return invalid("Each input event must be an object {\"event\":{\"<name>\":{...}}}.");
        };
        if !self.started && name != "sessionStart" {
            return invalid(format!(
                "The first event of a session must be sessionStart, not {name}."
            ));
        }
        match name.as_str() {
            "sessionStart" if self.started => invalid("The session has already started."),
            "sessionStart" => {
                self.started = true;
                Step::Events(vec![])
            }
            "promptStart" => match str_of(body, "promptName") {
                Some(p) if !p.is_empty() => {
                    self.prompt = Some(p.to_owned());
                    self.completion = None;
                    Step::Events(vec![])
                }
                _ => invalid("promptStart needs a promptName."),
            },
            "contentStart" => self.content_start(body),
            "textInput" | "audioInput" => self.input(name, body),
            "contentEnd" => self.content_end(body),
            "promptEnd" => {
                let mut out = vec![];
                if self.completion.is_some() {
                    out.push(self.out("completionEnd", json!({ "stopReason": "END_TURN" })));
                }
                self.completion = None;
                self.prompt = None;
                Step::Events(out)
            }
            "sessionEnd" => Step::End(vec![]),
            "toolResult" => Step::Events(vec![]),
            other => invalid(format!("Unknown input event {other}.")),
        }
    }

    fn check_prompt(&self, body: &Value) -> Result<(), Step> {
        match (&self.prompt, str_of(body, "promptName")) {
            (Some(p), Some(q)) if p == q => Ok(()),
            (None, _) => Err(invalid("No prompt is open: send promptStart first.")),
            _ => Err(invalid("The promptName does not name the open prompt.")),
        }
    }

    fn content_start(&mut self, body: &Value) -> Step {
        if let Err(step) = self.check_prompt(body) {
            return step;
        }
        let Some(name) = str_of(body, "contentName").filter(|n| !n.is_empty()) else {
            return invalid("contentStart needs a contentName.");
        };
        let kind = match str_of(body, "type") {
            Some("TEXT") => Kind::Text,
            Some("AUDIO") => Kind::Audio,
            Some("TOOL") => Kind::Text,
            _ => return invalid("contentStart type must be TEXT, AUDIO or TOOL."),
        };
        let role = str_of(body, "role").unwrap_or("USER").to_owned();
        if !matches!(role.as_str(), "USER" | "SYSTEM" | "ASSISTANT" | "TOOL") {
            return invalid("contentStart role must be USER, SYSTEM, ASSISTANT or TOOL.");
        }
        let content = Content {
            kind,
            role,
            text: String::new(),
            audio: Vec::new(),
        };
        if self.contents.insert(name.to_owned(), content).is_some() {
            return invalid(format!("The content {name} is already open."));
        }
        Step::Events(vec![])
    }

    fn input(&mut self, event: &str, body: &Value) -> Step {
        if let Err(step) = self.check_prompt(body) {
            return step;
        }
        let name = str_of(body, "contentName").unwrap_or_default();
        let Some(content) = self.contents.get_mut(name) else {
            return invalid(format!("{event} names no open content ({name:?})."));
        };
        let piece = str_of(body, "content").unwrap_or_default();
        match (event, content.kind) {
            ("textInput", Kind::Text) => content.text.push_str(piece),
            ("audioInput", Kind::Audio) => match base64::decode(piece) {
                Ok(bytes) => content.audio.extend_from_slice(&bytes),
                Err(_) => return invalid("audioInput content must be base64."),
            },
            _ => return invalid(format!("{event} does not match the content's type.")),
        }
        Step::Events(vec![])
    }

    fn content_end(&mut self, body: &Value) -> Step {
        if let Err(step) = self.check_prompt(body) {
            return step;
        }
        let name = str_of(body, "contentName").unwrap_or_default();
        let Some(content) = self.contents.remove(name) else {
            return invalid(format!("contentEnd names no open content ({name:?})."));
        };
        if content.role != "USER" {
            return Step::Events(vec![]);
        }
        if content.kind == Kind::Text && content.text.trim() == FAIL_SESSION {
            return Step::Fail(
                "ModelStreamErrorException",
                "The model failed the session (FAIL_SESSION).".to_owned(),
            );
        }
        let mut out = Vec::new();
        if self.completion.is_none() {
            self.completion = Some(self.fresh_id("completion"));
            out.push(self.out("completionStart", json!({})));
        }
        let before = (self.input, self.output);
        match content.kind {
            Kind::Text => {
                self.input.text += words(&content.text);
                self.output.text += words(&content.text);
                self.answer_text(&mut out, "ASSISTANT", &content.text);
            }
            Kind::Audio => {
                let n = content.audio.len();
                self.input.speech += speech_tokens(n);
                self.output.speech += speech_tokens(n);
                self.answer_text(&mut out, "USER", &format!("[audio: {n} bytes]"));
                let id = self.fresh_id("content");
                out.push(self.out(
                    "contentStart",
                    json!({"contentId": id, "type": "AUDIO", "role": "ASSISTANT"}),
                ));
                for chunk in content.audio.chunks(AUDIO_CHUNK) {
                    out.push(self.out(
                        "audioOutput",
                        json!({"contentId": id, "role": "ASSISTANT", "content": base64::encode(chunk)}),
                    ));
                }
                out.push(self.out(
                    "contentEnd",
                    json!({"contentId": id, "type": "AUDIO", "stopReason": "END_TURN"}),
                ));
            }
        }
        out.push(self.usage(before));
        Step::Events(out)
    }

    fn answer_text(&mut self, out: &mut Vec<Value>, role: &str, text: &str) {
        let id = self.fresh_id("content");
        out.push(self.out(
            "contentStart",
            json!({"contentId": id, "type": "TEXT", "role": role,
                   "additionalModelFields": "{\"generationStage\":\"FINAL\"}"}),
        ));
        out.push(self.out(
            "textOutput",
            json!({"contentId": id, "role": role, "content": text}),
        ));
        out.push(self.out(
            "contentEnd",
            json!({"contentId": id, "type": "TEXT", "stopReason": "END_TURN"}),
        ));
    }

    fn usage(&self, (input, output): (Tokens, Tokens)) -> Value {
        let tokens = |t: Tokens| json!({"speechTokens": t.speech, "textTokens": t.text});
        let delta = |now: Tokens, then: Tokens| Tokens {
            speech: now.speech - then.speech,
            text: now.text - then.text,
        };
        let total_in = self.input.speech + self.input.text;
        let total_out = self.output.speech + self.output.text;
        self.out(
            "usageEvent",
            json!({
                "details": {
                    "delta": {"input": tokens(delta(self.input, input)), "output": tokens(delta(self.output, output))},
                    "total": {"input": tokens(self.input), "output": tokens(self.output)},
                },
                "totalInputTokens": total_in,
                "totalOutputTokens": total_out,
                "totalTokens": total_in + total_out,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, body: Value) -> Value {
        json!({ "event": { name: body } })
    }

    fn events(step: Step) -> Vec<Value> {
        match step {
            Step::Events(e) | Step::End(e) => e,
            Step::Fail(n, m) => panic!("{n}: {m}"),
        }
    }

    #[test]
    fn a_text_turn_is_echoed_with_its_usage() {
        let mut s = Session::new("s1".into());
        events(s.on_event(&ev("sessionStart", json!({}))));
        events(s.on_event(&ev("promptStart", json!({"promptName": "p"}))));
        let start = json!({"promptName": "p", "contentName": "c", "type": "TEXT", "role": "USER"});
        events(s.on_event(&ev("contentStart", start)));
        let text = json!({"promptName": "p", "contentName": "c", "content": "hello there"});
        events(s.on_event(&ev("textInput", text)));
        let out = events(s.on_event(&ev(
            "contentEnd",
            json!({"promptName": "p", "contentName": "c"}),
        )));
        let names: Vec<&str> = out
            .iter()
            .map(|e| {
                e["event"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .next()
                    .unwrap()
                    .as_str()
            })
            .collect();
        assert_eq!(
            names,
            [
                "completionStart",
                "contentStart",
                "textOutput",
                "contentEnd",
                "usageEvent"
            ]
        );
        assert_eq!(out[2]["event"]["textOutput"]["content"], "hello there");
        assert_eq!(out[4]["event"]["usageEvent"]["totalTokens"], 4);
        let end = events(s.on_event(&ev("promptEnd", json!({"promptName": "p"}))));
        assert!(end[0]["event"]["completionEnd"].is_object());
    }

    #[test]
    fn events_out_of_order_are_refused() {
        let mut s = Session::new("s2".into());
        assert!(matches!(
            s.on_event(&ev("promptStart", json!({"promptName": "p"}))),
            Step::Fail("ValidationException", _)
        ));
        events(s.on_event(&ev("sessionStart", json!({}))));
        let text = json!({"promptName": "p", "contentName": "c", "content": "x"});
        assert!(matches!(s.on_event(&ev("textInput", text)), Step::Fail(..)));
        assert!(matches!(s.on_event(&json!({"nope": 1})), Step::Fail(..)));
    }
}
