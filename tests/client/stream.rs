// Long because its tests share one setup and read best side by side; each test is one scenario.
//! ConverseStream through model handles against the local server over TLS: typed events,
//! `collect()` equal to unary Converse, tool use, every stream fault, and request statistics.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::sdk::{
    Document,
    types::{
        ContentBlock, ConversationRole, Message, Tool, ToolConfiguration, ToolInputSchema,
        ToolResultBlock, ToolResultContentBlock, ToolSpecification,
    },
};
use bedrock_pool::{ErrorKind, StreamEvent, error::TimeoutKind};
use bedrock_pool_local::{
    Fault, FaultRule, ModelReply, Operation, Protocol, ReplyBlock, Responder, ServiceError,
};
use common::{MODEL, builder_for, eventually, factory_for, server};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads every event, stopping at the first error.
async fn read_all(
    mut s: bedrock_pool::ReplyStream,
) -> (Vec<StreamEvent>, Option<bedrock_pool::Error>) {
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(ev) => events.push(ev),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

fn texts(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn text_streams_as_ordered_events() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let stream = factory
        .model(MODEL)
        .converse_stream()
        .user("the quick brown fox jumps")
        .send()
        .await
        .expect("stream starts");
    assert_eq!(stream.region(), server.region());
    let (events, err) = read_all(stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        events.first(),
        Some(&StreamEvent::MessageStart),
        "{events:?}"
    );
    let pieces = texts(&events);
    assert!(pieces.len() >= 5, "one delta per word: {pieces:?}");
    assert_eq!(pieces.concat(), "the quick brown fox jumps");
    let pos = |f: &dyn Fn(&StreamEvent) -> bool| events.iter().position(f);
    let last_delta = events
        .iter()
        .rposition(|e| matches!(e, StreamEvent::TextDelta { .. }))
        .unwrap();
    let block_stop = pos(&|e| matches!(e, StreamEvent::BlockStop { index: 0 })).expect("BlockStop");
    let stop = pos(&|e| matches!(e, StreamEvent::MessageStop { .. })).expect("MessageStop");
    assert!(last_delta < block_stop && block_stop < stop, "{events:?}");
    match &events[stop] {
        StreamEvent::MessageStop { stop_reason } => assert_eq!(stop_reason.as_str(), "end_turn"),
        _ => unreachable!(),
    }
    match events.last() {
        Some(StreamEvent::Metadata { usage, latency, .. }) => {
            let usage = usage.as_ref().expect("usage");
            assert_eq!(usage.output_tokens(), 5);
            assert_eq!(usage.input_tokens(), 5);
            assert!(latency.is_some());
        }
        other => panic!("the last event is not Metadata: {other:?}"),
    }
    let seen = server.requests_for(Operation::ConverseStream);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].model_id.as_deref(), Some(MODEL));
}

#[tokio::test]
async fn collect_returns_what_unary_converse_returns() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let unary = model
        .converse()
        .system("be brief")
        .user("one two three four")
        .max_tokens(3)
        .send()
        .await
        .unwrap();
    let stream = model
        .converse_stream()
        .system("be brief")
        .user("one two three four")
        .max_tokens(3)
        .send()
        .await
        .unwrap();
    // The stream's metadata is its headers'; the collected reply's latency covers the events.
    let at_headers = stream.call_info().clone();
    assert_eq!(
        (at_headers.model_id.as_str(), at_headers.attempts),
        (MODEL, 1)
    );
    let streamed = stream.collect().await.expect("collect succeeds");
    assert!(streamed.latency() >= at_headers.latency);
    assert_eq!(streamed.region(), at_headers.region);
    assert_eq!(streamed.text(), "one two three");
    assert_eq!(streamed.text(), unary.text());
    assert_eq!(streamed.stop_reason(), unary.stop_reason());
    assert_eq!(streamed.stop_reason().as_str(), "max_tokens");
    assert_eq!(streamed.usage(), unary.usage());
    assert!(streamed.usage().is_some());
    assert_eq!(streamed.region(), unary.region());
    assert_eq!(streamed.attempts(), 1);
    assert!(streamed.service_latency().is_some());
    assert!(
        streamed.latency() > Duration::ZERO,
        "client latency is measured"
    );
}

