// Long because its tests share one setup and read best side by side; each test is one scenario.
//! The local Bedrock + STS server, driven by the real SDK clients over real sockets.

use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime as br;
use aws_sdk_sts as sts;
use bedrock_pool_local::{
    Fault, FaultRule, IdleFault, Latency, LocalServer, ModelReply, Operation, Protocol, ReplyBlock,
    Responder, ServiceError, TEST_ACCESS_KEY_ID, TEST_ACCOUNT_ID,
};
use br::config::retry::RetryConfig;
use br::config::timeout::TimeoutConfig;
use br::error::{ProvideErrorMetadata, SdkError};
use br::operation::converse::{ConverseError, ConverseOutput};
use br::types::error::ConverseStreamOutputError;
use br::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("valid message")
}

fn client(server: &LocalServer) -> br::Client {
    br::Client::new(&server.sdk_config().expect("sdk config"))
}

fn client_with(
    server: &LocalServer,
    f: impl FnOnce(br::config::Builder) -> br::config::Builder,
) -> br::Client {
    br::Client::from_conf(
        f(br::config::Builder::from(
            &server.sdk_config().expect("sdk config"),
        ))
        .build(),
    )
}

/// Returns a client that never retries.
fn one_attempt(server: &LocalServer) -> br::Client {
    client_with(server, |b| {
        b.retry_config(RetryConfig::standard().with_max_attempts(1))
    })
}

/// Returns a client with 3 attempts and short backoff.
fn fast_retries(server: &LocalServer) -> br::Client {
    client_with(server, |b| {
        b.retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(10)),
        )
    })
}

fn sts_client(server: &LocalServer) -> sts::Client {
    let conf = server.sdk_config().expect("sdk config");
    sts::Client::from_conf(
        sts::config::Builder::from(&conf)
            .endpoint_url(server.sts_url())
            .build(),
    )
}

async fn converse(
    client: &br::Client,
    model: &str,
    text: &str,
) -> Result<ConverseOutput, SdkError<ConverseError>> {
    client
        .converse()
        .model_id(model)
        .messages(user(text))
        .send()
        .await
}

fn text_of(out: &ConverseOutput) -> String {
    let message = out
        .output()
        .and_then(|o| o.as_message().ok())
        .expect("a message");
    message
        .content()
        .iter()
        .filter_map(|b| b.as_text().ok())
        .cloned()
        .collect()
}

