// Long because its tests share one setup and read best side by side; each test is one scenario.
//! The shared sliding window, the corrections and the cooldowns, with Redis up.

use super::{RedisServer, eventually, fleet, prefix};
use crate::fleet::{Admission, CooldownKey, Fleet, Ticket, WindowSpec};
use std::time::Duration;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn requests(n: u64, window: Duration) -> WindowSpec {
    WindowSpec {
        requests: Some(n),
        tokens: None,
        window,
    }
}

fn tokens(n: u64, window: Duration) -> WindowSpec {
    WindowSpec {
        requests: None,
        tokens: Some(n),
        window,
    }
}

const UNLIMITED: WindowSpec = WindowSpec {
    requests: None,
    tokens: None,
    window: Duration::from_secs(1),
};

async fn admission(f: &Fleet, spec: WindowSpec, n: u64) -> Admission {
    f.acquire(MODEL, spec, n, &[])
        .await
        .expect("redis answers")
        .admission
}

fn ticket(a: Admission) -> Ticket {
    match a {
        Admission::Admitted(t) => t,
        other => panic!("expected admitted, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fleets_admit_exactly_n_per_window_together() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("exactly-n");
    let (a, b) = (fleet(&redis.url(), &p), fleet(&redis.url(), &p));
    let window = Duration::from_secs(30);
    let spec = requests(5, window);
    let mut calls = Vec::new();
    for i in 0..40 {
        let f = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.push(tokio::spawn(async move { admission(&f, spec, 1).await }));
    }
    let mut admitted = 0;
    for c in calls {
        match c.await.expect("task") {
            Admission::Admitted(_) => admitted += 1,
            Admission::RetryAfter(d) => assert!(d > Duration::ZERO && d <= window * 2, "{d:?}"),
            Admission::NeverFits => panic!("one request always fits"),
        }
    }
    assert_eq!(admitted, 5, "the fleet together admits exactly the limit");
    assert_eq!(a.stats().fallbacks + b.stats().fallbacks, 0);
}

#[tokio::test]
async fn the_window_slides() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let f = fleet(&redis.url(), &prefix("slides"));
    let window = Duration::from_millis(400);
    let spec = requests(2, window);
    let a = ticket(admission(&f, spec, 1).await);
    let b = ticket(admission(&f, spec, 1).await);
    let Admission::RetryAfter(wait) = admission(&f, spec, 1).await else {
        panic!("the third request in one window waits");
    };
    // Calls in flight leave two windows after their admission at the latest.
    assert!(wait > window && wait <= window * 2, "{wait:?}");
    // Ended now, they leave one window from now.
    for t in [a, b] {
        f.settle(MODEL, t, None, window);
    }
    assert!(eventually(|| async { f.stats().corrections == 2 }).await);
    let Admission::RetryAfter(wait) = admission(&f, spec, 1).await else {
        panic!("still within a window of their end");
    };
    assert!(wait > Duration::ZERO && wait <= window, "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(30)).await;
    let c = ticket(admission(&f, spec, 1).await);
    f.settle(MODEL, c, None, window);
    tokio::time::sleep(window + Duration::from_millis(30)).await;
    ticket(admission(&f, spec, 1).await);
    ticket(admission(&f, spec, 1).await);
}

#[tokio::test]
async fn tokens_are_limited_and_corrected() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("tokens");
    let (a, b) = (fleet(&redis.url(), &p), fleet(&redis.url(), &p));
    let spec = tokens(100, Duration::from_secs(30));
    let first = ticket(admission(&a, spec, 60).await);
    let Admission::RetryAfter(wait) = admission(&b, spec, 60).await else {
        panic!("60 + 60 tokens are over 100");
    };
    assert!(
        wait > Duration::from_secs(20) && wait <= spec.window * 2,
        "{wait:?}"
    );
    // The reply used 10 tokens, not the 60 estimated: the other fleet member sees room again.
    a.settle(MODEL, first, Some(10), spec.window);
    assert!(eventually(|| async { a.stats().corrections == 1 }).await);
    ticket(admission(&b, spec, 60).await);
    let mut conn = redis.connection().await.expect("redis");
    let sum: u64 = redis::cmd("HGET")
        .arg(format!("{{{p}}}:tok:{}:{MODEL}", spec.window.as_millis()))
        .arg("_sum")
        .query_async(&mut conn)
        .await
        .expect("sum");
    assert_eq!(sum, 70);
    // A stale ticket (another admission time) corrects nothing.
    a.settle(MODEL, Ticket { id: 1, ..first }, Some(99), spec.window);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.stats().corrections, 1);
    assert_eq!(a.stats().dropped, 0);
}

