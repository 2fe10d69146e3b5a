//! Statistics agree with what the local server saw.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{ErrorKind, stats::HttpProtocol};
use bedrock_pool_local::{Fault, FaultRule, Latency, Operation, Protocol, ServiceError};
use common::{Ask, MODEL, builder_for, eventually, factory_for, server};
use std::time::Duration;

#[tokio::test]
async fn connections_opened_equal_connections_accepted() {
    let server = server(Protocol::HttpsH1Only).await;
    server.set_latency(Latency::fixed(Duration::from_millis(50)));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let calls = (0..8).map(|_| {
        let m = model.clone();
        tokio::spawn(async move { m.converse().user("hi").send().await })
    });
    for c in futures_util::future::join_all(calls).await {
        c.unwrap().unwrap();
    }
    factory
        .sts_client()
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    let pool = factory.stats().pool;
    assert_eq!(pool.bedrock.opened, server.bedrock_connections().accepted);
    assert_eq!(pool.sts.opened, server.sts_connections().accepted);
    assert_eq!(pool.bedrock.protocol, Some(HttpProtocol::Http1));
    assert_eq!(pool.bedrock.capacity, 50);
    assert!(pool.bedrock.establishment_mean > Duration::ZERO);
    assert!(pool.bedrock.establishment_max >= pool.bedrock.establishment_mean);
    assert_eq!(
        pool.bedrock.open, pool.bedrock.opened as usize,
        "none closed yet"
    );
    let regions = factory.stats().regions;
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].pool.opened, pool.bedrock.opened);
}

#[tokio::test]
async fn h2_is_reported_and_shares_one_connection() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    // Until a first connection has negotiated h2 (ALPN), a cold burst may open several.
    model.converse().user("first").send().await.unwrap();
    let calls = (0..10).map(|_| {
        let m = model.clone();
        tokio::spawn(async move { m.converse().user("hi").send().await })
    });
    for c in futures_util::future::join_all(calls).await {
        c.unwrap().unwrap();
    }
    let pool = factory.stats().pool.bedrock;
    assert_eq!(pool.protocol, Some(HttpProtocol::Http2));
    assert_eq!(pool.opened, 1);
    assert_eq!(server.bedrock_connections().accepted, 1);
}

#[tokio::test]
async fn retries_equal_the_extra_attempts_the_server_received() {
    let server = server(Protocol::Https).await;
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable(
            "later".into(),
        )))
        .times(2),
    );
    let factory = factory_for(&server).await;
    let reply = factory.ask("hi").await.unwrap();
    assert_eq!(reply.attempts(), 3);
    let received = server.requests_for(Operation::ConverseStream).len() as u64;
    let stats = factory.stats().requests;
    assert_eq!(stats.retries, received - 1);
    assert_eq!((stats.requests, stats.successes), (1, 1));
    let per_model = factory.model_stats(MODEL).unwrap().requests;
    assert_eq!(per_model.retries, 2);
}

#[tokio::test]
async fn percentiles_of_a_known_latency_mix_fall_near_the_truth() {
    let server = server(Protocol::Https).await;
    server.set_latency(Latency::from_fn(|r| {
        if r.body.to_string().contains("slow") {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(5)
        }
    }));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    for i in 0..100 {
        let text = if i % 10 == 9 { "slow" } else { "fast" };
        model.converse().user(text).send().await.unwrap();
    }
    let l = factory.stats().requests.latency;
    assert_eq!(l.count, 100);
    assert!(
        l.p50 >= Duration::from_millis(4) && l.p50 < Duration::from_millis(150),
        "{l:?}"
    );
    assert!(
        l.p99 >= Duration::from_millis(230) && l.p99 < Duration::from_secs(2),
        "{l:?}"
    );
    assert!(l.max >= l.p99 && l.p90 <= l.p99 && l.p50 <= l.p90, "{l:?}");
}

