//! Connection faults of a busy local server, driven by the real SDK on both protocols: busy death
//! (the connection goes silent with requests in flight) and GOAWAY (graceful close, as AWS does
//! when it rotates a host).
//!
//! Timing margins are wide (the machine is shared): a latency or stall is always well below the
//! client timeout that would expose it, so that a fault that does nothing makes the test fail.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_bedrockruntime as br;
use bedrock_pool_local::{
    Fault, FaultRule, Latency, LocalServer, Operation, Protocol, RecordedRequest,
};
use br::config::retry::RetryConfig;
use br::config::timeout::TimeoutConfig;
use br::error::SdkError;
use br::operation::converse::{ConverseError, ConverseOutput};
use br::types::{ContentBlock, ConversationRole, Message};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// How long the server takes to answer a unary call in these tests.
const UNARY_LATENCY: Duration = Duration::from_secs(3);
/// The client read timeout: twice the latency, so a call not hit by a fault succeeds.
const READ_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a stream pauses after its first events.
const STREAM_PAUSE: Duration = Duration::from_secs(2);
/// How long a stream's `recv()` may wait: well above the pause.
const RECV_BOUND: Duration = Duration::from_secs(6);
/// The bound on waits for the server to see requests or close connections.
const WAIT: Duration = Duration::from_secs(20);

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("valid message")
}

/// Returns a fresh client (its own pool): one attempt, the test read timeout.
fn client(server: &LocalServer) -> br::Client {
    let conf = server.sdk_config().expect("sdk config");
    br::Client::from_conf(
        br::config::Builder::from(&conf)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(TimeoutConfig::builder().read_timeout(READ_TIMEOUT).build())
            .build(),
    )
}

async fn converse(
    client: &br::Client,
    text: &str,
) -> Result<ConverseOutput, SdkError<ConverseError>> {
    client
        .converse()
        .model_id(MODEL)
        .messages(user(text))
        .send()
        .await
}

