// Long because its tests share one setup and read best side by side; each test is one scenario.
//! The fault matrix: every local-server fault gives the documented error kind, or succeeds after
//! the SDK's retries where they apply; attempts never exceed the maximum; in flight returns to 0;
//! the next request works. Every case runs on h2 (`NAME::h2`) and HTTP/1.1 (`NAME::h1`).

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::stats::HttpProtocol;
use bedrock_pool::{ErrorKind, LlmFactory, error::TimeoutKind};
use bedrock_pool_local::{
    Fault, FaultRule, IdleFault, LocalServer, Operation, Protocol, ServiceError,
};
use common::{Ask, MODEL, builder_for, server};
use std::time::Duration;

const MAX_ATTEMPTS: u32 = 3;

async fn factory(server: &LocalServer) -> LlmFactory {
    builder_for(server)
        .read_timeout(Duration::from_millis(500))
        .retry_max_attempts(MAX_ATTEMPTS)
        .build()
        .await
        .unwrap()
}

/// Checks the invariants that hold after any fault, and that the next request works.
async fn after_fault(server: &LocalServer, factory: &LlmFactory, label: &str) {
    let attempts: Vec<u32> = server
        .requests_for(Operation::ConverseStream)
        .iter()
        .filter_map(|r| r.attempt)
        .collect();
    assert!(
        attempts.iter().all(|a| *a <= MAX_ATTEMPTS),
        "{label}: attempts {attempts:?}"
    );
    assert_eq!(factory.stats().requests.in_flight, 0, "{label}");
    server.clear_faults();
    factory
        .ask("next")
        .await
        .unwrap_or_else(|e| panic!("{label}: the next request failed: {e:?}"));
}

both_protocols! {
async fn every_error_status_maps_to_its_kind(protocol: Protocol) {
    use ServiceError as S;
    let cases = [
        (S::Validation("bad".into()), ErrorKind::Validation, 1),
        (S::AccessDenied("no".into()), ErrorKind::AccessDenied, 1),
        (
            S::ResourceNotFound("gone".into()),
            ErrorKind::ModelNotFound,
            1,
        ),
        (S::ModelTimeout("slow".into()), ErrorKind::ModelFailure, 1),
        (S::ModelError("oops".into()), ErrorKind::ModelFailure, 1),
        (S::Throttling("slow down".into()), ErrorKind::Throttled, 3),
        (S::ModelNotReady("warming".into()), ErrorKind::Throttled, 3),
        (
            S::InternalServer("boom".into()),
            ErrorKind::ServiceUnavailable,
            3,
        ),
        (
            S::ServiceUnavailable("down".into()),
            ErrorKind::ServiceUnavailable,
            3,
        ),
        (
            S::Custom {
                status: 502,
                name: "BadGateway".into(),
                message: "proxy".into(),
            },
            ErrorKind::ServiceUnavailable,
            3,
        ),
    ];
    let server = server(protocol).await;
    let factory = factory(&server).await;
    for (err, kind, attempts) in cases {
        let label = err.name().to_owned();
        server.clear_requests();
        server.push_fault(FaultRule::new(Fault::Error(err.clone())));
        let e = factory.ask("hi").await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{label}: {e:?}");
        assert_eq!(e.status(), Some(err.status()), "{label}");
        assert_eq!(e.code(), Some(err.name()), "{label}");
        assert!(e.to_string().contains(err.message()), "{label}: {e}");
        assert_eq!(
            server.requests_for(Operation::ConverseStream).len(),
            attempts,
            "{label}: attempts seen by the server"
        );
        after_fault(&server, &factory, &label).await;
    }
    // Error answers came on a healthy connection: none was retired, one carried everything.
    assert_eq!(factory.stats().pool.bedrock.retired, 0);
    assert_eq!(server.bedrock_connections().accepted, 1);
}
}

