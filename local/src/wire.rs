//! Wire helpers: bodies, error encodings, event-stream frames, percent-decoding.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::{HeaderValue as HttpHeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use super::conn::ConnShared;
use super::fault::ServiceError;

/// The prefix Bedrock puts before the errors a model provider (Anthropic) reports.
pub(crate) const MODEL_ERRORS: &str = "The model returned the following errors: ";

/// The response body type of every answer.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Returns a body holding these bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Describes one step of a scripted response body.
pub(crate) enum Step {
    /// Sends these bytes.
    Data(Bytes),
    /// Pauses.
    Sleep(Duration),
    /// Resets the connection, then ends the body with an error once it is gone.
    Reset(Arc<ConnShared>),
}

/// Returns a body that plays the steps in order.
pub(crate) fn scripted(steps: Vec<Step>) -> Body {
    let stream = futures_util::stream::unfold(VecDeque::from(steps), |mut steps| async move {
        loop {
            match steps.pop_front()? {
                Step::Data(b) => return Some((Ok(Frame::data(b)), steps)),
                Step::Sleep(d) => tokio::time::sleep(d).await,
                Step::Reset(conn) => {
                    // Give the frames already handed over time to reach the socket first.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    conn.reset();
                    conn.closed().await;
                    let err = io::Error::from(io::ErrorKind::ConnectionReset);
                    return Some((Err(err), VecDeque::new()));
                }
            }
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Returns a fresh request id shaped like the service's (a UUID).
pub(crate) fn request_id() -> String {
    let n = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (t >> 16) as u32,
        (t & 0xffff) as u16,
        (n >> 48) & 0xfff,
        (n >> 36) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Returns a response with a status, a content type and a body.
pub(crate) fn response(status: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HttpHeaderValue::from_static(content_type),
    );
    if let Ok(id) = HttpHeaderValue::from_str(&request_id()) {
        headers.insert("x-amzn-requestid", id);
    }
    res
}

/// Returns a restJson1 JSON reply.
pub(crate) fn json_response(status: u16, value: &serde_json::Value) -> Response<Body> {
    response(status, "application/json", full(value.to_string()))
}

/// Returns a restJson1 error as Bedrock sends it: status, `x-amzn-ErrorType`, `{"message":..}`.
pub(crate) fn json_error(err: &ServiceError) -> Response<Body> {
    let body = serde_json::json!({ "message": err.message() });
    let mut res = json_response(err.status(), &body);
    let name = format!(
        "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        err.name()
    );
    if let Ok(v) = HttpHeaderValue::from_str(&name) {
        res.headers_mut().insert("x-amzn-errortype", v);
    }
    res
}

/// Returns the text escaped for XML.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Returns an awsQuery (STS) error: `<ErrorResponse><Error>..</Error><RequestId/></ErrorResponse>`.
pub(crate) fn xml_error(err: &ServiceError) -> Response<Body> {
    let kind = if err.status() >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    \
         <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
         <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml_escape(err.name()),
        xml_escape(err.message()),
        request_id()
    );
    response(err.status(), "text/xml", full(body))
}

/// Returns one encoded event-stream frame.
fn frame(headers: Vec<Header>, payload: Vec<u8>) -> Bytes {
    let message = Message::new_from_parts(headers, payload);
    let mut buf = Vec::new();
    // Encoding only fails for oversized headers, which these fixed headers never are.
    if let Err(e) = aws_smithy_eventstream::frame::write_message_to(&message, &mut buf) {
        tracing::error!(error = %e, "cannot encode an event-stream frame");
    }
    Bytes::from(buf)
}

fn string_header(name: &'static str, value: impl Into<String>) -> Header {
    Header::new(name, HeaderValue::String(value.into().into()))
}

/// Returns an event frame (`:message-type: event`).
pub(crate) fn event_frame(event_type: &str, payload: &serde_json::Value) -> Bytes {
    frame(
        vec![
            string_header(":event-type", event_type),
            string_header(":content-type", "application/json"),
            string_header(":message-type", "event"),
        ],
        payload.to_string().into_bytes(),
    )
}

/// Returns an exception frame (`:message-type: exception`, `:exception-type` in lower camel case).
pub(crate) fn exception_frame(err: &ServiceError) -> Bytes {
    let name = err.name();
    let mut chars = name.chars();
    let lower_camel: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    frame(
        vec![
            string_header(":exception-type", lower_camel),
            string_header(":content-type", "application/json"),
            string_header(":message-type", "exception"),
        ],
        serde_json::json!({ "message": err.message() })
            .to_string()
            .into_bytes(),
    )
}

/// Returns the percent-decoded string (`+` kept as is unless `plus_as_space`), or None if the
/// result is not UTF-8 or an escape is malformed.
pub(crate) fn percent_decode(s: &str, plus_as_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_labels() {
        assert_eq!(percent_decode("a%3A0%2Fb", false).as_deref(), Some("a:0/b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
    }

    #[test]
    fn escapes_xml() {
        assert_eq!(xml_escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
