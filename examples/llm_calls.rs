//! Retries and timeouts for model calls, before and after, on h2 and HTTP/1.1 against the local
//! server. "Before" is the SDK's policy the factory used to set, on a raw SDK client: adaptive
//! retry, 3 attempts, one retry partition per region, unary calls, the fallback called by hand
//! after the primary failed. "After" is the factory's defaults. Time is scaled where it can be
//! (1 s stands for 60 s: the read timeout); the SDK's backoff (1 s initial) and the adaptive
//! limiter's waits are not scaled, they are the SDK's own.
//!
//! 1. time to the fallback's answer when the primary is throttled on every attempt (3 calls);
//! 2. right after, a call to another, healthy model: its time against a warm call;
//! 3. a long generation (65 s scaled: 1.083 s against the 1 s read timeout, `max_tokens` 8192):
//!    does it succeed, and how many requests did the server receive.
//!
//! Run: `cargo run --release --example llm_calls` (about 2 minutes). With `--quick` the
//! "before" column is skipped (its SDK backoff and limiter waits take the minutes): CI runs that
//! to keep the example working. It exits with an error when an "after" figure misses its goal
//! (the fallback answers, the long generation succeeds with one request).

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_runtime::client::retries::RetryPartition;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bedrock_pool::CallMetadata;
use bedrock_pool_local::{Fault, FaultRule, Latency, LocalServer, Protocol, ServiceError};
use std::time::{Duration, Instant};

const PRIMARY: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const FALLBACK: &str = "amazon.nova-lite-v1:0";
const OTHER: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const READ: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_millis(1083);

fn throttle() -> FaultRule {
    FaultRule::new(Fault::Error(ServiceError::Throttling(
        "Too many requests".into(),
    )))
    .model(PRIMARY)
}

/// The client the factory used to be: adaptive retry, 3 attempts, a per-region partition.
fn before(server: &LocalServer) -> aws_sdk_bedrockruntime::Client {
    let conf = server.sdk_config().expect("the SDK config");
    let conf = aws_sdk_bedrockruntime::config::Builder::from(&conf)
        .retry_config(RetryConfig::adaptive().with_max_attempts(3))
        .retry_partition(RetryPartition::new(format!(
            "before-{:?}",
            server.protocol()
        )))
        .timeout_config(TimeoutConfig::builder().read_timeout(READ).build())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

async fn raw_call(c: &aws_sdk_bedrockruntime::Client, model: &str, max_tokens: i32) -> bool {
    let msg = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hello".into()))
        .build()
        .expect("a message");
    let config = InferenceConfiguration::builder()
        .max_tokens(max_tokens)
        .build();
    c.converse()
        .model_id(model)
        .messages(msg)
        .inference_config(config)
        .send()
        .await
        .is_ok()
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-6)
}

// Long because it is one run of the example, end to end.
async fn run(protocol: Protocol, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let server = LocalServer::builder().protocol(protocol).start().await?;
    let raw = before(&server);
    let factory = bedrock_pool::LlmFactory::builder()
        .local_endpoints(
            server.region(),
            server.bedrock_url(),
            server.sts_url(),
            server.ca_pem(),
            server.credentials(),
        )
        .read_timeout(READ)
        .build()
        .await?;
    let handle = factory.model(PRIMARY).with_fallbacks([FALLBACK]);
    assert!(raw_call(&raw, OTHER, 100).await, "the raw client answers");
    factory.model(OTHER).converse().user("warm").send().await?;
    let t = Instant::now();
    raw_call(&raw, OTHER, 100).await;
    let warm_before = t.elapsed();
    let t = Instant::now();
    factory.model(OTHER).converse().user("warm").send().await?;
    let warm_after = t.elapsed();

    server.push_fault(throttle());
    let (mut fb_before, mut fb_after) = (Vec::new(), Vec::new());
    let mut other_before = (Duration::ZERO, true);
    if !quick {
        for _ in 0..3 {
            let t = Instant::now();
            if !raw_call(&raw, PRIMARY, 100).await {
                assert!(raw_call(&raw, FALLBACK, 100).await, "the fallback answers");
            }
            fb_before.push(t.elapsed());
        }
        let t = Instant::now();
        let ok = raw_call(&raw, OTHER, 100).await;
        other_before = (t.elapsed(), ok);
    }
    for _ in 0..3 {
        let t = Instant::now();
        let reply = handle.converse().user("hello").send().await?;
        assert_eq!(reply.model_id(), FALLBACK);
        fb_after.push(t.elapsed());
    }
    let t = Instant::now();
    factory.model(OTHER).converse().user("hello").send().await?;
    let other_after = t.elapsed();
    server.clear_faults();

    server.set_generation(Latency::fixed(LONG));
    server.clear_requests();
    let mut long_before = (false, Duration::ZERO, 0);
    if !quick {
        let t = Instant::now();
        let ok = raw_call(&raw, OTHER, 8192).await;
        long_before = (ok, t.elapsed(), server.requests().len());
    }
    server.clear_requests();
    let t = Instant::now();
    let reply = factory
        .model(OTHER)
        .converse()
        .user("hello")
        .max_tokens(8192)
        .send()
        .await;
    let long_after = (reply.is_ok(), t.elapsed(), server.requests().len());

    let list = |v: &[Duration]| v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ");
    let long = |(ok, took, n): (bool, Duration, usize)| {
        if n == 0 {
            return "skipped (--quick)".to_owned();
        }
        let outcome = if ok { "ok" } else { "FAILED" };
        format!("{outcome} after {}, {n} request(s)", secs(took))
    };
    let failed = if other_before.1 { "" } else { " FAILED" };
    println!("\n| {protocol:?} | before (SDK policy) | after (factory defaults) |");
    println!("| --- | --- | --- |");
    let rows = [
        (
            "throttled primary to fallback, 3 calls",
            list(&fb_before),
            list(&fb_after),
        ),
        (
            "another model right after (warm call)",
            format!(
                "{} (warm {}: {:.0}x){failed}",
                secs(other_before.0),
                secs(warm_before),
                ratio(other_before.0, warm_before)
            ),
            format!(
                "{} (warm {}: {:.2}x)",
                secs(other_after),
                secs(warm_after),
                ratio(other_after, warm_after)
            ),
        ),
        (
            "a 65 s generation, read timeout 60 s",
            long(long_before),
            long(long_after),
        ),
    ];
    for (label, before, after) in rows {
        let before = if quick {
            "skipped (--quick)".to_owned()
        } else {
            before
        };
        println!("| {label} | {before} | {after} |");
    }
    if !(long_after.0 && long_after.2 == 1) {
        return Err(
            format!("{protocol:?}: the long generation did not succeed with one request").into(),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    for protocol in [Protocol::Https, Protocol::HttpsH1Only] {
        run(protocol, quick).await?;
    }
    Ok(())
}