both_protocols! {
async fn transient_network_faults_succeed_after_a_retry(protocol: Protocol) {
    for (label, fault) in [
        ("reset before headers", Fault::ResetBeforeHeaders),
        ("close before headers", Fault::CloseBeforeHeaders),
        (
            "delay past the read timeout",
            Fault::Delay(Duration::from_secs(2)),
        ),
    ] {
        let server = server(protocol).await;
        let factory = factory(&server).await;
        server.push_fault(FaultRule::new(fault).times(1));
        let reply = factory.ask("hi").await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(reply.attempts(), 2, "{label}");
        assert_eq!(factory.stats().requests.retries, 1, "{label}");
        // The retry went to a new connection: the failed one is never used again.
        assert_eq!(server.bedrock_connections().accepted, 2, "{label}");
        let conns: Vec<u64> = server
            .requests_for(Operation::ConverseStream)
            .iter()
            .map(|r| r.connection_id)
            .collect();
        assert_ne!(conns[0], conns[1], "{label}");
        after_fault(&server, &factory, label).await;
        let last = server.requests_for(Operation::ConverseStream);
        assert_eq!(last.last().map(|r| r.connection_id), Some(conns[1]), "{label}");
    }
}
}

both_protocols! {
/// A connection reset after the response headers: the model had the request (a carried stream's
/// headers come once the model got it; a unary call's only with the whole answer), so the call
/// fails as a network error and is not sent again; the next call works on a new connection.
async fn a_reset_after_the_headers_is_not_sent_again(protocol: Protocol) {
    for carried in [true, false] {
        let server = server(protocol).await;
        let factory = builder_for(&server)
            .unary_over_stream(carried)
            .read_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap();
        factory.ask("warm").await.unwrap();
        server.clear_requests();
        server.push_fault(FaultRule::new(Fault::ResetAfterHeaders).times(1));
        let e = factory.ask("hi").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Network, "carried {carried}: {e:?}");
        assert_eq!(server.requests().len(), 1, "carried {carried}: sent once");
        assert_eq!(e.may_have_reached_model(), !carried, "{e:?}");
        factory.ask("next").await.unwrap();
        // The reset connection is gone: the next call had a new one.
        assert_eq!(server.bedrock_connections().accepted, 2, "carried {carried}");
    }
}
}

both_protocols! {
async fn persistent_network_faults_give_network_and_timeout_kinds(protocol: Protocol) {
    for (label, fault, kind) in [
        (
            "reset before headers",
            Fault::ResetBeforeHeaders,
            ErrorKind::Network,
        ),
        (
            "close before headers",
            Fault::CloseBeforeHeaders,
            ErrorKind::Network,
        ),
        (
            "delay",
            Fault::Delay(Duration::from_secs(2)),
            ErrorKind::Timeout,
        ),
    ] {
        let server = server(protocol).await;
        let factory = factory(&server).await;
        server.push_fault(FaultRule::new(fault));
        let e = factory.ask("hi").await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{label}: {e:?}");
        if kind == ErrorKind::Timeout {
            assert_eq!(e.timeout_kind(), Some(TimeoutKind::Read));
        }
        assert!(e.is_retryable(), "{label}");
        assert_eq!(
            server.requests_for(Operation::ConverseStream).len(),
            MAX_ATTEMPTS as usize,
            "{label}"
        );
        // Every attempt had a connection of its own.
        assert_eq!(
            server.bedrock_connections().accepted,
            u64::from(MAX_ATTEMPTS),
            "{label}"
        );
        after_fault(&server, &factory, label).await;
    }
}
}

