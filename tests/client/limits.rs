//! Client-side limits per model, counted at the local server, whose quotas answer
//! `ThrottlingException` as Bedrock's do: nothing is sent past the limit in either mode, a
//! waiting call is admitted when room comes or refused at its deadline, the token estimate is
//! corrected by the usage, and under a load of 200 calls per second a model limited to 60 per
//! (scaled) minute never sees more, with a fallback model taking the overflow.
//!
//! Time is scaled down: a window of 1 s plays Bedrock's minute. These tests pin h2: the limiter
//! acts before a call reaches the transport (the protocols' own behaviour is in `faults.rs`).

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{
    ErrorKind, LlmFactory, Result,
    config::RetryMode,
    limit::{LimitMode, ModelLimit},
};
use bedrock_pool_local::{LocalServer, Protocol, Quota};
use common::MODEL;
use std::time::{Duration, Instant};

const SECOND: &str = "amazon.nova-lite-v1:0";

/// A server whose quota for [`MODEL`] is `quota`.
async fn server_with(quota: Quota) -> LocalServer {
    LocalServer::builder()
        .protocol(Protocol::Https)
        .quota(MODEL, quota)
        .start()
        .await
        .expect("local server starts")
}

/// A factory with `limit` on [`MODEL`], one attempt per call (a service throttle would show).
async fn factory_with(server: &LocalServer, limit: ModelLimit) -> LlmFactory {
    common::builder_for(server)
        .retry_mode(RetryMode::Standard)
        .retry_max_attempts(1)
        .model_limit(MODEL, limit)
        .build()
        .await
        .expect("factory builds")
}

fn refused_here(r: &Result<bedrock_pool::Reply>) -> bool {
    r.as_ref().is_err_and(|e| {
        e.kind() == ErrorKind::Throttled && e.message().contains("client-side limit")
    })
}

#[tokio::test]
async fn the_requests_limit_holds_at_the_server_and_refuses_the_rest() {
    let window = Duration::from_millis(500);
    let server = server_with(Quota::new(window).requests(5)).await;
    let limit = ModelLimit::per_window(window)
        .requests(5)
        .mode(LimitMode::Reject);
    let factory = factory_with(&server, limit).await;
    let model = factory.model(MODEL);
    let calls = (0..20).map(|i| {
        let m = model.clone();
        async move { m.converse().user(format!("call {i}")).send().await }
    });
    let results = futures_util::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5);
    assert!(results.iter().filter(|r| r.is_err()).all(refused_here));
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(refused.retry_after().is_some_and(|r| r <= window * 2));
    let q = server.quota_stats(MODEL).unwrap();
    assert_eq!((q.admitted, q.throttled), (5, 0));
    let l = common::limit_of(&factory, MODEL);
    assert_eq!((l.admitted, l.rejected, l.requests_in_window), (5, 15, 5));
    let m = factory.model_stats(MODEL).unwrap().requests;
    assert_eq!(m.throttles, 15);
}

#[tokio::test]
async fn the_tokens_limit_counts_the_estimate_and_the_usage_corrects_it() {
    let window = Duration::from_secs(30);
    // The server charges words + max tokens, then corrects to the usage, as Bedrock does.
    let server = server_with(Quota::new(window).tokens(300)).await;
    let limit = ModelLimit::per_window(window)
        .tokens(300)
        .mode(LimitMode::Reject);
    let factory = factory_with(&server, limit).await;
    let model = factory.model(MODEL);
    // "hi" is 1 token, 200 reserved for the output: the estimate is 201, the usage 2.
    model
        .converse()
        .user("hi")
        .max_tokens(200)
        .send()
        .await
        .expect("fits");
    assert_eq!(common::limit_of(&factory, MODEL).tokens_in_window, 2);
    // Only because the first was corrected does this one fit (2 + 201 <= 300).
    model
        .converse()
        .user("hi")
        .max_tokens(200)
        .send()
        .await
        .expect("fits after correction");
    let concurrent = futures_util::future::join_all((0..3).map(|_| {
        let m = model.clone();
        async move { m.converse().user("hi").max_tokens(200).send().await }
    }))
    .await;
    // 4 + 201 fits, a second 201 does not while the first is unanswered.
    assert!(concurrent.iter().filter(|r| r.is_err()).all(refused_here));
    // A call that can never fit is the caller's input, not a throttle: no retry-after to wait
    // for, and no fallback answers it in the model's place.
    let sent = server.requests().len();
    let e = model
        .converse()
        .user("hi")
        .max_tokens(400)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input() && !e.is_throttled(), "{e:?}");
    assert_eq!(e.field(), Some("max_tokens"));
    assert!(e.message().contains("limit of 300 tokens"), "{e}");
    let chain = model.with_fallbacks(["amazon.nova-lite-v1:0"]);
    let e = chain
        .converse()
        .user("hi")
        .max_tokens(400)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("max_tokens"), "{e:?}");
    assert_eq!(server.requests().len(), sent, "nothing was sent");
    let q = server.quota_stats(MODEL).unwrap();
    assert_eq!(
        q.throttled, 0,
        "the server never throttled: the client held back"
    );
    assert!(q.max_tokens_in_window <= 300, "{q:?}");
}

