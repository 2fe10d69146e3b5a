//! InvokeModelWithBidirectionalStream (`POST /model/{id}/invoke-with-bidirectional-stream`):
//! an event stream both ways over one HTTP/2 stream.
//!
//! The request is signed as every Bedrock request, over an empty payload; each input message
//! then comes in a SigV4 envelope (`:date`, `:chunk-signature` chained from the request's
//! signature, the inner message as payload; the last one empty), which the server verifies with
//! aws-sigv4's own event-stream signer. A request authenticated by a Bedrock API key sends its
//! messages bare. Each inner message is a `chunk` event whose JSON `bytes` (base64) carry one
//! model event; the answer is `chunk` events the same way, written as the model produces them
//! while the request body still streams in. The model is the echo model of
//! [`sonic`](super::sonic). Over HTTP/1.1 the request is refused: the operation needs HTTP/2.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::{
    DecodedFrame, MessageFrameDecoder, read_message_from, write_headers_to,
};
use aws_smithy_types::base64;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::bedrock::{INVALID_MODEL_ID, authenticate, fail, take_faults};
use super::canonical::sha256_hex;
use super::fault::ServiceError;
use super::record::RecordedRequest;
use super::sonic::{Session, Step};
use super::state::Answer;
use super::state::Shared;
use super::validate::valid_model_id;
use super::wire::{self, Body};

/// Frames written ahead of a slow reader before the model waits.
const OUTPUT_BUFFER: usize = 64;

/// What a verified input message carries.
#[derive(Debug)]
enum Input {
    /// One model event (the JSON inside the `chunk`'s `bytes`).
    Event(Value),
    /// The client ended its input (the signed empty message, or the body's end).
    End,
}

/// How the server checks the input messages of one session.
pub(crate) enum Signing {
    /// SigV4 envelopes chained from the request's signature.
    SigV4 {
        credentials: Credentials,
        region: String,
        last: String,
    },
    /// A Bedrock API key: bare messages.
    Bare,
}

impl Signing {
    /// Returns the signing state of a request: its `Authorization` signature, or bare.
    pub(crate) fn of(shared: &Shared, parts: &http::request::Parts) -> Self {
        let signature = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256 "))
            .and_then(|p| {
                p.split(',')
                    .find_map(|kv| kv.trim().strip_prefix("Signature="))
            });
        match signature {
            Some(sig) => Signing::SigV4 {
                credentials: Credentials::new(
                    &shared.access_key_id,
                    &shared.secret_access_key,
                    None,
                    None,
                    "bedrock-pool-local",
                ),
                region: shared.region.clone(),
                last: sig.to_owned(),
            },
            None => Signing::Bare,
        }
    }

    /// Verifies one message of the request body and returns what it carries.
    fn open(&mut self, outer: Message) -> Result<Input, String> {
        let Signing::SigV4 {
            credentials,
            region,
            last,
        } = self
        else {
            return inner_input(&outer);
        };
        let header = |name: &str| outer.headers().iter().find(|h| h.name().as_str() == name);
        let (Some(date), Some(sig)) = (header(":date"), header(":chunk-signature")) else {
            return Err("an input message is not signed (no :date or :chunk-signature)".into());
        };
        let (HeaderValue::Timestamp(date), HeaderValue::ByteArray(sig)) =
            (date.value(), sig.value())
        else {
            return Err("an input message's signature headers have the wrong types".into());
        };
        let expected = chunk_signature(credentials, region, last, *date, outer.payload())?;
        let inner = if outer.payload().is_empty() {
            None
        } else {
            Some(read_message_from(outer.payload().clone()).map_err(|e| e.to_string())?)
        };
        if hex(sig) != expected {
            return Err(
                "The request signature we calculated does not match the signature you \
                        provided (an input message's :chunk-signature)."
                    .into(),
            );
        }
        *last = expected;
        match inner {
            Some(m) => inner_input(&m),
            None => Ok(Input::End),
        }
    }
}

