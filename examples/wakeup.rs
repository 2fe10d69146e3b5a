//! Wake-up latency after idle: the plain SDK client versus the factory, against the local server
//! playing a middlebox that kills idle connections (silently, with a FIN, or with an RST).
//!
//! Every constant is scaled down together (1 s here stands for 1 min): the run takes ~2 minutes.
//! Run: `cargo run --release --example wakeup [-- --reps N] [--json PATH]`

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::error::DisplayErrorContext;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bedrock_pool::local::{IdleFault, Latency, LocalServer, Operation, Protocol};
use bedrock_pool::{HeartbeatConfig, HeartbeatHandle, LlmFactory};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// Production seconds per second here.
const SCALE: f64 = 60.0;

/// Returns the scaled-down duration of `secs` production seconds.
fn prod(secs: f64) -> Duration {
    Duration::from_secs_f64(secs / SCALE)
}

const FAULTS: [&str; 3] = ["SilentlyDead", "Close", "Reset"];
const IDLES: [f64; 2] = [0.5, 2.0];
const CLIENTS: [&str; 4] = [
    "before: SDK default client",
    "factory defaults",
    "factory + keep-warm",
    "factory, no eviction, STS hb",
];

fn fault(name: &str, after: Duration) -> IdleFault {
    match name {
        "SilentlyDead" => IdleFault::SilentlyDead { after },
        "Close" => IdleFault::Close { after },
        _ => IdleFault::Reset { after },
    }
}

/// One client under test: the raw SDK client or a factory (with its heartbeat).
enum Sender {
    Raw(aws_sdk_bedrockruntime::Client),
    Factory(LlmFactory, Option<HeartbeatHandle>),
}

impl Sender {
    async fn new(server: &LocalServer, client: usize) -> Sender {
        if client == 0 {
            return Sender::Raw(before_client(server));
        }
        let idle_timeout = (client != 3).then(|| prod(50.0));
        let factory = LlmFactory::builder()
            .region(server.region())
            .credentials_provider(server.credentials())
            .bedrock_endpoint_url(server.bedrock_url())
            .sts_endpoint_url(server.sts_url())
            .ca_certificate_pem(server.ca_pem())
            .connect_timeout(prod(5.0))
            .read_timeout(prod(60.0))
            .pool_idle_timeout(idle_timeout)
            .pool_tcp_keepalive(None)
            .build()
            .await
            .expect("the factory builds");
        let hb = match client {
            2 => HeartbeatConfig::default()
                .identity_probe(false)
                .keep_warm(true)
                .keep_warm_interval(prod(40.0)),
            3 => HeartbeatConfig::default().identity_interval(prod(15.0)),
            _ => return Sender::Factory(factory, None),
        };
        let hb = factory
            .start_heartbeat(hb.probe_timeout(prod(10.0)))
            .expect("the heartbeat starts");
        Sender::Factory(factory, Some(hb))
    }

    async fn stop(self) {
        if let Sender::Factory(_, Some(hb)) = self {
            hb.stop().await;
        }
    }

