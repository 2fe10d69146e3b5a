//! The tuned connection pool shared by every SDK client of a factory, the event listener that
//! feeds the pool statistics, and the retiring of connections after a failed attempt. The only
//! module that knows the smithy pool's types.
//!
//! Why connections are retired here: over HTTP/2 every call of a partition shares ONE connection
//! and the pool sends no PING. A read timeout cancels only its stream, so a silently dead
//! connection stays in the pool and the SDK's retries, and every later call, land on it again
//! until the kernel gives up (minutes). The SDK's own poisoning runs only after a response was
//! deserialized, so it never sees a timeout. [`WatchedConnector`] therefore poisons the
//! connection of every attempt that failed with a timeout or an IO error, on h2 and HTTP/1.1
//! alike (over HTTP/1.1 the pool discards such a connection anyway; poisoning is then a no-op).

use crate::config::FactoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::stats::{HttpProtocol, OriginPoolStats};
use aws_smithy_http_client::pool::{
    Client as PoolClient, ConnectionEvent, ConnectionPool, ConnectionProtocol, DriverSpawner,
    LogicalCloseCause, OriginKey, Partition, PartitionId,
};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionId};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// The one partition of the pool, bound to the runtime the factory was built in.
const PARTITION: PartitionId = PartitionId::from_index(0);

/// Cumulative connection figures of one origin, fed by pool events.
#[derive(Default, Clone)]
struct OriginTotals {
    opened: u64,
    closed_idle: u64,
    closed_error: u64,
    closed_by_peer: u64,
    closed_dropped: u64,
    establishment_failures: u64,
    establish_sum: Duration,
    establish_last: Duration,
    establish_max: Duration,
    transport_sum: Duration,
    handshake_sum: Duration,
    handshakes: u64,
    protocol: Option<HttpProtocol>,
    /// Connections this crate retired after a failed attempt or a broken stream.
    retired: u64,
    /// Most requests seen in flight at once on one connection (closed connections).
    max_in_flight: u32,
}

/// What is known of one open connection, by the pool's connection id.
#[derive(Default)]
struct ConnState {
    /// The connection's origin, once its `Opened` event arrived.
    origin: Option<OriginKey>,
    in_flight: u32,
    max_in_flight: u32,
    retired: bool,
}

/// Per-origin totals and per-connection state, under one lock.
#[derive(Default)]
struct EventState {
    origins: Vec<(OriginKey, OriginTotals)>,
    conns: HashMap<ConnectionId, ConnState>,
}

impl EventState {
    fn origin_mut(&mut self, origin: &OriginKey) -> &mut OriginTotals {
        let pos = match self.origins.iter().position(|(o, _)| o == origin) {
            Some(p) => p,
            None => {
                self.origins.push((origin.clone(), OriginTotals::default()));
                self.origins.len() - 1
            }
        };
        &mut self.origins[pos].1
    }
}

/// Pool events folded into per-origin totals, and the requests in flight per connection;
/// shared by the listener, the connector and the factory.
#[derive(Default)]
pub(crate) struct PoolEvents {
    state: Mutex<EventState>,
}

impl std::fmt::Debug for PoolEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolEvents")
    }
}