/// Returns the signature of one input message's envelope, as SigV4 defines it for event
/// streams: its string to sign hashes the `:date` header as received (the JavaScript SDK sends
/// milliseconds, which aws-sigv4's own message signer would round away) and the payload bytes
/// as received (the inner message, or nothing for the end).
fn chunk_signature(
    credentials: &Credentials,
    region: &str,
    last: &str,
    date: aws_smithy_types::DateTime,
    payload: &[u8],
) -> Result<String, String> {
    let time = SystemTime::try_from(date).map_err(|_| "a :date out of range".to_owned())?;
    let stamp = date
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .map_err(|e| e.to_string())?;
    // `2026-12-07T02:18:20.510Z` → `20261207T021820Z`.
    let compact: String = stamp
        .chars()
        .take_while(|c| *c != '.' && *c != 'Z')
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let day = compact.get(..8).unwrap_or_default();
    let mut date_header = Vec::new();
    write_headers_to(
        &[Header::new(":date", HeaderValue::Timestamp(date))],
        &mut date_header,
    )
    .map_err(|e| e.to_string())?;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256-PAYLOAD\n{compact}Z\n{day}/{region}/bedrock/aws4_request\n{last}\n{}\n{}",
        sha256_hex(&date_header),
        sha256_hex(payload)
    );
    let key = v4::generate_signing_key(credentials.secret_access_key(), time, region, "bedrock");
    Ok(v4::calculate_signature(key, string_to_sign.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the model event of a bare `chunk` message.
fn inner_input(message: &Message) -> Result<Input, String> {
    let event_type = message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == ":event-type")
        .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_owned()));
    if event_type.as_deref() != Some("chunk") {
        return Err(format!(
            "an input message must be a chunk event, not {}",
            event_type.as_deref().unwrap_or("(none)")
        ));
    }
    let part: Value = serde_json::from_slice(message.payload())
        .map_err(|_| "a chunk's payload is not JSON".to_owned())?;
    let bytes = part
        .get("bytes")
        .and_then(Value::as_str)
        .and_then(|b| base64::decode(b).ok())
        .ok_or_else(|| "a chunk needs bytes (base64)".to_owned())?;
    serde_json::from_slice(&bytes)
        .map(Input::Event)
        .map_err(|_| "a chunk's bytes are not a JSON event".to_owned())
}

/// Returns the `chunk` frame of one output event.
fn chunk_frame(event: &Value) -> Bytes {
    let encoded = base64::encode(event.to_string());
    wire::event_frame("chunk", &json!({ "bytes": encoded }))
}

/// Opens an InvokeModelWithBidirectionalStream session: HTTP/2 only, authenticated over an
/// empty payload (its messages are signed one by one, see the module docs), the faults
/// that act before the headers, a valid model id; then the streamed answer.
pub(crate) async fn session(
    shared: &Shared,
    parts: &http::request::Parts,
    body: hyper::body::Incoming,
    rec: &RecordedRequest,
) -> Answer {
    if parts.version != http::Version::HTTP_2 {
        return fail(needs_http2());
    }
    if let Err(err) = authenticate(shared, parts, &[], rec) {
        return fail(err);
    }
    if let Err(answer) = take_faults(shared, rec).await {
        return answer;
    }
    if !rec.model_id.as_deref().is_some_and(valid_model_id) {
        return fail(ServiceError::Validation(INVALID_MODEL_ID.to_owned()));
    }
    let signing = Signing::of(shared, parts);
    Answer::Respond(answer(body, signing, wire::request_id()), None)
}

