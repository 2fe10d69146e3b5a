//! Helpers shared by the integration tests: a local server and a factory pointed at it.
#![allow(dead_code)]

use bedrock_pool::{LlmFactory, LlmFactoryBuilder};
use bedrock_pool_local::{LocalServer, Protocol};
use std::time::Duration;

/// A model id the local server accepts.
pub const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// Starts a local server speaking `protocol`.
pub async fn server(protocol: Protocol) -> LocalServer {
    LocalServer::builder()
        .protocol(protocol)
        .start()
        .await
        .expect("local server starts")
}

/// Returns a factory builder aimed at `server` (endpoints, region, credentials, CA).
pub fn builder_for(server: &LocalServer) -> LlmFactoryBuilder {
    LlmFactory::builder().local_endpoints(
        server.region(),
        server.bedrock_url(),
        server.sts_url(),
        server.ca_pem(),
        server.credentials(),
    )
}

/// Builds a factory aimed at `server` with the crate's defaults.
pub async fn factory_for(server: &LocalServer) -> LlmFactory {
    builder_for(server).build().await.expect("factory builds")
}

/// Starts two local servers playing `us-west-2` and `us-east-1` (h2).
pub async fn west_and_east() -> (LocalServer, LocalServer) {
    let start = |region: &'static str| async move {
        LocalServer::builder()
            .region(region)
            .start()
            .await
            .expect("local server starts")
    };
    (start("us-west-2").await, start("us-east-1").await)
}

/// Returns a factory builder over two servers (their regions, primary first), one attempt per
/// region and standard retries (no process-wide adaptive limiter shared with other tests).
pub fn two_region_builder(first: &LocalServer, second: &LocalServer) -> LlmFactoryBuilder {
    LlmFactory::builder()
        .regions([first.region(), second.region()])
        .region_endpoint_url(first.region(), first.bedrock_url())
        .region_endpoint_url(second.region(), second.bedrock_url())
        .credentials_provider(first.credentials())
        .ca_certificate_pem(first.ca_pem())
        .ca_certificate_pem(second.ca_pem())
        .sts_endpoint_url(first.sts_url())
        .retry_mode(bedrock_pool::config::RetryMode::Standard)
        .retry_max_attempts(1)
}

/// Polls `f` until it is true or `timeout` passes; returns the last value.
/// Returns the figures of `model`'s limit in the factory's primary region.
pub fn limit_of(factory: &LlmFactory, model: &str) -> bedrock_pool::limit::LimitStats {
    let primary = &factory.regions()[0];
    factory
        .stats()
        .limit(model, primary)
        .cloned()
        .unwrap_or_else(|| panic!("{model} has a limit in {primary}"))
}

pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Log lines captured from a `tracing` subscriber set as the thread's default.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Returns everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

thread_local! {
    /// This thread's capture, if one is on, and its level.
    static CAPTURE: std::cell::RefCell<Option<(Captured, tracing::Level)>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes into this thread's capture (nothing when none is on).
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| match &mut *c.borrow_mut() {
            Some((logs, _)) => logs.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global subscriber that writes each event to the capture
/// of the thread it happens on. Why global: thread-local default subscribers (`set_default`)
/// race with callsite registration on other threads, and an event's interest could be cached
/// as "never" while a capture was on (an INFO line went missing that way under load). Returns
/// false when another global subscriber was installed first.
fn global_capture() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{Layer, filter, fmt, registry};
        // Dynamic: asked at every event (a plain `filter_fn` caches its first answer per callsite).
        let on = filter::dynamic_filter_fn(|meta, _| {
            CAPTURE.with(|c| {
                c.borrow()
                    .as_ref()
                    .is_some_and(|(_, level)| meta.level() <= level)
            })
        });
        let layer = fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .with_filter(on);
        tracing::subscriber::set_global_default(registry().with(layer)).is_ok()
    })
}

/// Ends a capture when dropped.
pub enum CaptureGuard {
    /// The global subscriber writes to this thread's capture.
    Thread,
    /// A thread-local default subscriber (another global subscriber was installed first).
    Default(#[allow(dead_code)] tracing::subscriber::DefaultGuard),
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        if matches!(self, CaptureGuard::Thread) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }
}

/// Captures this thread's logs up to `level` until the guard is dropped (use a current-thread
/// runtime so spawned tasks log on this thread too).
pub fn capture_logs(level: tracing::Level) -> (Captured, CaptureGuard) {
    let logs = Captured::default();
    if global_capture() {
        CAPTURE.with(|c| *c.borrow_mut() = Some((logs.clone(), level)));
        return (logs, CaptureGuard::Thread);
    }
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (
        logs,
        CaptureGuard::Default(tracing::subscriber::set_default(subscriber)),
    )
}

/// The protocols every reliability test runs on: h2 (what production Bedrock speaks through
/// the pool) and HTTP/1.1.
pub const PROTOCOLS: [Protocol; 2] = [Protocol::Https, Protocol::HttpsH1Only];

/// Defines one test per protocol, `NAME::h2` and `NAME::h1`, running the same async body with
/// `$p: Protocol` bound to `Protocol::Https` (ALPN h2) and `Protocol::HttpsH1Only`.
#[macro_export]
macro_rules! both_protocols {
    ($(#[$meta:meta])* async fn $name:ident($p:ident: Protocol) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($p: bedrock_pool_local::Protocol) $body

            #[tokio::test]
            async fn h2() {
                run(bedrock_pool_local::Protocol::Https).await
            }

            #[tokio::test]
            async fn h1() {
                run(bedrock_pool_local::Protocol::HttpsH1Only).await
            }
        }
    };
}

/// The call chain most tests repeat: one Converse call to [`MODEL`] with one user text.
pub trait Ask {
    /// Sends `text` to [`MODEL`] and returns the reply.
    fn ask(
        &self,
        text: impl Into<String>,
    ) -> impl std::future::Future<Output = bedrock_pool::Result<bedrock_pool::Reply>> + Send;
}

impl Ask for LlmFactory {
    fn ask(
        &self,
        text: impl Into<String>,
    ) -> impl std::future::Future<Output = bedrock_pool::Result<bedrock_pool::Reply>> + Send {
        let model = self.model(MODEL);
        let text = text.into();
        async move { model.converse().user(text).send().await }
    }
}
