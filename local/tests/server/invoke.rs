//! InvokeModel, InvokeModelWithResponseStream, embeddings and CountTokens on the local server,
//! driven by the raw SDK client.

use std::time::Duration;

use aws_sdk_bedrockruntime as br;
use bedrock_pool_local::{Fault, FaultRule, LocalServer, Operation, ServiceError};
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

#[tokio::test]
async fn titan_embeddings() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    let a = invoke(&c, TITAN, &json!({ "inputText": "the quick brown fox" }))
        .await
        .unwrap();
    let va = floats(&a["embedding"]);
    assert_eq!(va.len(), 1024);
    assert!((norm(&va) - 1.0).abs() < 1e-3);
    assert_eq!(a["inputTextTokenCount"], 4);
    assert_eq!(floats(&a["embeddingsByType"]["float"]), va);
    let again = invoke(&c, TITAN, &json!({ "inputText": "the quick brown fox" }))
        .await
        .unwrap();
    assert_eq!(floats(&again["embedding"]), va);
    let b = invoke(&c, TITAN, &json!({ "inputText": "a lazy dog" }))
        .await
        .unwrap();
    assert_ne!(floats(&b["embedding"]), va);

    let raw = json!({ "inputText": "x y", "dimensions": 256, "normalize": false,
                      "embeddingTypes": ["float", "binary"] });
    let r = invoke(&c, TITAN, &raw).await.unwrap();
    let v = floats(&r["embedding"]);
    assert_eq!(v.len(), 256);
    assert!((norm(&v) - 1.0).abs() > 1e-2, "not normalized");
    let bits = r["embeddingsByType"]["binary"].as_array().unwrap();
    assert_eq!(bits.len(), 256);
    assert!(bits.iter().all(|b| b == 0 || b == 1));
    let h = server.requests_for(Operation::InvokeModel);
    assert_eq!(h.len(), 4);
}

#[tokio::test]
async fn titan_validation() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    validation(&c, TITAN, json!({}), "inputText").await;
    validation(&c, TITAN, json!({ "inputText": "" }), "inputText").await;
    let long = "word ".repeat(8193);
    validation(&c, TITAN, json!({ "inputText": long }), "inputText").await;
    let chars = "x".repeat(50_001);
    validation(&c, TITAN, json!({ "inputText": chars }), "inputText").await;
    validation(
        &c,
        TITAN,
        json!({ "inputText": "a", "dimensions": 300 }),
        "dimensions",
    )
    .await;
    validation(
        &c,
        TITAN,
        json!({ "inputText": "a", "normalize": "yes" }),
        "normalize",
    )
    .await;
    let body = json!({ "inputText": "a", "embeddingTypes": ["int8"] });
    validation(&c, TITAN, body, "embeddingTypes[0]").await;
    validation(&c, TITAN, json!({ "inputText": "a", "texts": [] }), "texts").await;
    // Embedding models do not stream.
    let err = c
        .invoke_model_with_response_stream()
        .model_id(TITAN)
        .body(Blob::new(json!({ "inputText": "a" }).to_string()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
}

#[tokio::test]
async fn cohere_v3_embeddings() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    let texts = ["first text", "second text", "first text"];
    let body = json!({ "texts": texts, "input_type": "search_document" });
    let out = invoke(&c, COHERE_V3, &body).await.unwrap();
    assert_eq!(out["response_type"], "embeddings_floats");
    assert_eq!(out["texts"], json!(texts));
    assert!(out["id"].is_string());
    let vs: Vec<Vec<f64>> = out["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    assert_eq!(vs.len(), 3);
    assert!(
        vs.iter()
            .all(|v| v.len() == 1024 && (norm(v) - 1.0).abs() < 1e-3)
    );
    assert_eq!(vs[0], vs[2]);
    assert_ne!(vs[0], vs[1]);
    // Order follows the texts: the second text alone gives the second vector.
    let single = json!({ "texts": ["second text"], "input_type": "search_query",
                         "embedding_types": ["float", "int8"] });
    let one = invoke(&c, COHERE_V3, &single).await.unwrap();
    assert_eq!(one["response_type"], "embeddings_by_type");
    assert_eq!(floats(&one["embeddings"]["float"][0]), vs[1]);
    assert_eq!(one["embeddings"]["int8"][0].as_array().unwrap().len(), 1024);
    let multi = invoke(&c, "cohere.embed-multilingual-v3", &single)
        .await
        .unwrap();
    assert_eq!(
        multi["embeddings"]["float"][0].as_array().unwrap().len(),
        1024
    );
}

#[tokio::test]
async fn cohere_v4_embeddings() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    let body = json!({ "texts": ["alpha", "beta"], "input_type": "classification" });
    let out = invoke(&c, COHERE_V4, &body).await.unwrap();
    assert_eq!(out["response_type"], "embeddings_by_type");
    let vs = out["embeddings"]["float"].as_array().unwrap();
    assert_eq!(vs.len(), 2);
    assert_eq!(vs[0].as_array().unwrap().len(), 1536);
    let body = json!({ "texts": ["alpha"], "input_type": "clustering", "output_dimension": 256,
                       "truncate": "LEFT", "embedding_types": ["ubinary"] });
    let out = invoke(&c, COHERE_V4, &body).await.unwrap();
    assert_eq!(
        out["embeddings"]["ubinary"][0].as_array().unwrap().len(),
        32
    );
}

