//! Per-model quotas and context windows of the local server, driven through the factory: the
//! throttling Bedrock answers past a requests or tokens quota, the sliding window, the figures
//! of `quota_stats`, exact admission under concurrency, and the context-window refusals.
//!
//! Windows are either long (60 s, so nothing slides during a test) or short and only waited
//! out, never raced: no assertion depends on a call landing inside a short window.

use crate::common;

use std::time::Duration;

use bedrock_pool::{Error, ErrorKind, LlmFactory};
use bedrock_pool_local::{LocalServer, Operation, Protocol, Quota};
use common::{Ask, MODEL, builder_for};
use serde_json::json;
use tokio::task::JoinSet;

/// A window nothing slides out of during a test.
const LONG: Duration = Duration::from_secs(60);
const TOO_MANY_REQUESTS: &str = "Too many requests, please wait before trying again.";
const TOO_MANY_TOKENS: &str = "Too many tokens, please wait before trying again.";
const NOVA: &str = "amazon.nova-lite-v1:0";
const TITAN: &str = "amazon.titan-embed-text-v2:0";

async fn start(builder: bedrock_pool_local::LocalServerBuilder, p: Protocol) -> LocalServer {
    builder
        .protocol(p)
        .start()
        .await
        .expect("local server starts")
}

/// Returns a factory that tries each call once, so a throttle reaches the test.
async fn one_attempt(server: &LocalServer) -> LlmFactory {
    builder_for(server)
        .retry_max_attempts(1)
        .build()
        .await
        .expect("factory builds")
}

fn assert_throttled(err: &Error, message: &str) {
    assert_eq!(err.code(), Some("ThrottlingException"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert_eq!(err.status(), Some(429), "{err}");
    assert!(err.message().contains(message), "{err}");
}

fn assert_too_long(err: &Error, message: &str) {
    assert_eq!(err.code(), Some("ValidationException"), "{err}");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.message().ends_with(message), "{err}");
}

both_protocols! {
    async fn requests_quota_admits_n_per_window_then_throttles(p: Protocol) {
        let quota = Quota::new(LONG).requests(3);
        let server = start(LocalServer::builder().quota(MODEL, quota), p).await;
        let factory = one_attempt(&server).await;
        for i in 0..3 {
            factory.ask(format!("call {i}")).await.expect("admitted");
        }
        let err = factory.ask("one too many").await.unwrap_err();
        assert_throttled(&err, TOO_MANY_REQUESTS);
        // Another model has no quota.
        factory.model(NOVA).converse().user("free").send().await.expect("no quota");
        let s = server.quota_stats(MODEL).expect("a quota");
        assert_eq!((s.admitted, s.throttled), (3, 1));
        assert_eq!(s.max_requests_in_window, 3);
        assert_eq!(server.quota_stats(NOVA), None);
        let outcomes: Vec<u16> = server
            .requests_for(Operation::ConverseStream)
            .iter()
            .map(|r| r.outcome)
            .collect();
        assert_eq!(outcomes, [200, 200, 200, 429, 200]);
    }
}

#[tokio::test]
async fn the_window_slides() {
    let window = Duration::from_millis(400);
    let quota = Quota::new(window).requests(2);
    let server = start(LocalServer::builder().quota(MODEL, quota), Protocol::Https).await;
    let factory = one_attempt(&server).await;
    for round in 0..2 {
        // Calls in a row soon find the window full (each takes far less than the window).
        let mut throttled = false;
        for _ in 0..20 {
            match factory.ask("again").await {
                Ok(_) => {}
                Err(e) => {
                    assert_throttled(&e, TOO_MANY_REQUESTS);
                    throttled = true;
                    break;
                }
            }
        }
        assert!(
            throttled,
            "round {round}: 20 calls in a row never throttled"
        );
        // Once a whole window has passed, nothing admitted before counts.
        tokio::time::sleep(window + Duration::from_millis(200)).await;
        factory
            .ask("after the window")
            .await
            .expect("admitted again");
    }
    let s = server.quota_stats(MODEL).unwrap();
    assert_eq!(s.throttled, 2);
    assert!(s.admitted >= 4, "{s:?}");
    assert_eq!(s.max_requests_in_window, 2, "{s:?}");
}

both_protocols! {
    async fn tokens_quota_counts_input_and_max_tokens_then_usage(p: Protocol) {
        let quota = Quota::new(LONG).tokens(20);
        let server = start(LocalServer::builder().quota(MODEL, quota), p).await;
        let factory = one_attempt(&server).await;
        let ask = |text: &'static str, max: i32| {
            let model = factory.model(MODEL);
            async move { model.converse().user(text).max_tokens(max).send().await }
        };
        // Charged 3 + 10 up front, corrected to 3 + 3 (the echo) by its usage.
        let first = ask("one two three", 10).await.expect("admitted");
        assert_eq!(first.text(), "one two three");
        // 6 + 13 = 19: admitted only because the first charge was corrected.
        ask("four five six", 10).await.expect("admitted after the correction");
        // 12 + 13 = 25 > 20.
        let err = ask("seven eight nine", 10).await.unwrap_err();
        assert_throttled(&err, TOO_MANY_TOKENS);
        // 12 + 1 + 7 = 20: the limit itself is admitted.
        ask("ten", 7).await.expect("admitted up to the limit");
        // The stream is charged the same way: 14 + 1 + 6 = 21 > 20.
        let err = factory
            .model(MODEL)
            .converse_stream()
            .user("eleven")
            .max_tokens(6)
            .send()
            .await
            .unwrap_err();
        assert_throttled(&err, TOO_MANY_TOKENS);
        let s = server.quota_stats(MODEL).unwrap();
        assert_eq!((s.admitted, s.throttled), (3, 2));
        assert_eq!(s.max_requests_in_window, 3);
        assert_eq!(s.max_tokens_in_window, 6 + 6 + 2);
    }
}

