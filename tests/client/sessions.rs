//! Bidirectional sessions (InvokeModelWithBidirectionalStream) against the local server's echo
//! model, with the real SDK's event stream both ways and each input message's SigV4 chain
//! checked by the server.
//!
//! They run on HTTP/2 only: the operation exists only there. The one HTTP/1.1 test checks that
//! a session is refused before anything is sent.

use crate::common;

use bedrock_pool::error::TimeoutKind;
use bedrock_pool::session::{Session, SessionInput, SessionOutput};
use bedrock_pool::{CallMetadata, ErrorKind, LlmFactory};
use bedrock_pool_local::{
    FAIL_SESSION, Fault, FaultRule, LocalServer, Operation, Protocol, ServiceError,
};
use common::{builder_for, factory_for};
use std::time::Duration;

const SONIC: &str = "amazon.nova-sonic-v1:0";

async fn server(protocol: Protocol) -> LocalServer {
    LocalServer::builder()
        .protocol(protocol)
        .start()
        .await
        .expect("local server starts")
}

async fn open(factory: &LlmFactory, prompt: &str) -> Session {
    factory
        .model(SONIC)
        .session()
        .event(SessionInput::session_start(1024, 0.9, 0.7))
        .event(SessionInput::prompt_start(prompt, "matthew"))
        .stall_timeout(Duration::from_millis(800))
        .probe_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect("the session opens")
}

/// Reads events until the end of the model's turn (its usage event), returning them.
async fn turn(session: &mut Session) -> Vec<SessionOutput> {
    let mut out = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), session.next())
            .await
            .expect("an event in time")
            .expect("the session goes on")
            .expect("no error");
        let usage = matches!(event, SessionOutput::Usage(_));
        out.push(event);
        if usage {
            return out;
        }
    }
}

