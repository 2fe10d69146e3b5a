//! A session's reader: a task that reads the session's stream as the events arrive (so that
//! unread events never hold the shared connection's flow-control window), probes the
//! connection when the session falls silent, and keeps the session's figures.

use super::alive::{self, Liveness};
use super::input;
use super::{SessionOutput, SessionUsage};
use crate::call::OpenCall;
use crate::error::{Error, ErrorKind, Result};
use crate::op::Op;
use crate::shared::Shared;
use crate::stats::{Outcome, SessionEnd};
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::InvokeModelWithBidirectionalStreamOutput as SdkOutput;
use aws_sdk_bedrockruntime::types::TokenUsage;
use aws_sdk_bedrockruntime::types::error::InvokeModelWithBidirectionalStreamOutputError as SdkOutputError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the reader task owns: the stream, the call's figures, the session's settings.
pub(super) struct Reader {
    pub(super) receiver: EventReceiver<SdkOutput, SdkOutputError>,
    pub(super) call: OpenCall,
    pub(super) shared: Arc<Shared>,
    pub(super) input: Arc<input::Shared>,
    pub(super) stall: Duration,
    pub(super) probe_timeout: Duration,
    pub(super) opened: Instant,
    pub(super) usage: Arc<Mutex<Option<SessionUsage>>>,
    pub(super) saw_event: bool,
    pub(super) done: bool,
}

/// Returns the name of an in-stream exception (they come without a code).
fn exception_name(e: &SdkOutputError) -> Option<&'static str> {
    Some(match e {
        SdkOutputError::InternalServerException(_) => "InternalServerException",
        SdkOutputError::ModelStreamErrorException(_) => "ModelStreamErrorException",
        SdkOutputError::ValidationException(_) => "ValidationException",
        SdkOutputError::ThrottlingException(_) => "ThrottlingException",
        SdkOutputError::ModelTimeoutException(_) => "ModelTimeoutException",
        SdkOutputError::ServiceUnavailableException(_) => "ServiceUnavailableException",
        _ => return None,
    })
}

/// What woke a session waiting for its next event.
enum Woke<T> {
    Event(T),
    Stalled,
    Probed(Liveness),
}

impl Reader {
    /// Reads the stream to its end (or its first error), handing each event to the session.
    pub(super) async fn run(mut self, events: mpsc::UnboundedSender<Result<SessionOutput>>) {
        while let Some(event) = self.next().await {
            // The session was dropped: its drop aborts this task; nothing to hand over.
            let _ = events.send(event);
        }
    }

    /// Returns the next event, `None` once the model ended the session (after an error too).
    async fn next(&mut self) -> Option<Result<SessionOutput>> {
        if self.done {
            return None;
        }
        let received = self.receive().await;
        let event = match received {
            Err(e) => {
                self.call.retire_connection();
                return Some(Err(self.end_with(Err(e))));
            }
            Ok(Err(e)) => {
                let name = e.as_service_error().and_then(exception_name);
                let e = crate::stream::in_stream_error(Op::Session.name(), name, e);
                if e.code().is_none() {
                    self.call.retire_connection();
                }
                return Some(Err(self.end_with(Err(e))));
            }
            Ok(Ok(None)) => {
                let _ = self.end_with(Ok(()));
                return None;
            }
            Ok(Ok(Some(event))) => event,
        };
        if !self.saw_event {
            self.saw_event = true;
            self.call.first_token();
        }
        let bytes = match &event {
            SdkOutput::Chunk(part) => part.bytes().map(|b| b.as_ref().to_vec()),
            _ => None,
        };
        let Some(bytes) = bytes else {
            return Some(Ok(SessionOutput::Other(aws_smithy_types::Document::Null)));
        };
        match SessionOutput::parse(&bytes) {
            Ok(SessionOutput::Usage(u)) => {
                *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(u);
                Some(Ok(SessionOutput::Usage(u)))
            }
            Ok(out) => Some(Ok(out)),
            Err(e) => Some(Err(self.end_with(Err(e)))),
        }
    }

    /// Waits for the next message of the stream; probes the connection after each stall
    /// timeout of silence, and gives up only when a probe gets no answer.
    #[allow(clippy::type_complexity)]
    async fn receive(
        &mut self,
    ) -> Result<
        std::result::Result<
            Option<SdkOutput>,
            aws_sdk_bedrockruntime::error::SdkError<
                SdkOutputError,
                aws_smithy_types::event_stream::RawMessage,
            >,
        >,
    > {
        let shared = self.shared.clone();
        let region = self.call.region().to_owned();
        let connection = self.call.connection_id();
        let (stall, timeout) = (self.stall, self.probe_timeout);
        let recv = self.receiver.recv();
        tokio::pin!(recv);
        let mut deadline = tokio::time::Instant::now() + stall;
        let mut probe: Option<Pin<Box<dyn Future<Output = Liveness> + Send>>> = None;
        loop {
            let woke = match probe.as_mut() {
                None => tokio::select! {
                    r = &mut recv => Woke::Event(r),
                    () = tokio::time::sleep_until(deadline) => Woke::Stalled,
                },
                Some(p) => tokio::select! {
                    r = &mut recv => Woke::Event(r),
                    l = p => Woke::Probed(l),
                },
            };
            match woke {
                Woke::Event(r) => return Ok(r),
                Woke::Stalled => {
                    let p = alive::probe(shared.clone(), region.clone(), connection, timeout);
                    probe = Some(Box::pin(p));
                }
                Woke::Probed(Liveness::Dead(e)) => return Err(e),
                Woke::Probed(l) => {
                    shared.sessions.probed(matches!(l, Liveness::Alive));
                    tracing::debug!(
                        verified = matches!(l, Liveness::Alive),
                        "a silent session's connection answered its probe"
                    );
                    probe = None;
                    deadline = tokio::time::Instant::now() + stall;
                }
            }
        }
    }

    /// Ends the session's figures with `outcome`: its tokens, its call, its counters; closes
    /// its input. Returns the error back.
    fn end_with(&mut self, outcome: Result<()>) -> Error {
        self.done = true;
        self.input.close();
        self.count_usage();
        let (end, error) = match outcome {
            Ok(()) => {
                self.call.finish(Outcome::Success);
                (SessionEnd::Completed, None)
            }
            Err(e) => {
                self.call.fail(&e);
                (SessionEnd::Failed, Some(e))
            }
        };
        self.shared.sessions.ended(end, self.opened.elapsed());
        error.unwrap_or_else(|| Error::new(ErrorKind::Other, "the session ended"))
    }

    /// Counts the session's tokens (its last usage event's totals) in its call's figures.
    fn count_usage(&self) {
        let Some(u) = *self.usage.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        let n = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
        let usage = TokenUsage::builder()
            .input_tokens(n(u.input_tokens))
            .output_tokens(n(u.output_tokens))
            .total_tokens(n(u.input_tokens + u.output_tokens))
            .build();
        if let Ok(usage) = usage {
            self.call.usage(&usage);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.input.close();
            self.count_usage();
            self.shared
                .sessions
                .ended(SessionEnd::Cancelled, self.opened.elapsed());
            // The call's own figures count it as cancelled when `call` drops.
        }
    }
}
