//! The public handle: [`LocalServerBuilder`] starts a server, [`LocalServer`] reaches, faults and
//! observes it.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::retry::RetryConfig;
use tokio::task::JoinHandle;

use super::accept::{accept_loop, bind};
use super::fault::{FaultRule, IdleFault, Latency};
use super::guardrail::Guardrail;
use super::identity::{TEST_ACCESS_KEY_ID, TEST_API_KEY, TEST_REGION, TEST_SECRET_ACCESS_KEY};
use super::limits::Limits;
use super::model::Responder;
use super::record::{ConnectionCounts, Listener, Operation, RecordedRequest};
use super::state::{Protocol, Setup, Shared};

/// The provider name of the test credentials.
const PROVIDER_NAME: &str = "bedrock-pool-local";

/// Configures and starts a [`LocalServer`].
#[derive(Debug)]
pub struct LocalServerBuilder {
    pub(super) setup: Setup,
    bedrock_port: u16,
    sts_port: u16,
}

impl Default for LocalServerBuilder {
    fn default() -> Self {
        Self {
            setup: Setup {
                protocol: Protocol::default(),
                region: TEST_REGION.to_owned(),
                access_key_id: TEST_ACCESS_KEY_ID.to_owned(),
                secret_access_key: TEST_SECRET_ACCESS_KEY.to_owned(),
                responder: Responder::echo(),
                latency: Latency::none(),
                generation: Latency::none(),
                idle_fault: None,
                record_limit: 100_000,
                api_key: TEST_API_KEY.to_owned(),
                guardrails: vec![Guardrail::test()],
                limits: Limits::default(),
                async_delay: crate::jobs::DEFAULT_ASYNC_DELAY,
            },
            bedrock_port: 0,
            sts_port: 0,
        }
    }
}

impl LocalServerBuilder {
    /// Returns the builder with this protocol. Default is [`Protocol::Https`].
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.setup.protocol = p;
        self
    }

    /// Returns the builder with this region; requests signed for another region are rejected.
    /// Default is [`TEST_REGION`].
    pub fn region(mut self, r: impl Into<String>) -> Self {
        self.setup.region = r.into();
        self
    }

    /// Returns the builder accepting this credential pair instead of the test constants.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.setup.access_key_id = access_key_id.into();
        self.setup.secret_access_key = secret_access_key.into();
        self
    }

    /// Returns the builder with this responder. Default is [`Responder::echo`].
    pub fn responder(mut self, r: Responder) -> Self {
        self.setup.responder = r;
        self
    }

    /// Returns the builder with this generation time: how long the model takes to write its
    /// answer. A unary answer (Converse, InvokeModel) waits all of it before its response
    /// headers, as Bedrock's do; a stream sends its headers at once and spreads it between
    /// its events. Default is [`Latency::none`].
    pub fn generation(mut self, g: Latency) -> Self {
        self.setup.generation = g;
        self
    }

    /// Returns the builder with this async delay: how long an async invocation
    /// (StartAsyncInvoke) stays `InProgress` before it ends. Default is 2 s.
    pub fn async_invoke_delay(mut self, delay: std::time::Duration) -> Self {
        self.setup.async_delay = delay;
        self
    }

    /// Returns the builder with this model latency. Default is [`Latency::none`].
    pub fn latency(mut self, l: Latency) -> Self {
        self.setup.latency = l;
        self
    }

    /// Returns the builder with this idle fault. Default is none.
    pub fn idle_fault(mut self, f: IdleFault) -> Self {
        self.setup.idle_fault = Some(f);
        self
    }

    /// Returns the builder accepting this Bedrock API key (`Authorization: Bearer <key>`)
    /// instead of [`TEST_API_KEY`](super::TEST_API_KEY). SigV4 stays accepted.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.setup.api_key = key.into();
        self
    }

    /// Returns the builder knowing one more guardrail (replacing one with the same id). Default
    /// is [`Guardrail::test`] alone.
    pub fn guardrail(mut self, g: Guardrail) -> Self {
        self.setup.guardrails.retain(|x| x.id != g.id);
        self.setup.guardrails.push(g);
        self
    }

    /// Returns the builder knowing no guardrail at all (not even [`Guardrail::test`]).
    pub fn no_guardrails(mut self) -> Self {
        self.setup.guardrails.clear();
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
        self.setup.record_limit = n;
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
        let alpn: &[&[u8]] = match self.setup.protocol {
            Protocol::Https => &[b"h2", b"http/1.1"],
            Protocol::HttpsH1Only | Protocol::Http => &[b"http/1.1"],
        };
        let tls_parts = super::tls::generate(alpn)?;
        let bedrock_listener = bind(self.bedrock_port).await?;
        let sts_listener = bind(self.sts_port).await?;
        let bedrock_addr = bedrock_listener.local_addr()?;
        let sts_addr = sts_listener.local_addr()?;
        let tls = (self.setup.protocol != Protocol::Http).then_some(tls_parts.acceptor);
        let shared = Arc::new(Shared::new(self.setup, tls));
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
            ca_pem: tls_parts.ca_pem,
            tasks,
        })
    }
}