both_protocols! {
    async fn every_model_operation_counts_but_count_tokens(p: Protocol) {
        let quota = Quota::new(LONG).requests(4);
        let server = start(
            LocalServer::builder().quota(MODEL, quota).quota(TITAN, Quota::new(LONG).requests(1)),
            p,
        )
        .await;
        let factory = one_attempt(&server).await;
        let model = factory.model(MODEL);
        let body = json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}],
        })
        .to_string();
        for _ in 0..3 {
            let n = model.converse().user("free to count").count_tokens().await.unwrap();
            assert_eq!(n, 3);
        }
        model.converse().user("a").send().await.expect("converse");
        let stream = model.converse_stream().user("b").send().await.expect("stream");
        stream.collect().await.expect("the stream completes");
        model.invoke(body.clone()).send().await.expect("invoke");
        let stream = model.invoke_stream(body.clone()).send().await.expect("invoke stream");
        stream.collect().await.expect("the invoke stream completes");
        let s = server.quota_stats(MODEL).unwrap();
        assert_eq!((s.admitted, s.throttled), (4, 0));
        let err = model.converse_stream().user("c").send().await.unwrap_err();
        assert_throttled(&err, TOO_MANY_REQUESTS);
        let err = model.invoke(body.clone()).send().await.unwrap_err();
        assert_throttled(&err, TOO_MANY_REQUESTS);
        let err = model.invoke_stream(body).send().await.unwrap_err();
        assert_throttled(&err, TOO_MANY_REQUESTS);
        model.converse().user("still free").count_tokens().await.expect("free");
        assert_eq!(server.quota_stats(MODEL).unwrap().throttled, 3);
        // Embeddings go through InvokeModel.
        let titan = factory.model(TITAN);
        titan.embed().texts(["alpha"]).send().await.expect("embedding");
        let err = titan.embed().texts(["beta"]).send().await.unwrap_err();
        assert_throttled(&err, TOO_MANY_REQUESTS);
    }
}