fn service_error(err: SdkError<ConverseError>) -> ConverseError {
    match err {
        SdkError::ServiceError(e) => e.into_err(),
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[tokio::test]
async fn converse_echoes_with_usage() {
    let server = LocalServer::start().await.unwrap();
    let out = converse(&client(&server), MODEL, "hello local world")
        .await
        .unwrap();
    assert_eq!(text_of(&out), "hello local world");
    assert_eq!(out.stop_reason().as_str(), "end_turn");
    let usage = out.usage().unwrap();
    assert_eq!(
        (
            usage.input_tokens(),
            usage.output_tokens(),
            usage.total_tokens()
        ),
        (3, 3, 6)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.operation, Operation::Converse);
    assert_eq!(r.model_id.as_deref(), Some(MODEL));
    assert_eq!((r.attempt, r.max_attempts), (Some(1), Some(3)));
    assert!(r.invocation_id.is_some());
    assert_eq!(r.outcome, 200);
    assert_eq!(
        r.body["messages"][0]["content"][0]["text"],
        "hello local world"
    );
}

#[tokio::test]
async fn converse_truncates_at_max_tokens() {
    let server = LocalServer::start().await.unwrap();
    let out = client(&server)
        .converse()
        .model_id(MODEL)
        .messages(user("one two three four five"))
        .inference_config(InferenceConfiguration::builder().max_tokens(2).build())
        .send()
        .await
        .unwrap();
    assert_eq!(text_of(&out), "one two");
    assert_eq!(out.stop_reason().as_str(), "max_tokens");
    assert_eq!(out.usage().unwrap().output_tokens(), 2);
    assert_eq!(out.usage().unwrap().input_tokens(), 5);
}

#[tokio::test]
async fn latency_shows_in_metrics() {
    let server = LocalServer::builder()
        .latency(Latency::fixed(Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    let out = converse(&client(&server), MODEL, "hi").await.unwrap();
    assert!(out.metrics().unwrap().latency_ms() >= 150);
}

/// Collects a stream's events; returns them with the error that ended it, if any.
async fn collect_stream(
    client: &br::Client,
    text: &str,
) -> (
    Vec<ConverseStreamOutput>,
    Option<SdkError<ConverseStreamOutputError, aws_smithy_types::event_stream::RawMessage>>,
) {
    let mut out = client
        .converse_stream()
        .model_id(MODEL)
        .messages(user(text))
        .send()
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        match out.stream.recv().await {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

fn streamed_text(events: &[ConverseStreamOutput]) -> String {
    events
        .iter()
        .filter_map(|e| e.as_content_block_delta().ok())
        .filter_map(|d| d.delta().and_then(|d| d.as_text().ok()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn converse_stream_text_events_in_order() {
    let server = LocalServer::start().await.unwrap();
    let (events, err) = collect_stream(&client(&server), "stream  these four words").await;
    assert!(err.is_none());
    assert_eq!(streamed_text(&events), "stream  these four words");
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    let stop = events[6].as_message_stop().unwrap();
    assert_eq!(stop.stop_reason().as_str(), "end_turn");
    let meta = events[7].as_metadata().unwrap();
    assert_eq!(meta.usage().unwrap().output_tokens(), 4);
    assert_eq!(server.requests()[0].operation, Operation::ConverseStream);
}

fn kind(e: &ConverseStreamOutput) -> &'static str {
    match e {
        ConverseStreamOutput::MessageStart(_) => "messageStart",
        ConverseStreamOutput::ContentBlockStart(_) => "contentBlockStart",
        ConverseStreamOutput::ContentBlockDelta(_) => "contentBlockDelta",
        ConverseStreamOutput::ContentBlockStop(_) => "contentBlockStop",
        ConverseStreamOutput::MessageStop(_) => "messageStop",
        ConverseStreamOutput::Metadata(_) => "metadata",
        _ => "other",
    }
}

#[tokio::test]
async fn converse_stream_tool_use_from_custom_responder() {
    let responder = Responder::from_fn(|call| {
        assert!(call.has_tools || call.last_user_text.is_some());
        ModelReply::text("let me check")
            .with_block(ReplyBlock::ToolUse {
                id: "tool-1".into(),
                name: "weather".into(),
                input: serde_json::json!({"city": "Paris", "days": 3}),
            })
            .with_stop_reason("tool_use")
    });
    let server = LocalServer::builder()
        .responder(responder)
        .start()
        .await
        .unwrap();
    let (events, err) = collect_stream(&client(&server), "weather?").await;
    assert!(err.is_none());
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "contentBlockStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert_eq!(streamed_text(&events), "let me check");
    let start = events[5].as_content_block_start().unwrap();
    assert_eq!(start.content_block_index(), 1);
    let ContentBlockStart::ToolUse(tool) = start.start().unwrap() else {
        panic!("expected a tool use start");
    };
    assert_eq!((tool.tool_use_id(), tool.name()), ("tool-1", "weather"));
    let input: String = events
        .iter()
        .filter_map(|e| e.as_content_block_delta().ok())
        .filter_map(|d| match d.delta() {
            Some(ContentBlockDelta::ToolUse(t)) => Some(t.input().to_owned()),
            _ => None,
        })
        .collect();
    let input: serde_json::Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input, serde_json::json!({"city": "Paris", "days": 3}));
    let stop = events[9].as_message_stop().unwrap();
    assert_eq!(stop.stop_reason().as_str(), "tool_use");

    // The unary call carries the same blocks.
    let out = converse(&client(&server), MODEL, "weather?").await.unwrap();
    let blocks = out.output().unwrap().as_message().unwrap().content();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].as_tool_use().unwrap().name(), "weather");
}

#[tokio::test]
async fn list_async_invokes_and_count_tokens() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let out = client
        .list_async_invokes()
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert!(out.async_invoke_summaries().is_empty());
    let out = client
        .count_tokens()
        .model_id(MODEL)
        .input(br::types::CountTokensInput::Converse(
            br::types::ConverseTokensRequest::builder()
                .messages(user("count these four words"))
                .build(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.input_tokens(), 4);
    let ops: Vec<Operation> = server.requests().iter().map(|r| r.operation).collect();
    assert_eq!(ops, [Operation::ListAsyncInvokes, Operation::CountTokens]);
}

#[tokio::test]
async fn get_caller_identity_on_its_own_listener() {
    let server = LocalServer::start().await.unwrap();
    let out = sts_client(&server)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(out.account(), Some(TEST_ACCOUNT_ID));
    assert_eq!(
        out.arn(),
        Some(format!("arn:aws:iam::{TEST_ACCOUNT_ID}:user/local").as_str())
    );
    assert_ne!(server.sts_addr(), server.bedrock_addr());
    assert_eq!(server.sts_connections().accepted, 1);
    assert_eq!(server.bedrock_connections().accepted, 0);
    let r = &server.requests()[0];
    assert_eq!(r.operation, Operation::GetCallerIdentity);
    assert_eq!(r.body["Action"], "GetCallerIdentity");
}

#[tokio::test]
async fn service_errors_arrive_as_sdk_variants() {
    let server = LocalServer::start().await.unwrap();
    let client = one_attempt(&server);
    type IsVariant = fn(&ConverseError) -> bool;
    let cases: Vec<(ServiceError, IsVariant)> = vec![
        (ServiceError::Validation("v".into()), |e| {
            matches!(e, ConverseError::ValidationException(_))
        }),
        (ServiceError::AccessDenied("a".into()), |e| {
            matches!(e, ConverseError::AccessDeniedException(_))
        }),
        (ServiceError::ResourceNotFound("r".into()), |e| {
            matches!(e, ConverseError::ResourceNotFoundException(_))
        }),
        (ServiceError::ModelTimeout("t".into()), |e| {
            matches!(e, ConverseError::ModelTimeoutException(_))
        }),
        (ServiceError::ModelError("m".into()), |e| {
            matches!(e, ConverseError::ModelErrorException(_))
        }),
        (ServiceError::Throttling("slow".into()), |e| {
            matches!(e, ConverseError::ThrottlingException(_))
        }),
        (ServiceError::ModelNotReady("n".into()), |e| {
            matches!(e, ConverseError::ModelNotReadyException(_))
        }),
        (ServiceError::InternalServer("i".into()), |e| {
            matches!(e, ConverseError::InternalServerException(_))
        }),
        (ServiceError::ServiceUnavailable("u".into()), |e| {
            matches!(e, ConverseError::ServiceUnavailableException(_))
        }),
    ];
    for (error, is_variant) in cases {
        server.clear_faults();
        server.push_fault(FaultRule::new(Fault::Error(error.clone())));
        let err = service_error(converse(&client, MODEL, "hi").await.unwrap_err());
        assert!(is_variant(&err), "{error:?} arrived as {err:?}");
        assert_eq!(err.message(), Some(error.message()));
        let last = server.requests().pop().unwrap();
        assert_eq!(last.outcome, error.status());
        assert_eq!(last.error.as_deref(), Some(error.name()));
    }
}

#[tokio::test]
async fn unavailable_three_times_exhausts_three_attempts() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable(
            "busy".into(),
        )))
        .times(3),
    );
    let err = service_error(
        converse(&fast_retries(&server), MODEL, "hi")
            .await
            .unwrap_err(),
    );
    assert!(matches!(err, ConverseError::ServiceUnavailableException(_)));
    let attempts: Vec<Option<u32>> = server.requests().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [Some(1), Some(2), Some(3)]);
    let ids: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| r.invocation_id)
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]));
    // The rule is spent: the next call succeeds.
    converse(&fast_retries(&server), MODEL, "hi").await.unwrap();
}

