//! A real fleet under load: several OS processes share one model's limit through a Redis
//! Cluster, while the shard primary holding the fleet's keys is killed mid-run.
//!
//! ```text
//! cargo run --release --example fleet_load --features redis
//! ```
//!
//! The run starts a 3-shard Redis Cluster with a replica each (six `redis-server` processes,
//! `--cluster-node-timeout 1000`, joined by `redis-cli --cluster create`), and a local Bedrock
//! server whose quota for the model is `QUOTA` requests per `WINDOW` (time scaled: 2 s plays
//! Bedrock's minute). It then spawns `PROCESSES` copies of itself, each with `CALLERS` callers
//! sending together 150% of the quota for `RUN`, with the same client-side limit shared through
//! the cluster and a fallback model for the overflow. Half-way, the primary holding the fleet's
//! keys is killed with SIGKILL and its replica takes over.
//!
//! It prints what the server counted (throttles, the busiest window against the quota) and
//! what each process saw, and exits 1 if the server throttled, counted more than the quota in a
//! window, or a call failed. Needs `redis-server` and `redis-cli` on PATH.

use bedrock_pool::CallMetadata;
use bedrock_pool::{
    LlmFactory,
    fleet::FleetConfig,
    limit::{LimitMode, ModelLimit},
};
use bedrock_pool_local::{
    LocalServer, Protocol, Quota, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const FALLBACK: &str = "amazon.nova-lite-v1:0";
const PROCESSES: usize = 6;
const CALLERS: usize = 20;
const QUOTA: u64 = 100;
const WINDOW: Duration = Duration::from_secs(2);
const RUN: Duration = Duration::from_secs(20);
const PREFIX: &str = "fleet-load";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("FLEET_LOAD_WORKER").is_some() {
        return worker();
    }
    coordinator()
}

/// What a worker needs, passed in its environment.
fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the coordinator"))
}

