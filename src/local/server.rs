//! The server: listeners, connections, request dispatch, and the public handle.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::pool::{
    Client as PoolClient, ConnectionPool, DriverSpawner, Partition, PartitionId,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_types::retry::RetryConfig;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::conn::{ConnShared, IdleSetting, TrackedStream};
use super::fault::{Fault, FaultRule, IdleFault, Latency, ServiceError};
use super::model::Responder;
use super::record::{ConnectionCounts, Counters, Listener, Operation, RecordedRequest};
use super::wire::{self, Body};
use super::{TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY, bedrock, sts};

/// The provider name of the test credentials.
const PROVIDER_NAME: &str = "bedrock-pool-local";
/// The largest request body the server reads.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The longest a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Selects how the listeners speak HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// TLS; ALPN offers `h2` and `http/1.1` (the SDK then uses HTTP/2). This is the default.
    #[default]
    Https,
    /// TLS; ALPN offers `http/1.1` only.
    HttpsH1Only,
    /// Plain HTTP (HTTP/1.1, or h2 with prior knowledge).
    Http,
}

/// Returns the guard of a mutex, ignoring poisoning (the data stays consistent under our locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Holds everything the listeners, connections and the handle share.
pub(crate) struct Shared {
    pub(crate) region: String,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    protocol: Protocol,
    tls: Option<TlsAcceptor>,
    faults: Mutex<Vec<FaultRule>>,
    idle: Arc<IdleSetting>,
    latency: Mutex<Latency>,
    responder: Mutex<Responder>,
    requests: Mutex<Vec<(u64, RecordedRequest)>>,
    /// Most requests kept; the oldest are forgotten beyond it.
    record_limit: usize,
    request_added: Notify,
    next_seq: AtomicU64,
    next_conn_id: AtomicU64,
    /// Every open connection of both listeners, by id.
    conns: Mutex<HashMap<u64, (Listener, Arc<ConnShared>)>>,
    bedrock: Arc<Counters>,
    sts: Arc<Counters>,
}

impl Shared {
    fn counters(&self, listener: Listener) -> &Arc<Counters> {
        match listener {
            Listener::Bedrock => &self.bedrock,
            Listener::Sts => &self.sts,
        }
    }

    /// Returns the open connections of one listener.
    fn open_connections(&self, listener: Listener) -> Vec<Arc<ConnShared>> {
        lock(&self.conns)
            .values()
            .filter(|(l, _)| *l == listener)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Records a request at arrival; returns its sequence number.
    fn record(&self, req: RecordedRequest) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut requests = lock(&self.requests);
        requests.push((seq, req));
        // Forget in batches so that a long run costs amortised O(1) per request.
        if requests.len() > self.record_limit.saturating_add(self.record_limit / 2) {
            let excess = requests.len() - self.record_limit;
            requests.drain(..excess);
        }
        drop(requests);
        self.request_added.notify_waiters();
        seq
    }

    /// Stores the outcome of a recorded request.
    fn finish(&self, seq: u64, outcome: u16, error: Option<String>) {
        let mut requests = lock(&self.requests);
        if let Some((_, req)) = requests.iter_mut().rev().find(|(s, _)| *s == seq) {
            req.outcome = outcome;
            req.error = error;
        }
    }

    /// Returns the fault of the first matching rule with a remaining count, counting it down
    /// (rules still skipping count the request and pass it on).
    ///
    /// [`Fault::GoSilent`] is applied here: the request's connection turns into a black hole and
    /// `None` is returned, so the handler answers into the void (and [`handle`] drops the answer).
    pub(crate) fn take_fault(&self, req: &RecordedRequest) -> Option<Fault> {
        let fault = {
            let mut rules = lock(&self.faults);
            let mut matching = rules.iter_mut().filter(|r| r.matches(req));
            loop {
                let rule = matching.next()?;
                if rule.skip > 0 {
                    rule.skip -= 1;
                    continue;
                }
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                break rule.fault.clone();
            }
        };
        if matches!(fault, Fault::GoSilent) {
            let conn = lock(&self.conns)
                .get(&req.connection_id)
                .map(|(_, c)| c.clone());
            if let Some(conn) = conn {
                conn.silence();
            }
            return None;
        }
        Some(fault)
    }

