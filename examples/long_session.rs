//! A long voice session (InvokeModelWithBidirectionalStream) on the factory's shared HTTP/2
//! connection, beside a steady flow of other calls: what the session does to the connection
//! and to them.
//!
//! Against the embedded local server's echo model: the session speaks real-time audio (16 kHz
//! 16-bit mono, 3,200 bytes every 100 ms) in 5-second turns, each echoed back, and once falls
//! silent for longer than its stall timeout (a liveness probe must keep it alive). Meanwhile
//! other Converse calls run at a fixed rate; their latency is compared with a baseline run of
//! the same calls before the session opened.
//!
//! ```text
//! cargo run --example long_session                           # 8 minutes, as Nova Sonic allows
//! cargo run --example long_session -- --seconds 20 --stall 3  # a short smoke run
//! ```

use bedrock_pool::LlmFactory;
use bedrock_pool::session::{SessionInput, SessionOutput};
use bedrock_pool_local::LocalServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const SONIC: &str = "amazon.nova-sonic-v1:0";
const OTHER: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const FRAME: usize = 3_200;
const FRAME_EVERY: Duration = Duration::from_millis(100);

struct Args {
    seconds: u64,
    stall: u64,
    rate: u64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 480,
        stall: 60,
        rate: 5,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--seconds", Some(v)) => a.seconds = v,
            ("--stall", Some(v)) => a.stall = v,
            ("--rate", Some(v)) => a.rate = v,
            _ => {
                eprintln!("usage: long_session [--seconds N] [--stall S] [--rate CALLS_PER_S]");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Runs Converse calls at `rate` per second for `length`; returns their latencies.
async fn calls(factory: LlmFactory, rate: u64, length: Duration) -> Vec<Duration> {
    let model = factory.model(OTHER);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate.max(1)));
    let end = Instant::now() + length;
    let mut running = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let model = model.clone();
        running.push(tokio::spawn(async move {
            let t = Instant::now();
            model
                .converse()
                .user("a call beside the session")
                .send()
                .await?;
            Ok::<_, bedrock_pool::Error>(t.elapsed())
        }));
    }
    let mut out = Vec::new();
    for r in running {
        out.push(r.await.expect("call task").expect("other calls succeed"));
    }
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let server = LocalServer::start().await?;
    let factory = LlmFactory::builder()
        .local_endpoints(
            server.region(),
            server.bedrock_url(),
            server.sts_url(),
            server.ca_pem(),
            server.credentials(),
        )
        .build()
        .await?;
    let length = Duration::from_secs(a.seconds);
    let baseline_length = Duration::from_secs((a.seconds / 8).clamp(5, 60));
    println!("baseline: {} calls/s for {baseline_length:?}", a.rate);
    let baseline = calls(factory.clone(), a.rate, baseline_length).await;

    let mut session = factory
        .model(SONIC)
        .session()
        .event(SessionInput::session_start(1024, 0.9, 0.7))
        .event(SessionInput::prompt_start("p", "matthew"))
        .stall_timeout(Duration::from_secs(a.stall))
        .open()
        .await?;
    println!("session open: {length:?}, stall timeout {}s", a.stall);
    let opened = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let speaker = {
        let sender = session.sender();
        let sent = sent.clone();
        let quiet = Duration::from_secs(a.stall + a.stall / 2 + 1);
        tokio::spawn(async move {
            let frame: Vec<u8> = (0..FRAME).map(|i| (i % 251) as u8).collect();
            let mut turn = 0;
            let mut was_quiet = false;
            while opened.elapsed() + Duration::from_secs(7) < length {
                if !was_quiet && opened.elapsed() >= length / 2 {
                    // One silence longer than the stall timeout, in the middle.
                    was_quiet = true;
                    tokio::time::sleep(quiet).await;
                    continue;
                }
                turn += 1;
                let name = format!("audio-{turn}");
                sender.send(SessionInput::audio_start("p", &name)).await?;
                let mut tick = tokio::time::interval(FRAME_EVERY);
                for _ in 0..50 {
                    tick.tick().await;
                    sender.send(SessionInput::audio("p", &name, &frame)).await?;
                    sent.fetch_add(FRAME as u64, Relaxed);
                }
                sender.send(SessionInput::content_end("p", &name)).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            sender.send(SessionInput::prompt_end("p")).await?;
            sender.send(SessionInput::session_end()).await?;
            Ok::<_, bedrock_pool::Error>(turn)
        })
    };
    let beside = tokio::spawn(calls(factory.clone(), a.rate, length));

    let (mut events, mut received, mut turns) = (0u64, 0u64, 0u64);
    while let Some(event) = session.next().await {
        events += 1;
        match event? {
            SessionOutput::Audio { pcm, .. } => received += pcm.len() as u64,
            SessionOutput::Usage(_) => turns += 1,
            _ => {}
        }
    }
    let lasted = opened.elapsed();
    let spoken = speaker.await??;
    let during = beside.await?;
    let stats = factory.stats();
    let pool = &stats.pool.bedrock;

    println!("session: {lasted:.1?}, {spoken} turns spoken, {turns} answered, {events} events");
    println!(
        "audio: {} bytes sent, {} bytes echoed back ({})",
        sent.load(Relaxed),
        received,
        if received == sent.load(Relaxed) {
            "whole"
        } else {
            "NOT whole"
        }
    );
    println!(
        "liveness probes: {} ({} unverified); sessions failed {}",
        stats.sessions.liveness_probes, stats.sessions.liveness_unverified, stats.sessions.failed
    );
    println!(
        "connection: {} opened, {} retired, protocol {:?}, at most {} requests in flight on it",
        pool.opened, pool.retired, pool.protocol, pool.max_in_flight_per_connection
    );
    for (name, v) in [("baseline", &baseline), ("beside the session", &during)] {
        println!(
            "other calls {name}: {} calls, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            v[v.len() - 1]
        );
    }
    println!(
        "ratio beside / baseline: p50 {:.2}, p99 {:.2}",
        pct(&during, 0.5).as_secs_f64() / pct(&baseline, 0.5).as_secs_f64(),
        pct(&during, 0.99).as_secs_f64() / pct(&baseline, 0.99).as_secs_f64()
    );
    let ok = received == sent.load(Relaxed)
        && stats.sessions.failed == 0
        && stats.sessions.liveness_probes >= 1
        && pool.opened == 1
        && pool.retired == 0;
    if !ok {
        eprintln!("long_session: the session or the connection did not hold");
        std::process::exit(1);
    }
    Ok(())
}