both_protocols! {
    async fn concurrent_calls_admit_exactly_the_quota(p: Protocol) {
        let quota = Quota::new(LONG).requests(10);
        let server = start(LocalServer::builder().quota(MODEL, quota), p).await;
        let factory = one_attempt(&server).await;
        let mut calls = JoinSet::new();
        for i in 0..50 {
            let factory = factory.clone();
            calls.spawn(async move { factory.ask(format!("call {i}")).await });
        }
        let (mut ok, mut throttled) = (0, 0);
        while let Some(res) = calls.join_next().await {
            match res.expect("task") {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_throttled(&e, TOO_MANY_REQUESTS);
                    throttled += 1;
                }
            }
        }
        assert_eq!((ok, throttled), (10, 40));
        let s = server.quota_stats(MODEL).unwrap();
        assert_eq!((s.admitted, s.throttled), (10, 40));
        assert_eq!(s.max_requests_in_window, 10);
    }
}

#[tokio::test]
async fn quotas_change_while_the_server_runs() {
    let server = start(LocalServer::builder(), Protocol::Https).await;
    let factory = one_attempt(&server).await;
    factory.ask("before").await.expect("no quota yet");
    assert_eq!(server.quota_stats(MODEL), None);
    server.set_quota(MODEL, Some(Quota::new(LONG).requests(1)));
    factory.ask("first").await.expect("admitted");
    assert_throttled(&factory.ask("second").await.unwrap_err(), TOO_MANY_REQUESTS);
    // Setting it again starts the counting afresh.
    server.set_quota(MODEL, Some(Quota::new(LONG).requests(1)));
    assert_eq!(server.quota_stats(MODEL).unwrap().admitted, 0);
    factory
        .ask("third")
        .await
        .expect("admitted by the new quota");
    server.set_quota(MODEL, None);
    assert_eq!(server.quota_stats(MODEL), None);
    for _ in 0..3 {
        factory.ask("unlimited").await.expect("no quota any more");
    }
    // A quota with no limit admits everything and still counts.
    server.set_quota(MODEL, Some(Quota::new(LONG)));
    for _ in 0..3 {
        factory.ask("counted").await.expect("no limit");
    }
    let s = server.quota_stats(MODEL).unwrap();
    assert_eq!(
        (s.admitted, s.throttled, s.max_requests_in_window),
        (3, 0, 3)
    );
}

both_protocols! {
    async fn context_windows_refuse_with_bedrock_messages(p: Protocol) {
        let builder = LocalServer::builder()
            .context_window(MODEL, 20)
            .context_window(NOVA, 20)
            .quota(MODEL, Quota::new(LONG).requests(1));
        let server = start(builder, p).await;
        let factory = one_attempt(&server).await;
        let five = "one two three four five";
        let anthropic = factory.model(MODEL);
        // 5 + 16 > 20.
        let err = anthropic.converse().user(five).max_tokens(16).send().await.unwrap_err();
        assert_too_long(
            &err,
            "The model returned the following errors: input length and `max_tokens` exceed context limit: 5 + 16 > 20, decrease input length or `max_tokens` and try again",
        );
        assert_eq!(err.kind(), ErrorKind::ContextWindowExceeded);
        let err = anthropic.converse_stream().user(five).max_tokens(16).send().await.unwrap_err();
        assert_too_long(
            &err,
            "input length and `max_tokens` exceed context limit: 5 + 16 > 20, decrease input length or `max_tokens` and try again",
        );
        // The refused requests were not admitted: the quota of 1 still has its slot.
        assert_eq!(server.quota_stats(MODEL).unwrap().admitted, 0);
        anthropic.converse().user(five).max_tokens(15).send().await.expect("fits");
        let nova = factory.model(NOVA);
        let err = nova.converse().user(five).max_tokens(16).send().await.unwrap_err();
        assert_too_long(&err, "Input is too long for requested model.");
        nova.converse().user(five).max_tokens(15).send().await.expect("fits");
        // InvokeModel counts its native max tokens field.
        let body = |max: u64| {
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": max,
                "messages": [{"role": "user", "content": five}],
            })
            .to_string()
        };
        let err = nova.invoke(body(16)).send().await.unwrap_err();
        assert_too_long(&err, "Input is too long for requested model.");
        nova.invoke(body(15)).send().await.expect("fits");
        server.set_context_window(NOVA, None);
        nova.converse().user(five).max_tokens(1000).send().await.expect("no window any more");
        server.set_context_window(NOVA, Some(5));
        let err = nova.converse().user(five).max_tokens(1).send().await.unwrap_err();
        assert_too_long(&err, "Input is too long for requested model.");
    }
}