#[tokio::test]
async fn collect_after_reading_some_events_keeps_them() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let mut stream = factory
        .model(MODEL)
        .converse_stream()
        .user("alpha beta gamma")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        StreamEvent::MessageStart
    );
    assert!(matches!(
        stream.next().await.unwrap().unwrap(),
        StreamEvent::TextDelta { .. }
    ));
    let reply = stream.collect().await.unwrap();
    assert_eq!(reply.text(), "alpha beta gamma");
}

#[tokio::test]
async fn tool_use_streams_its_input_in_pieces() {
    let server = server(Protocol::Https).await;
    server.set_responder(Responder::from_fn(|_| {
        ModelReply::tool_use(
            "tooluse-1",
            "get_weather",
            serde_json::json!({"city": "Paris", "days": 3, "metric": true}),
        )
    }));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let (events, err) = read_all(
        model
            .converse_stream()
            .user("weather in Paris?")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert!(
        events.contains(&StreamEvent::ToolUseStart {
            index: 0,
            tool_use_id: "tooluse-1".into(),
            name: "get_weather".into(),
        }),
        "{events:?}"
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolUseDelta { input, .. } => Some(input.as_str()),
            _ => None,
        })
        .collect();
    assert!(pieces.len() >= 2, "{pieces:?}");
    let joined: serde_json::Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(
        joined,
        serde_json::json!({"city": "Paris", "days": 3, "metric": true})
    );

    let reply = model
        .converse_stream()
        .user("weather in Paris?")
        .send()
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(reply.stop_reason().as_str(), "tool_use");
    let uses = reply.tool_uses();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].tool_use_id(), "tooluse-1");
    assert_eq!(uses[0].name(), "get_weather");
    let expected = Document::Object(HashMap::from([
        ("city".to_owned(), Document::String("Paris".into())),
        (
            "days".to_owned(),
            Document::Number(aws_smithy_types::Number::PosInt(3)),
        ),
        ("metric".to_owned(), Document::Bool(true)),
    ]));
    assert_eq!(uses[0].input(), &expected);
}

#[tokio::test]
async fn into_stream_works_with_stream_ext() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let stream = factory
        .model(MODEL)
        .converse_stream()
        .user("red green blue")
        .send()
        .await
        .unwrap()
        .into_stream();
    let events: Vec<StreamEvent> = stream.map(|e| e.expect("event")).collect().await;
    assert_eq!(texts(&events).concat(), "red green blue");
    assert!(matches!(events.last(), Some(StreamEvent::Metadata { .. })));
    assert_eq!(factory.stats().requests.successes, 1);
}

// h2 only: the stall timeout is kept by the stream reader, above the transport, the same on
// both protocols; `faults::a_stream_stall_retires_its_connection` runs a stall on each.
#[tokio::test]
async fn a_stall_longer_than_the_stall_timeout_fails_as_a_stall() {
    let server = server(Protocol::Https).await;
    server.push_fault(FaultRule::new(Fault::StreamStall {
        after_events: 2,
        duration: Duration::from_secs(5),
    }));
    let factory = factory_for(&server).await;
    let start = Instant::now();
    let stream = factory
        .model(MODEL)
        .converse_stream()
        .user("one two three")
        .stall_timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap();
    let (events, err) = read_all(stream).await;
    let e = err.expect("the stall is an error");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::StreamStall), "{e:?}");
    assert_eq!(
        events.len(),
        2,
        "the events before the stall arrived: {events:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited out the stall"
    );
    let stats = factory.stats().requests;
    assert_eq!(stats.failures.get(ErrorKind::Timeout), 1);
    assert_eq!(stats.timeouts, 1);
    assert_eq!(stats.in_flight, 0);
}

// h2 only: the stall timeout is kept by the stream reader, above the transport, the same on
// both protocols; `faults::a_stream_stall_retires_its_connection` runs a stall on each.
#[tokio::test]
async fn the_factory_stall_timeout_applies_by_default() {
    let server = server(Protocol::Https).await;
    server.push_fault(FaultRule::new(Fault::StreamStall {
        after_events: 0,
        duration: Duration::from_secs(5),
    }));
    let factory = builder_for(&server)
        .stream_stall_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let stream = factory
        .model(MODEL)
        .converse_stream()
        .user("hi")
        .send()
        .await
        .unwrap();
    let (events, err) = read_all(stream).await;
    assert!(events.is_empty(), "{events:?}");
    let e = err.expect("stall");
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::StreamStall), "{e:?}");
}