#[tokio::test]
async fn cohere_validation() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    let ok = |extra: Value| {
        let mut b = json!({ "texts": ["a"], "input_type": "search_query" });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    validation(
        &c,
        COHERE_V3,
        json!({ "input_type": "search_query" }),
        "texts",
    )
    .await;
    validation(&c, COHERE_V3, ok(json!({ "texts": [] })), "texts").await;
    let many: Vec<String> = (0..97).map(|i| format!("t{i}")).collect();
    validation(&c, COHERE_V3, ok(json!({ "texts": many })), "texts").await;
    validation(&c, COHERE_V3, json!({ "texts": ["a"] }), "input_type").await;
    validation(
        &c,
        COHERE_V3,
        ok(json!({ "input_type": "other" })),
        "input_type",
    )
    .await;
    validation(&c, COHERE_V3, ok(json!({ "truncate": "LEFT" })), "truncate").await;
    validation(&c, COHERE_V4, ok(json!({ "truncate": "END" })), "truncate").await;
    let long = "w ".repeat(513);
    validation(
        &c,
        COHERE_V3,
        ok(json!({ "texts": ["ok", long] })),
        "texts[1]",
    )
    .await;
    // START truncates instead of refusing.
    invoke(
        &c,
        COHERE_V3,
        &ok(json!({ "texts": [long], "truncate": "START" })),
    )
    .await
    .unwrap();
    let chars = "x".repeat(2049);
    validation(&c, COHERE_V3, ok(json!({ "texts": [chars] })), "texts[0]").await;
    validation(
        &c,
        COHERE_V4,
        ok(json!({ "output_dimension": 768 })),
        "output_dimension",
    )
    .await;
    validation(
        &c,
        COHERE_V3,
        ok(json!({ "output_dimension": 256 })),
        "output_dimension",
    )
    .await;
    let body = ok(json!({ "embedding_types": ["double"] }));
    validation(&c, COHERE_V4, body, "embedding_types[0]").await;
}

#[tokio::test]
async fn count_tokens_converse_and_invoke() {
    let server = LocalServer::start().await.unwrap();
    let c = client(&server);
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("count these four words".into()))
        .build()
        .unwrap();
    let converse = ConverseTokensRequest::builder().messages(message).build();
    let out = c
        .count_tokens()
        .model_id(CLAUDE)
        .input(CountTokensInput::Converse(converse))
        .send()
        .await
        .unwrap();
    assert_eq!(out.input_tokens(), 4);
    let body = InvokeModelTokensRequest::builder()
        .body(Blob::new(anthropic("five words in this body").to_string()))
        .build()
        .unwrap();
    let out = c
        .count_tokens()
        .model_id(CLAUDE)
        .input(CountTokensInput::InvokeModel(body))
        .send()
        .await
        .unwrap();
    assert_eq!(out.input_tokens(), 5);
    assert_eq!(server.requests_for(Operation::CountTokens).len(), 2);
}