fn texts(events: &[SessionOutput], who: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionOutput::Text { role, text, .. } if role == who => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
// Long because it is one whole session, text then audio then the end, and its figures.
async fn a_session_echoes_text_and_audio_then_ends_with_its_figures() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let mut session = open(&factory, "p1").await;
    assert_eq!(session.call_info().model_id, SONIC);

    session
        .send_all(SessionInput::user_text("p1", "t1", "hello there"))
        .await
        .unwrap();
    let first = turn(&mut session).await;
    assert!(matches!(first[0], SessionOutput::CompletionStart { .. }));
    assert_eq!(texts(&first, "ASSISTANT"), ["hello there"]);

    let pcm: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let sender = session.sender();
    sender
        .send(SessionInput::audio_start("p1", "a1"))
        .await
        .unwrap();
    for piece in pcm.chunks(3_200) {
        sender
            .send(SessionInput::audio("p1", "a1", piece))
            .await
            .unwrap();
    }
    sender
        .send(SessionInput::content_end("p1", "a1"))
        .await
        .unwrap();
    let second = turn(&mut session).await;
    assert_eq!(texts(&second, "USER"), ["[audio: 40000 bytes]"]);
    let echoed: Vec<u8> = second
        .iter()
        .filter_map(|e| match e {
            SessionOutput::Audio { pcm, .. } => Some(pcm.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(echoed, pcm, "the audio comes back whole, in order");
    let usage = session.usage().expect("usage reported");
    // 2 words, then 40000 bytes = 32 speech tokens, each way.
    assert_eq!((usage.input_tokens, usage.output_tokens), (34, 34));
    assert_eq!(usage.input_speech_tokens, 32);

    session.send(SessionInput::prompt_end("p1")).await.unwrap();
    session.send(SessionInput::session_end()).await.unwrap();
    let mut rest = Vec::new();
    while let Some(e) = session.next().await {
        rest.push(e.expect("no error at the end"));
    }
    assert!(matches!(rest[..], [SessionOutput::CompletionEnd { .. }]));
    let err = session
        .send(SessionInput::session_end())
        .await
        .expect_err("a session over takes no events");
    assert!(err.message().contains("session is over"), "{err}");

    let stats = factory.stats();
    assert_eq!((stats.sessions.opened, stats.sessions.completed), (1, 1));
    assert_eq!(stats.sessions.active, 0);
    let model = stats.model(SONIC).expect("the model's figures");
    assert_eq!(model.requests.successes, 1);
    assert_eq!(
        (model.requests.input_tokens, model.requests.output_tokens),
        (34, 34)
    );
    let sent = server.requests_for(Operation::InvokeModelWithBidirectionalStream);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].http_version, http::Version::HTTP_2);
}

#[tokio::test]
async fn a_silent_session_outlives_the_read_and_stall_timeouts() {
    let server = server(Protocol::Https).await;
    let factory = builder_for(&server)
        .read_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let mut session = open(&factory, "p").await;
    // Silent for more than four stall timeouts and six read timeouts: the session probes its
    // connection, which answers, and goes on.
    let quiet = tokio::time::timeout(Duration::from_secs(3), session.next()).await;
    assert!(quiet.is_err(), "nothing to receive while silent: {quiet:?}");
    let probes = factory.stats().sessions;
    assert!(probes.liveness_probes >= 2, "{probes:?}");
    assert_eq!(
        probes.liveness_unverified, 0,
        "the probes rode the session's connection"
    );
    session
        .send_all(SessionInput::user_text("p", "t", "still here"))
        .await
        .unwrap();
    assert_eq!(
        texts(&turn(&mut session).await, "ASSISTANT"),
        ["still here"]
    );
    let stats = factory.stats();
    assert_eq!(stats.sessions.failed, 0);
    assert_eq!(stats.pool.bedrock.retired, 0);
    assert_eq!(
        stats.pool.bedrock.opened, 1,
        "one connection for the session and probes"
    );
}

#[tokio::test]
async fn a_dead_connection_ends_a_silent_session_and_is_retired() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let mut session = open(&factory, "p").await;
    session
        .send_all(SessionInput::user_text("p", "t", "one"))
        .await
        .unwrap();
    turn(&mut session).await;
    assert_eq!(server.silence_connections(), 1);
    let err = tokio::time::timeout(Duration::from_secs(30), session.next())
        .await
        .expect("the dead connection is found in time")
        .expect("an error, not the end")
        .expect_err("a dead connection fails the session");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::StreamStall));
    assert!(session.next().await.is_none(), "the session is over");
    let stats = factory.stats();
    assert_eq!((stats.sessions.failed, stats.sessions.active), (1, 0));
    assert!(stats.pool.bedrock.retired >= 1, "{:?}", stats.pool.bedrock);
    // The next call gets a new connection.
    let reply = factory
        .model(common::MODEL)
        .converse()
        .user("after")
        .send()
        .await
        .expect("a new connection answers");
    assert_eq!(reply.text(), "after");
}

#[tokio::test]
async fn a_session_shares_its_h2_connection_with_other_calls() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let mut session = open(&factory, "p").await;
    let model = factory.model(common::MODEL);
    let calls = (0..20).map(|i| {
        let model = model.clone();
        async move { model.converse().user(format!("call {i}")).send().await }
    });
    for r in futures_util::future::join_all(calls).await {
        r.expect("other calls go through beside the session");
    }
    session
        .send_all(SessionInput::user_text("p", "t", "after them"))
        .await
        .unwrap();
    assert_eq!(
        texts(&turn(&mut session).await, "ASSISTANT"),
        ["after them"]
    );
    let pool = factory.stats().pool.bedrock;
    assert_eq!(pool.opened, 1, "{pool:?}");
    assert!(pool.max_in_flight_per_connection >= 2, "{pool:?}");
    drop(session);
    // The session's reader task counts it when the runtime cancels it, just after the drop.
    let mut stats = factory.stats().sessions;
    for _ in 0..100 {
        if stats.cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = factory.stats().sessions;
    }
    assert_eq!((stats.cancelled, stats.active), (1, 0));
}

#[tokio::test]
async fn a_model_failure_ends_the_session_and_keeps_the_connection() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let mut session = open(&factory, "p").await;
    session
        .send_all(SessionInput::user_text("p", "t", FAIL_SESSION))
        .await
        .unwrap();
    let err = loop {
        match session.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the session ended without its error"),
        }
    };
    assert_eq!(err.code(), Some("ModelStreamErrorException"), "{err}");
    let stats = factory.stats();
    assert_eq!(stats.sessions.failed, 1);
    assert_eq!(
        stats.pool.bedrock.retired, 0,
        "an answer is no dead connection"
    );
}

