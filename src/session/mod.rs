//! Bidirectional sessions (InvokeModelWithBidirectionalStream: Amazon Nova Sonic, HTTP/2
//! only): events both ways over one HTTP/2 stream of the factory's pool.
//!
//! [`Model::session`](crate::Model::session) opens one: the opening events (given to the request, sent again whole if
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
//! **Unread events never hold the connection.** A session reads its stream in a task of its
//! own as the events arrive; an event the caller has not taken yet waits in memory, not in the
//! shared HTTP/2 connection's flow-control window (which unread sessions would fill, stalling
//! every call on the connection).
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
mod read;

pub use events::{SessionInput, SessionOutput, SessionRole, SessionUsage};
pub use open::{DEFAULT_PROBE_TIMEOUT, SessionRequest};

use crate::error::{Error, ErrorKind, Result};
use crate::meta::{CallInfo, CallMetadata};
use aws_sdk_bedrockruntime::types::{
    BidirectionalInputPayloadPart, InvokeModelWithBidirectionalStreamInput as SdkInput,
};
use aws_smithy_types::Blob;
use std::fmt;
use std::sync::{Arc, Mutex};
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
///
/// The session reads its stream in a task of its own as the events arrive, whether or not
/// [`next`](Self::next) is called: an event waiting for the caller is in memory, never in the
/// shared HTTP/2 connection's flow-control window, which unread sessions would otherwise fill
/// until every call on the connection stalled.
pub struct Session {
    events: mpsc::UnboundedReceiver<Result<SessionOutput>>,
    sender: SessionSender,
    input: Arc<input::Shared>,
    info: CallInfo,
    usage: Arc<Mutex<Option<SessionUsage>>>,
    opened: Instant,
    reader: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("model_id", &self.info.model_id)
            .field("region", &self.info.region)
            .field("done", &self.reader.is_finished())
            .finish_non_exhaustive()
    }
}

impl CallMetadata for Session {
    fn call_info(&self) -> &CallInfo {
        &self.info
    }
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

    /// Returns the session's token counts as of its last usage event (read so far).
    pub fn usage(&self) -> Option<SessionUsage> {
        *self.usage.lock().unwrap_or_else(|e| e.into_inner())
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
        self.events.recv().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A reader still running counts the session as cancelled when it drops.
        self.input.close();
        self.reader.abort();
    }
}