impl PoolEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_origin(&self, origin: &OriginKey, f: impl FnOnce(&mut OriginTotals)) {
        f(self.lock().origin_mut(origin));
    }

    /// Returns the totals of `origin`, live connections' in-flight peaks included.
    fn totals(&self, origin: &OriginKey) -> OriginTotals {
        let state = self.lock();
        let mut t = state
            .origins
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        for c in state.conns.values() {
            if c.origin.as_ref() == Some(origin) {
                t.max_in_flight = t.max_in_flight.max(c.max_in_flight);
            }
        }
        t
    }

    /// Counts one more request in flight on connection `id`.
    fn begin(&self, id: ConnectionId) {
        let mut state = self.lock();
        let c = state.conns.entry(id).or_default();
        c.in_flight += 1;
        c.max_in_flight = c.max_in_flight.max(c.in_flight);
    }

    /// Counts one request fewer in flight on connection `id`.
    fn end(&self, id: ConnectionId) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    /// Marks connection `id` retired by this crate; returns false if it already was.
    fn mark_retired(&self, id: ConnectionId) -> bool {
        let mut state = self.lock();
        let c = state.conns.entry(id).or_default();
        if c.retired {
            return false;
        }
        c.retired = true;
        if let Some(origin) = c.origin.clone() {
            state.origin_mut(&origin).retired += 1;
        }
        true
    }

    /// Folds a closed connection's figures into its origin and forgets it.
    fn forget(&self, id: ConnectionId) {
        let mut state = self.lock();
        if let Some(c) = state.conns.remove(&id)
            && let Some(origin) = c.origin
        {
            let t = state.origin_mut(&origin);
            t.max_in_flight = t.max_in_flight.max(c.max_in_flight);
        }
    }

    fn on_event(&self, event: &ConnectionEvent<'_>) {
        match event {
            ConnectionEvent::Opened(opened) => {
                let info = opened.connection();
                let stats = opened.stats();
                let protocol = match info.protocol() {
                    ConnectionProtocol::Http2 => HttpProtocol::Http2,
                    _ => HttpProtocol::Http1,
                };
                let total = stats.total_duration();
                tracing::debug!(
                    connection = %info.id(),
                    origin = info.origin().host(),
                    protocol = ?protocol,
                    establish_ms = total.as_secs_f64() * 1000.0,
                    "connection opened"
                );
                crate::metrics::connection_opened(info.origin().host(), total);
                let mut state = self.lock();
                // A retirement may have been recorded before this event arrived.
                let retired_early = {
                    let c = state.conns.entry(info.id()).or_default();
                    c.origin = Some(info.origin().clone());
                    c.retired
                };
                let t = state.origin_mut(info.origin());
                t.retired += u64::from(retired_early);
                t.opened += 1;
                t.establish_sum += total;
                t.establish_last = total;
                t.establish_max = t.establish_max.max(total);
                t.transport_sum += stats.transport_duration();
                if let Some(h) = stats.protocol_handshake_duration() {
                    t.handshake_sum += h;
                    t.handshakes += 1;
                }
                t.protocol = Some(protocol);
            }
            ConnectionEvent::EstablishmentFailed(failed) => {
                tracing::debug!(
                    origin = failed.establishment().origin().host(),
                    stage = ?failed.stage(),
                    error = %failed.error(),
                    "connection establishment failed"
                );
                crate::metrics::connection_failed(failed.establishment().origin().host());
                self.with_origin(failed.establishment().origin(), |t| {
                    t.establishment_failures += 1
                });
            }
            ConnectionEvent::LogicalClose(close) => {
                let info = close.connection();
                let cause = close.cause();
                tracing::debug!(
                    connection = %info.id(),
                    origin = info.origin().host(),
                    cause = ?cause,
                    "connection closed"
                );
                let label = match cause {
                    LogicalCloseCause::IdleTimeout => "idle",
                    LogicalCloseCause::Poisoned | LogicalCloseCause::IncompleteH1Exchange => {
                        "error"
                    }
                    LogicalCloseCause::ProtocolEnded => "peer",
                    _ => "dropped",
                };
                crate::metrics::connection_closed(info.origin().host(), label);
                self.with_origin(info.origin(), |t| match label {
                    "idle" => t.closed_idle += 1,
                    "error" => t.closed_error += 1,
                    "peer" => t.closed_by_peer += 1,
                    _ => t.closed_dropped += 1,
                });
            }
            ConnectionEvent::PhysicalClose(close) => self.forget(close.connection().id()),
            _ => {}
        }
    }
}

tokio::task_local! {
    /// Figures of the SDK call running in this task (see [`CallScope`]).
    pub(crate) static CALL: Arc<CallScope>;
}

/// Figures of one SDK call, gathered while it runs in its task: attempts counted by
/// [`AttemptCounter`], connections retired by [`WatchedConnector`], and the connection capture
/// of the latest attempt.
#[derive(Debug, Default)]
pub(crate) struct CallScope {
    pub(crate) attempts: AtomicU32,
    pub(crate) retired: AtomicU32,
    last: Mutex<Option<CaptureSmithyConnection>>,
}

