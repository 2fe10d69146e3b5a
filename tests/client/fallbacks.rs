//! Model fallback chains and the circuit breakers, against the local server: the order, what
//! moves and what never does, the breaker's open, half-open and closed states with time scaled
//! down, streams before their first event, `invoke` and `embed` with compatible ids only, and
//! the composition with region failover within the documented bound.
//!
//! The fallback order test runs on h2 and HTTP/1.1; the others pin h2 (what production Bedrock
//! speaks), because fallback and breakers sit above the transport: the connection-level
//! behaviour under the same faults is covered on both protocols in `tests/client/faults.rs`.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{
    ErrorKind, LlmFactory, LlmFactoryBuilder, StreamEvent,
    config::{BreakerConfig, RetryMode},
    stats::BreakerState,
};
use bedrock_pool_local::{Fault, FaultRule, LocalServer, Operation, Protocol, ServiceError};
use common::MODEL;
use std::time::Duration;

const SECOND: &str = "amazon.nova-lite-v1:0";
const THIRD: &str = "meta.llama3-8b-instruct-v1:0";

/// One attempt per call, so that each fault is one failure.
fn one_attempt(server: &LocalServer) -> LlmFactoryBuilder {
    common::builder_for(server)
        .retry_mode(RetryMode::Standard)
        .retry_max_attempts(1)
}

async fn factory(server: &LocalServer) -> LlmFactory {
    one_attempt(server).build().await.expect("factory builds")
}

/// A factory from `builder` whose breakers open after `failures` failures within 10 s, for
/// `cooldown`.
async fn with_breaker(builder: LlmFactoryBuilder, failures: u32, cooldown: Duration) -> LlmFactory {
    builder
        .circuit_breaker(Some(BreakerConfig::new(
            failures,
            Duration::from_secs(10),
            cooldown,
        )))
        .build()
        .await
        .expect("factory builds")
}

async fn h2_server() -> LocalServer {
    common::server(Protocol::Https).await
}

fn fail(model: &str, error: ServiceError) -> FaultRule {
    FaultRule::new(Fault::Error(error)).model(model)
}

/// The model ids the server was asked for, in order.
fn asked(server: &LocalServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter_map(|r| r.model_id)
        .collect()
}

both_protocols! {
    /// Throttled, then unavailable: the third model answers, and says so.
    async fn a_call_moves_down_the_chain_in_order(p: Protocol) {
        let server = common::server(p).await;
        server.push_fault(fail(MODEL, ServiceError::Throttling("slow down".into())));
        server.push_fault(fail(SECOND, ServiceError::ServiceUnavailable("down".into())));
        let factory = factory(&server).await;
        let model = factory.model(MODEL).with_fallbacks([SECOND, THIRD]);
        assert_eq!(model.fallbacks(), [SECOND, THIRD]);
        let reply = model.converse().user("hello").send().await.expect("the third answers");
        assert_eq!(reply.model_id(), THIRD);
        assert_eq!(reply.text(), "hello");
        assert_eq!(asked(&server), [MODEL, SECOND, THIRD]);

        let first = factory.model_stats(MODEL).unwrap().requests;
        assert_eq!((first.requests, first.fallbacks, first.throttles), (1, 1, 1));
        let second = factory.model_stats(SECOND).unwrap().requests;
        assert_eq!((second.requests, second.fallbacks), (1, 1));
        assert_eq!(second.failures.get(ErrorKind::ServiceUnavailable), 1);
        let third = factory.model_stats(THIRD).unwrap().requests;
        assert_eq!((third.requests, third.successes, third.fallbacks), (1, 1, 0));
        let overall = factory.stats().requests;
        assert_eq!((overall.requests, overall.successes, overall.fallbacks), (1, 1, 2));
    }
}

