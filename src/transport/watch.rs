//! Retiring the connection of a failed attempt, and counting requests in flight per connection.
//!
//! Why: over HTTP/2 every call of a partition shares ONE connection and the pool sends no PING.
//! A read timeout cancels only its stream, so a silently dead connection stays in the pool and
//! the SDK's retries, and every later call, land on it again until the kernel gives up
//! (minutes). The SDK's own poisoning runs only after a response was deserialized, so it never
//! sees a timeout. [`WatchedConnector`] therefore poisons the connection of every attempt that
//! failed with a timeout or an IO error, on h2 and HTTP/1.1 alike (over HTTP/1.1 the pool
//! discards such a connection anyway; poisoning is then a no-op).

use super::events::PoolEvents;
use aws_smithy_http_client::pool::Client as PoolClient;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionId};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

tokio::task_local! {
    /// Figures of the SDK call running in this task (see [`CallScope`]).
    pub(crate) static CALL: Arc<CallScope>;
}

/// What the retry classifier must know of one SDK call to decide its retries the way model
/// calls need (see `retry.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RetryRule {
    /// Attempts after which a throttle or a server error is no longer retried, so that the
    /// call moves to its next model at once; 0 when the call has no model left to move to.
    pub(crate) fallback_after: u32,
    /// The call is unary: its response headers come only with the whole answer, so a read
    /// timeout may be a slow model that got the request, not a dead connection.
    pub(crate) unary: bool,
    /// The caller set this call's read timeout: its read timeout is the model's time, and it
    /// is not sent again.
    pub(crate) explicit_timeout: bool,
    /// The caller opted in to sending a unary call again after a read timeout
    /// (`retry_slow_calls`).
    pub(crate) resend: bool,
    /// The unary call goes as its stream operation where the service allows (the driver
    /// then clears `unary` for that send: a stream's headers come before the model works).
    pub(crate) carry: bool,
}

/// Figures of one SDK call, gathered while it runs in its task: attempts (one per request the
/// [`WatchedConnector`] sends), connections retired by it, the connection capture
/// of the latest attempt, and what the retry classifier decided.
#[derive(Debug, Default)]
pub(crate) struct CallScope {
    pub(crate) attempts: AtomicU32,
    pub(crate) retired: AtomicU32,
    pub(super) last: Mutex<Option<CaptureSmithyConnection>>,
    /// The retry rule of the call.
    pub(crate) rule: RetryRule,
    /// True when the latest attempt was the first request of its connection.
    pub(super) fresh: AtomicBool,
    /// Set when a read timeout was not retried because the request may have reached the
    /// model (see `retry.rs`).
    pub(crate) delivered: AtomicBool,
    /// Attempts sent again after a read timeout that may have reached the model.
    pub(crate) repeats: AtomicU32,
    /// Set when the latest attempt may have reached the model and was let retry: the next
    /// attempt, if the SDK makes one, is a repeat.
    pub(super) repeat_next: AtomicBool,
    /// Set when a throttle or server error was not retried so that the call moves on.
    pub(crate) moved_on: AtomicBool,
}

impl CallScope {
    /// Returns the scope of one SDK call that follows `rule`.
    pub(crate) fn new(rule: RetryRule) -> Self {
        CallScope {
            rule,
            ..CallScope::default()
        }
    }

    fn set_last(&self, capture: &CaptureSmithyConnection) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(capture.clone());
    }

    /// Returns true when the latest attempt was sent on a connection (it got one from the
    /// pool; it did not time out while connecting or queueing).
    pub(super) fn dispatched(&self) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.get().is_some())
    }
}

/// The connection the answering attempt of a call ran on, kept so that a failure noticed
/// after the SDK call returned (a stalled or broken stream) can retire it.
#[derive(Clone)]
pub(crate) struct ConnectionWatch {
    pub(super) capture: CaptureSmithyConnection,
    pub(super) events: Arc<PoolEvents>,
}

impl ConnectionWatch {
    /// Retires (poisons) the connection of the last attempt; returns true if this retired it.
    ///
    /// Other streams of an h2 connection finish where they still can; no new request goes to it.
    pub(crate) fn retire(&self, why: &'static str) -> bool {
        retire(&self.capture, &self.events, why)
    }

    /// Returns the id of the connection, once the attempt got one.
    pub(crate) fn id(&self) -> Option<ConnectionId> {
        self.capture.get().and_then(|m| m.connection_id())
    }
}

impl std::fmt::Debug for ConnectionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionWatch")
    }
}