#[tokio::test]
async fn waiting_calls_go_when_room_comes_and_expire_at_their_deadline() {
    let window = Duration::from_millis(300);
    let server = server_with(Quota::new(window).requests(2)).await;
    let limit = ModelLimit::per_window(window)
        .requests(2)
        .mode(LimitMode::wait(16, Duration::from_secs(20)));
    let factory = factory_with(&server, limit).await;
    let model = factory.model(MODEL);
    let started = Instant::now();
    let results = futures_util::future::join_all((0..6).map(|i| {
        let m = model.clone();
        async move { m.converse().user(format!("call {i}")).send().await }
    }))
    .await;
    assert!(
        results.iter().all(|r| r.is_ok()),
        "every call waited its turn"
    );
    // Six calls, two per window: at least two windows of waiting.
    assert!(started.elapsed() >= window * 2, "{:?}", started.elapsed());
    let l = common::limit_of(&factory, MODEL);
    assert_eq!((l.admitted, l.waited, l.rejected, l.expired), (6, 4, 0, 0));
    assert!(l.queue_wait.max >= window, "{:?}", l.queue_wait);
    let q = server.quota_stats(MODEL).unwrap();
    assert_eq!(q.throttled, 0);
    assert!(q.max_requests_in_window <= 2, "{q:?}");

    // A deadline shorter than the window: the waiting call is refused, never sent.
    let server = server_with(Quota::new(Duration::from_secs(60)).requests(1)).await;
    let limit = ModelLimit::per_window(Duration::from_secs(60))
        .requests(1)
        .mode(LimitMode::wait(4, Duration::from_millis(200)));
    let factory = factory_with(&server, limit).await;
    factory
        .model(MODEL)
        .converse()
        .user("first")
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let e = factory
        .model(MODEL)
        .converse()
        .user("second")
        .send()
        .await
        .unwrap_err();
    assert!(e.is_throttled() && e.message().contains("waited"), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(common::limit_of(&factory, MODEL).expired, 1);
    assert_eq!(server.quota_stats(MODEL).unwrap().admitted, 1);
}

/// Fires `per_second` calls a second for `duration` at `model`, each on its own task.
async fn drive_load(
    model: &bedrock_pool::Model,
    per_second: u32,
    duration: Duration,
) -> Vec<Result<bedrock_pool::Reply>> {
    let gap = Duration::from_secs(1) / per_second;
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let m = model.clone();
        tasks.push(tokio::spawn(async move {
            m.converse().user("load").max_tokens(16).send().await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// 200 calls a second for 3 s at a model limited to 60 per (scaled) minute: every call is
/// answered or refused here, the server never sees more than 60 in a window nor throttles;
/// with a fallback model, it takes the overflow and every call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_nothing_passes_the_limit_and_the_fallback_takes_the_overflow() {
    let minute = Duration::from_secs(1);
    let server = server_with(Quota::new(minute).requests(60)).await;
    let limit = ModelLimit::per_window(minute)
        .requests(60)
        .mode(LimitMode::Reject);
    let factory = factory_with(&server, limit).await;

    let results = drive_load(&factory.model(MODEL), 200, Duration::from_secs(3)).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results.iter().filter(|r| refused_here(r)).count();
    assert_eq!(
        ok + refused,
        results.len(),
        "every call answered or refused here"
    );
    assert!(
        results.len() >= 400,
        "the load was driven: {}",
        results.len()
    );
    assert!((60..=240).contains(&ok), "{ok} answered in about 3 windows");
    let q = server.quota_stats(MODEL).unwrap();
    assert_eq!(q.throttled, 0, "{q:?}");
    assert!(q.max_requests_in_window <= 60, "{q:?}");

    // The same load with a fallback model: the overflow goes there.
    server.set_quota(MODEL, Some(Quota::new(minute).requests(60)));
    let model = factory.model(MODEL).with_fallbacks([SECOND]);
    let results = drive_load(&model, 200, Duration::from_secs(3)).await;
    assert!(results.iter().all(|r| r.is_ok()), "every call answered");
    let by_first = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.model_id() == MODEL))
        .count();
    let by_second = results.len() - by_first;
    assert!(
        by_first >= 60 && by_second >= results.len() / 2,
        "{by_first} / {by_second}"
    );
    let q = server.quota_stats(MODEL).unwrap();
    assert_eq!(q.throttled, 0, "{q:?}");
    assert!(q.max_requests_in_window <= 60, "{q:?}");
    assert_eq!(
        factory.model_stats(MODEL).unwrap().requests.fallbacks as usize,
        by_second,
        "each overflow call counted one fallback (the first run's refusals, without a chain, none)"
    );
}

#[tokio::test]
async fn bad_limits_are_refused_naming_the_field() {
    let server = common::server(Protocol::Https).await;
    let cases = [
        (ModelLimit::per_minute(), "model_limit"),
        (ModelLimit::per_minute().requests(0), "model_limit.requests"),
        (ModelLimit::per_minute().tokens(0), "model_limit.tokens"),
        (
            ModelLimit::per_window(Duration::ZERO).requests(1),
            "model_limit.window",
        ),
        (
            ModelLimit::per_minute()
                .requests(1)
                .mode(LimitMode::wait(0, Duration::from_secs(1))),
            "model_limit.mode",
        ),
    ];
    for (limit, field) in cases {
        let e = common::builder_for(&server)
            .model_limit(MODEL, limit)
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some(field), "{limit:?}: {e}");
    }
    let e = common::builder_for(&server)
        .model_limit("not a model", ModelLimit::per_minute().requests(1))
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("model_limit"));
}