    /// Returns the current latency setting.
    pub(crate) fn latency(&self) -> Latency {
        lock(&self.latency).clone()
    }

    /// Returns the current responder.
    pub(crate) fn responder(&self) -> Responder {
        lock(&self.responder).clone()
    }
}

/// Describes how a handler answers a request.
pub(crate) enum Answer {
    /// Sends this response; records its status and error name.
    Respond(http::Response<Body>, Option<String>),
    /// Resets the connection without answering.
    Reset,
    /// Closes the connection (FIN) without answering.
    Close,
}

impl Answer {
    /// Returns an error answer encoded for the listener.
    pub(crate) fn error(listener: Listener, err: &ServiceError) -> Self {
        let res = match listener {
            Listener::Bedrock => wire::json_error(err),
            Listener::Sts => wire::xml_error(err),
        };
        Self::Respond(res, Some(err.name().to_owned()))
    }
}

/// Holds what a request handler needs.
struct Ctx {
    shared: Arc<Shared>,
    listener: Listener,
    conn: Arc<ConnShared>,
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
async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> http::Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
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
    let (attempt, max_attempts) = sdk_request(&parts);
    let rec = RecordedRequest {
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
        body: json,
        outcome: 0,
        error: None,
    };
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

/// Decrements the open count and forgets the connection when its task ends (or is aborted).
struct OpenGuard(Arc<Shared>, Listener, u64);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        lock(&self.0.conns).remove(&self.2);
        self.0.counters(self.1).closed();
    }
}

