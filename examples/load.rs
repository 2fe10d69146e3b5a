//! Load: concurrent callers against the local server; prints errors, connections opened,
//! resident memory before and after (both after a warm-up at full concurrency, so the figure
//! shows growth, not the pool filling up), and file descriptors and tasks once the factory
//! and server are dropped, against the process's baseline.
//!
//! Run: `cargo run --release --example load` (defaults: 50 callers, 20 000 requests, HTTP/1.1);
//! `-- --callers N --requests N --h2` to change them. Linux only for the memory and fd figures.

use bedrock_pool_local::{LocalServer, Protocol};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (callers, requests) = (arg("--callers", 50), arg("--requests", 20_000));
    let h2 = std::env::args().any(|a| a == "--h2");
    let protocol = if h2 {
        Protocol::Https
    } else {
        Protocol::HttpsH1Only
    };
    let fds_base = open_fds();
    let tasks_base = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let server = LocalServer::builder()
        .protocol(protocol)
        .record_limit(100)
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
        .build()
        .await?;
    let model = factory.model("anthropic.claude-3-haiku-20240307-v1:0");
    // Warm up allocator and pool at full concurrency so "before" is a steady state.
    run(&model, callers, (2_000 / callers).max(1)).await?;
    let rss0 = rss_kib();

    let start = Instant::now();
    let per_caller = requests / callers;
    let errors = run(&model, callers, per_caller).await?;
    let took = start.elapsed();
    let sent = (per_caller * callers) as f64;
    let stats = factory.stats().requests;
    let pool = factory.stats().pool.bedrock;
    let rss1 = rss_kib();
    let conns = server.bedrock_connections();
    drop((model, factory, server));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let tasks1 = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let fds1 = open_fds();

    let proto = if h2 { "h2" } else { "http/1.1" };
    let rate = sent / took.as_secs_f64();
    let l = stats.latency;
    println!("protocol:            {proto}");
    println!("requests:            {sent} by {callers} callers in {took:.2?} ({rate:.0} req/s)");
    println!("errors:              {errors}");
    println!(
        "latency:             p50 {:?}, p99 {:?}, max {:?}",
        l.p50, l.p99, l.max
    );
    println!(
        "connections opened:  {} (server accepted {}, max open {})",
        pool.opened, conns.accepted, conns.max_open
    );
    let grew = rss1 as i64 - rss0 as i64;
    println!("resident memory:     {rss0} KiB before, {rss1} KiB after ({grew:+} KiB)");
    println!("open fds:            {fds_base} at start, {fds1} after dropping factory and server");
    println!(
        "tasks alive:         {tasks_base} at start, {tasks1} after dropping factory and server"
    );
    println!("in flight at end:    {}", stats.in_flight);
    Ok(())
}

/// Runs `callers` concurrent callers of `per_caller` sequential requests; returns the errors.
async fn run(
    model: &bedrock_pool::Model,
    callers: usize,
    per_caller: usize,
) -> Result<u64, tokio::task::JoinError> {
    let workers: Vec<_> = (0..callers)
        .map(|c| {
            let model = model.clone();
            tokio::spawn(async move {
                let mut errors = 0u64;
                for i in 0..per_caller {
                    let text = format!("caller {c} request {i}");
                    if model.converse().user(text).send().await.is_err() {
                        errors += 1;
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for w in workers {
        errors += w.await?;
    }
    Ok(errors)
}