#[tokio::test]
async fn times_expires_and_model_scope_holds() {
    let server = LocalServer::start().await.unwrap();
    let client = one_attempt(&server);
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Throttling("slow".into())))
            .model("model-a")
            .times(2),
    );
    converse(&client, "model-b", "hi").await.unwrap();
    for _ in 0..2 {
        let err = service_error(converse(&client, "model-a", "hi").await.unwrap_err());
        assert!(matches!(err, ConverseError::ThrottlingException(_)));
    }
    converse(&client, "model-a", "hi").await.unwrap();
    // Operation scope: only ConverseStream hits this rule.
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::AccessDenied("no".into())))
            .operation(Operation::ConverseStream),
    );
    converse(&client, "model-a", "hi").await.unwrap();
}

#[tokio::test]
async fn throttled_once_is_retried() {
    let server = LocalServer::start().await.unwrap();
    server
        .push_fault(FaultRule::new(Fault::Error(ServiceError::Throttling("slow".into()))).times(1));
    converse(&fast_retries(&server), MODEL, "hi").await.unwrap();
    let outcomes: Vec<u16> = server.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [429, 200]);
}

#[tokio::test]
async fn sts_errors_as_xml() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ExpiredToken("expired".into())))
            .operation(Operation::GetCallerIdentity)
            .times(1),
    );
    let err = sts_client(&server)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert_eq!(err.code(), Some("ExpiredToken"));
    assert_eq!(err.message(), Some("expired"));

    // An unknown key id: InvalidClientTokenId.
    let conf = server.sdk_config().expect("sdk config");
    let client = sts::Client::from_conf(
        sts::config::Builder::from(&conf)
            .endpoint_url(server.sts_url())
            .credentials_provider(sts::config::Credentials::new(
                "AKIAUNKNOWN000000000",
                "whatever",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let err = client.get_caller_identity().send().await.unwrap_err();
    assert_eq!(
        err.into_service_error().code(),
        Some("InvalidClientTokenId")
    );

    // A wrong secret: SignatureDoesNotMatch.
    let client = sts::Client::from_conf(
        sts::config::Builder::from(&conf)
            .endpoint_url(server.sts_url())
            .credentials_provider(sts::config::Credentials::new(
                TEST_ACCESS_KEY_ID,
                "wrong",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let err = client.get_caller_identity().send().await.unwrap_err();
    assert_eq!(
        err.into_service_error().code(),
        Some("SignatureDoesNotMatch")
    );
}

#[tokio::test]
async fn sigv4_rejections() {
    let server = LocalServer::start().await.unwrap();
    let code_of = |err: SdkError<ConverseError>| {
        let e = service_error(err);
        (
            e.code().map(str::to_owned),
            e.message().unwrap_or_default().to_owned(),
        )
    };
    let creds = |key: &str, secret: &str| {
        br::config::Credentials::new(key.to_owned(), secret.to_owned(), None, None, "test")
    };

    let wrong_secret = client_with(&server, |b| {
        b.credentials_provider(creds(TEST_ACCESS_KEY_ID, "wrong"))
    });
    let (code, _) = code_of(converse(&wrong_secret, MODEL, "hi").await.unwrap_err());
    assert_eq!(code.as_deref(), Some("InvalidSignatureException"));

    let unknown_key = client_with(&server, |b| {
        b.credentials_provider(creds("AKIAUNKNOWN000000000", "x"))
    });
    let (code, _) = code_of(converse(&unknown_key, MODEL, "hi").await.unwrap_err());
    assert_eq!(code.as_deref(), Some("UnrecognizedClientException"));

    let wrong_region = client_with(&server, |b| b.region(br::config::Region::new("eu-west-1")));
    let (code, message) = code_of(converse(&wrong_region, MODEL, "hi").await.unwrap_err());
    assert_eq!(code.as_deref(), Some("InvalidSignatureException"));
    assert!(message.contains("region"), "{message}");

    // A session token is signed too, and accepted.
    let with_token = client_with(&server, |b| {
        b.credentials_provider(br::config::Credentials::new(
            TEST_ACCESS_KEY_ID,
            bedrock_pool_local::TEST_SECRET_ACCESS_KEY,
            Some("session-token".into()),
            None,
            "test",
        ))
    });
    converse(&with_token, MODEL, "hi").await.unwrap();
    let outcomes: Vec<u16> = server.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [403, 403, 403, 200]);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let cases: Vec<(
        br::operation::converse::builders::ConverseFluentBuilder,
        &str,
    )> = vec![
        (
            client
                .converse()
                .model_id(MODEL)
                .messages(user("hi"))
                .inference_config(InferenceConfiguration::builder().max_tokens(0).build()),
            "inferenceConfig.maxTokens",
        ),
        (
            client
                .converse()
                .model_id(MODEL)
                .messages(user("hi"))
                .inference_config(InferenceConfiguration::builder().temperature(7.0).build()),
            "inferenceConfig.temperature",
        ),
        (
            client.converse().model_id(MODEL).messages(
                Message::builder()
                    .role(ConversationRole::Assistant)
                    .content(ContentBlock::Text("hi".into()))
                    .build()
                    .unwrap(),
            ),
            "messages.0.role",
        ),
        (
            client.converse().model_id(MODEL).messages(user("   ")),
            "messages.0.content.0.text",
        ),
        (
            client.converse().model_id(MODEL).set_messages(Some(vec![])),
            "messages",
        ),
        (
            client.converse().model_id("has space").messages(user("hi")),
            "The provided model identifier is invalid.",
        ),
    ];
    for (request, field) in cases {
        let err = service_error(request.send().await.unwrap_err());
        assert!(
            matches!(err, ConverseError::ValidationException(_)),
            "{err:?}"
        );
        let message = err.message().unwrap_or_default();
        assert!(
            message.starts_with(field),
            "{message:?} should name {field}"
        );
    }
    assert_eq!(
        server.requests().last().unwrap().model_id.as_deref(),
        Some("has space")
    );
}

#[tokio::test]
async fn delay_beyond_read_timeout_times_out() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(FaultRule::new(Fault::Delay(Duration::from_secs(3))).times(1));
    let client = client_with(&server, |b| {
        b.retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .read_timeout(Duration::from_millis(300))
                    .build(),
            )
    });
    let started = Instant::now();
    let err = converse(&client, MODEL, "hi").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{err:?}");
    let timed_out = match &err {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(d) => d.is_timeout(),
        _ => false,
    };
    assert!(timed_out, "{err:?}");
    // A delay below the timeout only delays.
    server.push_fault(FaultRule::new(Fault::Delay(Duration::from_millis(100))).times(1));
    converse(&client, MODEL, "hi").await.unwrap();
}

#[tokio::test]
async fn reset_before_headers_is_retried() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(FaultRule::new(Fault::ResetBeforeHeaders).times(1));
    let out = converse(&fast_retries(&server), MODEL, "again")
        .await
        .unwrap();
    assert_eq!(text_of(&out), "again");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].attempt, requests[0].outcome), (Some(1), 0));
    assert_eq!((requests[1].attempt, requests[1].outcome), (Some(2), 200));
    assert_ne!(requests[0].connection_id, requests[1].connection_id);
}