    async fn send(&self, text: &str) -> Result<(), String> {
        match self {
            Sender::Raw(c) => {
                let msg = Message::builder()
                    .role(ConversationRole::User)
                    .content(ContentBlock::Text(text.into()))
                    .build()
                    .expect("a valid message");
                let out = c.converse().model_id(MODEL).messages(msg).send().await;
                out.map(drop)
                    .map_err(|e| DisplayErrorContext(e).to_string())
            }
            Sender::Factory(f, _) => {
                let out = f.model(MODEL).converse().user(text).send().await;
                out.map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

/// The "before" client: the SDK's default HTTP client (hyper, 90 s pool idle timeout, no
/// eviction within this run, like urllib3) with boto3's defaults scaled: 60 s connect and
/// read timeouts, 5 attempts.
fn before_client(server: &LocalServer) -> aws_sdk_bedrockruntime::Client {
    let trust = TrustStore::empty().with_pem_certificate(server.ca_pem().as_bytes().to_vec());
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("the local CA is usable");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(prod(60.0))
        .read_timeout(prod(60.0))
        .build();
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(server.region().to_owned()))
        .credentials_provider(server.credentials())
        .endpoint_url(server.bedrock_url())
        .http_client(http)
        .timeout_config(timeouts)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(prod(1.0)),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// One repetition of one cell.
struct Sample {
    wake: f64,
    warm: f64,
    conns: u64,
    attempt: u32,
    error: Option<String>,
}

async fn run_once(fault_name: &str, idle: Duration, client: usize) -> Sample {
    let server = LocalServer::builder()
        .protocol(Protocol::HttpsH1Only)
        .idle_fault(fault(fault_name, prod(60.0)))
        .latency(Latency::fixed(prod(3.0)))
        .start()
        .await
        .expect("the local server starts");
    let sender = Sender::new(&server, client).await;
    let first = sender.send("open a connection").await;
    let accepted = server.bedrock_connections().accepted;
    server.clear_requests();
    tokio::time::sleep(idle).await;
    let t = Instant::now();
    let woke = sender.send("after the idle").await;
    let wake = t.elapsed().as_secs_f64() * 1000.0;
    let attempt = server
        .requests()
        .iter()
        .filter(|r| r.operation == Operation::Converse)
        .filter_map(|r| r.attempt)
        .max()
        .unwrap_or(0);
    let t = Instant::now();
    let again = sender.send("right after").await;
    let warm = t.elapsed().as_secs_f64() * 1000.0;
    sender.stop().await;
    Sample {
        wake,
        warm,
        conns: server.bedrock_connections().accepted - accepted,
        attempt,
        error: first.and(woke).and(again).err(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut reps, mut json) = (3usize, None::<String>);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--reps", Some(n)) => reps = n.parse().expect("--reps takes a positive number"),
            ("--json", Some(p)) => json = Some(p),
            _ => panic!("usage: wakeup [--reps N] [--json PATH]"),
        }
    }
    println!("Scale: 1 s here stands for 1 min in production (every constant divided by {SCALE}).");
    println!("  middlebox idle limit 1.000 s (an LB's 60 s) | pool idle timeout 0.833 s (50 s)");
    println!("  keep-warm interval   0.667 s (40 s)         | read timeout 1.000 s (60 s), both");
    println!("  connect timeout 0.083 s (5 s) factory, 1.000 s (boto3's 60 s) before");
    println!("  model time 0.050 s per answer (3 s; Latency::fixed on the local server)");
    println!("  STS identity probe every 0.250 s (15 s: 20x the default rate, still no help)");
    println!("  retries: before = standard, 5 attempts, backoff scaled; factory = adaptive, 3,");
    println!("    SDK backoff unscaled (0-1 s jitter; only (4) retries). TCP keepalive off: the");
    println!("    kernel's 1 s resolution cannot scale, and the local middlebox sees no probes.");
    println!("  HTTP/1.1 only, {reps} repetitions, fresh server and client each.\n");

    let mut cells: Vec<Vec<Sample>> = (0..FAULTS.len() * IDLES.len() * CLIENTS.len())
        .map(|_| Vec::new())
        .collect();
    let started = Instant::now();
    for rep in 0..reps {
        for (i, cell) in cells.iter_mut().enumerate() {
            let (f, x, c) = (i / 8, (i / 4) % 2, i % 4);
            cell.push(run_once(FAULTS[f], prod(60.0 * IDLES[x]), c).await);
        }
        eprintln!(
            "repetition {} done after {:.0?}",
            rep + 1,
            started.elapsed()
        );
    }

    println!(
        "{:<13}{:<6}{:<30}{:>17}{:>9}{:>15}{:>7}{:>8}",
        "fault",
        "idle",
        "client",
        "wake ms med/max",
        "warm ms",
        "ratio med/max",
        "conns",
        "attempt"
    );
    let mut out = String::from("[\n");
    let mut worst = [[0.0f64; 4]; 3]; // idle 2x: max ratio per fault and client
    for (i, s) in cells.iter().enumerate() {
        let (f, x, c) = (i / 8, (i / 4) % 2, i % 4);
        let wake: Vec<f64> = s.iter().map(|s| s.wake).collect();
        let warm: Vec<f64> = s.iter().map(|s| s.warm).collect();
        let ratio: Vec<f64> = s.iter().map(|s| s.wake / s.warm).collect();
        let conns: Vec<f64> = s.iter().map(|s| s.conns as f64).collect();
        let att: Vec<f64> = s.iter().map(|s| f64::from(s.attempt)).collect();
        if x == 1 {
            worst[f][c] = max(&ratio);
        }
        println!(
            "{:<13}{:<6}{:<30}{:>8.1} /{:>7.1}{:>9.1}{:>7.2} /{:>6.2}{:>4}/{:<2}{:>6}{}",
            FAULTS[f],
            format!("{}x", IDLES[x]),
            CLIENTS[c],
            median(wake.clone()),
            max(&wake),
            median(warm.clone()),
            median(ratio.clone()),
            max(&ratio),
            median(conns.clone()),
            max(&conns),
            max(&att),
            if s.iter().any(|s| s.error.is_some()) {
                "  ERR"
            } else {
                ""
            },
        );
        for e in s.iter().filter_map(|s| s.error.as_deref()) {
            println!("    error: {e}");
        }
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{}", (x * 1000.0).round() / 1000.0))
                .collect::<Vec<_>>()
                .join(",")
        };
        let _ = writeln!(
            out,
            "  {{\"fault\":\"{}\",\"idle_factor\":{},\"idle_s\":{:.3},\"client\":\"{}\",\"wake_ms\":[{}],\"warm_ms\":[{}],\"ratio\":[{}],\"connections_accepted\":[{}],\"attempt\":[{}],\"errors\":{}}}{}",
            FAULTS[f],
            IDLES[x],
            prod(60.0 * IDLES[x]).as_secs_f64(),
            CLIENTS[c],
            list(&wake),
            list(&warm),
            list(&ratio),
            list(&conns),
            list(&att),
            s.iter().filter(|s| s.error.is_some()).count(),
            if i + 1 < cells.len() { "," } else { "" },
        );
    }
    out.push_str("]\n");

    println!("\nIdle 2x the middlebox limit, worst ratio over the three faults (goal):");
    let over = |c: usize| (0..3).map(|f| worst[f][c]).fold(0.0, f64::max);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  factory defaults     {:>6.2}  (<= 1.20: {})",
        over(1),
        verdict(over(1) <= 1.2)
    );
    println!(
        "  factory + keep-warm  {:>6.2}  (<= 1.05: {})",
        over(2),
        verdict(over(2) <= 1.05)
    );
    println!(
        "  before, SilentlyDead {:>6.2}  (>= 10: {})",
        worst[0][0],
        verdict(worst[0][0] >= 10.0)
    );
    println!(
        "  factory, STS hb only {:>6.2}  (STS probes do not keep Bedrock warm)",
        over(3)
    );
    if let Some(path) = json {
        std::fs::write(&path, out).expect("the JSON file can be written");
        println!("\nJSON written to {path}");
    }
}
