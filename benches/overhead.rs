// Long because the benchmark is one program: its scenarios and their report read in order.
//! What the factory costs and saves, against the local server (TLS, HTTP/1.1 unless
//! `OVERHEAD_PROTOCOL=h2`, no model latency): converse through a model handle versus the raw SDK
//! client on the same pool and a raw SDK client on a plain pool (concurrency 1 and 50), a cached
//! `model(id)` lookup, the per-call statistics bookkeeping, the circuit breakers' and a
//! client-side limit's cost, and connections opened by one factory versus one SDK client per
//! model.
//!
//! With `--features redis` (and `redis-server` installed), also the limit shared through Redis
//! against the same limit kept locally.
//!
//! Run: `cargo bench --bench overhead` (`-- summary` skips criterion's groups). Criterion's groups
//! come first, then a summary of side-by-side ratios measured in alternating rounds (this machine
//! is shared and noisy).

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use bedrock_pool::{LlmFactory, LlmFactoryBuilder, Model, limit::ModelLimit};
use bedrock_pool_local::{LocalServer, Protocol};
use criterion::{Criterion, Throughput};
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn message() -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hello there".into()))
        .build()
        .expect("a valid message")
}

/// The local server's protocol: HTTP/1.1 over TLS, or h2 (ALPN) with `OVERHEAD_PROTOCOL=h2`.
fn protocol() -> Protocol {
    match std::env::var("OVERHEAD_PROTOCOL").as_deref() {
        Ok("h2") => Protocol::Https,
        _ => Protocol::HttpsH1Only,
    }
}

async fn start_server() -> LocalServer {
    LocalServer::builder()
        .protocol(protocol())
        .start()
        .await
        .expect("the local server starts")
}

fn builder_for(server: &LocalServer) -> LlmFactoryBuilder {
    LlmFactory::builder()
        .region(server.region())
        .credentials_provider(server.credentials())
        .bedrock_endpoint_url(server.bedrock_url())
        .sts_endpoint_url(server.sts_url())
        .ca_certificate_pem(server.ca_pem())
}

async fn factory_for(server: &LocalServer) -> LlmFactory {
    builder_for(server)
        .build()
        .await
        .expect("the factory builds")
}

/// The SDK's default HTTPS client (rustls), trusting the local server's CA.
fn default_http(server: &LocalServer) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let trust = TrustStore::empty().with_pem_certificate(server.ca_pem().as_bytes().to_vec());
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("the local CA is usable");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https()
}

/// An SDK client with its own pool: the SDK's default HTTP client, as `aws_config` gives it.
fn default_client(server: &LocalServer) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region};
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(server.region().to_owned()))
        .credentials_provider(server.credentials())
        .endpoint_url(server.bedrock_url())
        .http_client(default_http(server))
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// The plain SDK client a user would otherwise build: `aws_config::defaults` with the same
/// endpoint, region and credentials, and the SDK's default HTTP client.
async fn plain_client(server: &LocalServer) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(server.region().to_owned()))
        .endpoint_url(server.bedrock_url())
        .credentials_provider(server.credentials())
        .http_client(default_http(server))
        .load()
        .await;
    aws_sdk_bedrockruntime::Client::new(&conf)
}

async fn via_factory(m: Model) {
    m.converse()
        .user("hello there")
        .send()
        .await
        .expect("converse through the factory succeeds");
}

async fn via_raw(c: aws_sdk_bedrockruntime::Client, model: String) {
    c.converse()
        .model_id(model)
        .messages(message())
        .send()
        .await
        .expect("converse through the raw client succeeds");
}