#[tokio::test]
async fn close_before_headers_is_retried() {
    let server = LocalServer::builder()
        .protocol(Protocol::HttpsH1Only)
        .start()
        .await
        .unwrap();
    server.push_fault(FaultRule::new(Fault::CloseBeforeHeaders).times(1));
    converse(&fast_retries(&server), MODEL, "hi").await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].outcome, 0);
    assert_eq!(requests[1].outcome, 200);
    assert_eq!(server.bedrock_connections().accepted, 2);
}

#[tokio::test]
async fn reset_after_headers_breaks_the_response() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(FaultRule::new(Fault::ResetAfterHeaders).times(1));
    let result = converse(&one_attempt(&server), MODEL, "hi").await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(server.requests()[0].outcome, 200);
    server.clear_requests();
    server.push_fault(
        FaultRule::new(Fault::ResetAfterHeaders)
            .operation(Operation::Converse)
            .times(1),
    );
    // The SDK retries a unary body broken after the headers.
    converse(&fast_retries(&server), MODEL, "hi").await.unwrap();
    let attempts: Vec<_> = server
        .requests()
        .iter()
        .map(|r| (r.attempt, r.outcome))
        .collect();
    assert_eq!(attempts, [(Some(1), 200), (Some(2), 200)]);

    // On a stream: the headers and messageStart arrive, then the connection dies.
    server.push_fault(
        FaultRule::new(Fault::ResetAfterHeaders)
            .operation(Operation::ConverseStream)
            .times(1),
    );
    let (events, err) = collect_stream(&one_attempt(&server), "hi there").await;
    assert!(err.is_some());
    assert_eq!(
        events.iter().map(kind).collect::<Vec<_>>(),
        ["messageStart"]
    );
}

