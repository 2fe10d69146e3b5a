//! LlmFactory against the local server: one shared pool, tuned settings shown by behaviour,
//! the idle wake-up, bad input, the handle cache, and lifetimes.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{ErrorKind, LlmFactory, Model, error::TimeoutKind, stats::HttpProtocol};
use bedrock_pool_local::{Fault, FaultRule, IdleFault, Latency, Operation, Protocol, ServiceError};
use common::{Ask, MODEL, PROTOCOLS, builder_for, eventually, factory_for, server};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Returns the protocol the pool must report for `protocol`.
fn negotiated(protocol: Protocol) -> HttpProtocol {
    match protocol {
        Protocol::HttpsH1Only => HttpProtocol::Http1,
        _ => HttpProtocol::Http2,
    }
}

#[tokio::test]
async fn converse_returns_the_reply_and_its_figures() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let reply = factory
        .model(MODEL)
        .converse()
        .system("be brief")
        .user("hello there world")
        .max_tokens(2)
        .send()
        .await
        .expect("converse succeeds");
    assert_eq!(reply.text(), "hello there");
    assert_eq!(reply.stop_reason().as_str(), "max_tokens");
    let usage = reply.usage().expect("usage");
    assert_eq!(usage.output_tokens(), 2);
    assert!(reply.service_latency().is_some());
    assert_eq!(reply.attempts(), 1);
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].model_id.as_deref(), Some(MODEL));
    assert_eq!(seen[0].body["system"][0]["text"], "be brief");
}

both_protocols! {
    async fn every_handle_and_sts_share_one_pool(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        for m in 0..10 {
            let model = factory.model(format!("vendor.model-{m}"));
            for i in 0..20 {
                model
                    .converse()
                    .user(format!("request {i}"))
                    .send()
                    .await
                    .expect("converse succeeds");
            }
        }
        factory
            .sts_client()
            .get_caller_identity()
            .send()
            .await
            .expect("sts answers");
        assert_eq!(server.requests_for(Operation::ConverseStream).len(), 200);
        assert_eq!(
            server.bedrock_connections().accepted,
            1,
            "one Bedrock connection for 200 calls"
        );
        assert_eq!(server.sts_connections().accepted, 1);
        let pool = factory.stats().pool;
        assert_eq!(pool.bedrock.opened, 1);
        assert_eq!(pool.sts.opened, 1);
        assert_eq!(pool.bedrock.protocol, Some(negotiated(protocol)));
        assert_eq!(pool.sts.protocol, Some(negotiated(protocol)));
    }
}

#[tokio::test]
async fn a_slow_answer_fails_as_a_read_timeout() {
    let server = server(Protocol::Https).await;
    server.push_fault(FaultRule::new(Fault::Delay(Duration::from_secs(3))));
    let factory = builder_for(&server)
        .read_timeout(Duration::from_millis(300))
        .retry_max_attempts(1)
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let e = factory.ask("hi").await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Read), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "waited the server's delay"
    );
}

#[tokio::test]
async fn a_listener_that_never_accepts_fails_as_a_connect_timeout() {
    // The kernel completes the TCP handshake into the backlog; TLS never gets an answer.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let server = server(Protocol::Https).await;
    let factory = builder_for(&server)
        .bedrock_endpoint_url(url)
        .connect_timeout(Duration::from_millis(300))
        .read_timeout(Duration::from_secs(20))
        .retry_max_attempts(1)
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let e = factory.ask("hi").await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Connect), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn a_503_is_attempted_exactly_three_times() {
    let server = server(Protocol::Https).await;
    server.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("down".into()),
    )));
    let factory = factory_for(&server).await;
    let e = factory.ask("hi").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable, "{e:?}");
    assert_eq!(e.status(), Some(503));
    let attempts: Vec<_> = server
        .requests_for(Operation::ConverseStream)
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, vec![Some(1), Some(2), Some(3)]);
    assert_eq!(factory.stats().requests.retries, 2);
}