#[tokio::test]
async fn retry_after_for_tokens_is_when_enough_tokens_left() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let f = fleet(&redis.url(), &prefix("tokens-slide"));
    let window = Duration::from_millis(600);
    let spec = tokens(100, window);
    let a = ticket(admission(&f, spec, 50).await);
    f.settle(MODEL, a, None, window);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = ticket(admission(&f, spec, 50).await);
    f.settle(MODEL, b, None, window);
    assert!(eventually(|| async { f.stats().corrections == 2 }).await);
    // 90 more need both entries gone, so the wait is the younger one's, not the older one's.
    let Admission::RetryAfter(wait) = admission(&f, spec, 90).await else {
        panic!("over the tokens limit");
    };
    assert!(
        wait > Duration::from_millis(250) && wait <= window,
        "{wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(30)).await;
    ticket(admission(&f, spec, 90).await);
}

#[tokio::test]
async fn a_request_over_a_limit_never_fits() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let f = fleet(&redis.url(), &prefix("never"));
    let spec = tokens(100, Duration::from_secs(1));
    assert_eq!(admission(&f, spec, 101).await, Admission::NeverFits);
    ticket(admission(&f, spec, 100).await);
    let zero = requests(0, Duration::from_secs(1));
    assert_eq!(admission(&f, zero, 1).await, Admission::NeverFits);
}

#[tokio::test]
async fn every_key_expires_on_its_own() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("expiry");
    let f = fleet(&redis.url(), &p);
    let spec = WindowSpec {
        requests: Some(10),
        tokens: Some(1000),
        window: Duration::from_secs(5),
    };
    let t = ticket(admission(&f, spec, 10).await);
    f.settle(MODEL, t, Some(5), spec.window);
    f.set_cooldown(
        CooldownKey::Region("us-east-1".into()),
        Duration::from_secs(3),
    );
    let model_region = CooldownKey::ModelRegion {
        model: MODEL.into(),
        region: "us-west-2".into(),
    };
    f.set_cooldown(model_region, Duration::from_secs(3));
    assert!(eventually(|| async { f.stats().cooldowns_set == 2 }).await);
    let mut conn = redis.connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{p}}}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    // Two of the window, two cooldowns, the processes.
    assert_eq!(keys.len(), 5, "{keys:?}");
    for k in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .expect("pttl");
        assert!(
            ttl > 0 && ttl <= 15_000,
            "{k} has PTTL {ttl} (three windows at most)"
        );
    }
}

#[tokio::test]
async fn a_cooldown_set_by_one_fleet_is_seen_by_the_other() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("cooldown");
    let (a, b) = (fleet(&redis.url(), &p), fleet(&redis.url(), &p));
    let east = CooldownKey::Region("us-east-1".into());
    let pair = CooldownKey::ModelRegion {
        model: MODEL.into(),
        region: "eu-west-1".into(),
    };
    let keys = [
        east.clone(),
        CooldownKey::Region("eu-west-1".into()),
        pair.clone(),
    ];
    let read = |f: Fleet| {
        let keys = keys.clone();
        async move {
            f.acquire(MODEL, UNLIMITED, 1, &keys)
                .await
                .expect("redis")
                .cooldowns
        }
    };
    assert_eq!(read(b.clone()).await, vec![None, None, None]);
    a.set_cooldown(east.clone(), Duration::from_secs(5));
    a.set_cooldown(pair.clone(), Duration::from_secs(2));
    assert!(eventually(|| async { a.stats().cooldowns_set == 2 }).await);
    let seen = read(b.clone()).await;
    let left = |i: usize| seen[i].unwrap_or_else(|| panic!("cooldown {i} seen: {seen:?}"));
    assert!(left(0) > Duration::from_secs(3) && left(0) <= Duration::from_secs(5));
    assert!(left(2) > Duration::ZERO && left(2) <= Duration::from_secs(2));
    assert_eq!(seen[1], None);
    // A limited acquire reads the cooldowns in the same round trip.
    let trips = b.stats().round_trips;
    let both = b
        .acquire(MODEL, requests(5, Duration::from_secs(5)), 1, &keys)
        .await;
    assert!(both.expect("redis").cooldowns[0].is_some());
    assert_eq!(b.stats().round_trips, trips + 1);
    // A half-open trial succeeded in one process: the fleet stops cooling down at once.
    b.clear_cooldown(east);
    assert!(eventually(|| async { read(a.clone()).await[0].is_none() }).await);
}