#[tokio::test]
async fn stream_stall_is_observable() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(
        FaultRule::new(Fault::StreamStall {
            after_events: 2,
            duration: Duration::from_millis(600),
        })
        .times(1),
    );
    let mut out = client(&server)
        .converse_stream()
        .model_id(MODEL)
        .messages(user("a slow stream"))
        .send()
        .await
        .unwrap();
    let mut gaps = Vec::new();
    let mut events = Vec::new();
    let mut last = Instant::now();
    while let Some(event) = out.stream.recv().await.unwrap() {
        gaps.push(last.elapsed());
        last = Instant::now();
        events.push(event);
    }
    assert_eq!(streamed_text(&events), "a slow stream");
    let longest = gaps.iter().max().unwrap();
    assert!(*longest >= Duration::from_millis(400), "{gaps:?}");
    // The gap sits after the second event.
    assert_eq!(gaps.iter().position(|g| g == longest), Some(2));
}

#[tokio::test]
async fn stream_exception_is_the_sdk_variant() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(FaultRule::new(Fault::StreamException {
        after_events: 2,
        error: ServiceError::Throttling("too fast".into()),
    }));
    let (events, err) = collect_stream(&client(&server), "one two three").await;
    assert_eq!(events.len(), 2);
    let err = err.expect("an error").into_service_error();
    assert!(
        matches!(err, ConverseStreamOutputError::ThrottlingException(_)),
        "{err:?}"
    );
    assert_eq!(
        server.requests()[0].error.as_deref(),
        Some("ThrottlingException")
    );

    server.clear_faults();
    server.push_fault(FaultRule::new(Fault::StreamException {
        after_events: 1,
        error: ServiceError::ModelStreamError("broken".into()),
    }));
    let (_, err) = collect_stream(&client(&server), "one two three").await;
    let err = err.expect("an error").into_service_error();
    assert!(
        matches!(err, ConverseStreamOutputError::ModelStreamErrorException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn stream_cut_looks_like_a_clean_end() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(FaultRule::new(Fault::StreamCut { after_events: 3 }));
    let (events, err) = collect_stream(&client(&server), "one two three four").await;
    assert!(err.is_none(), "the SDK reports Ok(None)");
    assert_eq!(events.len(), 3);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ConverseStreamOutput::MessageStop(_)))
    );
    // Cutting after more events than exist still never sends messageStop.
    server.clear_faults();
    server.push_fault(FaultRule::new(Fault::StreamCut { after_events: 100 }));
    let (events, _) = collect_stream(&client(&server), "one two").await;
    assert_eq!(events.iter().map(kind).last(), Some("contentBlockStop"));
}

