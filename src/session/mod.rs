//! Bidirectional sessions (InvokeModelWithBidirectionalStream: Amazon Nova Sonic, HTTP/2
//! only): events both ways over one HTTP/2 stream of the factory's pool.
//!
//! [`Model::session`] opens one: the opening events (given to the request, sent again whole if
//! the session must move to another region before it is answered), then a [`Session`] that
//! sends [`SessionInput`]s (or a [`SessionSender`] clone does, from another task) and receives
//! [`SessionOutput`]s.
//!
//! **Silence is not death.** A voice session may say nothing for minutes. The factory's read
//! timeout bounds only the wait for the session's answer headers, and the stall timeout
//! (the factory's `stream_stall_timeout`, or [`SessionRequest::stall_timeout`]) does not end
//! a silent session: after that long without an event, the session probes its connection (a
//! one-result ListAsyncInvokes on the same host, which over HTTP/2 rides the session's own
//! connection). An answer keeps the session going; no answer within the probe timeout ends it
//! with a [`TimeoutKind::StreamStall`](crate::error::TimeoutKind) error and retires the
//! connection. [`stats().sessions`](crate::stats::SessionStats) counts sessions, their
//! durations and probes; each session also counts as one call of its model, with its tokens.
//!
//! **HTTP/2 only.** Before it sends a session, the factory checks the protocol its pool speaks
//! to the region's host (opening a connection with a probe when it has none); over HTTP/1.1
//! the session is refused with a [`Validation`](crate::ErrorKind::Validation) error that says
//! so, and nothing is sent.
//!
//! ```no_run
//! # async fn run(factory: bedrock_pool::LlmFactory) -> bedrock_pool::Result<()> {
//! use bedrock_pool::session::{SessionInput, SessionOutput};
//! let mut session = factory
//!     .model("amazon.nova-sonic-v1:0")
//!     .session()
//!     .event(SessionInput::session_start(1024, 0.9, 0.7))
//!     .event(SessionInput::prompt_start("p1", "matthew"))
//!     .open()
//!     .await?;
//! session.send_all(SessionInput::user_text("p1", "turn-1", "hello")).await?;
//! while let Some(event) = session.next().await {
//!     match event? {
//!         SessionOutput::Text { role, text, .. } if role == "ASSISTANT" => println!("{text}"),
//!         SessionOutput::Audio { pcm, .. } => { /* play 24 kHz PCM */ let _ = pcm; }
//!         SessionOutput::CompletionEnd { .. } => break,
//!         _ => {}
//!     }
//! }
//! session.send(SessionInput::session_end()).await?;
//! while let Some(event) = session.next().await {
//!     event?;
//! }
//! # Ok(()) }
//! ```

mod alive;
mod events;
mod input;
mod open;

pub use events::{SessionInput, SessionOutput, SessionRole, SessionUsage};
pub use open::{DEFAULT_PROBE_TIMEOUT, SessionRequest};

use crate::call::OpenCall;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{CallInfo, CallMetadata};
use crate::op::Op;
use crate::shared::Shared;
use crate::stats::{Outcome, SessionEnd};
use alive::Liveness;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::InvokeModelWithBidirectionalStreamOutputError as SdkOutputError;
use aws_sdk_bedrockruntime::types::{
    BidirectionalInputPayloadPart, InvokeModelWithBidirectionalStreamInput as SdkInput,
    InvokeModelWithBidirectionalStreamOutput as SdkOutput, TokenUsage,
};
use aws_smithy_types::Blob;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Returns the SDK's chunk of one event, or the error naming its invalid field.
fn chunk(event: &SessionInput) -> Result<SdkInput> {
    let json = event.to_json()?;
    Ok(SdkInput::Chunk(
        BidirectionalInputPayloadPart::builder()
            .bytes(Blob::new(json))
            .build(),
    ))
}

/// Sends events into a session; cheap to clone (for a task that streams audio while another
/// reads the output).
#[derive(Clone)]
pub struct SessionSender {
    tx: mpsc::Sender<SdkInput>,
}

impl fmt::Debug for SessionSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSender")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

impl SessionSender {
    /// Sends one event; waits while the session's send buffer is full.
    ///
    /// # Errors
    /// Invalid input naming the field (an empty name); [`ErrorKind::Other`] when the session
    /// is over.
    pub async fn send(&self, event: SessionInput) -> Result<()> {
        let chunk = chunk(&event)?;
        self.tx.send(chunk).await.map_err(|_| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "invoke_model_with_bidirectional_stream: the session is over, {} not sent",
                    event.name()
                ),
            )
        })
    }

    /// Sends events in order (see [`send`](Self::send)); stops at the first error.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_all(&self, events: impl IntoIterator<Item = SessionInput>) -> Result<()> {
        for e in events {
            self.send(e).await?;
        }
        Ok(())
    }
}

/// An open bidirectional session: send with [`send`](Self::send) (or a
/// [`sender`](Self::sender) clone), receive with [`next`](Self::next) until it returns `None`.
/// Dropping it ends the session (its input ends, the figures count it as cancelled).
pub struct Session {
    receiver: EventReceiver<SdkOutput, SdkOutputError>,
    sender: SessionSender,
    input: Arc<input::Shared>,
    call: OpenCall,
    shared: Arc<Shared>,
    stall: Duration,
    probe_timeout: Duration,
    opened: Instant,
    usage: Option<SessionUsage>,
    saw_event: bool,
    done: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("model_id", &self.call.info().model_id)
            .field("region", &self.call.region())
            .field("stall", &self.stall)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl CallMetadata for Session {
    fn call_info(&self) -> &CallInfo {
        self.call.info()
    }
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

impl Session {
    /// Returns a sender for this session, for another task.
    pub fn sender(&self) -> SessionSender {
        self.sender.clone()
    }

    /// Sends one event (see [`SessionSender::send`]).
    ///
    /// # Errors
    /// As [`SessionSender::send`].
    pub async fn send(&self, event: SessionInput) -> Result<()> {
        self.sender.send(event).await
    }

    /// Sends events in order (see [`SessionSender::send_all`]).
    ///
    /// # Errors
    /// As [`SessionSender::send`].
    pub async fn send_all(&self, events: impl IntoIterator<Item = SessionInput>) -> Result<()> {
        self.sender.send_all(events).await
    }

    /// Returns the session's token counts as of its last usage event.
    pub fn usage(&self) -> Option<SessionUsage> {
        self.usage
    }

    /// Returns how long the session has been open.
    pub fn elapsed(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Returns the next event, `None` once the model ended the session.
    ///
    /// # Errors
    /// The service's in-stream exceptions and network errors mapped to kinds; a
    /// [`StreamStall`](crate::error::TimeoutKind::StreamStall) timeout when the session was
    /// silent and its connection did not answer a probe. After an error the session is over.
    pub async fn next(&mut self) -> Option<Result<SessionOutput>> {
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
                self.usage = Some(u);
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
        let Some(u) = self.usage else { return };
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

impl Drop for Session {
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