#[tokio::test]
async fn bad_events_are_refused_before_the_network() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let err = factory
        .model(SONIC)
        .session()
        .event(SessionInput::prompt_start("", "matthew"))
        .open()
        .await
        .expect_err("an empty prompt name is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("prompt_name"), "{err}");
    let err = factory
        .model(SONIC)
        .session()
        .stall_timeout(Duration::ZERO)
        .open()
        .await
        .expect_err("a zero stall timeout is refused");
    assert!(err.message().contains("stall_timeout"), "{err}");
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn http1_is_refused_before_a_session_is_sent() {
    let server = server(Protocol::HttpsH1Only).await;
    let factory = factory_for(&server).await;
    let err = factory
        .model(SONIC)
        .session()
        .event(SessionInput::session_start(1024, 0.9, 0.7))
        .open()
        .await
        .expect_err("no session over HTTP/1.1");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert!(err.message().contains("needs HTTP/2"), "{err}");
    assert!(
        server
            .requests_for(Operation::InvokeModelWithBidirectionalStream)
            .is_empty()
    );
    // Other calls still go over HTTP/1.1.
    factory
        .model(common::MODEL)
        .converse()
        .user("fine")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_session_refused_by_its_primary_region_opens_in_the_next_with_its_opening_events() {
    let (west, east) = common::west_and_east().await;
    west.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable(
            "busy".into(),
        )))
        .operation(Operation::InvokeModelWithBidirectionalStream),
    );
    let factory = common::two_region_builder(&west, &east)
        .build()
        .await
        .unwrap();
    let mut session = open(&factory, "p").await;
    assert_eq!(session.call_info().region, "us-east-1");
    // The echo model answers only after sessionStart and promptStart: the opening events went
    // to the second region whole.
    session
        .send_all(SessionInput::user_text("p", "t", "moved"))
        .await
        .unwrap();
    assert_eq!(texts(&turn(&mut session).await, "ASSISTANT"), ["moved"]);
    assert_eq!(
        west.requests_for(Operation::InvokeModelWithBidirectionalStream)
            .len(),
        1
    );
    assert_eq!(
        east.requests_for(Operation::InvokeModelWithBidirectionalStream)
            .len(),
        1
    );
}

#[tokio::test]
async fn unread_sessions_never_stall_other_calls_on_the_connection() {
    let server = server(Protocol::Https).await;
    let factory = builder_for(&server)
        .read_timeout(Duration::from_secs(10))
        .stream_stall_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    // Each session gets 2.5 MB of audio echoed back (3.4 MB on the wire), and nobody reads it:
    // more than hyper's 5 MB connection window if it stayed unread in the connection.
    let pcm = vec![7u8; 64 * 1024];
    let mut sessions = Vec::new();
    for i in 0..3 {
        let session = open(&factory, "p").await;
        let name = format!("a{i}");
        session
            .send(SessionInput::audio_start("p", &name))
            .await
            .unwrap();
        for _ in 0..40 {
            session
                .send(SessionInput::audio("p", &name, &pcm))
                .await
                .unwrap();
        }
        session
            .send(SessionInput::content_end("p", &name))
            .await
            .unwrap();
        sessions.push(session);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        factory
            .model(common::MODEL)
            .converse()
            .user("beside")
            .send(),
    )
    .await
    .expect("the call is not stalled behind the unread sessions")
    .expect("the call succeeds");
    assert_eq!(reply.text(), "beside");
    for mut session in sessions {
        let echoed: usize = turn(&mut session)
            .await
            .iter()
            .map(|e| match e {
                SessionOutput::Audio { pcm, .. } => pcm.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(echoed, 40 * 64 * 1024, "the unread audio was kept whole");
    }
    let pool = factory.stats().pool.bedrock;
    assert_eq!((pool.opened, pool.retired), (1, 0), "{pool:?}");
}
