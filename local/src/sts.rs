//! The STS listener: GetCallerIdentity (awsQuery: form request, XML reply).

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value};

use super::conn::ConnShared;
use super::fault::{Fault, ServiceError};
use super::identity::TEST_ACCOUNT_ID;
use super::record::{Listener, Operation, RecordedRequest};
use super::sigv4::{self, Expected};
use super::state::{Answer, Shared};
use super::wire::{self, Step};

/// Returns the form fields of a body as a JSON object (`Null` if the body is empty).
pub(crate) fn parse_form(body: &[u8]) -> Value {
    let Ok(text) = std::str::from_utf8(body) else {
        return Value::Null;
    };
    if text.is_empty() {
        return Value::Null;
    }
    let mut form = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (wire::percent_decode(k, true), wire::percent_decode(v, true)) {
            form.insert(k, Value::String(v));
        }
    }
    Value::Object(form)
}

/// Returns the operation the form's `Action` names.
pub(crate) fn operation(form: &Value) -> Operation {
    match form.get("Action").and_then(Value::as_str) {
        Some("GetCallerIdentity") => Operation::GetCallerIdentity,
        _ => Operation::Other,
    }
}

/// Returns the GetCallerIdentity XML reply.
fn caller_identity_xml() -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  \
         <GetCallerIdentityResult>\n    <Arn>arn:aws:iam::{TEST_ACCOUNT_ID}:user/local</Arn>\n    \
         <UserId>AIDALOCAL</UserId>\n    <Account>{TEST_ACCOUNT_ID}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  \
         </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        wire::request_id()
    )
}

/// Handles one STS request.
pub(crate) async fn handle(
    shared: &Shared,
    conn: &Arc<ConnShared>,
    parts: &http::request::Parts,
    body: &[u8],
    rec: &RecordedRequest,
) -> Answer {
    let fail = |err: ServiceError| Answer::error(Listener::Sts, &err);
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return fail(ServiceError::custom(
            404,
            "UnknownOperation",
            format!("unknown operation: {} {}", parts.method, parts.uri.path()),
        ));
    }
    let expected = Expected {
        event_stream: false,
        access_key_id: &shared.access_key_id,
        secret_access_key: &shared.secret_access_key,
        region: &shared.region,
        service: "sts",
    };
    if let Err(err) = sigv4::verify(parts, body, &expected) {
        return fail(err);
    }
    if rec.operation != Operation::GetCallerIdentity {
        let action = rec.body.get("Action").and_then(Value::as_str).unwrap_or("");
        return fail(ServiceError::custom(
            400,
            "InvalidAction",
            format!("Could not find operation {action} for version 2011-06-15"),
        ));
    }
    let mut reset_after_headers = false;
    match shared.take_fault(rec) {
        Some(Fault::Error(err)) => return fail(err),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetBeforeHeaders) => return Answer::Reset,
        Some(Fault::CloseBeforeHeaders) => return Answer::Close,
        Some(Fault::ResetAfterHeaders) => reset_after_headers = true,
        _ => {}
    }
    let xml = Bytes::from(caller_identity_xml());
    if !reset_after_headers {
        return Answer::Respond(wire::response(200, "text/xml", wire::full(xml)), None);
    }
    let len = xml.len();
    let steps = vec![Step::Data(xml.slice(..len / 2)), Step::Reset(conn.clone())];
    let mut res = wire::response(200, "text/xml", wire::scripted(steps));
    res.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    Answer::Respond(res, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let form = parse_form(b"Action=GetCallerIdentity&Version=2011-06-15&X=a+b%21");
        assert_eq!(operation(&form), Operation::GetCallerIdentity);
        assert_eq!(form["X"], "a b!");
        assert_eq!(parse_form(b""), Value::Null);
    }
}