// Long because it is one run of the example, end to end.
fn coordinator() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let server = runtime.block_on(
        LocalServer::builder()
            .protocol(Protocol::Https)
            .quota(MODEL, Quota::new(WINDOW).requests(QUOTA))
            .start(),
    )?;
    let dir = std::env::temp_dir().join(format!("bedrock-pool-fleet-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.ca_pem())?;
    let mut cluster = Cluster::start(&dir)?;
    let (primary, replica) = cluster.shard_of(&format!("{{{PREFIX}}}"))?;
    println!(
        "cluster up: {} nodes; the fleet's keys are on the shard of 127.0.0.1:{primary} (replica :{replica})",
        cluster.nodes.len()
    );
    println!(
        "{PROCESSES} processes x {CALLERS} callers, 150% of a quota of {QUOTA} requests per {WINDOW:?}, for {RUN:?}"
    );

    let started = Instant::now();
    let workers: Vec<Child> = (0..PROCESSES)
        .map(|i| {
            // Each process knows the cluster by another node.
            let node = cluster.nodes[i % cluster.nodes.len()].0;
            Command::new(std::env::current_exe()?)
                .env("FLEET_LOAD_WORKER", i.to_string())
                .env("FLEET_LOAD_REDIS", format!("redis://127.0.0.1:{node}"))
                .env("FLEET_LOAD_BEDROCK", server.bedrock_url())
                .env("FLEET_LOAD_STS", server.sts_url())
                .env("FLEET_LOAD_REGION", server.region())
                .env("FLEET_LOAD_CA", &ca)
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    std::thread::sleep(RUN / 2);
    cluster.kill(primary);
    let killed_at = started.elapsed();
    println!("killed the primary :{primary} (SIGKILL) at {killed_at:.1?}");

    let mut failed = 0;
    let mut totals = [0u64; 4];
    println!("\nprocess  sent  model  fallback  refused  failed  fleet down (longest)");
    for (i, w) in workers.into_iter().enumerate() {
        let out = w.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .ok_or(format!("worker {i} printed no result: {text}"))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        let n = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        println!(
            "{i:>7}  {:>4}  {:>5}  {:>8}  {:>7}  {:>6}  {}",
            n(0) + n(1) + n(2) + n(3),
            n(0),
            n(1),
            n(2),
            n(3),
            f.get(4).unwrap_or(&"?")
        );
        for (t, k) in totals.iter_mut().zip(0..) {
            *t += n(k);
        }
        failed += n(3);
    }
    let q = server.quota_stats(MODEL).ok_or("the model has a quota")?;
    println!(
        "  total  {:>4}  {:>5}  {:>8}  {:>7}  {:>6}",
        totals.iter().sum::<u64>(),
        totals[0],
        totals[1],
        totals[2],
        totals[3]
    );
    println!(
        "\nserver: {} admitted, {} throttled, busiest window {} of {QUOTA}",
        q.admitted, q.throttled, q.max_requests_in_window
    );
    if q.throttled > 0 {
        // When: the requests are recorded in order, at a steady rate.
        let all = server.requests();
        let at: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(_, r)| r.error.as_deref().is_some_and(|e| e.contains("Throttling")))
            .map(|(i, _)| format!("{:.1?}", RUN.mul_f64(i as f64 / all.len() as f64)))
            .collect();
        println!("throttled at about {at:?} into the run");
    }
    let new_primary = cluster.shard_of(&format!("{{{PREFIX}}}")).map(|s| s.0).ok();
    println!(
        "the fleet's shard is now served by :{}",
        new_primary.map_or("?".into(), |p| p.to_string())
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    if q.throttled > 0 || q.max_requests_in_window > QUOTA || failed > 0 {
        println!("MISSED: the server throttled, counted more than the quota, or a call failed");
        std::process::exit(1);
    }
    println!("OK: no throttle, never over the quota, every call answered");
    Ok(())
}

// Long because it is one run of the example, end to end.
fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let region = env("FLEET_LOAD_REGION");
        let ca = std::fs::read_to_string(env("FLEET_LOAD_CA"))?;
        let limit = ModelLimit::per_window(WINDOW)
            .requests(QUOTA)
            .mode(LimitMode::Reject);
        let factory = LlmFactory::builder()
            .regions([region.as_str()])
            .region_endpoint_url(&region, env("FLEET_LOAD_BEDROCK"))
            .sts_endpoint_url(env("FLEET_LOAD_STS"))
            .credentials_provider(aws_credential_types::Credentials::new(
                TEST_ACCESS_KEY_ID,
                TEST_SECRET_ACCESS_KEY,
                None,
                None,
                "fleet-load",
            ))
            .ca_certificate_pem(ca)
            .model_limit(MODEL, limit)
            .fleet(FleetConfig::new(env("FLEET_LOAD_REDIS"), PREFIX))
            .build()
            .await?;
        let model = factory.model(MODEL).with_fallbacks([FALLBACK]);
        // 150% of the quota over all the fleet's callers.
        let rate = 1.5 * QUOTA as f64 / WINDOW.as_secs_f64();
        let period = Duration::from_secs_f64((PROCESSES * CALLERS) as f64 / rate);
        let end = tokio::time::Instant::now() + RUN;
        let callers: Vec<_> = (0..CALLERS)
            .map(|c| {
                let m = model.clone();
                tokio::spawn(async move {
                    // Spread the callers over one period.
                    tokio::time::sleep(period.mul_f64(c as f64 / CALLERS as f64)).await;
                    let mut tick = tokio::time::interval(period);
                    let mut counts = [0u64; 4];
                    while tokio::time::Instant::now() < end {
                        tick.tick().await;
                        match m
                            .converse()
                            .user(format!("caller {c}"))
                            .max_tokens(16)
                            .send()
                            .await
                        {
                            Ok(r) if r.model_id() == MODEL => counts[0] += 1,
                            Ok(_) => counts[1] += 1,
                            Err(e) if e.is_throttled() => counts[2] += 1,
                            Err(e) => {
                                eprintln!("call failed: {e}");
                                counts[3] += 1;
                            }
                        }
                    }
                    counts
                })
            })
            .collect();
        // The longest time the fleet's Redis was down, sampled every 50 ms.
        let f = factory.clone();
        let watch = tokio::spawn(async move {
            let (mut longest, mut since) = (Duration::ZERO, None::<Instant>);
            while tokio::time::Instant::now() < end {
                let up = f.stats().fleet.is_some_and(|s| s.up);
                match (up, since) {
                    (false, None) => since = Some(Instant::now()),
                    (true, Some(s)) => {
                        longest = longest.max(s.elapsed());
                        since = None;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            longest.max(since.map_or(Duration::ZERO, |s| s.elapsed()))
        });
        let mut totals = [0u64; 4];
        for c in callers {
            for (t, n) in totals.iter_mut().zip(c.await?) {
                *t += n;
            }
        }
        let down = watch.await?;
        println!(
            "RESULT {} {} {} {} {:.1?}",
            totals[0], totals[1], totals[2], totals[3], down
        );
        Ok(())
    })
}

/// A Redis Cluster of six `redis-server` children: three shards with a replica each.
struct Cluster {
    dir: PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
}

impl Cluster {
    fn start(dir: &std::path::Path) -> Result<Cluster, Box<dyn std::error::Error>> {
        let mut cluster = Cluster {
            dir: dir.join("cluster"),
            nodes: Vec::new(),
        };
        std::fs::create_dir_all(&cluster.dir)?;
        for _ in 0..6 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e} (apt-get install redis-server)"))?;
            cluster.nodes.push((port, Some(child)));
        }
        for (port, _) in &cluster.nodes {
            wait(|| cli(*port, &["PING"]).is_ok_and(|r| r == "PONG"), "PING")?;
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for (port, _) in &cluster.nodes {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            )
            .into());
        }
        wait(
            || {
                let mut synced = 0;
                for (port, _) in &cluster.nodes {
                    if !cli(*port, &["CLUSTER", "INFO"])
                        .is_ok_and(|i| i.contains("cluster_state:ok"))
                    {
                        return false;
                    }
                    if cli(*port, &["INFO", "replication"]).is_ok_and(|i| {
                        i.contains("role:slave") && i.contains("master_link_status:up")
                    }) {
                        synced += 1;
                    }
                }
                synced == 3
            },
            "the cluster to be ok with its replicas in sync",
        )?;
        Ok(cluster)
    }

    /// Returns the (primary, replica) ports of the shard holding `key`.
    fn shard_of(&self, key: &str) -> Result<(u16, u16), Box<dyn std::error::Error>> {
        let asker = self
            .nodes
            .iter()
            .find(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .ok_or("no live node")?;
        let slot: u16 = cli(asker, &["CLUSTER", "KEYSLOT", key])?.trim().parse()?;
        let nodes = cli(asker, &["CLUSTER", "NODES"])?;
        let port = |a: &str| a.split('@').next()?.rsplit(':').next()?.parse::<u16>().ok();
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let primary = lines
            .iter()
            .find(|f| {
                f.len() > 8
                    && f[2].contains("master")
                    && !f[2].contains("fail")
                    && f[8..].iter().any(|r| {
                        let mut ends = r.splitn(2, '-').map(|s| s.parse::<u16>().ok());
                        let lo = ends.next().flatten();
                        let hi = ends.next().flatten().or(lo);
                        matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
                    })
            })
            .ok_or("no primary for the slot")?;
        let replica = lines
            .iter()
            .find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == primary[0])
            .and_then(|f| port(f[1]))
            .unwrap_or(0);
        Ok((port(primary[1]).ok_or("a port")?, replica))
    }

    fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.nodes {
            if *p == port
                && let Some(mut c) = child.take()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs `redis-cli -p port args...` and returns its output.
fn cli(port: u16, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Polls `ok` every 100 ms for up to 60 s.
fn wait(mut ok: impl FnMut() -> bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..600 {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("waited 60 s for {what}").into())
}