#[tokio::test]
async fn model_not_ready_model_errors_and_too_long_inputs_fall_back() {
    let server = h2_server().await;
    let factory = factory(&server).await;
    let model = factory.model(MODEL).with_fallbacks([SECOND]);
    for error in [
        ServiceError::ModelNotReady("warming up".into()),
        ServiceError::ModelError("the model failed".into()),
        ServiceError::Validation("Input is too long for requested model.".into()),
    ] {
        server.clear_requests();
        server.push_fault(fail(MODEL, error).times(1));
        let reply = model
            .converse()
            .user("hi")
            .send()
            .await
            .expect("the fallback answers");
        assert_eq!(reply.model_id(), SECOND);
        assert_eq!(asked(&server), [MODEL, SECOND]);
    }
    // The real thing: the server's context window for the first model.
    server.set_context_window(MODEL, Some(8));
    server.clear_requests();
    let reply = model
        .converse()
        .user("a prompt of several words")
        .max_tokens(16)
        .send()
        .await
        .expect("the larger window answers");
    assert_eq!(reply.model_id(), SECOND);
    let alone = factory
        .model(MODEL)
        .converse()
        .user("a prompt")
        .max_tokens(16)
        .send()
        .await;
    assert_eq!(alone.unwrap_err().kind(), ErrorKind::ContextWindowExceeded);
}

#[tokio::test]
async fn validation_access_not_found_and_invalid_input_never_fall_back() {
    let server = h2_server().await;
    let factory = factory(&server).await;
    let model = factory.model(MODEL).with_fallbacks([SECOND]);
    for (error, kind) in [
        (
            ServiceError::Validation("messages: bad".into()),
            ErrorKind::Validation,
        ),
        (
            ServiceError::AccessDenied("no".into()),
            ErrorKind::AccessDenied,
        ),
        (
            ServiceError::ResourceNotFound("no such model".into()),
            ErrorKind::ModelNotFound,
        ),
    ] {
        server.clear_requests();
        server.push_fault(fail(MODEL, error).times(1));
        let e = model.converse().user("hi").send().await.unwrap_err();
        assert_eq!(e.kind(), kind);
        assert!(!e.falls_back());
        assert_eq!(asked(&server), [MODEL], "{kind:?} stays on the first model");
    }
    server.clear_requests();
    let e = model
        .converse()
        .user("hi")
        .temperature(5.0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("temperature"));
    assert!(server.requests().is_empty(), "invalid input is never sent");
    assert_eq!(factory.model_stats(MODEL).unwrap().requests.fallbacks, 0);
}

#[tokio::test]
async fn a_bad_fallback_list_is_refused_naming_the_field() {
    let server = h2_server().await;
    let factory = factory(&server).await;
    for ids in [
        vec!["not a model id"],
        vec![SECOND, SECOND],
        vec![MODEL],
        vec![
            SECOND,
            THIRD,
            "amazon.titan-text-lite-v1",
            "cohere.command-r-v1:0",
        ],
    ] {
        let e = factory
            .model(MODEL)
            .with_fallbacks(ids.clone())
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some("fallbacks"), "{ids:?}: {e}");
    }
    assert!(server.requests().is_empty());
}

/// Three failures open the first model's breaker: later calls skip it (not sent) and go
/// straight to the fallback; after the cooldown one trial call goes through, and its success
/// closes the breaker.
#[tokio::test]
async fn the_breaker_opens_lets_one_trial_through_and_closes() {
    let server = h2_server().await;
    let cooldown = Duration::from_millis(400);
    let factory = with_breaker(one_attempt(&server), 3, cooldown).await;
    let model = factory.model(MODEL).with_fallbacks([SECOND]);
    server.push_fault(fail(MODEL, ServiceError::Throttling("slow down".into())).times(3));
    for _ in 0..3 {
        let reply = model.converse().user("hi").send().await.unwrap();
        assert_eq!(reply.model_id(), SECOND);
    }
    let state = |f: &LlmFactory| {
        f.stats()
            .breakers
            .into_iter()
            .find(|b| b.model_id == MODEL)
            .expect("the first model has a breaker")
    };
    assert!(matches!(state(&factory).state, BreakerState::Open { .. }));
    assert_eq!(state(&factory).opened, 1);

    server.clear_requests();
    let reply = model.converse().user("hi").send().await.unwrap();
    assert_eq!(reply.model_id(), SECOND);
    assert_eq!(
        asked(&server),
        [SECOND],
        "the open pair is skipped, not sent"
    );
    // Without a fallback the open breaker fails at once, saying when to come back.
    let e = factory
        .model(MODEL)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert!(e.message().contains("circuit open"), "{e}");
    assert!(e.retry_after().is_some_and(|r| r <= cooldown));
    assert_eq!(asked(&server), [SECOND]);

    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    assert_eq!(state(&factory).state, BreakerState::HalfOpen);
    server.clear_requests();
    let reply = model.converse().user("hi").send().await.unwrap();
    assert_eq!(reply.model_id(), MODEL, "the trial call succeeded");
    assert_eq!(state(&factory).state, BreakerState::Closed);
    assert!(state(&factory).skipped >= 2);
}