#[tokio::test]
async fn in_flight_returns_to_zero_after_cancelled_calls() {
    let server = server(Protocol::HttpsH1Only).await;
    server.set_latency(Latency::fixed(Duration::from_millis(500)));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let m = model.clone();
            tokio::spawn(async move { m.converse().user("hi").send().await })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || factory
            .stats()
            .requests
            .in_flight
            == 10)
        .await
    );
    for t in &tasks {
        t.abort();
    }
    assert!(
        eventually(Duration::from_secs(5), || factory
            .stats()
            .requests
            .in_flight
            == 0)
        .await,
        "{:?}",
        factory.stats().requests
    );
    let s = factory.stats().requests;
    assert_eq!((s.cancelled, s.successes, s.failures.total()), (10, 0, 0));
    // The pool recovers: the next call works.
    server.set_latency(Latency::none());
    model.converse().user("after").send().await.unwrap();
}

#[tokio::test]
async fn a_full_pool_shows_utilization_one_waiting_calls_and_a_warning() {
    let (logs, _guard) = common::capture_logs(tracing::Level::WARN);

    let server = server(Protocol::HttpsH1Only).await;
    server.set_latency(Latency::fixed(Duration::from_millis(600)));
    let factory = builder_for(&server)
        .pool_max_connections_per_host(4)
        .build()
        .await
        .unwrap();
    let model = factory.model(MODEL);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let m = model.clone();
            tokio::spawn(async move { m.converse().user("hi").send().await })
        })
        .collect();
    let mut seen = None;
    let full = eventually(Duration::from_secs(5), || {
        let p = factory.stats().pool.bedrock;
        seen = Some(p);
        p.utilization >= 1.0 && p.waiting > 0
    })
    .await;
    assert!(full, "{seen:?}");
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(server.bedrock_connections().max_open <= 4);
    let text = logs.text();
    assert_eq!(
        text.matches("connection pool exhausted").count(),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn counters_stay_exact_under_concurrency() {
    let server = server(Protocol::Https).await;
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Validation("no".into()))).model("bad.model-v1"),
    );
    let factory = factory_for(&server).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let f = factory.clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    let id = if (i + j) % 5 == 0 {
                        "bad.model-v1"
                    } else {
                        MODEL
                    };
                    let _ = f.model(id).converse().user("hi").send().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = factory.stats().requests;
    assert_eq!(s.requests, 200);
    assert_eq!(s.successes, 160);
    assert_eq!(s.failures.get(ErrorKind::Validation), 40);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.latency.count, 200);
    let good = factory.model_stats(MODEL).unwrap().requests;
    let bad = factory.model_stats("bad.model-v1").unwrap().requests;
    assert_eq!(good.requests + bad.requests, s.requests);
    let c = factory.stats().cache;
    assert_eq!(c.hits + c.misses, 200);
    assert_eq!(c.cached, 2);
    assert_eq!(factory.stats().models.len(), 2);
}