/// Runs a local Bedrock Runtime + STS server; dropping it stops both listeners and closes every
/// connection.
pub struct LocalServer {
    pub(super) shared: Arc<Shared>,
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

    /// Returns an SDK config pointing at the Bedrock listener: region, test credentials, endpoint
    /// URL, standard retries (3 attempts), and an HTTP client trusting [`LocalServer::ca_pem`].
    ///
    /// The HTTP client is a connection pool bound to the tokio runtime this is called in (call
    /// it inside each test's runtime). For STS, override the endpoint:
    /// `aws_sdk_sts::config::Builder::from(&conf).endpoint_url(server.sts_url())`.
    ///
    /// # Errors
    ///
    /// The error of building the HTTP client's pool.
    pub fn sdk_config(&self) -> io::Result<SdkConfig> {
        let http_client = super::sdk::plain_client(&self.ca_pem)?;
        Ok(SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.shared.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(self.credentials()))
            .endpoint_url(self.bedrock_url())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .http_client(http_client)
            .build())
    }

    /// Adds a fault rule after the existing ones.
    pub fn push_fault(&self, rule: FaultRule) {
        self.shared.push_fault(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Makes every open Bedrock connection a black hole at once; returns how many it hit.
    ///
    /// This is [`Fault::GoSilent`](super::Fault::GoSilent) for connections that are open now, busy or not: they swallow
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
        self.shared.set_idle_fault(fault);
    }

    /// Sets the generation time (see [`LocalServerBuilder::generation`]).
    pub fn set_generation(&self, generation: Latency) {
        self.shared.set_generation(generation);
    }

    /// Sets the async delay of the async invocations started from now on.
    pub fn set_async_invoke_delay(&self, delay: std::time::Duration) {
        self.shared.jobs.set_delay(delay);
    }

    /// Sets the model latency.
    pub fn set_latency(&self, latency: Latency) {
        self.shared.set_latency(latency);
    }

    /// Sets the responder.
    pub fn set_responder(&self, responder: Responder) {
        self.shared.set_responder(responder);
    }

    /// Returns the Bedrock API key the server accepts as `Authorization: Bearer <key>`
    /// ([`TEST_API_KEY`](super::TEST_API_KEY) unless the builder set another). Other bearer keys
    /// get `403 AccessDeniedException`; the STS listener never accepts bearer auth.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Makes a guardrail known (replacing one with the same id), while the server runs.
    pub fn set_guardrail(&self, guardrail: Guardrail) {
        self.shared.set_guardrail(guardrail);
    }

    /// Forgets every guardrail (requests naming one are then refused).
    pub fn clear_guardrails(&self) {
        self.shared.clear_guardrails();
    }

    /// Forgets every prompt prefix seen at a cache point: the next request with cache points
    /// reports `cacheWriteInputTokens` again.
    pub fn clear_prompt_cache(&self) {
        self.shared.clear_prompt_cache();
    }

    /// Returns every request received on either listener, in arrival order (rejected ones too).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests(None)
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Returns the recorded requests of one operation.
    pub fn requests_for(&self, op: Operation) -> Vec<RecordedRequest> {
        self.shared.requests(Some(op))
    }

    /// Returns the connection counts of the Bedrock listener.
    pub fn bedrock_connections(&self) -> ConnectionCounts {
        self.shared.counters(Listener::Bedrock).snapshot()
    }

    /// Returns the connection counts of the STS listener.
    pub fn sts_connections(&self) -> ConnectionCounts {
        self.shared.counters(Listener::Sts).snapshot()
    }

    /// Waits until at least `n` requests are recorded; returns false if `timeout` passed first.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_for_requests(n, timeout).await
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn the_generated_ca_gives_an_sdk_config() {
        let server = super::LocalServer::start().await.unwrap();
        let conf = server.sdk_config().unwrap();
        assert!(conf.http_client().is_some());
        assert_eq!(conf.endpoint_url(), Some(server.bedrock_url().as_str()));
    }
}