/// A trial call that fails opens the breaker again for another cooldown.
#[tokio::test]
async fn a_failed_trial_opens_the_breaker_again() {
    let server = h2_server().await;
    let cooldown = Duration::from_millis(300);
    let factory = with_breaker(one_attempt(&server), 1, cooldown).await;
    let model = factory.model(MODEL);
    server.push_fault(fail(MODEL, ServiceError::ServiceUnavailable("down".into())).times(2));
    assert!(model.converse().user("hi").send().await.is_err());
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let e = model.converse().user("hi").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable);
    assert!(!e.message().contains("circuit"), "the trial was sent: {e}");
    let e = model.converse().user("hi").send().await.unwrap_err();
    assert!(e.message().contains("circuit open"), "{e}");
    assert_eq!(server.requests_for(Operation::ConverseStream).len(), 2);
    let b = factory.stats().breakers;
    assert_eq!(b[0].opened, 2);
}

#[tokio::test]
async fn breakers_can_be_turned_off() {
    let server = h2_server().await;
    let factory = one_attempt(&server)
        .circuit_breaker(None)
        .build()
        .await
        .unwrap();
    server.push_fault(fail(MODEL, ServiceError::Throttling("slow".into())).times(10));
    for _ in 0..10 {
        let e = factory
            .model(MODEL)
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap_err();
        assert!(!e.message().contains("circuit"));
    }
    assert_eq!(server.requests_for(Operation::ConverseStream).len(), 10);
    assert!(factory.stats().breakers.is_empty());
}

/// A stream that fails before its first event moves; the stream says which model answers.
#[tokio::test]
async fn streams_fall_back_before_the_first_event() {
    let server = h2_server().await;
    let factory = factory(&server).await;
    server.push_fault(fail(MODEL, ServiceError::Throttling("slow".into())).times(1));
    let model = factory.model(MODEL).with_fallbacks([SECOND]);
    let mut stream = model
        .converse_stream()
        .user("hello there")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.model_id(), SECOND);
    let mut text = String::new();
    while let Some(ev) = stream.next().await {
        if let StreamEvent::TextDelta { text: t, .. } = ev.unwrap() {
            text.push_str(&t);
        }
    }
    assert_eq!(text, "hello there");
    let collected = model
        .converse_stream()
        .user("again")
        .send()
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(collected.unwrap().model_id(), MODEL);
}

