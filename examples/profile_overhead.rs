//! One side of `benches/overhead.rs`, alone, for a profiler: `calls` Converse calls at a given
//! concurrency against the local server, through the factory, the raw SDK client on the
//! factory's pool, or a raw SDK client on a plain pool.
//!
//! Run: `cargo run --release --example profile_overhead -- factory|unary|raw|plain [calls] [concurrency] [h1|h2]`
//! (`unary`: the factory with `unary_over_stream(false)`)
//! (defaults: 4000 calls, 50, h1), e.g. under
//! `valgrind --tool=callgrind --callgrind-out-file=factory.out target/release/examples/profile_overhead factory 2000 50`.
//! The setup (server, factory, the first connections) is the same for every side; compare the
//! counts of two sides, or look at one side's own functions. "plain" is the client a user would
//! otherwise build: `aws_config::defaults(BehaviorVersion::latest())` with the same endpoint,
//! region and credentials and the SDK's default HTTPS client. With `PROFILE_BEDROCK_URL`,
//! `PROFILE_STS_URL` and `PROFILE_CA` set, it calls a `bedrock-pool-local` running in another
//! process, so that a profiler counts the client's instructions only (`scripts/callgrind.sh`).

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use bedrock_pool::LlmFactory;
use bedrock_pool_local::{
    LocalServer, Protocol, TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

#[derive(Clone)]
enum Side {
    Factory(bedrock_pool::Model),
    /// The same ConverseStream call as the factory's carried unary call, but as the caller's
    /// stream (read ahead by a task), collected.
    Stream(bedrock_pool::Model),
    Raw(aws_sdk_bedrockruntime::Client),
}

impl Side {
    async fn call(&self) {
        match self {
            Side::Factory(m) => drop(m.converse().user("hello there").send().await.unwrap()),
            Side::Stream(m) => {
                let stream = m.converse_stream().user("hello there").send().await;
                drop(stream.unwrap().collect().await.unwrap());
            }
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

/// The local server's test credentials.
fn credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        TEST_ACCESS_KEY_ID,
        TEST_SECRET_ACCESS_KEY,
        None,
        None,
        "profile_overhead",
    )
}

/// The plain SDK client a user would otherwise build: `aws_config::defaults` with the same
/// endpoint, region and credentials, and the SDK's default HTTPS client (rustls, trusting the
/// server's CA besides nothing else).
async fn plain_client(
    bedrock_url: &str,
    region: &str,
    ca_pem: &str,
) -> Result<aws_sdk_bedrockruntime::Client, Box<dyn std::error::Error>> {
    use aws_config::BehaviorVersion;
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let trust = TrustStore::empty().with_pem_certificate(ca_pem.as_bytes().to_vec());
    let tls = TlsContext::builder().with_trust_store(trust).build()?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(bedrock_url)
        .credentials_provider(credentials())
        .http_client(http)
        .load()
        .await;
    Ok(aws_sdk_bedrockruntime::Client::new(&conf))
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
    // A server in another process (`bedrock-pool-local --port N --ca-file F`), so that a
    // profiler counts the client side only: PROFILE_BEDROCK_URL, PROFILE_STS_URL, PROFILE_CA.
    let external = match (
        std::env::var("PROFILE_BEDROCK_URL"),
        std::env::var("PROFILE_STS_URL"),
        std::env::var("PROFILE_CA"),
    ) {
        (Ok(b), Ok(s), Ok(ca)) => Some((b, s, std::fs::read_to_string(ca)?)),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let local = match external {
            Some(_) => None,
            None => Some(LocalServer::builder().protocol(protocol).start().await?),
        };
        let (bedrock_url, sts_url, ca_pem, region) = match (&external, &local) {
            (Some((b, s, ca)), _) => (b.clone(), s.clone(), ca.clone(), TEST_REGION.to_owned()),
            (None, Some(l)) => (
                l.bedrock_url().to_owned(),
                l.sts_url().to_owned(),
                l.ca_pem().to_owned(),
                l.region().to_owned(),
            ),
            (None, None) => unreachable!("a server is started when none is given"),
        };
        // The "unary" side is the factory sending unary calls as unary calls.
        let factory = LlmFactory::builder()
            .region(&region)
            .credentials_provider(credentials())
            .bedrock_endpoint_url(&bedrock_url)
            .sts_endpoint_url(&sts_url)
            .ca_certificate_pem(&ca_pem)
            .unary_over_stream(which != "unary")
            .build()
            .await?;
        let side = match which.as_str() {
            "factory" | "unary" => Side::Factory(factory.model(MODEL)),
            "stream" => Side::Stream(factory.model(MODEL)),
            "raw" => Side::Raw(factory.bedrock_client().clone()),
            "plain" => Side::Raw(plain_client(&bedrock_url, &region, &ca_pem).await?),
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