both_protocols! {
/// The three middlebox behaviours with the client's idle eviction OFF (the worst case): a
/// closed or reset connection is replaced transparently; a silently dead one costs one read
/// timeout, then the retry succeeds on a new connection (over h2 too: the timed-out
/// connection is retired, not reused).
async fn idle_faults_without_eviction_recover(protocol: Protocol) {
    let idle = Duration::from_millis(300);
    for (label, fault, max_attempts) in [
        ("closed by the server", IdleFault::Close { after: idle }, 2),
        (
            "reset on the next request",
            IdleFault::Reset { after: idle },
            2,
        ),
        ("silently dead", IdleFault::SilentlyDead { after: idle }, 2),
    ] {
        let server = server(protocol).await;
        server.set_idle_fault(Some(fault));
        let factory = builder_for(&server)
            .read_timeout(Duration::from_millis(800))
            .pool_idle_timeout(None)
            .build()
            .await
            .unwrap();
        factory.ask("warm").await
            .unwrap();
        tokio::time::sleep(idle * 3).await;
        let reply = factory.ask("after idle").await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert!(
            reply.attempts() <= max_attempts,
            "{label}: {}",
            reply.attempts()
        );
        assert_eq!(server.bedrock_connections().accepted, 2, "{label}");
        after_fault(&server, &factory, label).await;
        // The call after the wake-up is fast, on the new connection.
        let start = std::time::Instant::now();
        let again = factory.ask("again").await.unwrap();
        assert_eq!(again.attempts(), 1, "{label}");
        assert!(start.elapsed() < Duration::from_millis(800), "{label}");
        assert_eq!(server.bedrock_connections().accepted, 2, "{label}");
    }
}
}

both_protocols! {
/// With the crate's idle eviction on (shorter than the middlebox), no idle fault is ever hit.
async fn idle_faults_with_eviction_are_never_hit(protocol: Protocol) {
    let idle = Duration::from_millis(500);
    for fault in [
        IdleFault::Close { after: idle },
        IdleFault::Reset { after: idle },
        IdleFault::SilentlyDead { after: idle },
    ] {
        let server = server(protocol).await;
        server.set_idle_fault(Some(fault));
        let factory = builder_for(&server)
            .read_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_millis(250))
            .build()
            .await
            .unwrap();
        factory.ask("warm").await
            .unwrap();
        tokio::time::sleep(idle * 2).await;
        let start = std::time::Instant::now();
        let reply = factory.ask("again").await
            .unwrap();
        assert_eq!(reply.attempts(), 1, "{fault:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "{fault:?}");
        assert_eq!(factory.stats().pool.bedrock.retired, 0, "{fault:?}");
    }
}
}

both_protocols! {
async fn sts_failures_map_to_access_denied(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    for err in [
        ServiceError::ExpiredToken("expired".into()),
        ServiceError::InvalidClientTokenId("who".into()),
        ServiceError::StsAccessDenied("no".into()),
    ] {
        server.push_fault(
            FaultRule::new(Fault::Error(err.clone()))
                .operation(Operation::GetCallerIdentity)
                .times(1),
        );
        let st = factory
            .start_heartbeat(
                bedrock_pool::HeartbeatConfig::default()
                    .identity_interval(Duration::from_millis(20))
                    .backoff(Duration::from_millis(20), Duration::from_millis(20)),
            )
            .unwrap();
        assert!(
            common::eventually(Duration::from_secs(5), || st.stats().identity.failed >= 1).await
        );
        let last = st.stats().last_error.unwrap();
        assert_eq!(last.kind, ErrorKind::AccessDenied, "{err:?}: {last:?}");
        assert!(last.message.contains(err.name()), "{last:?}");
        st.stop().await;
    }
}
}

#[tokio::test]
async fn a_server_restarted_on_the_same_port_is_reached_again() {
    // Pinned to plain HTTP (so HTTP/1.1: the pool speaks h2 only after ALPN): the restarted
    // server generates a new CA, which a factory built for the first one would not trust.
    let first = server(Protocol::Http).await;
    let (port, sts_port) = (first.bedrock_addr().port(), first.sts_addr().port());
    let factory = builder_for(&first)
        .read_timeout(Duration::from_millis(800))
        .retry_max_attempts(2)
        .build()
        .await
        .unwrap();
    factory.ask("one").await.unwrap();
    drop(first);
    let e = factory.ask("down").await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout),
        "{e:?}"
    );
    let second = LocalServer::builder()
        .protocol(Protocol::Http)
        .bedrock_port(port)
        .sts_port(sts_port)
        .start()
        .await
        .unwrap();
    let reply = factory.ask("back").await.unwrap();
    assert_eq!(reply.text(), "back");
    assert_eq!(second.bedrock_connections().accepted, 1);
    assert_eq!(factory.stats().requests.in_flight, 0);
}