#[tokio::test]
async fn idle_silently_dead_costs_a_read_timeout_then_a_new_connection() {
    let server = LocalServer::builder()
        .protocol(Protocol::HttpsH1Only)
        .idle_fault(IdleFault::SilentlyDead {
            after: Duration::from_millis(300),
        })
        .start()
        .await
        .unwrap();
    let client = client_with(&server, |b| {
        b.retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .read_timeout(Duration::from_millis(500))
                .build(),
        )
    });
    converse(&client, MODEL, "first").await.unwrap();
    assert_eq!(server.bedrock_connections().accepted, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let started = Instant::now();
    let out = converse(&client, MODEL, "wake up").await.unwrap();
    assert_eq!(text_of(&out), "wake up");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "the first attempt waited for the read timeout"
    );
    assert_eq!(server.bedrock_connections().accepted, 2);
    // The dead connection stays open; the swallowed request never reached the handler.
    assert_eq!(server.bedrock_connections().open, 2);
    let last = server.requests().pop().unwrap();
    assert_eq!(last.attempt, Some(2));
    assert_eq!(server.requests().len(), 2);
}

/// Documents an SDK pool behaviour: over HTTP/2 a read timeout cancels the stream but keeps the
/// connection, so every retry lands on the same dead connection.
#[tokio::test]
async fn idle_silently_dead_h2_connection_is_reused_by_retries() {
    let server = LocalServer::builder()
        .idle_fault(IdleFault::SilentlyDead {
            after: Duration::from_millis(300),
        })
        .start()
        .await
        .unwrap();
    let client = client_with(&server, |b| {
        b.retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .read_timeout(Duration::from_millis(300))
                .build(),
        )
    });
    converse(&client, MODEL, "first").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = converse(&client, MODEL, "wake up").await.unwrap_err();
    assert!(
        matches!(&err, SdkError::DispatchFailure(d) if d.is_timeout()),
        "{err:?}"
    );
    assert_eq!(server.bedrock_connections().accepted, 1);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn idle_close_drops_the_connection() {
    let server = LocalServer::start().await.unwrap();
    server.set_idle_fault(Some(IdleFault::Close {
        after: Duration::from_millis(300),
    }));
    let client = client(&server);
    converse(&client, MODEL, "hi").await.unwrap();
    assert_eq!(server.bedrock_connections().open, 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server.bedrock_connections().open, 0);
    converse(&client, MODEL, "hi again").await.unwrap();
    let counts = server.bedrock_connections();
    assert_eq!((counts.accepted, counts.max_open), (2, 1));
}

