//! Unit tests of the limiter: the window arithmetic, the two modes, the queue.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_window_counts_requests_and_tokens_and_says_when_room_comes() {
    let limit = ModelLimit::per_window(ms(1000)).requests(2).tokens(100);
    let mut w = Window::default();
    let t0 = Instant::now();
    assert!(w.has_room(&limit, 60));
    let first = w.push(60);
    assert!(!w.has_room(&limit, 60), "60 + 60 > 100");
    assert_eq!(
        w.room_in(t0, &limit, 60),
        limit.window,
        "unknown while the first is in flight"
    );
    w.end(first, t0, limit.window);
    assert_eq!(w.room_in(t0 + ms(100), &limit, 60), ms(900));
    assert!(w.correct(first, 10), "the usage was lower: room freed");
    assert!(w.has_room(&limit, 60));
    let second = w.push(60);
    assert!(!w.has_room(&limit, 1), "two requests");
    assert_eq!(w.room_in(t0 + ms(300), &limit, 1), ms(700));
    w.trim(t0 + ms(1000), &limit);
    assert_eq!(
        (w.len(), w.tokens()),
        (1, 60),
        "the first left, the second is in flight"
    );
    assert!(w.has_room(&limit, 40));
    assert!(!w.has_room(&limit, 41));
    w.end(second, t0 + ms(1100), limit.window);
    w.trim(t0 + ms(2099), &limit);
    assert_eq!(
        w.len(),
        1,
        "a window after it ended, not after it was admitted"
    );
    w.trim(t0 + ms(2100), &limit);
    assert_eq!((w.len(), w.tokens()), (0, 0));
}

#[test]
fn a_call_in_flight_does_not_hold_back_those_that_left_when_the_window_is_full() {
    let limit = ModelLimit::per_window(ms(100)).requests(3);
    let mut w = Window::default();
    let t0 = Instant::now();
    let _slow = w.push(1);
    let a = w.push(1);
    let b = w.push(1);
    w.end(a, t0, limit.window);
    w.end(b, t0, limit.window);
    assert!(!w.has_room(&limit, 1));
    assert_eq!(w.room_in(t0, &limit, 1), ms(100));
    w.trim(t0 + ms(100), &limit);
    assert_eq!(w.len(), 1);
}

#[test]
fn estimates_count_a_token_per_four_bytes_plus_max_tokens() {
    assert_eq!(estimate(0, None), 0);
    assert_eq!(estimate(5, None), 2);
    assert_eq!(estimate(8, Some(100)), 102);
    assert_eq!(estimate(8, Some(-1)), 2);
}

#[tokio::test]
async fn reject_mode_refuses_at_once_with_a_retry_after() {
    let l = Arc::new(Limiter::new(
        "m",
        "us-east-1",
        ModelLimit::per_window(ms(500))
            .requests(2)
            .mode(LimitMode::Reject),
    ));
    let _a = l.acquire("m", 1).await.expect("first");
    let _b = l.acquire("m", 1).await.expect("second");
    let e = l.acquire("m", 1).await.err().expect("third is refused");
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert!(e.retry_after().is_some_and(|r| r <= ms(500)));
    assert!(e.message().contains("client-side limit of m"), "{e}");
    let s = l.stats();
    assert_eq!((s.admitted, s.rejected, s.requests_in_window), (2, 1, 2));
}

#[tokio::test]
async fn an_estimate_over_the_whole_token_limit_never_waits() {
    let l = Arc::new(Limiter::new(
        "m",
        "us-east-1",
        ModelLimit::per_window(ms(500)).tokens(10),
    ));
    let e = l.acquire("m", 11).await.err().expect("too large");
    // The caller's input, not a throttle: no wait or retry can admit it, and no fallback may
    // answer it in the model's place.
    assert!(e.is_invalid_input() && !e.falls_back(), "{e:?}");
    assert_eq!(e.field(), Some("max_tokens"));
    assert!(e.retry_after().is_none());
    assert_eq!(l.stats().rejected, 1);
}

#[tokio::test]
async fn waiting_calls_go_in_order_when_room_comes() {
    let l = Arc::new(Limiter::new(
        "m",
        "us-east-1",
        ModelLimit::per_window(ms(300))
            .requests(1)
            .mode(LimitMode::wait(10, Duration::from_secs(10))),
    ));
    // Each call leaves the window one window after it ended.
    drop(l.acquire("m", 1).await.expect("first"));
    let started = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (l, order) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _lease = l.acquire("m", 1).await.expect("admitted after waiting");
            order.lock().unwrap().push(i);
        }));
        // Queue them in a known order.
        tokio::time::sleep(ms(20)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    // One per window: the third waiter went at least three windows after the first call.
    assert!(started.elapsed() >= ms(800), "{:?}", started.elapsed());
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    let s = l.stats();
    assert_eq!((s.admitted, s.waited, s.queued), (4, 3, 0));
    assert!(s.queue_wait.max >= ms(200), "{:?}", s.queue_wait);
}