impl CallScope {
    fn set_last(&self, capture: &CaptureSmithyConnection) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(capture.clone());
    }
}

/// Counts SDK attempts into the calling task's [`CALL`] scope.
#[derive(Debug)]
pub(crate) struct AttemptCounter;

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "bedrock_pool::AttemptCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let _ = CALL.try_with(|c| c.attempts.fetch_add(1, Relaxed));
        Ok(())
    }
}

/// The connection the answering attempt of a call ran on, kept so that a failure noticed
/// after the SDK call returned (a stalled or broken stream) can retire it.
#[derive(Clone)]
pub(crate) struct ConnectionWatch {
    capture: CaptureSmithyConnection,
    events: Arc<PoolEvents>,
}

impl ConnectionWatch {
    /// Retires (poisons) the connection of the last attempt; returns true if this retired it.
    ///
    /// Other streams of an h2 connection finish where they still can; no new request goes to it.
    pub(crate) fn retire(&self, why: &'static str) -> bool {
        retire(&self.capture, &self.events, why)
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
    meta.poison();
    let first = meta
        .connection_id()
        .is_none_or(|id| events.mark_retired(id));
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
struct WatchedClient {
    inner: PoolClient,
    events: Arc<PoolEvents>,
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
        let _ = CALL.try_with(|c| c.set_last(&capture));
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
        self.events.begin(id);
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
                        _in_flight: in_flight,
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
    /// A response body that keeps its request counted in flight on its connection.
    struct CountedBody {
        #[pin]
        inner: SdkBody,
        _in_flight: InFlight,
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// The factory's pool and the HTTP client handed to every SDK client.
pub(crate) struct Transport {
    pool: ConnectionPool,
    client: PoolClient,
    events: Arc<PoolEvents>,
    cap: usize,
}

impl Transport {
    /// Builds the tuned pool, bound to the current tokio runtime.
    ///
    /// The pool's connection drivers run on that runtime: a factory keeps working for as long
    /// as the runtime it was built in lives, whichever runtime later calls it.
    pub(crate) fn new(config: &FactoryConfig) -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "the factory must be built inside a tokio runtime",
            )
        })?;
        let mut trust = TrustStore::default();
        for pem in &config.extra_ca_pem {
            trust = trust.with_pem_certificate(pem.as_bytes().to_vec());
        }
        let tls_context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| {
                Error::invalid("ca_certificate_pem", "not a usable PEM certificate").with_source(e)
            })?;
        let events = Arc::new(PoolEvents::default());
        let listener_events = events.clone();
        let pool = ConnectionPool::builder()
            .max_connections_per_host(config.pool.max_connections_per_host)
            .idle_timeout(config.pool.idle_timeout)
            .tcp_keepalive(config.pool.tcp_keepalive)
            .tcp_nodelay(true)
            .proxy_config(ProxyConfig::from_env())
            .partitions([Partition::new(PARTITION, DriverSpawner::tokio(handle))])
            .event_listener(move |e: &ConnectionEvent<'_>| listener_events.on_event(e))
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls_context)
            .build_https()
            .map_err(|e| {
                Error::new(ErrorKind::Other, "could not build the connection pool").with_source(e)
            })?;
        let client = PoolClient::from_partition(&pool, PARTITION).map_err(|e| {
            Error::new(ErrorKind::Other, "could not build the pool client").with_source(e)
        })?;
        Ok(Transport {
            pool,
            client,
            events,
            cap: config.pool.max_connections_per_host,
        })
    }

    /// Returns the HTTP client to give every SDK client of the factory: the pool, watched so
    /// that a failed attempt retires its connection.
    pub(crate) fn http_client(&self) -> SharedHttpClient {
        SharedHttpClient::new(WatchedClient {
            inner: self.client.clone(),
            events: self.events.clone(),
        })
    }

    /// Returns the connection of the latest attempt of the call `scope` describes.
    pub(crate) fn last_connection(&self, scope: &CallScope) -> Option<ConnectionWatch> {
        let capture = scope
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(ConnectionWatch {
            capture,
            events: self.events.clone(),
        })
    }

    /// Returns the pool figures of the origin of `url` (scheme, host and port).
    pub(crate) fn origin_stats(&self, url: &str) -> OriginPoolStats {
        let Some(origin) = origin_key(url) else {
            return OriginPoolStats {
                capacity: self.cap,
                ..OriginPoolStats::default()
            };
        };
        let cap = self.pool.origin_stats(&origin);
        let part = self.pool.partition_stats(PARTITION, &origin);
        let t = self.events.totals(&origin);
        let (limit, in_use) = cap
            .capacity()
            .map(|c| (c.limit(), c.in_use()))
            .unwrap_or((self.cap, 0));
        let (idle, active, establishing, waiting) = part
            .map(|p| {
                (
                    p.h1().idle(),
                    p.h1().active() + p.h2().accepting(),
                    p.establishing_connections(),
                    p.pending_acquisitions(),
                )
            })
            .unwrap_or_default();
        let mean = |sum: Duration, n: u64| {
            if n == 0 {
                Duration::ZERO
            } else {
                sum / u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        OriginPoolStats {
            capacity: limit,
            open: in_use,
            idle,
            active,
            establishing,
            waiting,
            utilization: if limit == 0 {
                0.0
            } else {
                (in_use as f64 / limit as f64).min(1.0)
            },
            protocol: t.protocol,
            retired: t.retired,
            max_in_flight_per_connection: t.max_in_flight,
            opened: t.opened,
            closed_idle: t.closed_idle,
            closed_error: t.closed_error,
            closed_by_peer: t.closed_by_peer,
            closed_dropped: t.closed_dropped,
            establishment_failures: t.establishment_failures,
            establishment_last: t.establish_last,
            establishment_mean: mean(t.establish_sum, t.opened),
            establishment_max: t.establish_max,
            transport_mean: mean(t.transport_sum, t.opened),
            handshake_mean: mean(t.handshake_sum, t.handshakes),
        }
    }
}

/// Parses the origin of an endpoint URL.
fn origin_key(url: &str) -> Option<OriginKey> {
    let uri: http::Uri = url.parse().ok()?;
    OriginKey::from_uri(&uri).ok()
}

/// Sums the figures of several origins (the Bedrock origins of several regions).
pub(crate) fn sum_origins(all: impl IntoIterator<Item = OriginPoolStats>) -> OriginPoolStats {
    let mut s = OriginPoolStats::default();
    let mut est_weighted = 0.0;
    let mut tr_weighted = 0.0;
    let mut hs_weighted = 0.0;
    for o in all {
        s.capacity += o.capacity;
        s.open += o.open;
        s.idle += o.idle;
        s.active += o.active;
        s.establishing += o.establishing;
        s.waiting += o.waiting;
        s.protocol = s.protocol.or(o.protocol);
        s.retired += o.retired;
        s.max_in_flight_per_connection = s
            .max_in_flight_per_connection
            .max(o.max_in_flight_per_connection);
        s.opened += o.opened;
        s.closed_idle += o.closed_idle;
        s.closed_error += o.closed_error;
        s.closed_by_peer += o.closed_by_peer;
        s.closed_dropped += o.closed_dropped;
        s.establishment_failures += o.establishment_failures;
        s.establishment_last = s.establishment_last.max(o.establishment_last);
        s.establishment_max = s.establishment_max.max(o.establishment_max);
        est_weighted += o.establishment_mean.as_secs_f64() * o.opened as f64;
        tr_weighted += o.transport_mean.as_secs_f64() * o.opened as f64;
        hs_weighted += o.handshake_mean.as_secs_f64() * o.opened as f64;
    }
    if s.opened > 0 {
        let n = s.opened as f64;
        s.establishment_mean = Duration::from_secs_f64(est_weighted / n);
        s.transport_mean = Duration::from_secs_f64(tr_weighted / n);
        s.handshake_mean = Duration::from_secs_f64(hs_weighted / n);
    }
    if s.capacity > 0 {
        s.utilization = (s.open as f64 / s.capacity as f64).min(1.0);
    }
    s
}
