//! Answer helpers shared by the Bedrock handlers: unary JSON bodies and stream faults.

use std::sync::Arc;

use bytes::Bytes;

use super::conn::ConnShared;
use super::fault::Fault;
use super::state::Answer;
use super::wire::{self, Step};

/// Returns a 200 JSON answer, or headers and half the body followed by a reset.
pub(crate) fn unary(bytes: Bytes, conn: &Arc<ConnShared>, reset_after_headers: bool) -> Answer {
    if !reset_after_headers {
        return Answer::Respond(
            wire::response(200, "application/json", wire::full(bytes)),
            None,
        );
    }
    let len = bytes.len();
    let steps = vec![
        Step::Data(bytes.slice(..len / 2)),
        Step::Reset(conn.clone()),
    ];
    let mut res = wire::response(200, "application/json", wire::scripted(steps));
    res.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    Answer::Respond(res, None)
}

/// Spreads a generation time over a stream's events: a pause before each, so that the headers
/// go at once and the answer takes `generation` in all.
pub(crate) fn pace(steps: Vec<Step>, generation: std::time::Duration) -> Vec<Step> {
    let events = steps.iter().filter(|s| matches!(s, Step::Data(_))).count();
    if generation.is_zero() || events == 0 {
        return steps;
    }
    let gap = generation / u32::try_from(events).unwrap_or(u32::MAX);
    let mut paced = Vec::with_capacity(steps.len() + events);
    for s in steps {
        if matches!(s, Step::Data(_)) {
            paced.push(Step::Sleep(gap));
        }
        paced.push(s);
    }
    paced
}

/// Returns the steps of a stream body with a stream fault applied.
pub(crate) fn apply_stream_fault(
    frames: Vec<Bytes>,
    fault: Option<Fault>,
    error: &mut Option<String>,
) -> Vec<Step> {
    // The frames before messageStop (the last two frames are messageStop and metadata).
    let before_stop = frames.len().saturating_sub(2);
    let data = |frames: &[Bytes]| frames.iter().cloned().map(Step::Data).collect::<Vec<_>>();
    match fault {
        Some(Fault::StreamStall {
            after_events,
            duration,
        }) => {
            let n = after_events.min(frames.len());
            let mut steps = data(&frames[..n]);
            steps.push(Step::Sleep(duration));
            steps.extend(data(&frames[n..]));
            steps
        }
        Some(Fault::StreamException {
            after_events,
            error: err,
        }) => {
            let n = after_events.min(before_stop);
            let mut steps = data(&frames[..n]);
            steps.push(Step::Data(wire::exception_frame(&err)));
            *error = Some(err.name().to_owned());
            steps
        }
        Some(Fault::StreamCut { after_events }) => data(&frames[..after_events.min(before_stop)]),
        _ => data(&frames),
    }
}