both_protocols! {
    /// Over HTTP/1.1 sixty concurrent calls stay within the cap of fifty connections; over h2 the
    /// cap counts connections, not streams, and the sixty calls share ONE connection.
    async fn sixty_concurrent_calls_never_open_more_than_the_cap(protocol: Protocol) {
        let server = server(protocol).await;
        server.set_latency(Latency::fixed(Duration::from_millis(300)));
        let factory = factory_for(&server).await;
        let model = factory.model(MODEL);
        let calls = (0..60).map(|i| {
            let model = model.clone();
            tokio::spawn(async move { model.converse().user(format!("call {i}")).send().await })
        });
        for c in futures_util::future::join_all(calls).await {
            c.unwrap().expect("every call succeeds");
        }
        let conns = server.bedrock_connections();
        assert!(conns.max_open <= 50, "{conns:?}");
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        let carried: BTreeSet<u64> = server
            .requests_for(Operation::ConverseStream)
            .iter()
            .map(|r| r.connection_id)
            .collect();
        if protocol == Protocol::HttpsH1Only {
            assert!(
                conns.max_open >= 40,
                "the calls did run concurrently: {conns:?}"
            );
            assert!(carried.len() >= 40 && carried.len() <= 50, "{carried:?}");
        } else {
            // A cold burst may race handshakes (bounded by the cap), but one connection is kept.
            assert_eq!(carried.len(), 1, "{carried:?}");
            assert_eq!((pool.opened, pool.open), (1, 1), "{pool:?}");
            assert!(
                pool.max_in_flight_per_connection >= 40,
                "the calls did run concurrently: {pool:?}"
            );
        }
    }
}

both_protocols! {
    async fn the_client_closes_idle_connections_after_the_idle_timeout(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = builder_for(&server)
            .pool_idle_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap();
        factory.ask("hi").await
            .unwrap();
        assert_eq!(server.bedrock_connections().open, 1);
        assert!(
            eventually(Duration::from_secs(5), || server.bedrock_connections().open
                == 0)
            .await,
            "the idle connection was not closed: {:?}",
            server.bedrock_connections()
        );
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.closed_idle, 1, "{pool:?}");
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
    }
}

both_protocols! {
    /// The headline fix: a middlebox that silently drops idle flows no longer costs a read timeout,
    /// because the pool evicts idle connections before the middlebox kills them.
    async fn the_first_call_after_a_long_idle_does_not_wait_for_the_read_timeout(protocol: Protocol) {
        let server = server(protocol).await;
        server.set_idle_fault(Some(IdleFault::SilentlyDead {
            after: Duration::from_millis(800),
        }));
        let read_timeout = Duration::from_secs(4);
        let factory = builder_for(&server)
            .pool_idle_timeout(Duration::from_millis(400))
            .read_timeout(read_timeout)
            .build()
            .await
            .unwrap();
        let model = factory.model(MODEL);
        model.converse().user("warm").send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let start = Instant::now();
        let reply = model.converse().user("after idle").send().await.unwrap();
        let took = start.elapsed();
        assert_eq!(reply.text(), "after idle");
        assert!(took < read_timeout / 2, "the wake-up waited {took:?}");
        assert_eq!(reply.attempts(), 1, "no retry was needed");
        assert_eq!(
            server.bedrock_connections().accepted,
            2,
            "a fresh connection served it"
        );
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        assert_eq!((pool.closed_idle, pool.retired), (1, 0), "{pool:?}");
    }
}

#[tokio::test]
async fn the_same_id_gives_the_same_cached_handle() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let a = factory.model(MODEL);
    let b = factory.model(MODEL);
    assert!(a.same_handle(&b));
    assert!(!a.same_handle(&factory.model("other.model-v1")));
    let c = factory.stats().cache;
    assert_eq!((c.cached, c.hits, c.misses), (2, 1, 2));
    factory.invalidate(MODEL);
    assert!(!a.same_handle(&factory.model(MODEL)));
    // A handle with defaults is a new, uncached handle on the same id.
    let cold = a.with_temperature(0.0).with_max_tokens(1);
    assert_eq!(cold.id(), MODEL);
    let reply = cold.converse().user("one two three").send().await.unwrap();
    assert_eq!(reply.text(), "one");
    let body = &server.requests()[0].body;
    assert_eq!(body["inferenceConfig"]["maxTokens"], 1);
    assert_eq!(body["inferenceConfig"]["temperature"], 0.0);
}

