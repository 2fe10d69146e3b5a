// Long because its tests share one setup and read best side by side; each test is one scenario.
//! The heartbeat against the local server, intervals scaled to fractions of a second.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{ErrorKind, HeartbeatConfig, heartbeat::ProbeKind, stats::HttpProtocol};
use bedrock_pool_local::{Fault, FaultRule, IdleFault, Operation, Protocol, ServiceError};
use common::{Ask, MODEL, PROTOCOLS, builder_for, eventually, factory_for, server};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn count(server: &bedrock_pool_local::LocalServer, op: Operation) -> usize {
    server.requests_for(op).len()
}

/// Returns the server-side ids of the connections that carried `op`.
fn connections_of(server: &bedrock_pool_local::LocalServer, op: Operation) -> BTreeSet<u64> {
    server
        .requests_for(op)
        .iter()
        .map(|r| r.connection_id)
        .collect()
}

/// Returns the protocol the pool must report for `protocol`.
fn negotiated(protocol: Protocol) -> HttpProtocol {
    match protocol {
        Protocol::HttpsH1Only => HttpProtocol::Http1,
        _ => HttpProtocol::Http2,
    }
}

both_protocols! {
    async fn the_identity_probe_reaches_sts_and_never_bedrock(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let hb = factory
            .start_heartbeat(HeartbeatConfig::default().identity_interval(ms(100)))
            .unwrap();
        // Recorded at arrival by the server, counted on answer by the client: wait for both.
        assert!(
            eventually(Duration::from_secs(5), || {
                count(&server, Operation::GetCallerIdentity) >= 3
                    && hb.stats().identity.succeeded >= 3
            })
            .await
        );
        assert!(
            server.bedrock_connections().accepted == 0,
            "the STS probe touched Bedrock"
        );
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.operation == Operation::GetCallerIdentity)
        );
        let st = hb.stats();
        assert!(
            st.identity.succeeded >= 3 && st.identity.failed == 0,
            "{st:?}"
        );
        assert!(st.last_success.is_some() && st.running);
        assert_eq!(st.keep_warm.sent, 0);
        assert_eq!(
            server.sts_connections().accepted,
            1,
            "the probes reuse one STS connection"
        );
    }
}

both_protocols! {
    /// With keep-warm on, a connection survives a middlebox that kills idle flows; with keep-warm
    /// and idle eviction off, the same idle costs a whole read timeout.
    async fn keep_warm_beats_a_silently_dead_middlebox_and_its_absence_costs_a_read_timeout(protocol: Protocol) {
        let t = ms(600);
        let read_timeout = ms(1500);

        // Keep-warm on: probes every 200 ms keep the one connection busy enough.
        let server_a = server(protocol).await;
        server_a.set_idle_fault(Some(IdleFault::SilentlyDead { after: t }));
        let warm = builder_for(&server_a)
            .pool_idle_timeout(ms(1000))
            .read_timeout(read_timeout)
            .build()
            .await
            .unwrap();
        let hb = warm
            .start_heartbeat(
                HeartbeatConfig::default()
                    .identity_probe(false)
                    .keep_warm(true)
                    .keep_warm_interval(ms(200)),
            )
            .unwrap();
        warm.ask("first").await
            .unwrap();
        tokio::time::sleep(t * 3).await;
        let start = Instant::now();
        let reply = warm.ask("after idle").await
            .unwrap();
        let warm_took = start.elapsed();
        assert!(
            warm_took < read_timeout / 2,
            "keep-warm: the wake-up took {warm_took:?}"
        );
        assert_eq!(reply.attempts(), 1);
        assert_eq!(
            server_a.bedrock_connections().accepted,
            1,
            "the warm connection was reused"
        );
        assert!(hb.stats().keep_warm.succeeded >= 3, "{:?}", hb.stats());
        assert_eq!(warm.stats().pool.bedrock.protocol, Some(negotiated(protocol)));

        // Keep-warm off and idle eviction off: the dead connection is reused and waits.
        let server_b = server(protocol).await;
        server_b.set_idle_fault(Some(IdleFault::SilentlyDead { after: t }));
        let cold = builder_for(&server_b)
            .pool_idle_timeout(None)
            .read_timeout(read_timeout)
            .build()
            .await
            .unwrap();
        cold.ask("first").await
            .unwrap();
        tokio::time::sleep(t * 3).await;
        let start = Instant::now();
        let reply = cold.ask("after idle").await
            .unwrap();
        let cold_took = start.elapsed();
        assert!(
            cold_took >= read_timeout,
            "without keep-warm it took only {cold_took:?}"
        );
        assert_eq!(
            reply.attempts(),
            2,
            "the read timeout was retried on a new connection"
        );
        assert_eq!(server_b.bedrock_connections().accepted, 2);
        // The timed-out attempt retired the dead connection (over h2 nothing else would).
        let pool = cold.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        assert_eq!((pool.retired, pool.opened), (1, 2), "{pool:?}");
        assert_eq!(cold.stats().requests.retired_connections, 1);
        hb.stop().await;
    }
}

