//! The fault matrix: every local-server fault gives the documented error kind, or succeeds after
//! the SDK's retries where they apply; attempts never exceed the maximum; in flight returns to 0;
//! the next request works.

mod common;

use bedrock_pool::local::{
    Fault, FaultRule, IdleFault, LocalServer, Operation, Protocol, ServiceError,
};
use bedrock_pool::{ErrorKind, LlmFactory, TimeoutKind};
use common::{MODEL, builder_for, server};
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
        .requests_for(Operation::Converse)
        .iter()
        .filter_map(|r| r.attempt)
        .collect();
    assert!(
        attempts.iter().all(|a| *a <= MAX_ATTEMPTS),
        "{label}: attempts {attempts:?}"
    );
    assert_eq!(factory.request_stats().in_flight, 0, "{label}");
    server.clear_faults();
    factory
        .model(MODEL)
        .converse()
        .user("next")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{label}: the next request failed: {e:?}"));
}

#[tokio::test]
async fn every_error_status_maps_to_its_kind() {
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
    let server = server(Protocol::Https).await;
    let factory = factory(&server).await;
    for (err, kind, attempts) in cases {
        let label = err.name().to_owned();
        server.clear_requests();
        server.push_fault(FaultRule::new(Fault::Error(err.clone())));
        let e = factory
            .model(MODEL)
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{label}: {e:?}");
        assert_eq!(e.status(), Some(err.status()), "{label}");
        assert_eq!(e.code(), Some(err.name()), "{label}");
        assert!(e.to_string().contains(err.message()), "{label}: {e}");
        assert_eq!(
            server.requests_for(Operation::Converse).len(),
            attempts,
            "{label}: attempts seen by the server"
        );
        after_fault(&server, &factory, &label).await;
    }
}

#[tokio::test]
async fn transient_network_faults_succeed_after_a_retry() {
    for (label, fault) in [
        ("reset before headers", Fault::ResetBeforeHeaders),
        ("reset after headers", Fault::ResetAfterHeaders),
        ("close before headers", Fault::CloseBeforeHeaders),
        (
            "delay past the read timeout",
            Fault::Delay(Duration::from_secs(2)),
        ),
    ] {
        let server = server(Protocol::HttpsH1Only).await;
        let factory = factory(&server).await;
        server.push_fault(FaultRule::new(fault).times(1));
        let reply = factory
            .model(MODEL)
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(reply.attempts(), 2, "{label}");
        assert_eq!(factory.request_stats().retries, 1, "{label}");
        after_fault(&server, &factory, label).await;
    }
}

#[tokio::test]
async fn persistent_network_faults_give_network_and_timeout_kinds() {
    for (label, fault, kind) in [
        (
            "reset before headers",
            Fault::ResetBeforeHeaders,
            ErrorKind::Network,
        ),
        (
            "reset after headers",
            Fault::ResetAfterHeaders,
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
        let server = server(Protocol::HttpsH1Only).await;
        let factory = factory(&server).await;
        server.push_fault(FaultRule::new(fault));
        let e = factory
            .model(MODEL)
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{label}: {e:?}");
        if kind == ErrorKind::Timeout {
            assert_eq!(e.timeout_kind(), Some(TimeoutKind::Read));
        }
        assert!(e.is_retryable(), "{label}");
        assert_eq!(
            server.requests_for(Operation::Converse).len(),
            MAX_ATTEMPTS as usize,
            "{label}"
        );
        after_fault(&server, &factory, label).await;
    }
}

/// The three middlebox behaviours with the client's idle eviction OFF (the worst case): a
/// closed or reset connection is replaced transparently; a silently dead one costs one read
/// timeout, then the retry succeeds on a new connection.
#[tokio::test]
async fn idle_faults_without_eviction_recover() {
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
        let server = server(Protocol::HttpsH1Only).await;
        server.set_idle_fault(Some(fault));
        let factory = builder_for(&server)
            .read_timeout(Duration::from_millis(800))
            .pool_idle_timeout(None)
            .build()
            .await
            .unwrap();
        factory
            .model(MODEL)
            .converse()
            .user("warm")
            .send()
            .await
            .unwrap();
        tokio::time::sleep(idle * 3).await;
        let reply = factory
            .model(MODEL)
            .converse()
            .user("after idle")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert!(
            reply.attempts() <= max_attempts,
            "{label}: {}",
            reply.attempts()
        );
        assert_eq!(server.bedrock_connections().accepted, 2, "{label}");
        after_fault(&server, &factory, label).await;
    }
}

/// With the crate's idle eviction on (shorter than the middlebox), no idle fault is ever hit.
#[tokio::test]
async fn idle_faults_with_eviction_are_never_hit() {
    let idle = Duration::from_millis(500);
    for fault in [
        IdleFault::Close { after: idle },
        IdleFault::Reset { after: idle },
        IdleFault::SilentlyDead { after: idle },
    ] {
        let server = server(Protocol::HttpsH1Only).await;
        server.set_idle_fault(Some(fault));
        let factory = builder_for(&server)
            .read_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_millis(250))
            .build()
            .await
            .unwrap();
        factory
            .model(MODEL)
            .converse()
            .user("warm")
            .send()
            .await
            .unwrap();
        tokio::time::sleep(idle * 2).await;
        let start = std::time::Instant::now();
        let reply = factory
            .model(MODEL)
            .converse()
            .user("again")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.attempts(), 1, "{fault:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "{fault:?}");
    }
}

#[tokio::test]
async fn sts_failures_map_to_access_denied() {
    let server = server(Protocol::Https).await;
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
            common::eventually(Duration::from_secs(5), || st.status().identity.failed >= 1).await
        );
        let last = st.status().last_error.unwrap();
        assert_eq!(last.kind, ErrorKind::AccessDenied, "{err:?}: {last:?}");
        assert!(last.message.contains(err.name()), "{last:?}");
        st.stop().await;
    }
}

#[tokio::test]
async fn a_server_restarted_on_the_same_port_is_reached_again() {
    // Plain HTTP on loopback, so that the restarted server needs no new CA.
    let first = server(Protocol::Http).await;
    let (port, sts_port) = (first.bedrock_addr().port(), first.sts_addr().port());
    let factory = builder_for(&first)
        .read_timeout(Duration::from_millis(800))
        .retry_max_attempts(2)
        .build()
        .await
        .unwrap();
    factory
        .model(MODEL)
        .converse()
        .user("one")
        .send()
        .await
        .unwrap();
    drop(first);
    let e = factory
        .model(MODEL)
        .converse()
        .user("down")
        .send()
        .await
        .unwrap_err();
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
    let reply = factory
        .model(MODEL)
        .converse()
        .user("back")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.text(), "back");
    assert_eq!(second.bedrock_connections().accepted, 1);
    assert_eq!(factory.request_stats().in_flight, 0);
}