#[tokio::test]
async fn idle_reset_forces_a_new_connection() {
    let server = LocalServer::builder()
        .idle_fault(IdleFault::Reset {
            after: Duration::from_millis(300),
        })
        .start()
        .await
        .unwrap();
    let client = fast_retries(&server);
    converse(&client, MODEL, "hi").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    let out = converse(&client, MODEL, "after idle").await.unwrap();
    assert_eq!(text_of(&out), "after idle");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.bedrock_connections().accepted, 2);
    assert_eq!(server.bedrock_connections().open, 1);
    // The reset request never reached the handler.
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn busy_connections_are_not_idle() {
    let server = LocalServer::builder()
        .idle_fault(IdleFault::Reset {
            after: Duration::from_millis(400),
        })
        .start()
        .await
        .unwrap();
    let client = one_attempt(&server);
    for _ in 0..6 {
        converse(&client, MODEL, "hi").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.bedrock_connections().accepted, 1);
}

#[tokio::test]
async fn h2_by_default_and_http1_when_asked() {
    for (protocol, version, scheme) in [
        (Protocol::Https, http::Version::HTTP_2, "https://"),
        (Protocol::HttpsH1Only, http::Version::HTTP_11, "https://"),
        (Protocol::Http, http::Version::HTTP_11, "http://"),
    ] {
        let server = LocalServer::builder()
            .protocol(protocol)
            .start()
            .await
            .unwrap();
        assert!(server.bedrock_url().starts_with(scheme));
        assert_eq!(server.protocol(), protocol);
        converse(&client(&server), MODEL, "hi").await.unwrap();
        let (events, _) = collect_stream(&client(&server), "hi you").await;
        assert_eq!(streamed_text(&events), "hi you");
        sts_client(&server)
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        assert!(
            server.requests().iter().all(|r| r.http_version == version),
            "{protocol:?}"
        );
    }
}

#[tokio::test]
async fn restarts_on_the_same_port_and_drop_closes_connections() {
    let server = LocalServer::start().await.unwrap();
    let port = server.bedrock_addr().port();
    let client = one_attempt(&server);
    converse(&client, MODEL, "hi").await.unwrap();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(converse(&client, MODEL, "hi").await.is_err());

    let server = LocalServer::builder()
        .bedrock_port(port)
        .start()
        .await
        .unwrap();
    assert_eq!(server.bedrock_addr().port(), port);
    converse(&one_attempt(&server), MODEL, "back")
        .await
        .unwrap();
}

/// Sends raw bytes over plain HTTP/1.1 and returns the raw answer.
async fn raw(server: &LocalServer, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.bedrock_addr())
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn unsigned_and_malformed_requests_get_errors() {
    let server = LocalServer::builder()
        .protocol(Protocol::Http)
        .start()
        .await
        .unwrap();
    let answer = raw(
        &server,
        "POST /model/m/converse HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("MissingAuthenticationTokenException"),
        "{answer}"
    );
    let answer = raw(
        &server,
        "POST /model/m/converse HTTP/1.1\r\nhost: x\r\nauthorization: AWS4-HMAC-SHA256 garbage\r\n\
         content-length: 3\r\nconnection: close\r\n\r\n{{{",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(
        &server,
        "GET /nope/%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("UnknownOperationException"), "{answer}");
    // The server is still fine.
    converse(&client(&server), MODEL, "still alive")
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn wait_for_requests_and_ca_file() {
    let server = LocalServer::start().await.unwrap();
    assert!(!server.wait_for_requests(1, Duration::from_millis(50)).await);
    let client = client(&server);
    let call = tokio::spawn(async move { converse(&client, MODEL, "hi").await.map(|_| ()) });
    assert!(server.wait_for_requests(1, Duration::from_secs(5)).await);
    call.await.unwrap().unwrap();
    let path = std::env::temp_dir().join(format!("bedrock-pool-ca-{}.pem", std::process::id()));
    server.write_ca_pem(&path).unwrap();
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(pem, server.ca_pem());
    let _ = std::fs::remove_file(path);
    server.clear_requests();
    assert!(server.requests().is_empty());
}