#[tokio::test]
async fn set_cooldown_extends_but_never_shortens() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let f = fleet(&redis.url(), &prefix("never-shorter"));
    let key = CooldownKey::Region("us-east-1".into());
    let left = || async {
        let got = f
            .acquire(MODEL, UNLIMITED, 0, std::slice::from_ref(&key))
            .await;
        got.expect("redis").cooldowns[0].unwrap_or_default()
    };
    f.set_cooldown(key.clone(), Duration::from_secs(10));
    assert!(eventually(|| async { f.stats().cooldowns_set == 1 }).await);
    f.set_cooldown(key.clone(), Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        left().await > Duration::from_secs(8),
        "a shorter cooldown shortened it"
    );
    f.set_cooldown(key.clone(), Duration::from_secs(30));
    assert!(eventually(|| async { f.stats().cooldowns_set == 2 }).await);
    assert!(left().await > Duration::from_secs(25));
}

#[tokio::test]
async fn one_round_trip_per_acquire() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let f = fleet(&redis.url(), &prefix("one-trip"));
    let keys = [CooldownKey::Region("us-east-1".into())];
    let spec = requests(1000, Duration::from_secs(5));
    // The first call may load the script (EVALSHA, then SCRIPT LOAD, then EVALSHA).
    f.acquire(MODEL, spec, 1, &keys).await.expect("redis");
    let conn = redis.connection().await.expect("redis");
    let calls = |info: &str, cmd: &str| -> u64 {
        let line = info
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")));
        let calls = line.and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok());
        calls.unwrap_or(0)
    };
    let info = |mut c: redis::aio::MultiplexedConnection| async move {
        redis::cmd("INFO")
            .arg("commandstats")
            .query_async::<String>(&mut c)
            .await
            .expect("info")
    };
    let before = info(conn.clone()).await;
    let trips = f.stats().round_trips;
    for _ in 0..10 {
        f.acquire(MODEL, spec, 1, &keys).await.expect("redis");
    }
    let after = info(conn.clone()).await;
    assert_eq!(calls(&after, "evalsha") - calls(&before, "evalsha"), 10);
    assert_eq!(calls(&after, "eval"), calls(&before, "eval"));
    assert_eq!(calls(&after, "script|load"), calls(&before, "script|load"));
    assert_eq!(f.stats().round_trips, trips + 10);
}

/// A lease dropped outside any runtime (a blocking thread, a destructor at shutdown) settles on
/// the fleet's own runtime instead of panicking in `tokio::spawn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_outside_a_runtime_does_not_panic() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("off-runtime");
    let f = fleet(&redis.url(), &p);
    let window = Duration::from_secs(30);
    let t = ticket(admission(&f, tokens(1000, window), 100).await);
    let off = f.clone();
    std::thread::spawn(move || off.settle(MODEL, t, Some(10), window))
        .join()
        .expect("no panic off the runtime");
    assert!(eventually(|| async { f.stats().corrections == 1 }).await);
}

/// Two processes configured with different windows for one model keep separate windows: the
/// shorter one's trims and expiries never wipe the longer one's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_windows_keep_apart() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("mixed-windows");
    let (long, short) = (fleet(&redis.url(), &p), fleet(&redis.url(), &p));
    let minute = requests(2, Duration::from_secs(60));
    for _ in 0..2 {
        ticket(admission(&long, minute, 1).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tiny = requests(2, Duration::from_millis(100));
    ticket(admission(&short, tiny, 1).await);
    assert!(
        matches!(admission(&long, minute, 1).await, Admission::RetryAfter(_)),
        "the minute window still holds its two calls"
    );
}

/// A log key lost on its own (evicted under memory pressure) takes its tokens with it: the
/// sum heals instead of refusing every later call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_log_heals_its_token_sum() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("heal");
    let f = fleet(&redis.url(), &p);
    let spec = tokens(100, Duration::from_secs(60));
    ticket(admission(&f, spec, 80).await);
    let mut conn = redis.connection().await.expect("redis");
    let () = redis::cmd("DEL")
        .arg(format!("{{{p}}}:win:60000:{MODEL}"))
        .query_async(&mut conn)
        .await
        .expect("del");
    ticket(admission(&f, spec, 80).await);
}