both_protocols! {
    /// A probe skipped for recent traffic runs one interval after that traffic, not one interval
    /// after the skip: with the interval close to the idle timeout, the later probe would find the
    /// connection evicted and open a new one.
    async fn a_skipped_probe_runs_one_interval_after_the_traffic(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = builder_for(&server)
            .pool_idle_timeout(ms(500))
            .build()
            .await
            .unwrap();
        let hb = factory
            .start_heartbeat(
                HeartbeatConfig::default()
                    .identity_probe(false)
                    .keep_warm(true)
                    .keep_warm_interval(ms(400)),
            )
            .unwrap();
        // Traffic at ~100 ms: the tick at 400 ms skips; the probe is due at ~500 ms, not 800 ms.
        tokio::time::sleep(ms(100)).await;
        factory.ask("hi").await
            .unwrap();
        tokio::time::sleep(ms(900)).await;
        let st = hb.stats();
        assert!(
            st.keep_warm.skipped >= 1 && st.keep_warm.succeeded >= 1,
            "{st:?}"
        );
        assert_eq!(
            server.bedrock_connections().accepted,
            1,
            "the probe came too late and found the connection evicted"
        );
        assert_eq!(factory.stats().pool.bedrock.protocol, Some(negotiated(protocol)));
    }
}

both_protocols! {
    async fn steady_traffic_needs_no_keep_warm_probe(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let hb = factory
            .start_heartbeat(
                HeartbeatConfig::default()
                    .identity_probe(false)
                    .keep_warm(true)
                    .keep_warm_interval(ms(200)),
            )
            .unwrap();
        let model = factory.model(MODEL);
        let end = Instant::now() + ms(1200);
        while Instant::now() < end {
            model.converse().user("busy").send().await.unwrap();
            tokio::time::sleep(ms(30)).await;
        }
        let st = hb.stats();
        assert_eq!(st.keep_warm.sent, 0, "{st:?}");
        assert!(st.keep_warm.skipped >= 3, "{st:?}");
        assert_eq!(count(&server, Operation::ListAsyncInvokes), 0);
        // Once traffic stops, the probe resumes, on the connection the traffic used.
        assert!(
            eventually(Duration::from_secs(3), || count(
                &server,
                Operation::ListAsyncInvokes
            ) > 0)
            .await
        );
        assert_eq!(server.bedrock_connections().accepted, 1);
        assert_eq!(factory.stats().pool.bedrock.protocol, Some(negotiated(protocol)));
    }
}