// h2 only: the stall timeout is kept by the stream reader, above the transport, the same on
// both protocols; `faults::a_stream_stall_retires_its_connection` runs a stall on each.
#[tokio::test]
async fn a_stall_shorter_than_the_stall_timeout_succeeds() {
    let server = server(Protocol::Https).await;
    server.push_fault(FaultRule::new(Fault::StreamStall {
        after_events: 2,
        duration: Duration::from_millis(200),
    }));
    let factory = factory_for(&server).await;
    let reply = factory
        .model(MODEL)
        .converse_stream()
        .user("one two three")
        .stall_timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .collect()
        .await
        .expect("a short pause is fine");
    assert_eq!(reply.text(), "one two three");
}

#[tokio::test]
async fn in_stream_exceptions_map_to_kinds() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let cases = [
        (
            ServiceError::Throttling("slow down".into()),
            ErrorKind::Throttled,
            "ThrottlingException",
        ),
        (
            ServiceError::ModelStreamError("model broke".into()),
            ErrorKind::ModelFailure,
            "ModelStreamErrorException",
        ),
        (
            ServiceError::Validation("bad".into()),
            ErrorKind::Validation,
            "ValidationException",
        ),
        (
            ServiceError::InternalServer("oops".into()),
            ErrorKind::ServiceUnavailable,
            "InternalServerException",
        ),
        (
            ServiceError::ServiceUnavailable("down".into()),
            ErrorKind::ServiceUnavailable,
            "ServiceUnavailableException",
        ),
    ];
    for (i, (error, kind, code)) in cases.into_iter().enumerate() {
        let model_id = format!("vendor.model-{i}");
        server.push_fault(
            FaultRule::new(Fault::StreamException {
                after_events: 2,
                error: error.clone(),
            })
            .model(&model_id)
            .times(1),
        );
        let stream = factory
            .model(&model_id)
            .converse_stream()
            .user("one two three")
            .send()
            .await
            .expect("headers arrive");
        let (events, err) = read_all(stream).await;
        let e = err.unwrap_or_else(|| panic!("{code}: no error after {events:?}"));
        assert_eq!(e.kind(), kind, "{code}: {e:?}");
        assert_eq!(e.code(), Some(code), "{e:?}");
        assert!(e.to_string().contains(error.message()), "{e}");
        assert_eq!(events.len(), 2, "{code}: {events:?}");
        let s = factory.model_stats(&model_id).unwrap().requests;
        assert_eq!(s.failures.get(kind), 1, "{code}: {s:?}");
        assert_eq!(s.in_flight, 0);
    }
    assert_eq!(
        server.requests_for(Operation::ConverseStream).len(),
        5,
        "no retries mid-stream"
    );
}

/// The SDK ends the stream cleanly when the body ends on a frame boundary; the crate must not.
#[tokio::test]
async fn a_stream_cut_before_message_stop_is_a_network_error() {
    let server = server(Protocol::Https).await;
    server.push_fault(FaultRule::new(Fault::StreamCut { after_events: 3 }));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let stream = model
        .converse_stream()
        .user("one two three four")
        .send()
        .await
        .unwrap();
    let (events, err) = read_all(stream).await;
    let e = err.expect("a truncated stream is an error");
    assert_eq!(e.kind(), ErrorKind::Network, "{e:?}");
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StreamEvent::MessageStop { .. }))
    );

    let e = model
        .converse_stream()
        .user("one two three four")
        .send()
        .await
        .unwrap()
        .collect()
        .await
        .expect_err("collect reports the truncation too");
    assert_eq!(e.kind(), ErrorKind::Network, "{e:?}");
    assert_eq!(factory.stats().requests.failures.get(ErrorKind::Network), 2);
}

#[tokio::test]
async fn a_reset_after_the_headers_is_a_network_error() {
    for protocol in [Protocol::Https, Protocol::HttpsH1Only] {
        let server = server(protocol).await;
        server.push_fault(FaultRule::new(Fault::ResetAfterHeaders).times(1));
        let factory = factory_for(&server).await;
        let stream = factory
            .model(MODEL)
            .converse_stream()
            .user("one two three")
            .stall_timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("headers arrive");
        let (events, err) = read_all(stream).await;
        let e = err.unwrap_or_else(|| panic!("{protocol:?}: no error after {events:?}"));
        assert_eq!(e.kind(), ErrorKind::Network, "{protocol:?}: {e:?}");
        assert!(events.len() <= 1, "{events:?}");
        let stats = factory.stats().requests;
        assert_eq!(stats.failures.get(ErrorKind::Network), 1);
        assert_eq!(stats.in_flight, 0);
        // The next call gets a fresh connection and succeeds.
        let reply = factory
            .model(MODEL)
            .converse_stream()
            .user("again")
            .send()
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(reply.text(), "again");
    }
}