#[tokio::test]
async fn wakeups_count_calls_after_an_idle_threshold() {
    let server = server(Protocol::Https).await;
    let factory = builder_for(&server)
        .wakeup_threshold(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let model = factory.model(MODEL);
    model.converse().user("first").send().await.unwrap();
    model.converse().user("second").send().await.unwrap();
    assert_eq!(factory.stats().requests.wakeups, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    model.converse().user("after idle").send().await.unwrap();
    let s = factory.stats().requests;
    assert_eq!(s.wakeups, 1);
    assert_eq!(s.wakeup_latency.count, 1);
    assert!(factory.idle_for().unwrap() < Duration::from_millis(300));
}

/// Distinct model ids cannot grow the factory's tables without bound: invalid ids allocate
/// nothing, valid ones beyond the cap share one `other` entry, the cache stops growing at the
/// cap, and `invalidate` prunes.
#[tokio::test]
async fn distinct_model_ids_do_not_grow_the_tables() {
    const CAP: usize = 256;
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    for i in 0..10_000 {
        let bad = factory.model(format!("bad id {i}"));
        assert!(bad.id().contains(' '));
        let _good = factory.model(format!("vendor.model-{i}"));
    }
    assert!(
        factory.stats().cache.cached <= CAP,
        "{:?}",
        factory.stats().cache
    );
    assert!(factory.stats().models.len() <= CAP + 1);
    assert_eq!(factory.model_stats("bad id 7"), None);
    // Calls with ids past the cap are counted under `other`.
    factory
        .model("vendor.model-9999")
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    let e = factory
        .model("bad id 1")
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input());
    let snapshot = factory.stats();
    let by_model = &snapshot.models;
    assert!(by_model.len() <= CAP + 1, "{}", by_model.len());
    assert_eq!(by_model.last().map(|m| m.model_id.as_str()), Some("other"));
    let other = snapshot.model("other").expect("an `other` entry");
    assert_eq!(other.requests.successes, 1);
    assert_eq!(factory.model_stats("other").as_ref(), Some(other));
    assert_eq!(factory.stats().requests.requests, 2);
    // A tracked id is pruned by invalidate; its slot is free again.
    assert!(factory.model_stats("vendor.model-0").is_some());
    factory.invalidate("vendor.model-0");
    assert_eq!(factory.model_stats("vendor.model-0"), None);
    assert!(factory.stats().model("vendor.model-0").is_none());
    factory
        .model("vendor.model-new")
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(
        factory
            .model_stats("vendor.model-new")
            .map(|s| s.requests.successes),
        Some(1)
    );
}

/// The snapshot of a factory that made real calls serialises to JSON with the documented
/// names: durations as numbers of milliseconds in `*_ms` keys, enums as their names, never
/// serde's `{secs, nanos}`.
#[cfg(feature = "serde")]
#[tokio::test]
async fn the_snapshot_serialises_to_json_with_ms_durations() {
    use bedrock_pool::limit::{LimitMode, ModelLimit};

    let server = server(Protocol::Https).await;
    server.set_latency(Latency::fixed(Duration::from_millis(20)));
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Validation("no".into()))).model("bad.model-v1"),
    );
    let limit = ModelLimit::per_window(Duration::from_secs(60))
        .requests(100)
        .mode(LimitMode::Reject);
    let factory = builder_for(&server)
        .model_limit(MODEL, limit)
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        factory
            .model(MODEL)
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap();
    }
    let e = factory
        .model("bad.model-v1")
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation, "{e}");

    let stats = factory.stats();
    let json = serde_json::to_string(&stats).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let p50 = &v["requests"]["latency"]["p50_ms"];
    assert!(p50.as_f64().is_some_and(|ms| ms > 10.0), "{p50} in {json}");
    let expected = stats.requests.latency.p50.as_secs_f64() * 1e3;
    assert!((p50.as_f64().unwrap() - expected).abs() < 1e-6, "{json}");
    assert_eq!(v["requests"]["requests"], 4, "{json}");
    assert_eq!(v["requests"]["failures"]["validation"], 1, "{json}");
    assert_eq!(v["requests"]["failures"]["throttled"], 0, "{json}");
    let models: Vec<_> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        ["anthropic.claude-3-haiku-20240307-v1:0", "bad.model-v1"]
    );
    assert_eq!(models[0], MODEL);
    assert_eq!(v["models"][0]["requests"]["successes"], 3, "{json}");
    assert_eq!(v["regions"][0]["region"], factory.regions()[0].as_str());
    assert_eq!(v["regions"][0]["pool"]["protocol"], "h2", "{json}");
    assert!(
        v["pool"]["bedrock"]["establishment_mean_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(v["pool"]["bedrock"]["utilization"].is_number(), "{json}");
    assert_eq!(v["cache"]["misses"], 2, "{json}");
    assert_eq!(v["breakers"][0]["state"], "closed", "{json}");
    assert!(v["breakers"][0]["remaining_ms"].is_null(), "{json}");
    assert_eq!(v["limits"][0]["model_id"], MODEL, "{json}");
    assert_eq!(v["limits"][0]["admitted"], 3, "{json}");
    assert!(v["limits"][0]["queue_wait"]["max_ms"].is_number(), "{json}");
    assert!(v.get("fleet").is_none(), "no fleet, no key: {json}");
    // Nowhere a `Duration` in serde's default form.
    assert!(
        !json.contains("\"secs\"") && !json.contains("\"nanos\""),
        "{json}"
    );
}
