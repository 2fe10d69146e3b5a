//! Fallback models, a circuit breaker and a client-side limit, against the embedded local
//! server: a model limited to 20 calls per (scaled) minute of 1 s, whose server quota is the
//! same, takes 100 calls per second for 2 s; the overflow goes to a fallback model, and the
//! server never throttles.
//!
//! Run: `cargo run --example fallbacks`

use bedrock_pool::CallMetadata;
use bedrock_pool::limit::{LimitMode, ModelLimit};
use bedrock_pool_local::{LocalServer, Quota};
use std::time::{Duration, Instant};

const PRIMARY: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const FALLBACK: &str = "amazon.nova-lite-v1:0";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minute = Duration::from_secs(1);
    let server = LocalServer::builder()
        .quota(PRIMARY, Quota::new(minute).requests(20))
        .start()
        .await?;
    let factory = bedrock_pool::LlmFactory::builder()
        .local_endpoints(
            server.region(),
            server.bedrock_url(),
            server.sts_url(),
            server.ca_pem(),
            server.credentials(),
        )
        .model_limit(
            PRIMARY,
            ModelLimit::per_window(minute)
                .requests(20)
                .mode(LimitMode::Reject),
        )
        .build()
        .await?;
    let model = factory.model(PRIMARY).with_fallbacks([FALLBACK]);

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut calls = Vec::new();
    while started.elapsed() < Duration::from_secs(2) {
        tick.tick().await;
        let m = model.clone();
        calls.push(tokio::spawn(async move {
            m.converse().user("hello").max_tokens(16).send().await
        }));
    }
    let (mut primary, mut fallback) = (0, 0);
    for c in calls {
        match c.await?? {
            r if r.model_id() == PRIMARY => primary += 1,
            _ => fallback += 1,
        }
    }
    println!("answered by {PRIMARY}: {primary}, by {FALLBACK}: {fallback}");
    let quota = server.quota_stats(PRIMARY).ok_or("a quota")?;
    println!(
        "server: admitted {}, throttled {}, most in any 1 s window {} (quota 20)",
        quota.admitted, quota.throttled, quota.max_requests_in_window
    );
    let stats = factory.stats();
    for limit in stats.limits.iter().filter(|l| l.model_id == PRIMARY) {
        println!(
            "client limit in {}: admitted {}, refused {}",
            limit.region, limit.admitted, limit.rejected
        );
    }
    let primary_stats = stats.model(PRIMARY).ok_or("stats")?;
    println!(
        "fallbacks from {PRIMARY}: {}",
        primary_stats.requests.fallbacks
    );
    for b in &stats.breakers {
        println!("breaker {} in {}: {:?}", b.model_id, b.region, b.state);
    }
    Ok(())
}