#[tokio::test]
async fn request_stats_count_streams() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);

    // Success: time to first token recorded, nothing left in flight.
    let mut stream = model.converse_stream().user("a b c").send().await.unwrap();
    assert_eq!(
        factory.stats().requests.in_flight,
        1,
        "an open stream is in flight"
    );
    assert_eq!(factory.stats().requests.time_to_first_token.count, 0);
    stream.next().await.unwrap().unwrap();
    assert_eq!(factory.stats().requests.time_to_first_token.count, 1);
    stream.collect().await.unwrap();
    let s = factory.stats().requests;
    assert_eq!((s.requests, s.successes, s.in_flight), (1, 1, 0), "{s:?}");
    assert_eq!(s.latency.count, 1);

    // Failure mid-stream: counted, nothing left in flight.
    server.push_fault(FaultRule::new(Fault::StreamCut { after_events: 2 }).times(1));
    let e = model
        .converse_stream()
        .user("a b c")
        .send()
        .await
        .unwrap()
        .collect()
        .await;
    assert!(e.is_err());
    let s = factory.stats().requests;
    assert_eq!(s.failures.get(ErrorKind::Network), 1, "{s:?}");
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.time_to_first_token.count, 2);

    // Dropped half-read: cancelled, nothing left in flight.
    let mut stream = model
        .converse_stream()
        .user("a b c d e")
        .send()
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    stream.next().await.unwrap().unwrap();
    assert_eq!(factory.stats().requests.in_flight, 1);
    drop(stream);
    let s = factory.stats().requests;
    assert_eq!(s.cancelled, 1, "{s:?}");
    assert_eq!(s.in_flight, 0);
    assert_eq!((s.requests, s.successes), (3, 1));
    let per_model = factory.model_stats(MODEL).unwrap().requests;
    assert_eq!((per_model.cancelled, per_model.in_flight), (1, 0));
    let region = factory.stats().regions[0].requests;
    assert_eq!(
        (region.successes, region.cancelled, region.in_flight),
        (1, 1, 0),
        "{region:?}"
    );
    assert_eq!(region.failures.get(ErrorKind::Network), 1);

    // A dropped stream leaves the pool usable.
    let reply = model
        .converse_stream()
        .user("after drop")
        .send()
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(reply.unwrap().text(), "after drop");
    assert!(
        eventually(Duration::from_secs(2), || factory
            .stats()
            .requests
            .in_flight
            == 0)
        .await
    );
}

/// Returns the reply of turn `k` (counted from the messages sent): reasoning, text and a tool
/// call, and on the third turn reasoning and a final text.
fn thinking_reply(call: &bedrock_pool_local::ConverseCall) -> ModelReply {
    let turn = call.body["messages"].as_array().map_or(0, |m| m.len() / 2);
    let reasoning = ReplyBlock::Reasoning {
        text: format!("step {turn}: the user wants the weather, so look it up"),
        // The server signs it, and accepts only its own signatures in later turns.
        signature: None,
    };
    if turn == 2 {
        return ModelReply {
            content: vec![reasoning, ReplyBlock::Text("It is 18 C in Paris.".into())],
            stop_reason: "end_turn".into(),
        };
    }
    ModelReply {
        content: vec![
            reasoning,
            ReplyBlock::Text("Let me check.".into()),
            ReplyBlock::ToolUse {
                id: format!("tooluse-{turn}"),
                name: "lookup".into(),
                input: serde_json::json!({"city": "Paris", "turn": turn}),
            },
        ],
        stop_reason: "tool_use".into(),
    }
}

