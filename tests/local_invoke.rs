//! InvokeModel, InvokeModelWithResponseStream, embeddings and CountTokens on the local server,
//! driven by the raw SDK client.

use std::time::Duration;

use aws_sdk_bedrockruntime as br;
use bedrock_pool::local::{Fault, FaultRule, LocalServer, Operation, ServiceError};
use br::config::retry::RetryConfig;
use br::error::{ProvideErrorMetadata, SdkError};
use br::primitives::Blob;
use br::types::{
    ContentBlock, ConversationRole, ConverseTokensRequest, CountTokensInput,
    InvokeModelTokensRequest, Message, ResponseStream,
};
use serde_json::{Value, json};

const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE_V3: &str = "cohere.embed-english-v3";
const COHERE_V4: &str = "cohere.embed-v4:0";

fn client(server: &LocalServer) -> br::Client {
    let conf = server.sdk_config().expect("sdk config");
    br::Client::from_conf(
        br::config::Builder::from(&conf)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build(),
    )
}

fn anthropic(text: &str) -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": text }] }],
    })
}

/// Invokes a model and returns the status-200 JSON, or the error code and message.
async fn invoke(client: &br::Client, model: &str, body: &Value) -> Result<Value, (String, String)> {
    match client
        .invoke_model()
        .model_id(model)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
    {
        Ok(out) => {
            assert_eq!(out.content_type(), "application/json");
            Ok(serde_json::from_slice(out.body().as_ref()).expect("JSON body"))
        }
        Err(SdkError::ServiceError(e)) => {
            let e = e.into_err();
            Err((
                e.code().unwrap_or("").to_owned(),
                e.message().unwrap_or("").to_owned(),
            ))
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

async fn validation(client: &br::Client, model: &str, body: Value, field: &str) {
    let (code, message) = invoke(client, model, &body).await.expect_err("refused");
    assert_eq!(code, "ValidationException", "{message}");
    assert!(message.starts_with(field), "{message} should name {field}");
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("a vector")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[tokio::test]
async fn invoke_anthropic_echoes_messages_shape() {
    let server = LocalServer::start().await.unwrap();
    let out = invoke(&client(&server), CLAUDE, &anthropic("hello invoke world"))
        .await
        .unwrap();
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert_eq!(out["content"][0]["type"], "text");
    assert_eq!(out["content"][0]["text"], "hello invoke world");
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(out["usage"]["input_tokens"], 3);
    assert_eq!(out["usage"]["output_tokens"], 3);
    assert!(out["id"].as_str().unwrap().starts_with("msg_"));
    let reqs = server.requests_for(Operation::InvokeModel);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].outcome, 200);
    assert_eq!(reqs[0].body["max_tokens"], 64);
}

#[tokio::test]
async fn invoke_other_body_answers_output_text() {
    let server = LocalServer::start().await.unwrap();
    let body = json!({ "inputText": "plain words here", "textGenerationConfig": {} });
    let out = invoke(&client(&server), "amazon.titan-text-express-v1", &body)
        .await
        .unwrap();
    assert_eq!(out["outputText"], "plain words here");
    assert_eq!(out["completionReason"], "FINISH");
    assert_eq!(out["inputTextTokenCount"], 3);
}

#[tokio::test]
async fn invoke_stream_sends_anthropic_events() {
    let server = LocalServer::start().await.unwrap();
    let mut out = client(&server)
        .invoke_model_with_response_stream()
        .model_id(CLAUDE)
        .content_type("application/json")
        .body(Blob::new(anthropic("one two three").to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), "application/json");
    let mut events = Vec::new();
    while let Some(event) = out.body.recv().await.unwrap() {
        let ResponseStream::Chunk(part) = event else {
            panic!("unexpected event {event:?}");
        };
        let json: Value = serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap();
        events.push(json);
    }
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0]["message"]["role"], "assistant");
    assert_eq!(events[0]["message"]["usage"]["input_tokens"], 3);
    assert_eq!(events[1]["content_block"]["type"], "text");
    let text: String = events[2..5]
        .iter()
        .map(|e| {
            assert_eq!(e["delta"]["type"], "text_delta");
            e["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "one two three");
    assert_eq!(events[6]["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[6]["usage"]["output_tokens"], 3);
    assert_eq!(
        events[7]["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
        3
    );
    let reqs = server.requests_for(Operation::InvokeModelWithResponseStream);
    assert_eq!(reqs.len(), 1);
}

#[tokio::test]
async fn invoke_faults_apply() {
    let server = LocalServer::start().await.unwrap();
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Throttling("slow down".into())))
            .operation(Operation::InvokeModel)
            .times(1),
    );
    let c = client(&server);
    let (code, _) = invoke(&c, CLAUDE, &anthropic("hi")).await.unwrap_err();
    assert_eq!(code, "ThrottlingException");
    invoke(&c, CLAUDE, &anthropic("hi")).await.unwrap();

    // An in-stream exception after two chunks.
    server.push_fault(
        FaultRule::new(Fault::StreamException {
            after_events: 2,
            error: ServiceError::ModelStreamError("broken".into()),
        })
        .times(1),
    );
    let mut out = c
        .invoke_model_with_response_stream()
        .model_id(CLAUDE)
        .body(Blob::new(anthropic("a b c d").to_string()))
        .send()
        .await
        .unwrap();
    let mut chunks = 0;
    let err = loop {
        match out.body.recv().await {
            Ok(Some(_)) => chunks += 1,
            Ok(None) => panic!("stream ended without the exception"),
            Err(e) => break e,
        }
    };
    assert_eq!(chunks, 2);
    assert!(format!("{err:?}").contains("ModelStreamError"), "{err:?}");

    // A delay applies to InvokeModel too.
    server.push_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(200)))
            .operation(Operation::InvokeModel)
            .times(1),
    );
    let t = std::time::Instant::now();
    invoke(&c, CLAUDE, &anthropic("hi")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn invoke_anthropic_validation() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    let mut body = anthropic("x");
    body.as_object_mut().unwrap().remove("max_tokens");
    validation(&c, CLAUDE, body, "max_tokens").await;
    let mut body = anthropic("x");
    body["messages"] = json!([]);
    validation(&c, CLAUDE, body, "messages").await;
    let mut body = anthropic("x");
    body.as_object_mut().unwrap().remove("anthropic_version");
    validation(&c, CLAUDE, body, "anthropic_version").await;
}
