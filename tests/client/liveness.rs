//! h2 liveness: a dead connection is found before a call needs it.
//!
//! The pool sends no HTTP/2 PING and exposes only the TCP keepalive idle time (no probe
//! interval, count or `TCP_USER_TIMEOUT`): with Linux's defaults (75 s between probes, 9
//! probes) the kernel declares a dead peer about 11 minutes after the last byte, and only when
//! the probes go unanswered. What the crate can use is its keep-warm probe: a free
//! `ListAsyncInvokes` on the Bedrock host, whose read timeout is the probe timeout. A probe
//! that gets no answer retires its connection, so over h2 the one connection every call would
//! use is replaced before the next call, which then pays no read timeout.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::HeartbeatConfig;
use bedrock_pool_local::{IdleFault, Operation};
use common::{Ask, builder_for, server};
use std::time::{Duration, Instant};

both_protocols! {
/// A connection that dies while idle (eviction off, as behind a middlebox shorter than the
/// idle budget) is found and retired by the keep-warm probe; the next call does not wait.
async fn keep_warm_probe_finds_a_dead_connection(protocol: Protocol) {
    let server = server(protocol).await;
    let read_timeout = Duration::from_secs(3);
    let factory = builder_for(&server)
        .read_timeout(read_timeout)
        .pool_idle_timeout(None)
        .build()
        .await
        .unwrap();
    factory.ask("warm").await.unwrap();
    // From now on, a connection idle for 200 ms swallows everything and never answers.
    server.set_idle_fault(Some(IdleFault::SilentlyDead {
        after: Duration::from_millis(200),
    }));
    let hb = factory
        .start_heartbeat(
            HeartbeatConfig::default()
                .identity_probe(false)
                .keep_warm(true)
                .keep_warm_interval(Duration::from_millis(500))
                .probe_timeout(Duration::from_millis(300))
                .backoff(Duration::from_millis(100), Duration::from_millis(200)),
        )
        .unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || hb.stats().keep_warm.failed >= 1).await,
        "the probe on the dead connection fails: {:?}",
        hb.stats()
    );
    assert!(factory.stats().pool.bedrock.retired >= 1);
    hb.stop().await;
    server.set_idle_fault(None);
    let start = Instant::now();
    let reply = factory.ask("after").await.unwrap();
    assert_eq!(reply.attempts(), 1);
    assert!(start.elapsed() < read_timeout, "{:?}", start.elapsed());
    let last = server.requests_for(Operation::ConverseStream);
    let first_conn = last[0].connection_id;
    assert_ne!(last.last().map(|r| r.connection_id), Some(first_conn));
}
}