fn text_of(out: &ConverseOutput) -> String {
    out.output()
        .and_then(|o| o.as_message().ok())
        .map(|m| {
            m.content()
                .iter()
                .filter_map(|b| b.as_text().ok())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn is_timeout(err: &SdkError<ConverseError>) -> bool {
    match err {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(d) => d.is_timeout(),
        _ => false,
    }
}

/// Returns a server whose unary calls take [`UNARY_LATENCY`] (streams start at once).
async fn server(protocol: Protocol) -> LocalServer {
    LocalServer::builder()
        .protocol(protocol)
        .latency(Latency::from_fn(|r: &RecordedRequest| {
            if r.operation == Operation::Converse {
                UNARY_LATENCY
            } else {
                Duration::ZERO
            }
        }))
        .start()
        .await
        .unwrap()
}

/// Waits until the server has no open Bedrock connection; returns whether it happened in time.
async fn wait_closed(server: &LocalServer) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.bedrock_connections().open > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// How a stream in flight ended.
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// `recv()` waited [`RECV_BOUND`] for the next event.
    Stalled { events: usize },
    /// The stream ended (or failed) on its own.
    Ended { events: usize, error: bool },
}

/// Runs one stream: signals after `signal_after` events, then reads on until it ends or stalls.
async fn stream_in_flight(
    client: br::Client,
    signal_after: usize,
    seen: mpsc::Sender<()>,
) -> StreamEnd {
    let mut out = client
        .converse_stream()
        .model_id(MODEL)
        .messages(user("one two three four five six"))
        .send()
        .await
        .expect("the stream's headers arrive before the fault");
    let mut events = 0;
    loop {
        match tokio::time::timeout(RECV_BOUND, out.stream.recv()).await {
            Err(_) => return StreamEnd::Stalled { events },
            Ok(Ok(Some(_))) => {
                events += 1;
                if events == signal_after {
                    let _ = seen.send(()).await;
                }
            }
            Ok(Ok(None)) => {
                return StreamEnd::Ended {
                    events,
                    error: false,
                };
            }
            Ok(Err(_)) => {
                return StreamEnd::Ended {
                    events,
                    error: true,
                };
            }
        }
    }
}

/// 20 unary calls and 5 streams are in flight (over h2 all on one connection) when every
/// connection goes silent: nothing more arrives, the unary calls time out unanswered, the streams
/// stall; a new client then works on a new connection.
// Long because it is one scenario checked step by step.
async fn busy_death(protocol: Protocol) {
    const UNARY: usize = 20;
    const STREAMS: usize = 5;
    const EVENTS_BEFORE_PAUSE: usize = 2;
    let server = server(protocol).await;
    server.push_fault(
        FaultRule::new(Fault::StreamStall {
            after_events: EVENTS_BEFORE_PAUSE,
            duration: STREAM_PAUSE,
        })
        .operation(Operation::ConverseStream),
    );
    let client = client(&server);
    let (seen_tx, mut seen_rx) = mpsc::channel(STREAMS);
    let mut streams = JoinSet::new();
    for _ in 0..STREAMS {
        streams.spawn(stream_in_flight(
            client.clone(),
            EVENTS_BEFORE_PAUSE,
            seen_tx.clone(),
        ));
    }
    let mut unary = JoinSet::new();
    for i in 0..UNARY {
        let client = client.clone();
        unary.spawn(async move { converse(&client, &format!("call {i}")).await });
    }
    assert!(
        server.wait_for_requests(UNARY + STREAMS, WAIT).await,
        "{protocol:?}: the requests arrived"
    );
    for _ in 0..STREAMS {
        tokio::time::timeout(WAIT, seen_rx.recv())
            .await
            .expect("every stream got its first events")
            .unwrap();
    }
    let open = server.bedrock_connections().open;
    let silenced = server.silence_connections();
    match protocol {
        Protocol::Https => assert_eq!((open, silenced), (1, 1), "one h2 connection"),
        _ => assert_eq!(
            (open, silenced),
            (25, 25),
            "one HTTP/1.1 connection per request"
        ),
    }

    for result in unary.join_all().await {
        let err = result.expect_err("a silent connection answers nothing");
        assert!(is_timeout(&err), "{protocol:?}: {err:?}");
    }
    for end in streams.join_all().await {
        assert_eq!(
            end,
            StreamEnd::Stalled {
                events: EVENTS_BEFORE_PAUSE
            },
            "{protocol:?}"
        );
    }
    // The answers were computed (the latency is long over) but never sent nor recorded.
    let requests = server.requests();
    assert_eq!(requests.len(), UNARY + STREAMS, "nothing more arrived");
    for r in &requests {
        let expected = match r.operation {
            // The stream headers were answered before the fault.
            Operation::ConverseStream => 200,
            _ => 0,
        };
        assert_eq!(r.outcome, expected, "{protocol:?}: {r:?}");
    }
    let old: HashSet<u64> = requests.iter().map(|r| r.connection_id).collect();
    let counts = server.bedrock_connections();
    assert_eq!(counts.silenced, silenced as u64);
    // A black hole never closes.
    assert_eq!(counts.open, open);

    // The listener is fine: a new pool opens a new connection that works.
    let out = converse(&self::client(&server), "after").await.unwrap();
    assert_eq!(text_of(&out), "after");
    let last = server.requests().pop().unwrap();
    assert!(!old.contains(&last.connection_id), "{protocol:?}: {last:?}");
    assert_eq!(last.outcome, 200);
    assert_eq!(server.bedrock_connections().silenced, silenced as u64);
}

#[tokio::test]
async fn busy_death_h2() {
    busy_death(Protocol::Https).await;
}

#[tokio::test]
async fn busy_death_http1() {
    busy_death(Protocol::HttpsH1Only).await;
}

/// A `GoSilent` rule skipping 4 requests silences the connection of the 5th: over h2 the 4 before
/// it share that connection and stall with it; over HTTP/1.1 they have their own and are answered.
async fn go_silent_rule(protocol: Protocol) {
    const CALLS: usize = 5;
    let server = server(protocol).await;
    server.push_fault(
        FaultRule::new(Fault::GoSilent)
            .operation(Operation::Converse)
            .skip(CALLS - 1)
            .times(1),
    );
    let client = client(&server);
    let mut calls = JoinSet::new();
    for i in 0..CALLS - 1 {
        let client = client.clone();
        calls.spawn(async move { converse(&client, &format!("call {i}")).await });
    }
    assert!(server.wait_for_requests(CALLS - 1, WAIT).await);
    let last = converse(&client, "the fifth").await;
    assert!(
        last.as_ref().is_err_and(is_timeout),
        "{protocol:?}: {last:?}"
    );
    let others = calls.join_all().await;
    let answered = others.iter().filter(|r| r.is_ok()).count();
    let requests = server.requests();
    assert_eq!(requests.len(), CALLS);
    let fifth = requests
        .iter()
        .find(|r| r.body.to_string().contains("the fifth"))
        .unwrap();
    assert_eq!(fifth.outcome, 0);
    match protocol {
        Protocol::Https => {
            assert_eq!(answered, 0, "{others:?}");
            assert!(requests.iter().all(|r| r.outcome == 0));
        }
        _ => {
            assert_eq!(answered, CALLS - 1, "{others:?}");
            assert_eq!(
                requests.iter().filter(|r| r.outcome == 200).count(),
                CALLS - 1
            );
        }
    }
    assert_eq!(server.bedrock_connections().silenced, 1);
    // The rule is spent: a new client works.
    converse(&self::client(&server), "after").await.unwrap();
}

#[tokio::test]
async fn go_silent_rule_h2() {
    go_silent_rule(Protocol::Https).await;
}

#[tokio::test]
async fn go_silent_rule_http1() {
    go_silent_rule(Protocol::HttpsH1Only).await;
}

/// GOAWAY with 5 unary calls and a stream in flight: they all complete, the connections close, and
/// the next call is served on a new connection by the same client.
async fn goaway(protocol: Protocol) {
    const UNARY: usize = 5;
    let server = server(protocol).await;
    server.push_fault(
        FaultRule::new(Fault::StreamStall {
            after_events: 1,
            duration: STREAM_PAUSE,
        })
        .operation(Operation::ConverseStream),
    );
    let client = client(&server);
    let (seen_tx, mut seen_rx) = mpsc::channel(1);
    let stream = tokio::spawn(stream_in_flight(client.clone(), 1, seen_tx));
    let mut calls = JoinSet::new();
    for i in 0..UNARY {
        let client = client.clone();
        calls.spawn(async move { converse(&client, &format!("call {i}")).await });
    }
    assert!(server.wait_for_requests(UNARY + 1, WAIT).await);
    tokio::time::timeout(WAIT, seen_rx.recv())
        .await
        .expect("the stream got its first event")
        .unwrap();
    let open = server.bedrock_connections().open;
    let asked = server.goaway();
    match protocol {
        Protocol::Https => assert_eq!((open, asked), (1, 1)),
        _ => assert_eq!((open, asked), (6, 6)),
    }
    // A second call finds nothing more to close.
    assert_eq!(server.goaway(), 0);

    for (i, result) in calls.join_all().await.into_iter().enumerate() {
        let out = result.unwrap_or_else(|e| panic!("{protocol:?}: call {i}: {e:?}"));
        assert!(text_of(&out).starts_with("call "));
    }
    assert_eq!(
        stream.await.unwrap(),
        StreamEnd::Ended {
            events: 10,
            error: false
        },
        "{protocol:?}: the stream finished"
    );
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.outcome == 200), "{requests:?}");
    assert!(
        wait_closed(&server).await,
        "{protocol:?}: the server closed the drained connections"
    );
    let counts = server.bedrock_connections();
    assert_eq!((counts.goaway, counts.silenced), (asked as u64, 0));

    let old: HashSet<u64> = requests.iter().map(|r| r.connection_id).collect();
    let out = converse(&client, "next").await.unwrap();
    assert_eq!(text_of(&out), "next");
    let next = server.requests().pop().unwrap();
    assert!(!old.contains(&next.connection_id), "{protocol:?}: {next:?}");
    assert_eq!(server.bedrock_connections().open, 1);
}