/// Poisons the connection `capture` names, counting it once per connection.
fn retire(capture: &CaptureSmithyConnection, events: &PoolEvents, why: &'static str) -> bool {
    let Some(meta) = capture.get() else {
        return false;
    };
    // Marked before it is poisoned: poisoning may close it at once, and a connection already
    // closed (forgotten by the events) would be counted by the call but not by the pool.
    let first = meta
        .connection_id()
        .is_none_or(|id| events.mark_retired(id));
    meta.poison();
    if first {
        tracing::debug!(connection = ?meta.connection_id(), why, "connection retired after a failure");
    }
    first
}

/// Whether a failed attempt says its connection may be dead: a timeout (nothing came back in
/// time) or an IO error. User errors, and answers of any status, say nothing about it.
fn retires_connection(e: &ConnectorError) -> bool {
    e.is_timeout() || e.is_io()
}

/// The pool client wrapped so that every connector it hands out is a [`WatchedConnector`].
#[derive(Debug)]
pub(super) struct WatchedClient {
    pub(super) inner: PoolClient,
    pub(super) events: Arc<PoolEvents>,
}

impl HttpClient for WatchedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        WatchedConnector {
            inner: self.inner.http_connector(settings, components),
            events: self.events.clone(),
        }
        .into_shared()
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

/// Sends through the pool; learns which connection each attempt runs on, counts the requests
/// in flight per connection, and retires the connection of an attempt that timed out or failed
/// with an IO error.
#[derive(Debug)]
struct WatchedConnector {
    inner: SharedHttpConnector,
    events: Arc<PoolEvents>,
}

impl HttpConnector for WatchedConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        // The SDK's own poisoning interceptor usually attached one already; share it.
        let capture = match request.extension::<CaptureSmithyConnection>() {
            Some(c) => c.clone(),
            None => {
                let c = CaptureSmithyConnection::new();
                request.add_extension(c.clone());
                c
            }
        };
        // One connector call per attempt: counted here rather than by an interceptor, whose
        // every hook would cost a config-bag lookup on every call.
        let _ = CALL.try_with(|c| {
            c.set_last(&capture);
            if c.attempts.fetch_add(1, Relaxed) > 0 && c.repeat_next.swap(false, Relaxed) {
                c.repeats.fetch_add(1, Relaxed);
            }
        });
        let inner = self.inner.call(request);
        HttpConnectorFuture::new(Watched {
            inner,
            capture,
            events: self.events.clone(),
            in_flight: None,
        })
    }
}

/// One attempt in the pool, watched.
struct Watched {
    inner: HttpConnectorFuture,
    capture: CaptureSmithyConnection,
    events: Arc<PoolEvents>,
    in_flight: Option<InFlight>,
}

impl Watched {
    /// Counts the attempt on its connection once the pool dispatched it (or moved it).
    fn track(&mut self) {
        let Some(id) = self.capture.get().and_then(|m| m.connection_id()) else {
            return;
        };
        if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
            return;
        }
        let first = self.events.begin(id);
        let _ = CALL.try_with(|c| c.fresh.store(first, Relaxed));
        self.in_flight = Some(InFlight {
            events: self.events.clone(),
            id,
        });
    }
}

impl Future for Watched {
    type Output = Result<HttpResponse, ConnectorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = match Pin::new(&mut this.inner).poll(cx) {
            Poll::Pending => {
                if this.in_flight.is_none() {
                    this.track();
                }
                return Poll::Pending;
            }
            Poll::Ready(r) => r,
        };
        if this.in_flight.is_none() {
            this.track();
        }
        match result {
            Ok(mut response) => {
                if let Some(in_flight) = this.in_flight.take() {
                    // The request stays in flight on its connection until its body is done.
                    let body = response.take_body();
                    *response.body_mut() = SdkBody::from_body_1_x(CountedBody {
                        inner: body,
                        in_flight: Some(in_flight),
                    });
                }
                Poll::Ready(Ok(response))
            }
            Err(e) => {
                if retires_connection(&e) && retire(&this.capture, &this.events, "attempt failed") {
                    let _ = CALL.try_with(|c| c.retired.fetch_add(1, Relaxed));
                }
                this.in_flight = None;
                Poll::Ready(Err(e))
            }
        }
    }
}

/// One request counted in flight on a connection until dropped.
struct InFlight {
    events: Arc<PoolEvents>,
    id: ConnectionId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.events.end(self.id);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight on its connection until the
    /// body ends or is dropped (over HTTP/1.1 the connection is reused as soon as it ends).
    struct CountedBody {
        #[pin]
        inner: SdkBody,
        in_flight: Option<InFlight>,
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}
