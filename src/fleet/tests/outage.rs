//! Redis down, killed, back; passwords kept out of Debug and logs.

use super::{Logs, RedisServer, fleet, free_port, prefix};
use crate::fleet::{CooldownKey, Fleet, FleetConfig, FleetDown, WindowSpec};
use std::time::{Duration, Instant};

const MODEL: &str = "m";

const SPEC: WindowSpec = WindowSpec {
    requests: Some(1000),
    tokens: None,
    window: Duration::from_secs(10),
};

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

const WENT_DOWN: &str = "fleet redis failed";
const CAME_BACK: &str = "fleet redis is back";

#[tokio::test]
async fn redis_down_at_start_falls_back_fast_and_logs_once() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let port = free_port();
    let config = FleetConfig::new(format!("redis://:hunter2@127.0.0.1:{port}"), "down")
        .timeout(Duration::from_millis(200))
        .retry_after(Duration::from_millis(400));
    // Builds although nothing listens.
    let f = Fleet::new(&config).expect("builds while redis is down");
    let started = Instant::now();
    assert_eq!(f.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Resting: later calls answer at once, without a round trip.
    for _ in 0..100 {
        assert_eq!(f.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
    }
    f.set_cooldown(
        CooldownKey::Region("us-east-1".into()),
        Duration::from_secs(1),
    );
    let s = f.stats();
    assert!(!s.up);
    // No connection, so no round trip: one failed attempt to connect.
    assert_eq!(
        (s.round_trips, s.errors, s.fallbacks, s.dropped),
        (0, 1, 101, 1)
    );
    // After retry_after it tries again by itself, and fails again without a second warning.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(f.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
    assert!(f.stats().errors >= 2, "{:?}", f.stats());
    let text = logs.text();
    assert_eq!(count(&text, WENT_DOWN), 1, "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn redis_killed_mid_run_then_back_resumes_sharing() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let logs = Logs::default();
    let _guard = logs.capture();
    let p = prefix("killed");
    let (a, b) = (fleet(&redis.url(), &p), fleet(&redis.url(), &p));
    a.acquire(MODEL, SPEC, 1, &[]).await.expect("redis is up");
    b.acquire(MODEL, SPEC, 1, &[]).await.expect("redis is up");
    redis.stop();
    // The outage: every call answers within the timeout (500 ms) and falls back.
    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(a.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = a.stats();
    assert!(!s.up && s.fallbacks == 6 && s.errors >= 1, "{s:?}");
    redis.restart().await;
    // Back: after retry_after the fleet tries again and reconnects by itself.
    let mut back = false;
    for _ in 0..100 {
        if a.acquire(MODEL, SPEC, 1, &[]).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "no recovery within 10 s: {:?}", a.stats());
    assert!(a.stats().up);
    // Sharing resumed: what `a` logs, `b` sees (the restarted Redis started empty).
    let one = WindowSpec {
        requests: Some(1),
        ..SPEC
    };
    let first = a
        .acquire("other", one, 1, &[])
        .await
        .expect("redis is back");
    assert!(matches!(
        first.admission,
        crate::fleet::Admission::Admitted(_)
    ));
    let mut second = None;
    for _ in 0..100 {
        if let Ok(got) = b.acquire("other", one, 1, &[]).await {
            second = Some(got.admission);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = second.expect("b reconnects too");
    assert!(
        matches!(second, crate::fleet::Admission::RetryAfter(_)),
        "{second:?}"
    );
    // One warning and one recovery per fleet that saw the outage (`b` may only on its return).
    let text = logs.text();
    let saw = 1 + usize::from(b.stats().errors > 0);
    assert_eq!(count(&text, WENT_DOWN), saw, "{text}");
    assert_eq!(count(&text, CAME_BACK), saw, "{text}");
}

#[tokio::test]
async fn a_password_in_the_url_authenticates_and_never_shows() {
    let Some(redis) = RedisServer::start_with_password("s3cr3t-pw").await else {
        return;
    };
    let logs = Logs::default();
    let _guard = logs.capture();
    let p = prefix("auth");
    assert!(redis.url().contains(":s3cr3t-pw@"));
    let good = fleet(&redis.url(), &p);
    good.acquire(MODEL, SPEC, 1, &[])
        .await
        .expect("authenticated");
    let config = FleetConfig::new(redis.url(), &p);
    for shown in [format!("{config:?}"), format!("{good:?}")] {
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    }
    assert!(format!("{good:?}").contains(&format!("127.0.0.1:{}", redis.port())));
    let wrong = fleet(&format!("redis://:wrong-pw@127.0.0.1:{}", redis.port()), &p);
    assert_eq!(wrong.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
    let none = fleet(&format!("redis://127.0.0.1:{}", redis.port()), &p);
    assert_eq!(none.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
    let text = logs.text();
    assert_eq!(count(&text, WENT_DOWN), 2, "{text}");
    assert!(
        !text.contains("s3cr3t-pw") && !text.contains("wrong-pw"),
        "{text}"
    );
}

#[tokio::test]
async fn rediss_goes_through_rustls_and_a_failed_handshake_falls_back() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // A plain server behind a rediss:// URL: the rustls client is built (aws-lc provider, no
    // panic) and the handshake fails into a fallback.
    let f = fleet(
        &format!("rediss://127.0.0.1:{}", redis.port()),
        &prefix("tls"),
    );
    assert_eq!(f.acquire(MODEL, SPEC, 1, &[]).await, Err(FleetDown));
    // The failed handshake is the connection attempt's failure (in the background).
    assert!(super::eventually(|| async { f.stats().errors >= 1 }).await);
    assert_eq!(f.stats().round_trips, 0);
}

/// While Redis is out of reach, each process admits its share of the limit: the limit divided
/// by the processes it last saw sharing it, not the whole limit (N processes would send N times
/// the quota).
#[tokio::test]
async fn during_an_outage_each_process_admits_its_share() {
    use crate::limit::{LimitMode, Limiter, ModelLimit};
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("share");
    let limit = ModelLimit::per_window(Duration::from_secs(30))
        .requests(10)
        .mode(LimitMode::Reject);
    let limiters: Vec<std::sync::Arc<Limiter>> = (0..2)
        .map(|_| {
            std::sync::Arc::new(
                Limiter::new(MODEL, "us-east-1", limit).with_fleet(fleet(&redis.url(), &p)),
            )
        })
        .collect();
    // Each process is admitted once through Redis: the fleet has two.
    for l in &limiters {
        drop(l.acquire(MODEL, 1).await.expect("admitted"));
    }
    let stats = limiters[1].fleet_stats().expect("a fleet");
    assert_eq!(stats.processes, 2, "{stats:?}");
    redis.stop();
    // Alone, the second process admits half the limit, then refuses: its share of 5 already
    // holds the call it sent through Redis (mirrored in its own window), so 4 more.
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(
            limiters[1]
                .acquire(MODEL, 1)
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}")),
        );
    }
    let e = limiters[1]
        .acquire(MODEL, 1)
        .await
        .err()
        .expect("over its share");
    assert!(e.is_throttled(), "{e}");
    assert!(!limiters[1].fleet_stats().expect("a fleet").up);
    // Redis is back (empty: it restarted without its data). The calls the second process
    // admitted alone are not in it, so that process still holds to its share until they left
    // its window; the first, with room in its share, goes through Redis again (its first call
    // finds the old connection dead and goes alone, the next ones through the new one).
    redis.restart().await;
    let probe = fleet(&redis.url(), &p);
    assert!(super::eventually(|| async { probe.acquire(MODEL, SPEC, 1, &[]).await.is_ok() }).await);
    drop(limiters[0].acquire(MODEL, 1).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(
        limiters[0]
            .acquire(MODEL, 1)
            .await
            .expect("room in its share"),
    );
    let s = limiters[0].fleet_stats().expect("a fleet");
    assert!(s.up, "{s:?}");
    let e = limiters[1]
        .acquire(MODEL, 1)
        .await
        .err()
        .expect("still over its share");
    assert!(e.is_throttled(), "{e}");
    drop(held);
}

/// Shares follow how the window was filled: a process holding most of the window when Redis
/// went away keeps its calls and gets no more than its part of the room left, so that the
/// fleet's processes together stay within the limit (an even split would let the process that
/// held little add up to half the limit on top).
#[tokio::test]
async fn outage_shares_add_up_to_the_limit_when_the_window_was_uneven() {
    use crate::limit::{LimitMode, Limiter, ModelLimit};
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("uneven");
    let limit = ModelLimit::per_window(Duration::from_secs(30))
        .requests(10)
        .mode(LimitMode::Reject);
    let busy = std::sync::Arc::new(
        Limiter::new(MODEL, "us-east-1", limit).with_fleet(fleet(&redis.url(), &p)),
    );
    let quiet = std::sync::Arc::new(
        Limiter::new(MODEL, "us-east-1", limit).with_fleet(fleet(&redis.url(), &p)),
    );
    let mut held = Vec::new();
    held.push(quiet.acquire(MODEL, 1).await.expect("through redis"));
    for _ in 0..6 {
        held.push(busy.acquire(MODEL, 1).await.expect("through redis"));
    }
    // The quiet process asks last: it saw 8 of 10 in the window and two processes.
    held.push(quiet.acquire(MODEL, 1).await.expect("through redis"));
    held.push(busy.acquire(MODEL, 1).await.expect("through redis"));
    redis.stop();
    let more = |l: &std::sync::Arc<Limiter>| {
        let l = l.clone();
        async move {
            let mut n = 0;
            while let Ok(lease) = l.acquire(MODEL, 1).await {
                std::mem::forget(lease);
                n += 1;
                assert!(n < 20, "no share");
            }
            n
        }
    };
    // Busy saw 9 of 10 at its last admission: 7 held + (10 - 9) / 2 = 0 more. Quiet saw 8:
    // 2 held + (10 - 8) / 2 = 1 more. Together: 9 + 1 = 10, never past the limit.
    let (b, q) = (more(&busy).await, more(&quiet).await);
    assert_eq!((b, q), (0, 1));
    drop(held);
}