/// Returns the protocol the factory's pool should negotiate with a server speaking `protocol`.
fn negotiated(protocol: Protocol) -> HttpProtocol {
    match protocol {
        Protocol::Https => HttpProtocol::Http2,
        _ => HttpProtocol::Http1,
    }
}

both_protocols! {
/// A 5xx answered on a healthy connection says nothing about the connection: the retry reuses it.
async fn a_5xx_keeps_its_connection(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable("busy".into()))).times(2),
    );
    let reply = factory.ask("hi").await.unwrap();
    assert_eq!(reply.attempts(), 3);
    assert_eq!(server.bedrock_connections().accepted, 1);
    let pool = factory.stats().pool.bedrock;
    assert_eq!(pool.protocol, Some(negotiated(protocol)));
    assert_eq!((pool.retired, pool.closed_error), (0, 0));
    assert_eq!(factory.stats().requests.retired_connections, 0);
}
}

both_protocols! {
/// A read timeout retires its connection: the retry and every later call use a new one, and
/// the statistics count it once.
async fn a_read_timeout_retires_its_connection(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    factory.ask("warm").await.unwrap();
    server.push_fault(FaultRule::new(Fault::Delay(Duration::from_secs(3))).times(1));
    let reply = factory.ask("slow").await.unwrap();
    assert_eq!(reply.attempts(), 2);
    let conns: Vec<u64> = server
        .requests_for(Operation::ConverseStream)
        .iter()
        .map(|r| r.connection_id)
        .collect();
    assert_eq!(conns.len(), 3);
    assert_eq!(conns[0], conns[1], "the timed-out attempt ran on the warm connection");
    assert_ne!(conns[1], conns[2], "the retry ran on a new connection");
    factory.ask("next").await.unwrap();
    let last = server.requests_for(Operation::ConverseStream);
    assert_eq!(last.last().map(|r| r.connection_id), Some(conns[2]));
    let pool = factory.stats().pool.bedrock;
    assert_eq!(pool.retired, 1);
    assert_eq!(pool.opened, 2);
    assert!(
        common::eventually(Duration::from_secs(3), || factory.stats().pool.bedrock.closed_error >= 1)
            .await
    );
    assert_eq!(factory.stats().requests.retired_connections, 1);
    assert_eq!(factory.stats().requests.retries, 1);
}
}

both_protocols! {
/// A stream that stalls retires its connection; the next call opens a new one.
async fn a_stream_stall_retires_its_connection(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    server.push_fault(
        FaultRule::new(Fault::StreamStall {
            after_events: 1,
            duration: Duration::from_secs(3),
        })
        .times(1),
    );
    let mut stream = factory
        .model(MODEL)
        .converse_stream()
        .user("hello there")
        .stall_timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap();
    let mut error = None;
    while let Some(ev) = stream.next().await {
        if let Err(e) = ev {
            error = Some(e);
        }
    }
    let e = error.expect("the stream stalls");
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::StreamStall), "{e:?}");
    assert_eq!(factory.stats().pool.bedrock.retired, 1);
    assert_eq!(factory.stats().requests.retired_connections, 1);
    factory.ask("next").await.unwrap();
    assert_eq!(server.bedrock_connections().accepted, 2);
}
}

both_protocols! {
/// An in-stream exception comes on a healthy connection: it is kept.
async fn an_in_stream_exception_keeps_its_connection(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    server.push_fault(
        FaultRule::new(Fault::StreamException {
            after_events: 1,
            error: ServiceError::ModelStreamError("boom".into()),
        })
        .times(1),
    );
    let e = factory
        .model(MODEL)
        .converse_stream()
        .user("hello there")
        .send()
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ModelFailure, "{e:?}");
    factory.ask("next").await.unwrap();
    assert_eq!(factory.stats().pool.bedrock.retired, 0);
    if protocol == Protocol::Https {
        assert_eq!(server.bedrock_connections().accepted, 1);
    } // Over HTTP/1.1 the unread rest of the body makes the pool close it (incomplete exchange).
}
}

