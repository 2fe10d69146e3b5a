//! Quickstart: build the factory once, ask a model, print the reply and the statistics.
//!
//! Run: `cargo run --example quickstart` — against the embedded local Bedrock server.
//! Real Bedrock: `cargo run --example quickstart -- --live [model-id]` (or set
//! `BEDROCK_POOL_LIVE=1`), with AWS credentials and a region from the usual environment.

use bedrock_pool::CallMetadata;
use bedrock_pool::LlmFactory;
use bedrock_pool_local::LocalServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let live =
        args.iter().any(|a| a == "--live") || std::env::var_os("BEDROCK_POOL_LIVE").is_some();
    let model_id = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "anthropic.claude-3-haiku-20240307-v1:0".to_owned());

    // Offline by default: the local server speaks Bedrock's wire protocol over TLS.
    let (_server, factory) = if live {
        (None, LlmFactory::from_env().await?)
    } else {
        let server = LocalServer::start().await?;
        let factory = bedrock_pool::LlmFactory::builder()
            .local_endpoints(
                server.region(),
                server.bedrock_url(),
                server.sts_url(),
                server.ca_pem(),
                server.credentials(),
            )
            .build()
            .await?;
        println!("local Bedrock server at {}", server.bedrock_url());
        (Some(server), factory)
    };

    let model = factory.model(&model_id).with_max_tokens(256);
    let reply = model
        .converse()
        .system("You are concise.")
        .user("Hello from bedrock-pool! Say hi back.")
        .send()
        .await?;
    println!("model:       {model_id}");
    println!("reply:       {}", reply.text());
    println!("stop reason: {}", reply.stop_reason().as_str());
    if let Some(u) = reply.usage() {
        println!(
            "tokens:      {} in, {} out",
            u.input_tokens(),
            u.output_tokens()
        );
    }
    println!(
        "latency:     {:?} (attempts: {})",
        reply.latency(),
        reply.attempts()
    );

    // The same id gives the same cached handle: a cache hit, no new client, no new connection.
    factory
        .model(&model_id)
        .converse()
        .user("And again?")
        .send()
        .await?;
    println!("cache:       {:?}", factory.stats().cache);
    let pool = factory.stats().pool.bedrock;
    println!(
        "pool:        {} opened, {} open, protocol {:?}, establishment {:?}",
        pool.opened, pool.open, pool.protocol, pool.establishment_mean
    );
    let req = factory.stats().requests;
    println!(
        "requests:    {} ok of {}, p50 {:?}, p99 {:?}",
        req.successes, req.requests, req.latency.p50, req.latency.p99
    );
    Ok(())
}