/// A call in flight longer than two windows stays in the shared window while it runs (as in
/// the local window), and leaves one window after it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_stays_in_the_window_while_in_flight() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("renew");
    let f = fleet(&redis.url(), &p);
    let window = Duration::from_millis(300);
    let spec = requests(1, window);
    let long = ticket(admission(&f, spec, 1).await);
    let renewal = f.keep_in_window(MODEL, long, window);
    // Four windows later the call is still in flight: still counted.
    tokio::time::sleep(window * 4).await;
    assert!(
        matches!(admission(&f, spec, 1).await, Admission::RetryAfter(_)),
        "the call in flight still holds the slot"
    );
    drop(renewal);
    f.settle(MODEL, long, None, window);
    tokio::time::sleep(window * 2).await;
    ticket(admission(&f, spec, 1).await);
}

/// A slow Redis: an acquire that timed out on the client (a busy script stalls Redis) still
/// runs on the server when the stall ends; its entry is then forgotten, so it holds no slot
/// while the call was admitted by the local limiter instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_that_timed_out_leaves_nothing_behind() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // The warning of the outage is emitted here: under a subscriber (see failover.rs).
    let logs = super::Logs::default();
    let _guard = logs.capture();
    let p = prefix("stalled");
    let f = fleet(&redis.url(), &p);
    let spec = requests(100, Duration::from_secs(60));
    ticket(admission(&f, spec, 1).await);
    let mut busy = redis.connection().await.expect("redis");
    let stall = tokio::spawn(async move {
        let script = "local function ms() local t = redis.call('TIME') \
                      return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end \
                      local t0 = ms() while ms() - t0 < 1500 do end return 1";
        let _: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(script)
            .arg(0)
            .query_async(&mut busy)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        f.acquire(MODEL, spec, 1, &[]).await.is_err(),
        "timed out behind the busy script"
    );
    stall.await.expect("the stall ends");
    assert!(
        eventually(|| async { f.stats().forgotten == 1 }).await,
        "{:?}",
        f.stats()
    );
    let mut conn = redis.connection().await.expect("redis");
    let n: u64 = redis::cmd("ZCARD")
        .arg(format!("{{{p}}}:win:60000:{MODEL}"))
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(n, 1, "only the first call's entry is in the window");
}

/// A copy of an acquire that arrives after its ticket was forgotten (a cluster client sends a
/// command again after a redirect, whenever it likes) finds the tombstone and adds nothing.
#[tokio::test]
async fn a_late_copy_of_a_forgotten_acquire_adds_nothing() {
    use crate::fleet::script;
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let p = prefix("tombstone");
    let mut conn = redis.connection().await.expect("redis");
    let [log, toks] = script::window_keys(&p, MODEL, 60_000);
    let ticket = 42_u64;
    let forget = redis::Script::new(script::FORGET);
    let forgotten: i64 = forget
        .key(&log)
        .key(&toks)
        .key(script::gone_key(&p, ticket))
        .arg(ticket)
        .arg(60_000)
        .invoke_async(&mut conn)
        .await
        .expect("forget");
    assert_eq!(forgotten, 0, "nothing there yet");
    let acquire = redis::Script::new(script::ACQUIRE);
    let mut ask = async |t: u64| -> Vec<i64> {
        acquire
            .key(&log)
            .key(&toks)
            .key(script::gone_key(&p, t))
            .key(script::procs_key(&p))
            .arg(1)
            .arg(10)
            .arg(-1)
            .arg(60_000)
            .arg(1)
            .arg(t)
            .arg("proc-a")
            .invoke_async(&mut conn)
            .await
            .expect("acquire")
    };
    let late = ask(ticket).await;
    assert_eq!(
        (late[0], late[2]),
        (0, 1),
        "answered, one process: {late:?}"
    );
    let fresh = ask(43).await;
    assert_eq!(fresh[0], 0);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&log)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("zrange");
    assert_eq!(members, ["43"], "only the fresh ticket is in the window");
}