/// Runs `n` calls made by `call`, `concurrency` at a time; returns the wall time.
fn run<F, Fut>(rt: &Runtime, n: u64, concurrency: usize, call: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async {
        let left = Arc::new(AtomicI64::new(n as i64));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (left, call) = (left.clone(), call.clone());
            tasks.spawn(async move {
                loop {
                    let i = left.fetch_sub(1, Ordering::Relaxed);
                    if i <= 0 {
                        break;
                    }
                    call(i as u64).await;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("a bench task panicked");
        }
        start.elapsed()
    })
}

struct Setup {
    rt: Runtime,
    /// The local server (its connections stay open for the whole run).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    server: LocalServer,
    factory: LlmFactory,
    /// The same factory with circuit breakers off.
    no_breakers: LlmFactory,
    /// The same factory with a client-side limit on the model that never binds.
    limited: LlmFactory,
    /// The same factory sending unary calls as unary calls (`unary_over_stream(false)`).
    unary: LlmFactory,
    /// The plain SDK client a user would otherwise build ([`plain_client`]): its own pool, no
    /// connection watching, the SDK's default retries.
    plain: aws_sdk_bedrockruntime::Client,
}

impl Setup {
    fn factory_call(
        &self,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Clone + Send + 'static
    {
        let m = self.factory.model(MODEL);
        move |_| Box::pin(via_factory(m.clone()))
    }

    fn raw_call(
        &self,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Clone + Send + 'static
    {
        let c = self.factory.bedrock_client().clone();
        move |_| Box::pin(via_raw(c.clone(), MODEL.to_owned()))
    }

    fn plain_call(
        &self,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Clone + Send + 'static
    {
        let c = self.plain.clone();
        move |_| Box::pin(via_raw(c.clone(), MODEL.to_owned()))
    }

    fn model_call(
        m: Model,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Clone + Send + 'static
    {
        move |_| Box::pin(via_factory(m.clone()))
    }

    fn side(&self, k: usize, n: u64, concurrency: usize) -> Duration {
        match k {
            0 => run(&self.rt, n, concurrency, self.factory_call()),
            1 => run(&self.rt, n, concurrency, self.raw_call()),
            _ => run(&self.rt, n, concurrency, self.plain_call()),
        }
    }
}

fn criterion_groups(c: &mut Criterion, s: &Setup) {
    for concurrency in [1usize, 50] {
        let mut g = c.benchmark_group(format!("converse_c{concurrency}"));
        g.throughput(Throughput::Elements(1));
        let calls = ["factory", "raw_sdk_same_pool", "raw_sdk_plain_pool"];
        for (k, name) in calls.into_iter().enumerate() {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| s.side(k, iters, concurrency))
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("bookkeeping");
    g.bench_function("model_cache_hit", |b| {
        b.iter(|| s.factory.model(black_box(MODEL)))
    });
    g.bench_function("stats_snapshot", |b| b.iter(|| s.factory.stats()));
    let refused = s.factory.model("an invalid id");
    g.bench_function("call_refused_before_network", |b| {
        b.iter(|| s.rt.block_on(refused.converse().user("x").send()).is_err())
    });
    g.finish();
}

/// Figures of one concurrency: per-round throughput ratios (sorted) of the factory to the raw
/// client on its pool, and of the factory to a raw client on a plain pool; time per call of
/// each side (factory, raw same pool, raw plain pool).
struct SideBySide {
    same_pool: Vec<f64>,
    plain_pool: Vec<f64>,
    per_call: [Duration; 3],
}

impl SideBySide {
    fn median(v: &[f64]) -> f64 {
        v[v.len() / 2]
    }
}

/// Runs the three sides in alternating rounds (the order rotates each round).
fn side_by_side(s: &Setup, rounds: usize, n: u64, concurrency: usize) -> SideBySide {
    let (mut same_pool, mut plain_pool, mut all) = (Vec::new(), Vec::new(), [Duration::ZERO; 3]);
    for round in 0..rounds {
        let mut t = [Duration::ZERO; 3];
        for i in 0..3 {
            let k = (round + i) % 3;
            t[k] = s.side(k, n, concurrency);
        }
        same_pool.push(t[1].as_secs_f64() / t[0].as_secs_f64());
        plain_pool.push(t[2].as_secs_f64() / t[0].as_secs_f64());
        for k in 0..3 {
            all[k] += t[k];
        }
    }
    same_pool.sort_by(f64::total_cmp);
    plain_pool.sort_by(f64::total_cmp);
    SideBySide {
        same_pool,
        plain_pool,
        per_call: all.map(|d| d / (rounds as u32 * n as u32)),
    }
}

fn print_side_by_side(label: &str, r: &SideBySide) {
    let [f, raw, plain] = r.per_call;
    let (sp, pp) = (&r.same_pool, &r.plain_pool);
    println!(
        "converse {label}: factory/raw same pool {:.3} (rounds {:.3}..{:.3}); factory/raw plain pool {:.3} (rounds {:.3}..{:.3}); per call factory {f:.1?}, raw same pool {raw:.1?}, raw plain pool {plain:.1?} ({:.0} / {:.0} / {:.0} calls/s)",
        SideBySide::median(sp),
        sp[0],
        sp[sp.len() - 1],
        SideBySide::median(pp),
        pp[0],
        pp[pp.len() - 1],
        1.0 / f.as_secs_f64(),
        1.0 / raw.as_secs_f64(),
        1.0 / plain.as_secs_f64(),
    );
}

/// Runs the factory with its defaults (breakers on, no limit, unary calls carried as
/// streams), with breakers off, with a limit that never binds, and with unary calls sent
/// unary, in alternating rounds; returns the sorted per-round throughput ratios
/// default/no-breakers, limited/default and default/unary.
fn limits_side_by_side(s: &Setup, rounds: usize, n: u64, c: usize) -> [Vec<f64>; 3] {
    let sides = [
        Setup::model_call(s.factory.model(MODEL)),
        Setup::model_call(s.no_breakers.model(MODEL)),
        Setup::model_call(s.limited.model(MODEL)),
        Setup::model_call(s.unary.model(MODEL)),
    ];
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut t = [Duration::ZERO; 4];
        for i in 0..4 {
            let k = (round + i) % 4;
            t[k] = run(&s.rt, n, c, sides[k].clone());
        }
        let per = |a: usize, b: usize| t[a].as_secs_f64() / t[b].as_secs_f64();
        ratios[0].push(per(1, 0));
        ratios[1].push(per(0, 2));
        ratios[2].push(per(3, 0));
    }
    for r in &mut ratios {
        r.sort_by(f64::total_cmp);
    }
    ratios
}

fn print_limits(label: &str, [breakers, limit, carried]: &[Vec<f64>; 3]) {
    let m = |v: &[f64]| v[v.len() / 2];
    println!(
        "limits {label}: defaults (breakers on, no limit) / breakers off {:.3} (rounds {:.3}..{:.3}); with a limit that never binds / defaults {:.3} (rounds {:.3}..{:.3})",
        m(breakers),
        breakers[0],
        breakers[breakers.len() - 1],
        m(limit),
        limit[0],
        limit[limit.len() - 1],
    );
    println!(
        "carriage {label}: unary calls carried as streams (the default) / sent unary {:.3} (rounds {:.3}..{:.3})",
        m(carried),
        carried[0],
        carried[carried.len() - 1],
    );
}

/// The limit shared through a real `redis-server` against the same limit kept locally.
#[cfg(feature = "redis")]
mod fleet {
    use super::*;
    use bedrock_pool::fleet::FleetConfig;
    use std::process::{Command, Stdio};

    pub(super) fn summary(s: &Setup) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let Ok(mut child) = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            println!("fleet: redis-server is not installed; skipped");
            return;
        };
        std::thread::sleep(Duration::from_millis(300));
        let shared = s.rt.block_on(async {
            let never = ModelLimit::per_minute().requests(1 << 40).tokens(1 << 50);
            let fleet = FleetConfig::new(format!("redis://127.0.0.1:{port}"), "bench")
                .timeout(Duration::from_millis(500));
            builder_for(&s.server)
                .model_limit(MODEL, never)
                .fleet(fleet)
                .build()
                .await
                .expect("the factory builds")
        });
        run(&s.rt, 200, 50, Setup::model_call(shared.model(MODEL))); // connect, load scripts
        for (label, n, c) in [("c=1 ", 400, 1), ("c=50", 4000, 50)] {
            let sides = [
                Setup::model_call(s.limited.model(MODEL)),
                Setup::model_call(shared.model(MODEL)),
            ];
            let mut ratios = Vec::new();
            let mut all = [Duration::ZERO; 2];
            for round in 0..7 {
                let mut t = [Duration::ZERO; 2];
                for i in 0..2 {
                    let k = (round + i) % 2;
                    t[k] = run(&s.rt, n, c, sides[k].clone());
                }
                ratios.push(t[0].as_secs_f64() / t[1].as_secs_f64());
                all[0] += t[0];
                all[1] += t[1];
            }
            ratios.sort_by(f64::total_cmp);
            let per = |d: Duration| d / (7 * n as u32);
            println!(
                "fleet {label}: shared limit (Redis) / local limit throughput {:.3} (rounds {:.3}..{:.3}); per call local {:.1?}, shared {:.1?} (+{:.1} us); fallbacks {}",
                ratios[3],
                ratios[0],
                ratios[6],
                per(all[0]),
                per(all[1]),
                (per(all[1]).as_secs_f64() - per(all[0]).as_secs_f64()) * 1e6,
                shared.stats().fleet.map_or(0, |f| f.fallbacks),
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Median time per call of `f` over a few rounds of `n` calls.
fn time_per_call(rounds: usize, n: u32, mut f: impl FnMut()) -> Duration {
    let mut v: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n
        })
        .collect();
    v.sort();
    v[rounds / 2]
}

/// Bedrock connections the server accepted for 10 000 calls over 10 model ids at concurrency 50.
fn connections(rt: &Runtime, per_model_clients: bool) -> u64 {
    let server = rt.block_on(start_server());
    let ids: Vec<String> = (0..10)
        .map(|i| format!("anthropic.model-{i}-v1:0"))
        .collect();
    if per_model_clients {
        let clients: Arc<Vec<_>> = Arc::new(ids.iter().map(|_| default_client(&server)).collect());
        let ids = Arc::new(ids);
        run(rt, 10_000, 50, move |i| {
            let k = (i % 10) as usize;
            via_raw(clients[k].clone(), ids[k].clone())
        });
    } else {
        let factory = rt.block_on(factory_for(&server));
        let models: Arc<Vec<Model>> = Arc::new(ids.iter().map(|id| factory.model(id)).collect());
        run(rt, 10_000, 50, move |i| {
            via_factory(models[(i % 10) as usize].clone())
        });
    }
    server.bedrock_connections().accepted
}

// Long because it is the benchmark's run, end to end.
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = rt.block_on(start_server());
    let factory = rt.block_on(factory_for(&server));
    let no_breakers = rt.block_on(async {
        builder_for(&server)
            .circuit_breaker(None)
            .build()
            .await
            .expect("the factory builds")
    });
    let limited = rt.block_on(async {
        let never = ModelLimit::per_minute().requests(1 << 40).tokens(1 << 50);
        builder_for(&server)
            .model_limit(MODEL, never)
            .build()
            .await
            .expect("the factory builds")
    });
    let unary = rt.block_on(async {
        builder_for(&server)
            .unary_over_stream(false)
            .build()
            .await
            .expect("the factory builds")
    });
    let plain = rt.block_on(plain_client(&server));
    let s = Setup {
        rt,
        server,
        factory,
        no_breakers,
        limited,
        unary,
        plain,
    };
    run(&s.rt, 200, 50, s.factory_call()); // open the connections
    run(&s.rt, 200, 50, s.plain_call());

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    criterion_groups(&mut c, &s);
    c.final_summary();

    println!(
        "\n== Summary (alternating rounds, side by side; throughput ratios, above 1 = factory faster; {}) ==",
        match protocol() {
            Protocol::Https => "h2 over TLS",
            _ => "HTTP/1.1 over TLS",
        }
    );
    let c1 = side_by_side(&s, 7, 400, 1);
    print_side_by_side("c=1 ", &c1);
    let c50 = side_by_side(&s, 7, 4000, 50);
    print_side_by_side("c=50", &c50);
    print_limits("c=1 ", &limits_side_by_side(&s, 7, 400, 1));
    print_limits("c=50", &limits_side_by_side(&s, 7, 4000, 50));
    #[cfg(feature = "redis")]
    fleet::summary(&s);
    let [f1, r1, _] = c1.per_call;
    let hit = time_per_call(5, 200_000, || {
        black_box(s.factory.model(black_box(MODEL)));
    });
    println!("model(id) cache hit: {hit:.1?} per call");
    let refused = s.factory.model("an invalid id");
    let guard = time_per_call(5, 20_000, || {
        black_box(s.rt.block_on(refused.converse().user("x").send()).is_err());
    });
    let snap = time_per_call(5, 20_000, || {
        black_box(s.factory.stats());
    });
    println!(
        "bookkeeping: a call refused before the network (stats start/finish, validation, span, block_on) {guard:.1?} = {:.2}% of a local round trip ({r1:.1?}); factory - raw at c=1: {:.1} us; stats() snapshot {snap:.1?}",
        100.0 * guard.as_secs_f64() / r1.as_secs_f64(),
        f1.as_secs_f64() * 1e6 - r1.as_secs_f64() * 1e6,
    );
    let one = connections(&s.rt, false);
    let per_model = connections(&s.rt, true);
    println!(
        "connections for 10 000 calls over 10 models at c=50: one factory {one}, one SDK client per model {per_model}"
    );
}
