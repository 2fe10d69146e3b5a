//! Measures requests per second of raw SDK Converse calls against the local server, over
//! HTTP/1.1 (TLS, ALPN http/1.1) and over HTTP/2 (TLS, h2), side by side in one run.
//!
//! Run: `cargo run --release --example local_bench -- [REQUESTS] [CONCURRENCY]` (defaults 2000, 32).
//! Client and server share the machine (and this process), so the figure is the whole round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use bedrock_pool_local::{LocalServer, Protocol};

async fn run(
    protocol: Protocol,
    requests: usize,
    concurrency: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let server = LocalServer::builder().protocol(protocol).start().await?;
    let client = aws_sdk_bedrockruntime::Client::new(&server.sdk_config()?);
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(
            "benchmark the local server please".into(),
        ))
        .build()?;
    // Warm-up: connection, TLS, credentials.
    client
        .converse()
        .model_id("bench.model-v1:0")
        .messages(message.clone())
        .send()
        .await?;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, message, next) = (client.clone(), message.clone(), next.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                client
                    .converse()
                    .model_id("bench.model-v1:0")
                    .messages(message.clone())
                    .send()
                    .await?;
            }
            Ok::<_, aws_sdk_bedrockruntime::Error>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().max(Duration::from_millis(1));
    let connections = server.bedrock_connections();
    println!(
        "{protocol:?}: {requests} requests, {concurrency} callers, {:.2} s, {} connections",
        elapsed.as_secs_f64(),
        connections.max_open
    );
    Ok(requests as f64 / elapsed.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let requests = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let concurrency = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let h1 = run(Protocol::HttpsH1Only, requests, concurrency).await?;
    let h2 = run(Protocol::Https, requests, concurrency).await?;
    println!("HTTP/1.1 (TLS): {h1:.0} req/s");
    println!("HTTP/2   (TLS): {h2:.0} req/s");
    println!("h2 / h1:        {:.2}", h2 / h1);
    Ok(())
}