/// `invoke` and `embed` move only to ids declared compatible.
#[tokio::test]
async fn invoke_and_embed_move_only_to_compatible_ids() {
    let server = h2_server().await;
    let factory = factory(&server).await;
    let us = format!("us.{MODEL}");
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":32,"messages":[{"role":"user","content":"hi"}]}"#;
    server.push_fault(fail(MODEL, ServiceError::Throttling("slow".into())).times(1));
    let plain = factory.model(MODEL).with_fallbacks([us.as_str()]);
    let e = plain.invoke(body).send().await.unwrap_err();
    assert!(e.is_throttled(), "not declared compatible: no move");

    server.push_fault(fail(MODEL, ServiceError::Throttling("slow".into())).times(1));
    let compatible = factory
        .model(MODEL)
        .with_compatible_fallbacks([us.as_str()]);
    let reply = compatible
        .invoke(body)
        .send()
        .await
        .expect("the profile answers");
    assert_eq!(reply.model_id(), us);

    let titan = "amazon.titan-embed-text-v2:0";
    let other = "cohere.embed-english-v3";
    server.push_fault(fail(titan, ServiceError::Throttling("slow".into())).times(1));
    let e = factory
        .model(titan)
        .with_fallbacks([other])
        .embed()
        .texts(["a"])
        .send()
        .await;
    assert!(
        e.unwrap_err().is_throttled(),
        "another vector space: no move"
    );
    let us_titan = format!("us.{titan}");
    server.push_fault(fail(titan, ServiceError::Throttling("slow".into())).times(1));
    let v = factory
        .model(titan)
        .with_compatible_fallbacks([us_titan.as_str()])
        .embed()
        .texts(["a"])
        .send()
        .await
        .expect("the compatible id answers");
    assert_eq!(v.vectors().len(), 1);
    // Counting tokens never moves: the count is the asked model's.
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Throttling("slow".into())))
            .operation(Operation::CountTokens)
            .times(1),
    );
    let e = compatible
        .converse()
        .user("hi")
        .count_tokens()
        .await
        .unwrap_err();
    assert!(e.is_throttled());
}

/// Region failover and model fallback compose: the first model fails in both regions, the
/// fallback answers in the first; with every model failing, at most 4 sends are made.
#[tokio::test]
async fn region_failover_and_fallback_compose_within_four_sends() {
    let (west, east) = common::west_and_east().await;
    let factory = common::two_region_builder(&west, &east)
        .circuit_breaker(None)
        .build()
        .await
        .unwrap();
    let unavailable = || ServiceError::ServiceUnavailable("down".into());
    for s in [&west, &east] {
        s.push_fault(fail(MODEL, unavailable()).times(1));
    }
    let model = factory.model(MODEL).with_fallbacks([SECOND, THIRD]);
    let reply = model
        .converse()
        .user("hi")
        .send()
        .await
        .expect("the fallback answers");
    assert_eq!(reply.model_id(), SECOND);
    assert_eq!(
        (asked(&west), asked(&east)),
        (
            vec![MODEL.to_owned(), SECOND.to_owned()],
            vec![MODEL.to_owned()]
        )
    );
    assert_eq!(factory.model_stats(MODEL).unwrap().requests.fallbacks, 1);

    for s in [&west, &east] {
        s.clear_requests();
        s.push_fault(FaultRule::new(Fault::Error(unavailable())));
    }
    let e = model.converse().user("hi").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable);
    let sends = asked(&west).len() + asked(&east).len();
    assert_eq!(sends, 4, "west {:?} east {:?}", asked(&west), asked(&east));
}

both_protocols! {
    /// Timeouts and connection failures say nothing about the model: one closing connection
    /// fails every call on it at once. They never open a breaker (the connection is retired).
    async fn timeouts_and_connection_failures_never_open_a_breaker(p: Protocol) {
        let server = common::server(p).await;
        let slow = one_attempt(&server).read_timeout(Duration::from_millis(200));
        let factory = with_breaker(slow, 2, Duration::from_secs(30)).await;
        let model = factory.model(MODEL).with_fallbacks([SECOND]);
        for fault in [
            Fault::Delay(Duration::from_millis(600)),
            Fault::ResetBeforeHeaders,
            Fault::CloseBeforeHeaders,
        ] {
            server.push_fault(FaultRule::new(fault).model(MODEL).times(2));
            for _ in 0..2 {
                let e = model.converse().user("hi").send().await.unwrap_err();
                assert!(
                    matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Network) && !e.falls_back(),
                    "stays, and is not the model's: {e}"
                );
            }
        }
        let breaker = factory
            .stats().breakers
            .into_iter()
            .find(|b| b.model_id == MODEL)
            .unwrap();
        assert_eq!((breaker.state, breaker.opened), (BreakerState::Closed, 0));
        server.clear_requests();
        let reply = model.converse().user("hi").send().await.expect("sent, answered");
        assert_eq!(reply.model_id(), MODEL);
    }
}
