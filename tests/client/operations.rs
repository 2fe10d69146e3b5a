//! Embeddings, InvokeModel and CountTokens through the factory's handles, against the local
//! server: the same pool, statistics, failover and error kinds as Converse.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{
    ErrorKind, LlmFactory,
    config::RetryMode,
    embed::{EmbedFamily, InputType, Truncate},
};
use bedrock_pool_local::{Fault, FaultRule, LocalServer, Operation, Protocol, ServiceError};
use common::{MODEL, factory_for, server};
use serde_json::{Value, json};

const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE_V3: &str = "cohere.embed-english-v3";
const COHERE_V4: &str = "cohere.embed-v4:0";

fn body_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[tokio::test]
async fn invoke_unary_and_stream() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hello from invoke"}],
    });
    let reply = factory
        .model(MODEL)
        .invoke(body.to_string())
        .send()
        .await
        .unwrap();
    let answer = body_json(reply.bytes());
    assert_eq!(answer["content"][0]["text"], "hello from invoke");
    assert_eq!(reply.region(), server.region());
    // An Anthropic body is carried as a stream, and its message rebuilt.
    let recorded = server.requests_for(Operation::InvokeModelWithResponseStream);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body, body);
    assert!(server.requests_for(Operation::InvokeModel).is_empty());
    let stream = factory
        .model(MODEL)
        .invoke_stream(body.to_string())
        .send()
        .await
        .unwrap();
    let chunks = stream.collect().await.unwrap();
    let types: Vec<String> = chunks
        .iter()
        .map(|c| {
            body_json(c.as_ref())["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            body_json(c.as_ref())["delta"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["hello", "from", "invoke"]
    );
    let stats = factory.stats().requests;
    assert_eq!((stats.requests, stats.successes), (2, 2));
    // Traffic on the region, as Converse's is (keep-warm skips a region in use).
    assert_eq!(factory.stats().regions[0].requests.successes, 2);
    assert!(factory.idle_for().is_some());
    assert!(
        stats.input_tokens > 0 && stats.output_tokens > 0,
        "{stats:?}"
    );
    // Bad input never reaches the server.
    let e = factory
        .model(MODEL)
        .invoke("not json")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("body"));
    assert_eq!(server.requests().len(), 2, "the invoke and the stream only");
}

#[tokio::test]
async fn count_tokens_takes_the_converse_inputs() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let n = factory
        .model(MODEL)
        .converse()
        .system("be brief")
        .user("one two three four")
        .count_tokens()
        .await
        .unwrap();
    assert!(n >= 4, "{n}");
    let recorded = server.requests_for(Operation::CountTokens);
    assert_eq!(
        recorded[0].body["input"]["converse"]["messages"][0]["content"][0]["text"],
        "one two three four"
    );
    let e = factory
        .model(MODEL)
        .converse()
        .count_tokens()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("messages"));
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn embeddings_titan_and_cohere_keep_order_and_shapes() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let titan = factory
        .model(TITAN)
        .embed()
        .texts(["alpha", "beta", "alpha"])
        .dimensions(256)
        .send()
        .await
        .unwrap();
    let v = titan.vectors();
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|x| x.len() == 256));
    assert_eq!(v[0], v[2], "the same text gives the same vector");
    assert_ne!(v[0], v[1]);
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    assert!(titan.input_tokens() > 0);
    let sent = server.requests_for(Operation::InvokeModel);
    assert_eq!(sent[0].body["dimensions"], 256);
    // 250 texts: three Cohere batches (96, 96, 58), sent concurrently, results in input order.
    let texts: Vec<String> = (0..250).map(|i| format!("text number {i}")).collect();
    let one_by_one = factory
        .model(COHERE_V3)
        .embed()
        .texts([texts[0].clone(), texts[200].clone()])
        .input_type(InputType::SearchQuery)
        .send()
        .await
        .unwrap();
    server.clear_requests();
    let all = factory
        .model(COHERE_V3)
        .embed()
        .texts(texts.clone())
        .input_type(InputType::SearchQuery)
        .truncate(Truncate::End)
        .concurrency(3)
        .send()
        .await
        .unwrap();
    assert_eq!(all.vectors().len(), 250);
    // One call's metadata per batch.
    assert_eq!(all.calls().len(), 3);
    assert!(
        all.calls()
            .iter()
            .all(|c| c.model_id == COHERE_V3 && c.attempts == 1)
    );
    assert_eq!(all.vectors()[0], one_by_one.vectors()[0]);
    assert_eq!(all.vectors()[200], one_by_one.vectors()[1]);
    let batches = server.requests_for(Operation::InvokeModel);
    let mut sizes: Vec<usize> = batches
        .iter()
        .map(|r| r.body["texts"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [58, 96, 96]);
    assert!(
        batches
            .iter()
            .all(|r| r.body["truncate"] == "END" && r.body["input_type"] == "search_query")
    );
    // Cohere v4: LEFT/RIGHT and output_dimension.
    let v4 = factory
        .model(COHERE_V4)
        .embed()
        .texts(["x"])
        .dimensions(512)
        .truncate(Truncate::Start)
        .send()
        .await
        .unwrap();
    assert_eq!(v4.vectors()[0].len(), 512);
    let last = server.requests_for(Operation::InvokeModel).pop().unwrap();
    assert_eq!(last.body["truncate"], "LEFT");
    assert_eq!(last.body["output_dimension"], 512);
    // An application inference profile needs the family said.
    let arn = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/abc";
    let e = factory
        .model(arn)
        .embed()
        .texts(["x"])
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("family"));
    // Said, the family shapes the body for the profile. (The local server has no profiles to
    // resolve: it knows the model from the base model id in the profile's name.)
    let arn = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/amazon.titan-embed-text-v2-team-a";
    assert_eq!(EmbedFamily::from_model_id(arn), None);
    let profiled = factory
        .model(arn)
        .embed()
        .texts(["x"])
        .family(EmbedFamily::TitanV2)
        .dimensions(256)
        .send()
        .await
        .unwrap();
    assert_eq!(profiled.vectors()[0].len(), 256);
    let last = server.requests_for(Operation::InvokeModel).pop().unwrap();
    assert_eq!(last.body["inputText"], "x");
    assert_eq!(last.body["dimensions"], 256);
}