both_protocols! {
/// The escape hatch shares the pool and its retiring: a raw SDK call that times out does not
/// leave its connection to the next call.
async fn the_raw_client_retires_too(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    let msg = bedrock_pool::sdk::types::Message::builder()
        .role(bedrock_pool::sdk::types::ConversationRole::User)
        .content(bedrock_pool::sdk::types::ContentBlock::Text("hi".into()))
        .build()
        .unwrap();
    let raw = factory.bedrock_client();
    raw.converse().model_id(MODEL).messages(msg.clone()).send().await.unwrap();
    server.push_fault(FaultRule::new(Fault::Delay(Duration::from_secs(3))).times(1));
    raw.converse().model_id(MODEL).messages(msg).send().await.unwrap();
    assert_eq!(server.bedrock_connections().accepted, 2);
    assert_eq!(factory.stats().pool.bedrock.retired, 1);
}
}

both_protocols! {
/// Over h2 one connection carries every concurrent call; over HTTP/1.1 each call has its own.
async fn concurrent_calls_per_connection(protocol: Protocol) {
    let server = server(protocol).await;
    let factory = factory(&server).await;
    // Warm first: from cold, the pool opens a connection per waiting call before ALPN tells h2.
    factory.ask("warm").await.unwrap();
    server.set_latency(bedrock_pool_local::Latency::fixed(Duration::from_millis(300)));
    let calls = (0..20).map(|i| {
        let m = factory.model(MODEL);
        async move { m.converse().user(format!("call {i}")).send().await }
    });
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    let pool = factory.stats().pool.bedrock;
    let accepted = server.bedrock_connections().accepted;
    match protocol {
        Protocol::Https => {
            assert_eq!(accepted, 1);
            assert!(pool.max_in_flight_per_connection >= 5, "{pool:?}");
        }
        _ => {
            assert!(accepted >= 5, "{accepted}");
            assert_eq!(pool.max_in_flight_per_connection, 1, "{pool:?}");
        }
    }
}
}

