//! A short load run, and cancellation at random points under load: nothing leaks.

mod common;

use bedrock_pool::local::{Latency, LocalServer, Protocol};
use common::{MODEL, builder_for, eventually};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_share_at_most_fifty_connections_without_errors() {
    let server = LocalServer::builder()
        .protocol(Protocol::HttpsH1Only)
        .record_limit(10)
        .start()
        .await
        .unwrap();
    let factory = builder_for(&server).build().await.unwrap();
    let model = factory.model(MODEL);
    let workers: Vec<_> = (0..50)
        .map(|c| {
            let m = model.clone();
            tokio::spawn(async move {
                let mut errors = 0;
                for i in 0..40 {
                    if m.converse().user(format!("{c}-{i}")).send().await.is_err() {
                        errors += 1;
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for w in workers {
        errors += w.await.unwrap();
    }
    assert_eq!(errors, 0);
    let s = factory.request_stats();
    assert_eq!((s.requests, s.successes, s.in_flight), (2000, 2000, 0));
    let conns = server.bedrock_connections();
    assert!(conns.accepted <= 50 && conns.max_open <= 50, "{conns:?}");
    assert_eq!(factory.pool_stats().bedrock.opened, conns.accepted);
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_dropped_at_random_points_leak_nothing() {
    let server = LocalServer::builder()
        .protocol(Protocol::HttpsH1Only)
        .start()
        .await
        .unwrap();
    // 0-40 ms of model time, so drops land before, during and after the answer.
    server.set_latency(Latency::from_fn(|r| {
        let n = r.body.to_string().len() as u64;
        Duration::from_millis(n * 7 % 41)
    }));
    let factory = builder_for(&server).build().await.unwrap();
    let model = factory.model(MODEL);
    let mut rng = Lcg(42);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let m = model.clone();
        let stream = i % 3 == 0;
        let deadline = Duration::from_millis(rng.next(50));
        let read_events = rng.next(8) as usize;
        tasks.push(tokio::spawn(async move {
            let work = async {
                if stream {
                    let mut s = m
                        .converse_stream()
                        .user(format!("stream {i} words here"))
                        .send()
                        .await?;
                    for _ in 0..read_events {
                        if s.next().await.is_none() {
                            break;
                        }
                    }
                    Ok::<_, bedrock_pool::Error>(())
                } else {
                    m.converse()
                        .user(format!("unary {i}"))
                        .send()
                        .await
                        .map(|_| ())
                }
            };
            // Dropping the future at the deadline cancels the call wherever it is.
            let _ = tokio::time::timeout(deadline, work).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || factory.request_stats().in_flight
            == 0)
        .await,
        "{:?}",
        factory.request_stats()
    );
    let s = factory.request_stats();
    assert_eq!(s.requests, 300);
    assert_eq!(s.successes + s.failures.total() + s.cancelled, 300, "{s:?}");
    assert!(s.cancelled > 0, "some calls were cancelled: {s:?}");
    assert!(factory.pool_stats().bedrock.open <= 50);
    // Cancelled exchanges are discarded, never reused half-read: the next calls all work.
    for _ in 0..20 {
        model
            .converse()
            .user("after the storm")
            .send()
            .await
            .unwrap();
    }
    let conns = server.bedrock_connections();
    assert!(conns.max_open <= 50, "{conns:?}");
}