#[tokio::test]
async fn bad_embedding_inputs_are_refused_before_the_network() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let titan = || factory.model(TITAN).embed();
    let cohere = || factory.model(COHERE_V3).embed();
    for (field, r) in [
        ("texts", titan()),
        ("texts", titan().texts(["ok", " "])),
        ("dimensions", titan().texts(["a"]).dimensions(300)),
        ("texts", titan().texts(["x".repeat(50_001)])),
        ("dimensions", cohere().texts(["a"]).dimensions(512)),
        ("normalize", cohere().texts(["a"]).normalize(false)),
        ("texts", cohere().texts(["y".repeat(2_049)])),
        (
            "input_type",
            titan().texts(["a"]).input_type(InputType::Clustering),
        ),
        ("truncate", titan().texts(["a"]).truncate(Truncate::End)),
        ("concurrency", titan().texts(["a"]).concurrency(0)),
    ] {
        let e = r.send().await.expect_err(field);
        assert_eq!(e.field(), Some(field), "{e}");
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn operations_retry_and_fail_over_like_converse() {
    let first = LocalServer::builder()
        .protocol(Protocol::Https)
        .region("us-east-1")
        .start()
        .await
        .unwrap();
    let second = LocalServer::builder()
        .protocol(Protocol::Https)
        .region("us-west-2")
        .start()
        .await
        .unwrap();
    let factory = LlmFactory::builder()
        .regions(["us-east-1", "us-west-2"])
        .region_endpoint_url("us-east-1", first.bedrock_url())
        .region_endpoint_url("us-west-2", second.bedrock_url())
        .credentials_provider(first.credentials())
        .ca_certificate_pem(first.ca_pem())
        .ca_certificate_pem(second.ca_pem())
        .sts_endpoint_url(first.sts_url())
        .retry_mode(RetryMode::Standard)
        .build()
        .await
        .unwrap();
    // A 503 once: the SDK retries it in the same region.
    first.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable(
            "busy".into(),
        )))
        .times(1),
    );
    let r = factory
        .model(TITAN)
        .embed()
        .texts(["a"])
        .send()
        .await
        .unwrap();
    assert_eq!(r.vectors().len(), 1);
    assert_eq!(first.requests_for(Operation::InvokeModel).len(), 2);
    // 503 on every attempt: the call fails over to the second region.
    first.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("down".into()),
    )));
    let reply = factory
        .model(MODEL)
        .invoke(json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.region(), "us-west-2");
    assert_eq!(
        second
            .requests_for(Operation::InvokeModelWithResponseStream)
            .len(),
        1
    );
    assert_eq!(factory.stats().regions[0].failovers, 1);
    // Validation never fails over: one request in all, wherever it went.
    first.clear_faults();
    for s in [&first, &second] {
        s.push_fault(FaultRule::new(Fault::Error(ServiceError::Validation("bad".into()))).times(1));
    }
    let before = first.requests_for(Operation::InvokeModel).len()
        + second.requests_for(Operation::InvokeModel).len();
    let e = factory
        .model(MODEL)
        .invoke(json!({"prompt": "hi"}).to_string())
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation, "{e:?}");
    let after = first.requests_for(Operation::InvokeModel).len()
        + second.requests_for(Operation::InvokeModel).len();
    assert_eq!(after, before + 1);
}