both_protocols! {
/// Busy death: the connection(s) carrying 20 unary calls and 5 streams go silent with the calls
/// in flight. Every unary call succeeds after one read timeout plus backoff, on a new
/// connection; a stream already answering ends with a stall; later calls are fast.
// Long because it is one scenario checked step by step.
async fn busy_death_costs_one_read_timeout(protocol: Protocol) {
    use bedrock_pool_local::Latency;
    let server = server(protocol).await;
    let read_timeout = Duration::from_millis(1500);
    // Unary calls as unary calls (not carried as streams): their answers wait before the
    // headers, so they are in flight on the connection when it dies.
    let factory = builder_for(&server)
        .unary_over_stream(false)
        .read_timeout(read_timeout)
        .stream_stall_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    factory.ask("warm").await.unwrap();
    let first_conn = server.requests()[0].connection_id;
    // Unary answers take long enough to be in flight when the connection dies; streams answer
    // at once, send one event, then pause: they are mid-stream.
    server.set_latency(Latency::from_fn(|r| {
        if r.operation == Operation::Converse {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        }
    }));
    server.push_fault(
        FaultRule::new(Fault::StreamStall {
            after_events: 1,
            duration: Duration::from_secs(5),
        })
        .times(5),
    );
    let unary: Vec<_> = (0..20)
        .map(|i| {
            let m = factory.model(MODEL);
            tokio::spawn(async move {
                let start = std::time::Instant::now();
                let r = m.converse().user(format!("unary {i}")).send().await;
                (r, start.elapsed())
            })
        })
        .collect();
    let streams: Vec<_> = (0..5)
        .map(|i| {
            let m = factory.model(MODEL);
            tokio::spawn(async move {
                let mut s = m.converse_stream().user(format!("stream {i}")).send().await?;
                let first = s.next().await;
                assert!(matches!(first, Some(Ok(_))), "{first:?}");
                s.collect().await
            })
        })
        .collect();
    assert!(server.wait_for_requests(26, Duration::from_secs(10)).await);
    // Give the streams their first event before the silence.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let silenced = server.silence_connections();
    assert!(silenced >= 1);
    server.set_latency(Latency::none());
    let mut resent = 0;
    for (i, h) in unary.into_iter().enumerate() {
        let (r, took) = h.await.unwrap();
        // One read timeout, the SDK's backoff (under 1 s) and a fast answer; wide margin.
        assert!(took < read_timeout * 2 + Duration::from_secs(3), "unary {i}: {took:?}");
        match r {
            Ok(reply) => {
                assert_eq!(reply.attempts(), 2, "unary {i}");
                resent += 1;
            }
            // A call on a connection opened for it (HTTP/1.1 opens one per concurrent call)
            // reached the model before the connection died: it is not paid twice.
            Err(e) => {
                assert!(e.is_timeout() && e.may_have_reached_model(), "unary {i}: {e:?}");
                assert_eq!(protocol, Protocol::HttpsH1Only, "unary {i}: {e:?}");
            }
        }
    }
    // Over h2 every call was on the warm connection: sent again, each counted as a repeat.
    if protocol == Protocol::Https {
        assert_eq!(resent, 20);
    }
    assert!(resent >= 1, "the call on the reused connection was sent again");
    assert_eq!(factory.stats().requests.repeats, resent);
    for (i, h) in streams.into_iter().enumerate() {
        match h.await.unwrap() {
            Ok(_) => {}
            Err(e) => assert_eq!(
                e.timeout_kind(),
                Some(TimeoutKind::StreamStall),
                "stream {i}: {e:?}"
            ),
        }
    }
    let pool = factory.stats().pool.bedrock;
    assert!(pool.retired >= silenced as u64, "{pool:?} silenced {silenced}");
    let start = std::time::Instant::now();
    let reply = factory.ask("later").await.unwrap();
    assert_eq!(reply.attempts(), 1);
    assert!(start.elapsed() < read_timeout);
    let last = server.requests_for(Operation::Converse);
    assert_ne!(last.last().map(|r| r.connection_id), Some(first_conn));
    assert_eq!(factory.stats().requests.in_flight, 0);
}
}

both_protocols! {
/// GOAWAY (a graceful close, as AWS does when it rotates a host): calls and streams in flight
/// finish, new calls go to a new connection, no call fails and nothing is retired.
async fn goaway_loses_no_call(protocol: Protocol) {
    use bedrock_pool_local::Latency;
    let server = server(protocol).await;
    let factory = factory(&server).await;
    factory.ask("warm").await.unwrap();
    let first_conn = server.requests()[0].connection_id;
    server.set_latency(Latency::fixed(Duration::from_millis(300)));
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let m = factory.model(MODEL);
            tokio::spawn(async move { m.converse().user(format!("call {i}")).send().await })
        })
        .collect();
    let stream = {
        let m = factory.model(MODEL);
        tokio::spawn(async move {
            m.converse_stream()
                .user("a stream in flight")
                .send()
                .await?
                .collect()
                .await
        })
    };
    assert!(server.wait_for_requests(7, Duration::from_secs(10)).await);
    assert!(server.goaway() >= 1);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let reply = stream.await.unwrap().unwrap();
    assert_eq!(reply.text(), "a stream in flight");
    server.set_latency(Latency::none());
    factory.ask("after").await.unwrap();
    let last = server.requests_for(Operation::ConverseStream);
    assert_ne!(last.last().map(|r| r.connection_id), Some(first_conn));
    assert_eq!(factory.stats().pool.bedrock.retired, 0);
    assert_eq!(factory.stats().requests.failures.total(), 0);
}
}