fn lookup_tool() -> ToolConfiguration {
    let schema = Document::Object(HashMap::from([(
        "type".to_owned(),
        Document::String("object".into()),
    )]));
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("lookup")
                .input_schema(ToolInputSchema::Json(schema))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap()
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn collect_equals_unary_for_thinking_with_tool_use_over_three_turns() {
    let server = server(Protocol::Https).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    server.set_responder(Responder::from_fn(move |call| {
        log.lock().unwrap().push(call.body.clone());
        thinking_reply(call)
    }));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let mut signatures: Vec<String> = Vec::new();
    let mut history = vec![
        Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text("weather in Paris?".into()))
            .build()
            .unwrap(),
    ];
    for turn in 0..3 {
        let unary = model
            .converse()
            .messages(history.clone())
            .tool_config(lookup_tool())
            .send()
            .await
            .unwrap_or_else(|e| panic!("turn {turn}: unary: {e}"));
        let mut events = Vec::new();
        let mut stream = model
            .converse_stream()
            .messages(history.clone())
            .tool_config(lookup_tool())
            .send()
            .await
            .unwrap_or_else(|e| panic!("turn {turn}: stream: {e}"));
        for _ in 0..4 {
            events.push(stream.next().await.unwrap().unwrap());
        }
        let streamed = stream.collect().await.expect("collect succeeds");
        assert!(
            events.contains(&StreamEvent::ReasoningDelta {
                index: 0,
                text: "step ".into(),
            }),
            "{events:?}"
        );
        assert_eq!(streamed.message(), unary.message(), "turn {turn}");
        assert_eq!(streamed.stop_reason(), unary.stop_reason());
        assert_eq!(streamed.usage(), unary.usage());
        let reasoning = streamed.reasoning().expect("reasoning");
        assert_eq!(
            reasoning.text(),
            format!("step {turn}: the user wants the weather, so look it up")
        );
        let signature = reasoning.signature().expect("a signature").to_owned();
        assert!(!signature.is_empty());
        signatures.push(signature);
        let content = streamed.message().unwrap().content();
        assert!(content[0].is_reasoning_content(), "{content:?}");
        history.push(streamed.message().unwrap().clone());
        if turn == 2 {
            assert_eq!(streamed.stop_reason().as_str(), "end_turn");
            assert_eq!(streamed.text(), "It is 18 C in Paris.");
            assert!(streamed.tool_uses().is_empty());
            break;
        }
        assert_eq!(streamed.stop_reason().as_str(), "tool_use");
        assert_eq!(streamed.text(), "Let me check.");
        let uses = streamed.tool_uses();
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].tool_use_id(), format!("tooluse-{turn}"));
        let result = ToolResultBlock::builder()
            .tool_use_id(uses[0].tool_use_id())
            .content(ToolResultContentBlock::Text("18 C".into()))
            .build()
            .unwrap();
        history.push(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::ToolResult(result))
                .build()
                .unwrap(),
        );
    }
    // The last call carried both earlier assistant turns, reasoning and signature first.
    let bodies = seen.lock().unwrap();
    let last = bodies.last().unwrap();
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    for (turn, i) in [(0, 1), (1, 3)] {
        assert_eq!(
            messages[i]["content"][0]["reasoningContent"]["reasoningText"]["signature"],
            signatures[turn].as_str(),
            "{:?}",
            messages[i]
        );
        assert_eq!(
            messages[i]["content"][2]["toolUse"]["toolUseId"],
            format!("tooluse-{turn}")
        );
    }
}

/// Streams nobody reads yet must not hold the shared h2 connection: before they were read
/// ahead, four unread 40,000-word answers filled h2's budget of small DATA frames buffered
/// unread, and h2 closed the whole connection ("too_many_data_frames"), failing every call
/// on it. h2 only: over HTTP/1.1 each stream has its own connection.
#[tokio::test]
async fn unread_streams_never_close_the_shared_connection() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let words: String = (0..40_000).map(|i| format!("w{i} ")).collect();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let stream = model
            .converse_stream()
            .user(words.clone())
            .max_tokens(60_000)
            .send()
            .await
            .unwrap();
        streams.push(stream);
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let reply = model.converse().user("beside").send().await.unwrap();
    assert_eq!(reply.text(), "beside");
    for stream in streams {
        let reply = stream.collect().await.expect("each stream reads whole");
        assert_eq!(reply.text().split_whitespace().count(), 40_000);
    }
    let pool = factory.stats().pool.bedrock;
    assert_eq!((pool.opened, pool.retired), (1, 0), "{pool:?}");
}
