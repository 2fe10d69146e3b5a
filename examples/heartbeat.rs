//! Heartbeat: the STS identity probe and the Bedrock keep-warm probe, with short intervals,
//! against the embedded local server; shows probes, skips under traffic, and the status.
//!
//! Run: `cargo run --example heartbeat` (add `RUST_LOG=debug` to see every probe).

use bedrock_pool::HeartbeatConfig;
use bedrock_pool_local::{LocalServer, Operation};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bedrock_pool=info".into()),
        )
        .init();
    let server = LocalServer::start().await?;
    // Scaled down: the pool evicts after 2 s idle; keep-warm every 500 ms keeps one connection.
    let factory = bedrock_pool::LlmFactory::builder()
        .local_endpoints(
            server.region(),
            server.bedrock_url(),
            server.sts_url(),
            server.ca_pem(),
            server.credentials(),
        )
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .await?;
    let heartbeat = factory.start_heartbeat(
        HeartbeatConfig::default()
            .identity_interval(Duration::from_millis(700))
            .keep_warm(true)
            .keep_warm_interval(Duration::from_millis(500)),
    )?;

    println!("-- idle for 2 s: probes run");
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("{:#?}", heartbeat.stats());

    println!("-- steady traffic for 2 s: keep-warm probes are skipped");
    let model = factory.model("anthropic.claude-3-haiku-20240307-v1:0");
    for i in 0..20 {
        model.converse().user(format!("message {i}")).send().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = heartbeat.stats();
    println!(
        "keep-warm: {} sent, {} skipped; identity: {} sent",
        st.keep_warm.sent, st.keep_warm.skipped, st.identity.sent
    );

    heartbeat.stop().await;
    println!(
        "-- stopped. The server saw {} STS probes, {} keep-warm probes, {} Bedrock connections",
        server.requests_for(Operation::GetCallerIdentity).len(),
        server.requests_for(Operation::ListAsyncInvokes).len(),
        server.bedrock_connections().accepted
    );
    Ok(())
}
