//! Opening a session: [`SessionRequest`] (its opening events and timeouts), checked, then
//! sent through the call driver once the pool is known to speak HTTP/2 to the region's host.

use super::input::{self, Input};
use super::read::Reader;
use super::{Session, SessionInput, SessionSender, alive, chunk};
use crate::call::{CallInput, RequestAttrs, drive};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Model;
use crate::op::Op;
use crate::shared::Shared;
use crate::stats::HttpProtocol;
use crate::transport::RetryRule;
use aws_sdk_bedrockruntime::primitives::event_stream::EventStreamSender;
use aws_sdk_bedrockruntime::types::InvokeModelWithBidirectionalStreamInput as SdkInput;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Input events a session buffers ahead of the network before `send` waits.
const SEND_BUFFER: usize = 32;

/// The default probe timeout of a silent session.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session being opened: its opening events and timeouts.
#[must_use = "a session request does nothing until `.open().await`"]
#[derive(Clone, Debug)]
pub struct SessionRequest {
    model: Model,
    opening: Vec<SessionInput>,
    stall_timeout: Option<Duration>,
    probe_timeout: Duration,
}

impl Model {
    /// Starts building a bidirectional session with this model (Amazon Nova Sonic); see the
    /// [`session`](crate::session) module.
    pub fn session(&self) -> SessionRequest {
        SessionRequest {
            model: self.clone(),
            opening: Vec::new(),
            stall_timeout: None,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

/// The checked opening of a session.
struct Opening {
    events: Vec<SdkInput>,
    bytes: usize,
}

impl CallInput for Opening {
    fn request_attrs(&self) -> RequestAttrs {
        RequestAttrs::default()
    }

    fn input_bytes(&self) -> usize {
        self.bytes
    }
}

impl SessionRequest {
    /// Adds an opening event, sent as soon as the session's request goes (Nova Sonic's
    /// `sessionStart` and `promptStart`, a system prompt). Opening events are sent again whole
    /// if the session moves to another region before it is answered; events sent through the
    /// [`Session`] never are.
    pub fn event(mut self, event: SessionInput) -> Self {
        self.opening.push(event);
        self
    }

    /// Adds opening events, in order (see [`event`](Self::event)).
    pub fn events(mut self, events: impl IntoIterator<Item = SessionInput>) -> Self {
        self.opening.extend(events);
        self
    }

    /// Sets how long the session may receive nothing before it probes its connection. Default
    /// is the factory's `stream_stall_timeout` (60 s). Silence alone never ends a session.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Sets how long a liveness probe may wait for its answer before the connection counts as
    /// dead. Default is [`DEFAULT_PROBE_TIMEOUT`] (10 s).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    fn validate(&self) -> Result<Opening> {
        for (field, d) in [
            ("stall_timeout", self.stall_timeout),
            ("probe_timeout", Some(self.probe_timeout)),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(Error::invalid(field, "must be greater than zero"));
            }
        }
        let events = self.opening.iter().map(chunk).collect::<Result<Vec<_>>>()?;
        let bytes = events
            .iter()
            .map(|e| match e {
                SdkInput::Chunk(c) => c.bytes().map_or(0, |b| b.as_ref().len()),
                _ => 0,
            })
            .sum();
        Ok(Opening { events, bytes })
    }

    /// Opens the session: checks the opening events, then that the pool speaks HTTP/2 to the
    /// region's host, then sends the request (with the model's region failover and
    /// compatible fallbacks, until the answer's headers arrive).
    ///
    /// # Errors
    /// Invalid input naming the field before any network call; a
    /// [`Validation`](ErrorKind::Validation) error when the connection speaks HTTP/1.1; the
    /// SDK's error mapped to an [`ErrorKind`].
    pub async fn open(self) -> Result<Session> {
        let opening = self.validate()?;
        let target = &self.model.inner().target;
        let shared = target.shared.clone();
        if target.invalid.is_none() {
            needs_http2(&shared, self.probe_timeout).await?;
        }
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let input = input::Shared::new(rx);
        let to_send = input.clone();
        let answer = drive(
            self.model.chain(),
            Op::Session,
            RetryRule::default(),
            move || Ok(opening),
            |v: &Opening, id, to| {
                let body = Input::new(v.events.iter().cloned().collect(), to_send.clone());
                to.client
                    .invoke_model_with_bidirectional_stream()
                    .model_id(id)
                    .body(EventStreamSender::from(body))
                    .send()
            },
        )
        .await?;
        shared.sessions.opened();
        let stall = self
            .stall_timeout
            .unwrap_or(shared.config.timeouts.stream_stall);
        let opened = Instant::now();
        let usage = Arc::new(Mutex::new(None));
        let info = answer.call.info().clone();
        let reader = Reader {
            receiver: answer.output.body,
            call: answer.call,
            shared,
            input: input.clone(),
            stall,
            probe_timeout: self.probe_timeout,
            opened,
            usage: usage.clone(),
            saw_event: false,
            done: false,
        };
        let (events, received) = mpsc::unbounded_channel();
        Ok(Session {
            events: received,
            sender: SessionSender { tx },
            input,
            info,
            usage,
            opened,
            reader: tokio::spawn(reader.run(events)),
        })
    }
}

/// Refuses a session when the pool speaks HTTP/1.1 to the primary region's host; opens a
/// connection first (a probe) when it has none, to learn the protocol.
async fn needs_http2(shared: &Arc<Shared>, probe_timeout: Duration) -> Result<()> {
    let Some(region) = shared.regions.iter().next() else {
        return Ok(());
    };
    let protocol = || shared.transport.origin_stats(&region.endpoint_url).protocol;
    if protocol().is_none() {
        // The probe's own outcome does not matter: only the connection it opens.
        let _ = alive::probe(shared.clone(), region.region.clone(), None, probe_timeout).await;
    }
    if protocol() == Some(HttpProtocol::Http1) {
        return Err(Error::new(
            ErrorKind::Validation,
            format!(
                "invoke_model_with_bidirectional_stream needs HTTP/2, and the connection to {} \
                 speaks HTTP/1.1 (the server, or a proxy on the way, offers no h2): no session \
                 was sent",
                region.endpoint_url
            ),
        ));
    }
    Ok(())
}