#[tokio::test]
async fn goaway_h2() {
    goaway(Protocol::Https).await;
}

#[tokio::test]
async fn goaway_http1() {
    goaway(Protocol::HttpsH1Only).await;
}

/// GOAWAY on an idle h2 connection closes it; a call made while the GOAWAY'd connection still
/// drains a stream goes to a new connection.
#[tokio::test]
async fn goaway_h2_new_requests_go_to_a_new_connection() {
    let server = server(Protocol::Https).await;
    server.push_fault(
        FaultRule::new(Fault::StreamStall {
            after_events: 1,
            duration: Duration::from_secs(4),
        })
        .operation(Operation::ConverseStream)
        .times(1),
    );
    let client = client(&server);
    let (seen_tx, mut seen_rx) = mpsc::channel(1);
    let stream = tokio::spawn(stream_in_flight(client.clone(), 1, seen_tx));
    tokio::time::timeout(WAIT, seen_rx.recv())
        .await
        .expect("the stream got its first event")
        .unwrap();
    assert_eq!(server.goaway(), 1);
    // Give the GOAWAY time to reach the client while the stream still drains.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.bedrock_connections().open, 1);
    let out = client
        .count_tokens()
        .model_id(MODEL)
        .input(br::types::CountTokensInput::Converse(
            br::types::ConverseTokensRequest::builder()
                .messages(user("three more words"))
                .build(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.input_tokens(), 3);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_ne!(
        requests[0].connection_id, requests[1].connection_id,
        "a GOAWAY'd connection takes no new request"
    );
    assert!(matches!(
        stream.await.unwrap(),
        StreamEnd::Ended { error: false, .. }
    ));
}

/// A skipping rule lets the requests it skips pass to the later rules, then applies.
#[tokio::test]
async fn skip_passes_requests_to_later_rules() {
    use bedrock_pool_local::ServiceError;
    let server = LocalServer::start().await.unwrap();
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::AccessDenied("third".into())))
            .skip(2)
            .times(1),
    );
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Validation("first".into()))).times(1),
    );
    let client = client(&server);
    for _ in 0..4 {
        let _ = converse(&client, "hi").await;
    }
    let outcomes: Vec<u16> = server.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [400, 200, 403, 200]);
}