both_protocols! {
    async fn failures_are_counted_backed_off_logged_and_recovered_from_once(protocol: Protocol) {
        let (logs, _guard) = common::capture_logs(tracing::Level::DEBUG);

        let server = server(protocol).await;
        server.push_fault(
            FaultRule::new(Fault::Error(ServiceError::ExpiredToken(
                "token expired".into(),
            )))
            .operation(Operation::GetCallerIdentity)
            .times(3),
        );
        server.push_fault(
            FaultRule::new(Fault::Error(ServiceError::InternalServer("boom".into())))
                .operation(Operation::ListAsyncInvokes)
                .times(3),
        );
        let factory = builder_for(&server)
            .retry_max_attempts(1)
            .build()
            .await
            .unwrap();
        let hb = factory
            .start_heartbeat(
                HeartbeatConfig::default()
                    .identity_interval(ms(100))
                    .keep_warm(true)
                    .keep_warm_interval(ms(100))
                    .backoff(ms(50), ms(200)),
            )
            .unwrap();
        assert!(
            eventually(Duration::from_secs(8), || {
                let st = hb.stats();
                st.identity.failed >= 3 && st.keep_warm.failed >= 3 && st.identity.succeeded >= 2
            })
            .await,
            "{:?}",
            hb.stats()
        );
        let st = hb.stats();
        assert!(st.running);
        assert!(st.last_failure.is_some() && st.last_success.is_some());
        let text = logs.text();
        assert!(text.contains("heartbeat scheduled"), "{text}");
        assert!(text.contains("no model calls, no cost"));
        assert!(text.contains("heartbeat failed") && text.contains("credentials have expired"));
        assert!(text.contains("WARN"));
        let recoveries = text.matches("heartbeat recovered").count();
        assert!(
            (1..=2).contains(&recoveries),
            "recovery logged {recoveries} times:\n{text}"
        );
        assert!(!text.contains(bedrock_pool_local::TEST_SECRET_ACCESS_KEY));
        // An error answer is no reason to retire the connection it came on.
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        assert_eq!(pool.retired, 0, "{pool:?}");
        assert_eq!(server.bedrock_connections().accepted, 1);
        hb.stop().await;
    }
}

both_protocols! {
    async fn a_refused_connection_is_reported_as_a_network_failure(protocol: Protocol) {
        let server = server(protocol).await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", closed.local_addr().unwrap());
        drop(closed);
        let factory = builder_for(&server)
            .sts_endpoint_url(url)
            .retry_max_attempts(1)
            .build()
            .await
            .unwrap();
        let hb = factory
            .start_heartbeat(
                HeartbeatConfig::default()
                    .identity_interval(ms(50))
                    .backoff(ms(20), ms(100)),
            )
            .unwrap();
        assert!(eventually(Duration::from_secs(5), || hb.stats().identity.failed >= 3).await);
        let st = hb.stats();
        let err = st.last_error.expect("an error is kept");
        assert_eq!(err.probe, ProbeKind::Identity);
        assert!(
            matches!(err.kind, ErrorKind::Network | ErrorKind::Timeout),
            "{err:?}"
        );
        assert!(st.consecutive_failures >= 3 && st.running);
    }
}

both_protocols! {
    async fn after_stop_or_drop_no_probe_is_sent(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let cfg = HeartbeatConfig::default().identity_interval(ms(50));

        let hb = factory.start_heartbeat(cfg).unwrap();
        assert!(
            eventually(Duration::from_secs(5), || count(
                &server,
                Operation::GetCallerIdentity
            ) >= 2)
            .await
        );
        hb.stop().await;
        // A request whose bytes were already on the wire when stop() ran may still land.
        tokio::time::sleep(ms(50)).await;
        let n = count(&server, Operation::GetCallerIdentity);
        tokio::time::sleep(ms(300)).await;
        assert_eq!(
            count(&server, Operation::GetCallerIdentity),
            n,
            "a probe after stop()"
        );

        let hb = factory.start_heartbeat(cfg).unwrap();
        assert!(
            eventually(Duration::from_secs(5), || count(
                &server,
                Operation::GetCallerIdentity
            ) >= n + 2)
            .await
        );
        drop(hb);
        tokio::time::sleep(ms(50)).await;
        let n = count(&server, Operation::GetCallerIdentity);
        tokio::time::sleep(ms(300)).await;
        assert_eq!(
            count(&server, Operation::GetCallerIdentity),
            n,
            "a probe after drop"
        );
    }
}

