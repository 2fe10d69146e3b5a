//! Helpers shared by the integration tests: a local server and a factory pointed at it.
#![allow(dead_code)]

use bedrock_pool::local::{LocalServer, Protocol};
use bedrock_pool::{LlmFactory, LlmFactoryBuilder};
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
    LlmFactory::builder()
        .region(server.region())
        .credentials_provider(server.credentials())
        .bedrock_endpoint_url(server.bedrock_url())
        .sts_endpoint_url(server.sts_url())
        .ca_certificate_pem(server.ca_pem())
}

/// Builds a factory aimed at `server` with the crate's defaults.
pub async fn factory_for(server: &LocalServer) -> LlmFactory {
    builder_for(server).build().await.expect("factory builds")
}

/// Polls `f` until it is true or `timeout` passes; returns the last value.
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
