//! Request handling: records each request, routes it to the Bedrock or STS handler, and applies
//! the connection-level answers (reset, close, silence).

use std::sync::Arc;
use std::time::Instant;

use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::conn::ConnShared;
use super::fault::ServiceError;
use super::record::{Listener, Operation, RecordedRequest};
use super::state::{Answer, Shared};
use super::wire::{self, Body};
use super::{bedrock, bidi, sts};

/// The largest request body the server reads.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Holds what a request handler needs.
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) listener: Listener,
    pub(crate) conn: Arc<ConnShared>,
}

/// Returns the `amz-sdk-request` attempt and max.
fn sdk_request(parts: &http::request::Parts) -> (Option<u32>, Option<u32>) {
    let Some(v) = parts
        .headers
        .get("amz-sdk-request")
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let (mut attempt, mut max) = (None, None);
    for kv in v.split(';') {
        match kv.trim().split_once('=') {
            Some(("attempt", n)) => attempt = n.trim().parse().ok(),
            Some(("max", n)) => max = n.trim().parse().ok(),
            _ => {}
        }
    }
    (attempt, max)
}

/// Handles one request: records it, dispatches it, and applies connection-level answers.
pub(crate) async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> http::Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    if ctx.listener == Listener::Bedrock
        && bedrock::route(&parts).0 == Operation::InvokeModelWithBidirectionalStream
    {
        // A session's body streams for as long as the session lasts: it is not collected.
        let rec = recorded(
            &ctx,
            &parts,
            bedrock::route(&parts),
            serde_json::Value::Null,
        );
        let seq = ctx.shared.record(rec.clone());
        let answer = bidi::session(&ctx.shared, &parts, body, &rec).await;
        return conclude(&ctx, seq, answer).await;
    }
    let (body, too_large) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(_) => (bytes::Bytes::new(), true),
    };
    let (operation, model_id, json) = match ctx.listener {
        Listener::Bedrock => {
            let (op, model) = bedrock::route(&parts);
            (op, model, serde_json::from_slice(&body).unwrap_or_default())
        }
        Listener::Sts => {
            let form = sts::parse_form(&body);
            (sts::operation(&form), None, form)
        }
    };
    let rec = recorded(&ctx, &parts, (operation, model_id), json);
    let seq = ctx.shared.record(rec.clone());
    let answer = if too_large {
        let err = ServiceError::custom(413, "RequestEntityTooLarge", "request body too large");
        Answer::error(ctx.listener, &err)
    } else {
        match ctx.listener {
            Listener::Bedrock => {
                bedrock::handle(&ctx.shared, &ctx.conn, &parts, &body, &rec, started).await
            }
            Listener::Sts => sts::handle(&ctx.shared, &ctx.conn, &parts, &body, &rec).await,
        }
    };
    conclude(&ctx, seq, answer).await
}

/// Returns the record of a request as it arrived.
fn recorded(
    ctx: &Ctx,
    parts: &http::request::Parts,
    (operation, model_id): (Operation, Option<String>),
    body: serde_json::Value,
) -> RecordedRequest {
    let (attempt, max_attempts) = sdk_request(parts);
    RecordedRequest {
        listener: ctx.listener,
        operation,
        model_id,
        attempt,
        max_attempts,
        invocation_id: parts
            .headers
            .get("amz-sdk-invocation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        connection_id: ctx.conn.id,
        http_version: parts.version,
        body,
        outcome: 0,
        error: None,
    }
}

/// Applies the connection-level answers (silence, reset, close) and records the outcome.
async fn conclude(ctx: &Ctx, seq: u64, answer: Answer) -> http::Response<Body> {
    match answer {
        Answer::Respond(res, _) if ctx.conn.is_silent() => {
            // A black hole answers nothing: the outcome stays 0 and the request hangs until the
            // connection task ends (when the server is dropped).
            ctx.conn.closed().await;
            res
        }
        Answer::Respond(res, error) => {
            ctx.shared.finish(seq, res.status().as_u16(), error);
            res
        }
        Answer::Reset | Answer::Close => {
            if matches!(answer, Answer::Reset) {
                ctx.conn.reset();
            } else {
                ctx.conn.close();
            }
            // Nothing reaches the client: wait until the connection is gone.
            ctx.conn.closed().await;
            wire::response(500, "text/plain", wire::full(""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(value: &str) -> http::request::Parts {
        let req = Request::builder()
            .header("amz-sdk-request", value)
            .body(())
            .unwrap();
        req.into_parts().0
    }

    #[test]
    fn sdk_request_reads_attempt_and_max() {
        assert_eq!(sdk_request(&parts("attempt=2; max=3")), (Some(2), Some(3)));
        assert_eq!(sdk_request(&parts("max=5")), (None, Some(5)));
        let none = Request::new(()).into_parts().0;
        assert_eq!(sdk_request(&none), (None, None));
    }
}