both_protocols! {
    async fn the_task_never_keeps_the_factory_alive(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let hb = factory
            .start_heartbeat(HeartbeatConfig::default().identity_interval(ms(50)))
            .unwrap();
        assert!(
            eventually(Duration::from_secs(5), || hb.stats().identity.succeeded
                >= 1)
            .await
        );
        drop(factory);
        assert!(
            eventually(Duration::from_secs(5), || !hb.stats().running).await,
            "the task outlived the factory"
        );
        assert!(
            eventually(Duration::from_secs(5), || server.sts_connections().open
                == 0)
            .await
        );
    }
}

both_protocols! {
    /// Over HTTP/1.1 `warm_up(5)` leaves five connections; over h2 it leaves the one connection
    /// that carries every call (the pool may race a few handshakes to get it, then drops them).
    async fn warm_up_opens_connections_before_the_first_request(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        factory.warm_up(5).await.unwrap();
        assert_eq!(count(&server, Operation::ConverseStream), 0);
        assert_eq!(count(&server, Operation::ListAsyncInvokes), 5);
        let warmed = match protocol {
            Protocol::HttpsH1Only => 5,
            _ => 1,
        };
        assert!(
            eventually(Duration::from_secs(5), || server.bedrock_connections().open
                == warmed)
            .await,
            "{:?}",
            server.bedrock_connections()
        );
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        assert_eq!(pool.open, warmed as usize, "{pool:?}");
        let accepted = server.bedrock_connections().accepted;
        factory.ask("hi").await
            .unwrap();
        assert_eq!(
            server.bedrock_connections().accepted,
            accepted,
            "the first call found a warm connection"
        );
        let converse_on = connections_of(&server, Operation::ConverseStream);
        assert!(
            converse_on.is_subset(&connections_of(&server, Operation::ListAsyncInvokes)),
            "the call ran on a warmed connection"
        );
        if protocol == Protocol::HttpsH1Only {
            assert_eq!(connections_of(&server, Operation::ListAsyncInvokes).len(), 5);
        } else {
            // The five probes were multiplexed on one connection.
            assert_eq!(connections_of(&server, Operation::ListAsyncInvokes).len(), 1);
            assert!(pool.max_in_flight_per_connection > 1, "{pool:?}");
        }
        assert!(factory.warm_up(0).await.unwrap_err().is_invalid_input());
    }
}