both_protocols! {
    async fn clearing_the_cache_mid_flight_breaks_nothing(protocol: Protocol) {
        let server = server(protocol).await;
        server.set_latency(Latency::fixed(Duration::from_millis(300)));
        let factory = factory_for(&server).await;
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let model = factory.model(format!("vendor.model-{i}"));
                tokio::spawn(async move { model.converse().user("hi").send().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        factory.invalidate_all();
        assert_eq!(factory.stats().cache.cached, 0);
        for c in calls {
            c.await
                .unwrap()
                .expect("in-flight call survives invalidate_all");
        }
        factory.ask("after").await
            .unwrap();
        assert!(server.bedrock_connections().accepted <= 10);
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        if protocol == Protocol::Https {
            // The ten calls shared the one h2 connection.
            assert_eq!(pool.opened, 1, "{pool:?}");
        }
    }
}

#[test]
fn factory_and_model_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<LlmFactory>();
    check::<Model>();
}

both_protocols! {
    async fn dropping_the_last_factory_closes_its_connections(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let clone = factory.clone();
        let model = factory.model(MODEL);
        model.converse().user("hi").send().await.unwrap();
        drop(factory);
        drop(model);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            server.bedrock_connections().open,
            1,
            "a clone still holds the pool"
        );
        drop(clone);
        assert!(
            eventually(Duration::from_secs(5), || server.bedrock_connections().open
                == 0)
            .await,
            "connections stayed open: {:?}",
            server.bedrock_connections()
        );
    }
}

#[test]
fn a_factory_works_from_other_runtimes_while_its_own_lives() {
    let owner = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for protocol in PROTOCOLS {
        let (server, factory) = owner.block_on(async {
            let server = server(protocol).await;
            let factory = factory_for(&server).await;
            (server, factory)
        });
        for _ in 0..3 {
            // A fresh runtime per use, as a test harness or a sync wrapper would do.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let reply = rt
                .block_on(
                    factory
                        .model(MODEL)
                        .converse()
                        .user("from elsewhere")
                        .send(),
                )
                .expect("the pool keeps working while its runtime lives");
            assert_eq!(reply.text(), "from elsewhere");
        }
        assert_eq!(
            server.bedrock_connections().accepted,
            1,
            "one pooled connection served them all"
        );
        assert_eq!(
            factory.stats().pool.bedrock.protocol,
            Some(negotiated(protocol))
        );
        drop(factory);
        drop(server);
    }
    drop(owner);
}

#[tokio::test]
async fn builder_rejects_bad_knobs_by_name() {
    let server = server(Protocol::Https).await;
    let cases = vec![
        (
            "pool_max_connections_per_host",
            builder_for(&server).pool_max_connections_per_host(0),
        ),
        (
            "pool_idle_timeout",
            builder_for(&server).pool_idle_timeout(Duration::ZERO),
        ),
        (
            "connect_timeout",
            builder_for(&server).connect_timeout(Duration::ZERO),
        ),
        (
            "read_timeout",
            builder_for(&server).read_timeout(Duration::ZERO),
        ),
        (
            "retry_max_attempts",
            builder_for(&server).retry_max_attempts(0),
        ),
        (
            "retry_max_attempts",
            builder_for(&server).retry_max_attempts(1000),
        ),
        ("regions", builder_for(&server).region("Not A Region")),
        (
            "bedrock_endpoint_url",
            builder_for(&server).bedrock_endpoint_url("ftp://x"),
        ),
        (
            "sts_endpoint_url",
            builder_for(&server).sts_endpoint_url("http://192.0.2.10"),
        ),
        (
            "ca_certificate_pem",
            builder_for(&server).ca_certificate_pem("not a cert"),
        ),
    ];
    for (field, b) in cases {
        let e = b.build().await.expect_err(field);
        assert!(e.is_invalid_input(), "{field}: {e:?}");
        assert_eq!(e.field(), Some(field), "{e:?}");
    }
    // Plain http to a non-loopback host is allowed only when asked for.
    assert!(
        builder_for(&server)
            .sts_endpoint_url("http://192.0.2.10")
            .allow_insecure_http(true)
            .build()
            .await
            .is_ok()
    );
}