/// Returns the streamed answer of a session whose request was accepted: the model reads the
/// request body in its own task and writes its events as they come.
fn answer(body: Incoming, signing: Signing, session_id: String) -> http::Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(OUTPUT_BUFFER);
    tokio::spawn(run(body, signing, Session::new(session_id), tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut res = wire::response(
        200,
        "application/vnd.amazon.eventstream",
        StreamBody::new(stream).boxed_unsync(),
    );
    res.headers_mut().insert(
        "x-amzn-bedrock-session-id",
        http::HeaderValue::from_static("local"),
    );
    res
}

/// Reads the input messages, runs the model, writes its events; ends the answer when the
/// session ends, the input ends, or an input is refused (an exception event).
async fn run(
    mut body: Incoming,
    mut signing: Signing,
    mut model: Session,
    tx: mpsc::Sender<Bytes>,
) {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = BytesMut::new();
    let send_all = |events: Vec<Value>| {
        let tx = tx.clone();
        async move {
            for e in events {
                if tx.send(chunk_frame(&e)).await.is_err() {
                    return false;
                }
            }
            true
        }
    };
    let fail = |name: &'static str, message: String| {
        let tx = tx.clone();
        async move {
            let err = ServiceError::custom(400, name, message);
            let _ = tx.send(wire::exception_frame(&err)).await;
        }
    };
    loop {
        let message = loop {
            match decoder.decode_frame(&mut buf) {
                Ok(DecodedFrame::Complete(m)) => break Some(m),
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => {
                    fail(
                        "ValidationException",
                        format!("a malformed input message: {e}"),
                    )
                    .await;
                    return;
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                // The input ended (or the stream broke): the session is over.
                Some(Err(_)) | None => break None,
            }
        };
        let Some(message) = message else { return };
        let input = match signing.open(message) {
            Ok(i) => i,
            Err(msg) => {
                let name = if msg.contains("signature") {
                    "InvalidSignatureException"
                } else {
                    "ValidationException"
                };
                fail(name, msg).await;
                return;
            }
        };
        let event = match input {
            Input::Event(e) => e,
            Input::End => return,
        };
        match model.on_event(&event) {
            Step::Events(events) => {
                if !send_all(events).await {
                    return;
                }
            }
            Step::End(events) => {
                send_all(events).await;
                return;
            }
            Step::Fail(name, message) => {
                fail(name, message).await;
                return;
            }
        }
    }
}

/// The refusal of a session over HTTP/1.1.
fn needs_http2() -> ServiceError {
    ServiceError::Validation(
        "InvokeModelWithBidirectionalStream needs HTTP/2: the request came over HTTP/1.1.".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::event_stream::{sign_empty_message, sign_message};

    fn chunk(event: &Value) -> Message {
        let part = json!({ "bytes": base64::encode(event.to_string()) });
        Message::new(part.to_string().into_bytes())
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String("chunk".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ))
    }

    fn signing() -> Signing {
        Signing::SigV4 {
            credentials: Credentials::new("AKID", "secret", None, None, "test"),
            region: "us-west-2".into(),
            last: "seed".into(),
        }
    }

    /// Signs `inner` (or the end) after `last`, as the SDK does; returns the envelope and its
    /// signature.
    fn envelope(inner: Option<&Message>, last: &str, secret: &str) -> (Message, String) {
        let identity = Credentials::new("AKID", secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-west-2")
            .name("bedrock")
            .time(SystemTime::now())
            .settings(())
            .build()
            .unwrap();
        let out = match inner {
            Some(m) => sign_message(m, last, &params),
            None => sign_empty_message(last, &params),
        };
        out.unwrap().into_parts()
    }

    #[test]
    fn a_chain_of_signed_messages_verifies_and_a_broken_link_does_not() {
        let mut s = signing();
        let first = chunk(&json!({"event": {"sessionStart": {}}}));
        let (outer, sig) = envelope(Some(&first), "seed", "secret");
        assert!(matches!(s.open(outer), Ok(Input::Event(_))));
        let (end, _) = envelope(None, &sig, "secret");
        assert!(matches!(s.open(end), Ok(Input::End)));

        // Chained from the wrong signature, or signed with the wrong secret, or bare.
        let mut s = signing();
        let (outer, _) = envelope(Some(&first), "other", "secret");
        assert!(s.open(outer).unwrap_err().contains("signature"));
        let mut s = signing();
        let (outer, _) = envelope(Some(&first), "seed", "wrong");
        assert!(s.open(outer).is_err());
        assert!(
            signing().open(first.clone()).is_err(),
            "a bare message needs an API key"
        );
        assert!(matches!(Signing::Bare.open(first), Ok(Input::Event(_))));
    }
}