both_protocols! {
    /// Over HTTP/1.1 `keep_warm_connections(3)` keeps three connections busy; over h2 every
    /// round's three probes share the one connection, which stays the only one.
    async fn keep_warm_connections_counts_connections_on_h1_and_probes_on_h2(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = builder_for(&server)
            .pool_idle_timeout(ms(600))
            .build()
            .await
            .unwrap();
        let hb = factory
            .start_heartbeat(
                HeartbeatConfig::default()
                    .identity_probe(false)
                    .keep_warm(true)
                    .keep_warm_interval(ms(200))
                    .keep_warm_connections(3),
            )
            .unwrap();
        // Several rounds, and longer than the idle timeout: only probes keep connections alive.
        assert!(
            eventually(Duration::from_secs(10), || hb.stats().keep_warm.succeeded >= 6).await,
            "{:?}",
            hb.stats()
        );
        tokio::time::sleep(ms(800)).await;
        let st = hb.stats();
        assert_eq!(st.keep_warm.failed, 0, "{st:?}");
        // Each round sends three probes, whatever the protocol.
        assert!(
            count(&server, Operation::ListAsyncInvokes) >= 3 * st.keep_warm.succeeded as usize,
            "{st:?}"
        );
        let pool = factory.stats().pool.bedrock;
        assert_eq!(pool.protocol, Some(negotiated(protocol)));
        assert_eq!(pool.closed_idle, 0, "a kept-warm connection was evicted: {pool:?}");
        let probed_on = connections_of(&server, Operation::ListAsyncInvokes);
        if protocol == Protocol::HttpsH1Only {
            assert_eq!(probed_on.len(), 3, "{probed_on:?}");
            assert_eq!((pool.open, pool.opened), (3, 3), "{pool:?}");
            assert_eq!(server.bedrock_connections().open, 3);
        } else {
            assert_eq!(probed_on.len(), 1, "{probed_on:?}");
            assert_eq!((pool.open, pool.opened), (1, 1), "{pool:?}");
            assert!(pool.max_in_flight_per_connection > 1, "{pool:?}");
            assert!(
                eventually(Duration::from_secs(5), || server.bedrock_connections().open == 1)
                    .await
            );
        }
        hb.stop().await;
    }
}

/// Validation runs before any request; the loop only shows the protocol plays no part.
#[tokio::test]
async fn a_keep_warm_interval_not_below_the_idle_timeout_is_rejected() {
    for protocol in PROTOCOLS {
        let server = server(protocol).await;
        let factory = builder_for(&server)
            .pool_idle_timeout(ms(500))
            .build()
            .await
            .unwrap();
        let e = factory
            .start_heartbeat(
                HeartbeatConfig::default()
                    .keep_warm(true)
                    .keep_warm_interval(ms(500)),
            )
            .unwrap_err();
        assert_eq!(e.field(), Some("keep_warm_interval"), "{protocol:?}");
        assert!(e.to_string().contains("pool_idle_timeout"), "{e}");
        assert!(server.requests().is_empty(), "{protocol:?}");
    }
}

/// Pure configuration checks: no protocol involved.
#[tokio::test]
async fn absurd_intervals_are_refused_and_one_heartbeat_runs_at_a_time() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    for (field, config) in [
        (
            "identity_interval",
            HeartbeatConfig::default().identity_interval(Duration::MAX),
        ),
        (
            "backoff_max",
            HeartbeatConfig::default().backoff(Duration::from_secs(1), Duration::MAX),
        ),
        (
            "probe_timeout",
            HeartbeatConfig::default().probe_timeout(Duration::from_secs(2 * 24 * 3600)),
        ),
    ] {
        let e = factory.start_heartbeat(config).unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
    }
    let config = HeartbeatConfig::default().identity_interval(Duration::from_millis(50));
    let first = factory.start_heartbeat(config).unwrap();
    let e = factory.start_heartbeat(config).unwrap_err();
    assert_eq!(e.field(), Some("start_heartbeat"), "{e}");
    first.stop().await;
    let again = factory.start_heartbeat(config).unwrap();
    drop(again);
    factory.start_heartbeat(config).unwrap().stop().await;
}

both_protocols! {
    /// The first round runs at start: with the default 300 s interval, missing or broken
    /// credentials show within moments, not at the first request; clones share the one task.
    async fn each_probe_runs_once_at_start(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let hb = factory
            .start_heartbeat(HeartbeatConfig::default().keep_warm(true))
            .unwrap();
        let clone = hb.clone();
        assert!(
            eventually(Duration::from_secs(5), || {
                let st = clone.stats();
                st.identity.succeeded == 1 && st.keep_warm.sent + st.keep_warm.skipped >= 1
            })
            .await,
            "{:?}",
            hb.stats()
        );
        assert_eq!(count(&server, Operation::GetCallerIdentity), 1);
        drop(clone);
        assert!(hb.stats().running, "dropping a clone keeps the task");
        hb.stop().await;
    }
}