/// Each region of a multi-region factory has its own limit, as Bedrock's quotas are per
/// region: a call counts against the limit of the region it goes to, never another's, and a
/// region's own limit (`model_limit_in`) replaces the model's there.
#[tokio::test]
async fn each_region_counts_against_its_own_limit() {
    use bedrock_pool_local::{Fault, FaultRule, ServiceError};
    let start = |region: &'static str| async move {
        LocalServer::builder()
            .protocol(Protocol::Https)
            .region(region)
            .start()
            .await
            .expect("local server starts")
    };
    let (west, east) = (start("us-west-2").await, start("us-east-1").await);
    let limit = |n| {
        ModelLimit::per_window(Duration::from_secs(60))
            .requests(n)
            .mode(LimitMode::Reject)
    };
    let factory = common::two_region_builder(&west, &east)
        .failover_cooldown(Duration::from_secs(60))
        .model_limit(MODEL, limit(2))
        .model_limit_in("us-east-1", MODEL, limit(1))
        .build()
        .await
        .expect("factory builds");
    let model = factory.model(MODEL);
    // West fails once: the call is admitted by west's limit, then by east's, and east answers.
    west.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("regional outage".into()),
    )));
    let reply = model
        .converse()
        .user("one")
        .send()
        .await
        .expect("east answers");
    assert_eq!(reply.region(), "us-east-1");
    let stats = |r| {
        factory
            .stats()
            .limit(MODEL, r)
            .cloned()
            .expect("a limit there")
    };
    assert_eq!(stats("us-west-2").admitted, 1);
    assert_eq!(stats("us-east-1").admitted, 1);
    // West cools down: the next call goes to east first, whose own limit (1) is full, though
    // west's (2) has room. Refused client-side, naming the region.
    let e = model.converse().user("two").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
    assert!(e.message().contains("in us-east-1"), "{e}");
    assert_eq!(stats("us-west-2").admitted, 1);
    let limits = factory.stats().limits;
    assert_eq!(limits.len(), 2, "one limit in each region: {limits:?}");
    let admitted: u64 = limits.iter().map(|l| l.admitted).sum();
    let rejected: u64 = limits.iter().map(|l| l.rejected).sum();
    assert_eq!((admitted, rejected), (2, 1));
    // A region not of the factory is refused at build, naming the field.
    let e = common::two_region_builder(&west, &east)
        .model_limit_in("eu-west-1", MODEL, limit(1))
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("model_limit_in.region"), "{e}");
}

/// The local server settles a call as Bedrock does: input plus five times the output for a
/// model with a burndown rate of 5, the output alone counting once for the others.
#[tokio::test]
async fn the_local_quota_counts_the_burndown_rate() {
    const SONNET_4: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";
    let window = Duration::from_secs(60);
    let server = LocalServer::builder()
        .protocol(Protocol::Https)
        .quota(SONNET_4, Quota::new(window).tokens(1_000_000))
        .quota(MODEL, Quota::new(window).tokens(1_000_000))
        .start()
        .await
        .expect("local server starts");
    let factory = common::builder_for(&server).build().await.expect("factory");
    let mut counted = Vec::new();
    for id in [SONNET_4, MODEL] {
        let reply = factory
            .model(id)
            .converse()
            .user("count these five words")
            .max_tokens(100)
            .send()
            .await
            .expect("answered");
        let usage = reply.usage().expect("usage");
        let (input, output) = (
            u64::try_from(usage.input_tokens()).unwrap(),
            u64::try_from(usage.output_tokens()).unwrap(),
        );
        assert!(output > 0);
        let stats = server.quota_stats(id).expect("a quota");
        counted.push((stats.max_tokens_in_window, input, output));
    }
    assert_eq!(counted[0].0, counted[0].1 + 5 * counted[0].2, "{counted:?}");
    assert_eq!(counted[1].0, counted[1].1 + counted[1].2, "{counted:?}");
}
