//! One side of `benches/overhead.rs`, alone, for a profiler: `calls` Converse calls at a given
//! concurrency against the local server, through the factory, the raw SDK client on the
//! factory's pool, or a raw SDK client on a plain pool.
//!
//! Run: `cargo run --release --example profile_overhead -- factory|raw|plain [calls] [concurrency] [h1|h2]`
//! (defaults: 4000 calls, 50, h1), e.g. under
//! `valgrind --tool=callgrind --callgrind-out-file=factory.out target/release/examples/profile_overhead factory 2000 50`.
//! The setup (server, factory, the first connections) is the same for every side; compare the
//! counts of two sides, or look at one side's own functions.

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use bedrock_pool::LlmFactory;
use bedrock_pool_local::{LocalServer, Protocol};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

#[derive(Clone)]
enum Side {
    Factory(bedrock_pool::Model),
    Raw(aws_sdk_bedrockruntime::Client),
}

impl Side {
    async fn call(&self) {
        match self {
            Side::Factory(m) => drop(m.converse().user("hello there").send().await.unwrap()),
            Side::Raw(c) => {
                let m = Message::builder()
                    .role(ConversationRole::User)
                    .content(ContentBlock::Text("hello there".into()))
                    .build()
                    .unwrap();
                let call = c.converse().model_id(MODEL).messages(m);
                drop(call.send().await.unwrap());
            }
        }
    }
}

async fn run(side: &Side, n: i64, concurrency: usize) {
    let left = Arc::new(AtomicI64::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (left, side) = (left.clone(), side.clone());
        tasks.spawn(async move {
            while left.fetch_sub(1, Ordering::Relaxed) > 0 {
                side.call().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_owned());
    let (which, calls, concurrency) = (arg(0, "factory"), arg(1, "4000").parse()?, arg(2, "50"));
    let concurrency: usize = concurrency.parse()?;
    let protocol = match arg(3, "h1").as_str() {
        "h2" => Protocol::Https,
        _ => Protocol::HttpsH1Only,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = LocalServer::builder().protocol(protocol).start().await?;
        let factory = LlmFactory::builder()
            .region(server.region())
            .credentials_provider(server.credentials())
            .bedrock_endpoint_url(server.bedrock_url())
            .sts_endpoint_url(server.sts_url())
            .ca_certificate_pem(server.ca_pem())
            .build()
            .await?;
        let plain = aws_sdk_bedrockruntime::Client::new(&server.sdk_config()?);
        let side = match which.as_str() {
            "factory" => Side::Factory(factory.model(MODEL)),
            "raw" => Side::Raw(factory.bedrock_client().clone()),
            "plain" => Side::Raw(plain),
            other => return Err(format!("unknown side {other:?}").into()),
        };
        run(&side, concurrency as i64 * 4, concurrency).await; // open the connections
        let start = Instant::now();
        run(&side, calls, concurrency).await;
        let s = start.elapsed();
        println!(
            "{which}: {calls} calls at c={concurrency} in {s:.2?}, {:.0} calls/s",
            calls as f64 / s.as_secs_f64()
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