#[tokio::test]
async fn the_deadline_and_the_queue_bound_refuse_calls() {
    let l = Arc::new(Limiter::new(
        "m",
        "us-east-1",
        ModelLimit::per_window(Duration::from_secs(60))
            .requests(1)
            .mode(LimitMode::wait(1, ms(100))),
    ));
    let _first = l.acquire("m", 1).await.expect("first");
    let l2 = l.clone();
    let waiter = tokio::spawn(async move { l2.acquire("m", 1).await.map(|_| ()) });
    tokio::time::sleep(ms(30)).await;
    let full = l.acquire("m", 1).await.err().expect("the queue is full");
    assert!(full.message().contains("already wait"), "{full}");
    let expired = waiter.await.unwrap().expect_err("deadline");
    assert!(expired.is_throttled());
    let s = l.stats();
    assert_eq!((s.rejected, s.expired, s.queued), (1, 1, 0));
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_the_queue() {
    let l = Arc::new(Limiter::new(
        "m",
        "us-east-1",
        ModelLimit::per_window(ms(200))
            .requests(1)
            .mode(LimitMode::wait(4, Duration::from_secs(5))),
    ));
    drop(l.acquire("m", 1).await.expect("first"));
    let cancelled = tokio::time::timeout(ms(50), l.acquire("m", 1)).await;
    assert!(cancelled.is_err());
    assert_eq!(l.stats().queued, 0);
    l.acquire("m", 1)
        .await
        .expect("the next waiter is not stuck behind it");
}

#[test]
fn waits_spread_within_a_quarter() {
    let d = Duration::from_millis(400);
    let all: Vec<Duration> = (0..200).map(|_| jittered(d)).collect();
    assert!(
        all.iter().all(|j| *j >= d && *j <= d.mul_f64(1.25)),
        "{all:?}"
    );
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert!(distinct.len() > 20, "{} distinct", distinct.len());
}

/// The burndown rates of AWS's token-burndown page: 5 for Claude 3.7 Sonnet and the Claude 4
/// generations on, whatever the profile prefix; 1 for the others.
#[test]
fn burndown_rates_follow_bedrock() {
    use super::burndown_rate;
    for five in [
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "eu.anthropic.claude-opus-4-5-20251101-v1:0",
    ] {
        assert_eq!(burndown_rate(five), 5, "{five}");
    }
    for one in [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "amazon.nova-pro-v1:0",
        "meta.llama3-70b-instruct-v1:0",
        "anthropic.claude-v2:1",
        "",
    ] {
        assert_eq!(burndown_rate(one), 1, "{one}");
    }
}

/// A call reserves its input plus max_tokens, and settles at input + cache writes + output
/// times the burndown rate (cache reads not counted); a limit's own rate replaces the model's.
#[tokio::test]
async fn a_call_settles_as_bedrock_counts_it() {
    let model = "us.anthropic.claude-sonnet-4-20250514-v1:0";
    let l = Arc::new(Limiter::new(
        model,
        "us-east-1",
        ModelLimit::per_window(ms(60_000)).tokens(10_000),
    ));
    let lease = l.acquire(model, 100 + 1_000).await.expect("admitted");
    assert_eq!(
        l.stats().tokens_in_window,
        1_100,
        "reserved: input + max_tokens"
    );
    lease.settle_usage(100, 20, 50);
    assert_eq!(l.stats().tokens_in_window, 100 + 20 + 50 * 5);
    drop(lease);
    let own = Arc::new(Limiter::new(
        model,
        "us-east-1",
        ModelLimit::per_window(ms(60_000))
            .tokens(10_000)
            .burndown(2),
    ));
    let lease = own.acquire(model, 10).await.expect("admitted");
    lease.settle_usage(10, 0, 50);
    assert_eq!(own.stats().tokens_in_window, 10 + 50 * 2);
    let nova = Arc::new(Limiter::new(
        "amazon.nova-pro-v1:0",
        "us-east-1",
        ModelLimit::per_window(ms(60_000)).tokens(10_000),
    ));
    let lease = nova
        .acquire("amazon.nova-pro-v1:0", 10)
        .await
        .expect("admitted");
    lease.settle_usage(10, 0, 50);
    assert_eq!(nova.stats().tokens_in_window, 60);
}