/// Serves one accepted connection until it ends, is killed, or closes idle.
async fn serve_connection(tcp: TcpStream, listener: Listener, shared: Arc<Shared>) {
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let counters = shared.counters(listener).clone();
    counters.opened();
    let (conn, _closed_tx) = ConnShared::new(id, shared.idle.clone(), counters);
    lock(&shared.conns).insert(id, (listener, conn.clone()));
    let _open = OpenGuard(shared.clone(), listener, id);
    let _ = tcp.set_nodelay(true);
    let stream = TrackedStream::new(tcp, conn.clone());
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        listener,
        conn: conn.clone(),
    });
    let h1_only = shared.protocol == Protocol::HttpsH1Only;
    match &shared.tls {
        None => drive(stream, ctx, h1_only).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let tls = tokio::select! {
                r = handshake => r,
                () = conn.killed() => return,
            };
            match tls {
                Ok(Ok(tls)) => drive(tls, ctx, h1_only).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Runs hyper on the connection, applying kills, graceful closes and the idle close.
async fn drive<I>(io: I, ctx: Arc<Ctx>, h1_only: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = ctx.conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if h1_only {
        builder = builder.http1_only();
    }
    let serving = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(serving);
    let mut draining = false;
    loop {
        let wait = match conn.idle_fault() {
            Some(IdleFault::Close { after }) if conn.is_live() => {
                after.saturating_sub(conn.idle_for())
            }
            _ => Duration::from_millis(100),
        };
        tokio::select! {
            _ = &mut serving => return,
            () = conn.killed() => return,
            () = conn.goaway_asked(), if !draining => {
                // h2: GOAWAY, the streams in flight finish, then the connection closes.
                // HTTP/1.1: keep-alive off, the response in flight gets `Connection: close`.
                serving.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep(wait) => {
                if let Some(IdleFault::Close { after }) = conn.idle_fault()
                    && conn.is_live()
                    && conn.idle_for() >= after
                {
                    conn.close();
                    return;
                }
            }
        }
    }
}

/// Accepts connections until aborted; aborting it aborts every connection task too.
async fn accept_loop(listener: TcpListener, kind: Listener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(tcp, kind, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Binds 127.0.0.1:port, retrying briefly if a just-dropped server still holds the port.
async fn bind(port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && port != 0
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Configures and starts a [`LocalServer`].
#[derive(Debug)]
pub struct LocalServerBuilder {
    protocol: Protocol,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    responder: Responder,
    latency: Latency,
    idle_fault: Option<IdleFault>,
    bedrock_port: u16,
    sts_port: u16,
    record_limit: usize,
}

impl Default for LocalServerBuilder {
    fn default() -> Self {
        Self {
            protocol: Protocol::default(),
            region: TEST_REGION.to_owned(),
            access_key_id: TEST_ACCESS_KEY_ID.to_owned(),
            secret_access_key: TEST_SECRET_ACCESS_KEY.to_owned(),
            responder: Responder::echo(),
            latency: Latency::none(),
            idle_fault: None,
            bedrock_port: 0,
            sts_port: 0,
            record_limit: 100_000,
        }
    }
}

impl LocalServerBuilder {
    /// Returns the builder with this protocol. Default is [`Protocol::Https`].
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }

    /// Returns the builder with this region; requests signed for another region are rejected.
    /// Default is [`TEST_REGION`](super::TEST_REGION).
    pub fn region(mut self, r: impl Into<String>) -> Self {
        self.region = r.into();
        self
    }

    /// Returns the builder accepting this credential pair instead of the test constants.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = access_key_id.into();
        self.secret_access_key = secret_access_key.into();
        self
    }

    /// Returns the builder with this responder. Default is [`Responder::echo`].
    pub fn responder(mut self, r: Responder) -> Self {
        self.responder = r;
        self
    }

    /// Returns the builder with this model latency. Default is [`Latency::none`].
    pub fn latency(mut self, l: Latency) -> Self {
        self.latency = l;
        self
    }

    /// Returns the builder with this idle fault. Default is none.
    pub fn idle_fault(mut self, f: IdleFault) -> Self {
        self.idle_fault = Some(f);
        self
    }

    /// Returns the builder binding the Bedrock listener to this port. Default is 0 (any free port).
    pub fn bedrock_port(mut self, port: u16) -> Self {
        self.bedrock_port = port;
        self
    }

    /// Returns the builder binding the STS listener to this port. Default is 0 (any free port).
    pub fn sts_port(mut self, port: u16) -> Self {
        self.sts_port = port;
        self
    }

    /// Sets how many recent requests [`LocalServer::requests`] keeps; older ones are forgotten
    /// (up to half as many again are held before a batch is dropped). Default is 100 000; load
    /// runs set it low so the record does not grow with the run.
    pub fn record_limit(mut self, n: usize) -> Self {
        self.record_limit = n;
        self
    }

    /// Starts the server on 127.0.0.1: generates the CA, binds both listeners, spawns the tasks.
    ///
    /// Must be called within a tokio runtime; the server's tasks run on it.
    ///
    /// # Errors
    ///
    /// Returns an error if a port cannot be bound or the certificates cannot be generated.
    pub async fn start(self) -> io::Result<LocalServer> {
        let alpn: &[&[u8]] = match self.protocol {
            Protocol::Https => &[b"h2", b"http/1.1"],
            Protocol::HttpsH1Only | Protocol::Http => &[b"http/1.1"],
        };
        let tls = super::tls::generate(alpn)?;
        let bedrock_listener = bind(self.bedrock_port).await?;
        let sts_listener = bind(self.sts_port).await?;
        let bedrock_addr = bedrock_listener.local_addr()?;
        let sts_addr = sts_listener.local_addr()?;
        let shared = Arc::new(Shared {
            region: self.region,
            access_key_id: self.access_key_id,
            secret_access_key: self.secret_access_key,
            protocol: self.protocol,
            tls: (self.protocol != Protocol::Http).then_some(tls.acceptor),
            faults: Mutex::new(Vec::new()),
            idle: Arc::new(Mutex::new(self.idle_fault)),
            latency: Mutex::new(self.latency),
            responder: Mutex::new(self.responder),
            requests: Mutex::new(Vec::new()),
            record_limit: self.record_limit,
            request_added: Notify::new(),
            next_seq: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            bedrock: Arc::default(),
            sts: Arc::default(),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(
                bedrock_listener,
                Listener::Bedrock,
                shared.clone(),
            )),
            tokio::spawn(accept_loop(sts_listener, Listener::Sts, shared.clone())),
        ];
        Ok(LocalServer {
            shared,
            bedrock_addr,
            sts_addr,
            ca_pem: tls.ca_pem,
            tasks,
        })
    }
}

/// Runs a local Bedrock Runtime + STS server; dropping it stops both listeners and closes every
/// connection.
pub struct LocalServer {
    shared: Arc<Shared>,
    bedrock_addr: SocketAddr,
    sts_addr: SocketAddr,
    ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("bedrock_url", &self.bedrock_url())
            .field("sts_url", &self.sts_url())
            .field("region", &self.region())
            .field("protocol", &self.protocol())
            .finish_non_exhaustive()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LocalServer {
    /// Returns a builder with the defaults (HTTPS with h2, the test region and credentials).
    pub fn builder() -> LocalServerBuilder {
        LocalServerBuilder::default()
    }

    /// Starts a server with the defaults (see [`LocalServer::builder`]).
    ///
    /// # Errors
    ///
    /// Returns an error if a port cannot be bound or the certificates cannot be generated.
    pub async fn start() -> io::Result<LocalServer> {
        Self::builder().start().await
    }

    fn url(&self, addr: SocketAddr) -> String {
        let scheme = if self.shared.protocol == Protocol::Http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{addr}")
    }

    /// Returns the Bedrock Runtime endpoint URL, e.g. `https://127.0.0.1:PORT`.
    pub fn bedrock_url(&self) -> String {
        self.url(self.bedrock_addr)
    }

    /// Returns the STS endpoint URL (its own listener, so a different origin than Bedrock).
    pub fn sts_url(&self) -> String {
        self.url(self.sts_addr)
    }

    /// Returns the Bedrock listener's address.
    pub fn bedrock_addr(&self) -> SocketAddr {
        self.bedrock_addr
    }

    /// Returns the STS listener's address.
    pub fn sts_addr(&self) -> SocketAddr {
        self.sts_addr
    }

    /// Returns the PEM of the CA generated at start, which signed the certificate for
    /// `127.0.0.1` and `localhost`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA PEM to a file (for other SDKs: boto3 `verify=`, `AWS_CA_BUNDLE`).
    ///
    /// # Errors
    ///
    /// Returns the error of the file write.
    pub fn write_ca_pem(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, &self.ca_pem)
    }

    /// Returns the region requests must be signed for.
    pub fn region(&self) -> &str {
        &self.shared.region
    }

    /// Returns the protocol the listeners speak.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// Returns the accepted credentials (provider name `bedrock-pool-local`).
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.shared.access_key_id,
            &self.shared.secret_access_key,
            None,
            None,
            PROVIDER_NAME,
        )
    }

    /// Returns an [`LlmFactoryBuilder`](crate::LlmFactoryBuilder) aimed at this server: its
    /// region, test credentials, Bedrock and STS endpoints, and CA. Set more knobs, then
    /// `build().await`.
    pub fn factory_builder(&self) -> crate::LlmFactoryBuilder {
        crate::LlmFactory::builder()
            .region(self.region())
            .credentials_provider(self.credentials())
            .bedrock_endpoint_url(self.bedrock_url())
            .sts_endpoint_url(self.sts_url())
            .ca_certificate_pem(self.ca_pem())
    }

    /// Returns an SDK config pointing at the Bedrock listener: region, test credentials, endpoint
    /// URL, standard retries (3 attempts), and an HTTP client trusting [`LocalServer::ca_pem`].
    ///
    /// The HTTP client is an `aws_smithy_http_client::pool` connection pool bound to the tokio
    /// runtime this is called in (call it inside each test's runtime). For STS, override the
    /// endpoint: `aws_sdk_sts::config::Builder::from(&conf).endpoint_url(server.sts_url())`.
    pub fn sdk_config(&self) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.shared.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(self.credentials()))
            .endpoint_url(self.bedrock_url())
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        match self.http_client() {
            Ok(client) => builder = builder.http_client(client),
            Err(e) => tracing::error!(error = %e, "cannot build the local server's HTTP client"),
        }
        builder.build()
    }

    /// Returns a pooled HTTP client trusting the server's CA, bound to the current runtime.
    fn http_client(&self) -> Result<PoolClient, Box<dyn std::error::Error + Send + Sync>> {
        let trust = TrustStore::empty().with_pem_certificate(self.ca_pem.as_bytes().to_vec());
        let context = TlsContext::builder().with_trust_store(trust).build()?;
        let pool = ConnectionPool::builder();
        let (pool, partition) = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let id = PartitionId::from_index(0);
                let partition = Partition::new(id, DriverSpawner::tokio(handle));
                (pool.partitions([partition]), id)
            }
            Err(_) => (pool, PartitionId::ANONYMOUS),
        };
        let pool = pool
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build_https()?;
        Ok(PoolClient::from_partition(&pool, partition)?)
    }

    /// Adds a fault rule after the existing ones.
    pub fn push_fault(&self, rule: FaultRule) {
        lock(&self.shared.faults).push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Makes every open Bedrock connection a black hole at once; returns how many it hit.
    ///
    /// This is [`Fault::GoSilent`] for connections that are open now, busy or not: they swallow
    /// what they read, drop what they write and never close (until the server is dropped), so
    /// every request in flight on them (over HTTP/2, every stream) stays unanswered; those not
    /// answered yet keep the recorded outcome 0. Connections accepted afterwards work normally.
    /// Call it once [`LocalServer::wait_for_requests`] saw the requests to catch in flight.
    pub fn silence_connections(&self) -> usize {
        self.shared
            .open_connections(Listener::Bedrock)
            .iter()
            .filter(|c| c.silence())
            .count()
    }

    /// Closes every open Bedrock connection gracefully, as AWS does when it rotates a host;
    /// returns how many it asked to close.
    ///
    /// Over HTTP/2 the connection sends GOAWAY (hyper's graceful shutdown: a first GOAWAY with
    /// last stream id 2^31-1, a PING, then the final GOAWAY naming the last stream it accepts),
    /// lets the streams in flight finish, then closes; the client must open a new connection for
    /// new requests. Over
    /// HTTP/1.1 an idle connection closes at once and a busy one answers its request in flight
    /// with `Connection: close`, then closes. Silenced connections are left alone; connections
    /// accepted afterwards work normally. [`ConnectionCounts::goaway`] counts the connections hit.
    pub fn goaway(&self) -> usize {
        self.shared
            .open_connections(Listener::Bedrock)
            .iter()
            .filter(|c| c.ask_goaway())
            .count()
    }

    /// Sets (or with `None` removes) the idle fault of both listeners; it applies to open
    /// connections too.
    pub fn set_idle_fault(&self, fault: Option<IdleFault>) {
        *lock(&self.shared.idle) = fault;
    }

    /// Sets the model latency.
    pub fn set_latency(&self, latency: Latency) {
        *lock(&self.shared.latency) = latency;
    }

    /// Sets the responder.
    pub fn set_responder(&self, responder: Responder) {
        *lock(&self.shared.responder) = responder;
    }

    /// Returns every request received on either listener, in arrival order (rejected ones too).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Returns the recorded requests of one operation.
    pub fn requests_for(&self, op: Operation) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|(_, r)| r.operation == op)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Returns the connection counts of the Bedrock listener.
    pub fn bedrock_connections(&self) -> ConnectionCounts {
        self.shared.bedrock.snapshot()
    }

    /// Returns the connection counts of the STS listener.
    pub fn sts_connections(&self) -> ConnectionCounts {
        self.shared.sts.snapshot()
    }

    /// Waits until at least `n` requests are recorded; returns false if `timeout` passed first.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.request_added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.shared.requests).len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return lock(&self.shared.requests).len() >= n;
            }
        }
    }
}
