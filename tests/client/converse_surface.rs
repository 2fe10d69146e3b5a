// Long because its tests share one setup and read best side by side; each test is one scenario.
//! The whole Converse surface through model handles: every option reaches the wire (as the
//! local server recorded it), for unary calls and streams alike; handle defaults apply and a
//! request's own values win; bad values are refused before the network, each naming its field.

use crate::common;

use bedrock_pool::sdk::Document;
use bedrock_pool::{ConverseRequest, LlmFactory, Model};
use bedrock_pool_local::{Guardrail, LocalServer, Operation, Protocol};
use common::{MODEL, factory_for, server};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Returns the JSON body of the last Converse or ConverseStream request the server recorded.
fn last_body(server: &LocalServer) -> Value {
    server
        .requests()
        .into_iter()
        .rev()
        .find(|r| matches!(r.operation, Operation::Converse | Operation::ConverseStream))
        .map(|r| r.body)
        .expect("a model request was recorded")
}

fn doc(v: Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(b),
        Value::Number(n) => match n.as_u64() {
            Some(u) => Document::Number(aws_smithy_types::Number::PosInt(u)),
            None => Document::Number(aws_smithy_types::Number::Float(n.as_f64().unwrap())),
        },
        Value::String(s) => Document::String(s),
        Value::Array(a) => Document::Array(a.into_iter().map(doc).collect()),
        Value::Object(o) => Document::Object(o.into_iter().map(|(k, v)| (k, doc(v))).collect()),
    }
}

async fn setup() -> (LocalServer, LlmFactory, Model) {
    let server = server(Protocol::Https).await;
    server.set_guardrail(Guardrail::new("abc123def456", "1", "forbidden"));
    server.set_guardrail(Guardrail::new("gr1", "DRAFT", "forbidden"));
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    (server, factory, model)
}

/// Sends the same request as unary and as stream; returns both recorded bodies.
async fn both_ways(
    server: &LocalServer,
    model: &Model,
    build: impl Fn(ConverseRequest) -> ConverseRequest,
    build_stream: impl Fn(bedrock_pool::ConverseStreamRequest) -> bedrock_pool::ConverseStreamRequest,
) -> (Value, Value) {
    build(model.converse()).send().await.expect("unary call");
    let unary = last_body(server);
    let stream = build_stream(model.converse_stream())
        .send()
        .await
        .expect("stream call");
    stream.collect().await.expect("stream collected");
    (unary, last_body(server))
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn every_option_reaches_the_wire_unary_and_stream() {
    let (server, _factory, model) = setup().await;
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    macro_rules! options {
        ($r:expr) => {
            $r.system("be brief")
                .cache_point()
                .user("hi")
                .max_tokens(4096)
                .thinking(2048)
                .interleaved_thinking()
                .additional_model_request_fields(doc(json!({"custom": 1})))
                .additional_model_response_field_paths(["/stop_sequence"])
                .request_metadata("team", "search")
                .request_metadata("cost-center", "42")
                .latency_optimized()
                .service_tier(bedrock_pool::sdk::types::ServiceTierType::Priority)
                .output_schema("answer", doc(schema.clone()))
        };
    }
    let (unary, stream) = both_ways(
        &server,
        &model,
        |r| options!(r),
        |r| {
            options!(r)
                .guardrail("abc123def456", "1")
                .guardrail_trace(bedrock_pool::sdk::types::GuardrailTrace::Enabled)
                .stream_processing_mode(
                    bedrock_pool::sdk::types::GuardrailStreamProcessingMode::Async,
                )
        },
    )
    .await;
    for (label, body) in [("unary", &unary), ("stream", &stream)] {
        assert_eq!(
            body["system"],
            json!([{"text": "be brief"}, {"cachePoint": {"type": "default"}}]),
            "{label}"
        );
        assert_eq!(body["inferenceConfig"]["maxTokens"], 4096, "{label}");
        let extra = &body["additionalModelRequestFields"];
        assert_eq!(
            extra["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048}),
            "{label}"
        );
        assert_eq!(
            extra["anthropic_beta"],
            json!(["interleaved-thinking-2025-05-14"]),
            "{label}"
        );
        assert_eq!(extra["custom"], 1, "{label}");
        assert_eq!(
            body["additionalModelResponseFieldPaths"],
            json!(["/stop_sequence"]),
            "{label}"
        );
        assert_eq!(
            body["requestMetadata"],
            json!({"team": "search", "cost-center": "42"}),
            "{label}"
        );
        assert_eq!(
            body["performanceConfig"],
            json!({"latency": "optimized"}),
            "{label}"
        );
        assert_eq!(body["serviceTier"], json!({"type": "priority"}), "{label}");
        let format = &body["outputConfig"]["textFormat"];
        assert_eq!(format["type"], "json_schema", "{label}");
        let sent: Value = serde_json::from_str(
            format["structure"]["jsonSchema"]["schema"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(sent, schema, "{label}");
        assert_eq!(
            format["structure"]["jsonSchema"]["name"], "answer",
            "{label}"
        );
    }
    assert!(unary.get("guardrailConfig").is_none());
    assert_eq!(
        stream["guardrailConfig"],
        json!({"guardrailIdentifier": "abc123def456", "guardrailVersion": "1", "trace": "enabled", "streamProcessingMode": "async"})
    );
}

#[tokio::test]
async fn the_acceptance_chains_compile_and_work() {
    let (server, _factory, model) = setup().await;
    let reply = model
        .converse()
        .system("s")
        .cache_point()
        .user("hi")
        .thinking(2048)
        .max_tokens(4096)
        .guardrail("abc123def456", "1")
        .request_metadata("team", "search")
        .latency_optimized()
        .send()
        .await
        .unwrap();
    let body = last_body(&server);
    assert_eq!(
        body["guardrailConfig"]["guardrailIdentifier"],
        "abc123def456"
    );
    assert_eq!(body["guardrailConfig"]["guardrailVersion"], "1");
    assert!(!reply.text().is_empty());
    model.converse().user("hi").top_k(5).send().await.unwrap();
    assert_eq!(
        last_body(&server)["additionalModelRequestFields"],
        json!({"top_k": 5})
    );
}

#[tokio::test]
async fn cache_points_go_after_what_was_added_last() {
    let (server, _factory, model) = setup().await;
    let tools = bedrock_pool::sdk::types::ToolConfiguration::builder()
        .tools(bedrock_pool::sdk::types::Tool::ToolSpec(
            bedrock_pool::sdk::types::ToolSpecification::builder()
                .name("lookup")
                .input_schema(bedrock_pool::sdk::types::ToolInputSchema::Json(doc(
                    json!({"type": "object"}),
                )))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    model
        .converse()
        .tool_config(tools)
        .cache_point_with_ttl(bedrock_pool::sdk::types::CacheTtl::OneHour)
        .user("long document")
        .cache_point()
        .send()
        .await
        .unwrap();
    let body = last_body(&server);
    assert_eq!(
        body["toolConfig"]["tools"][1],
        json!({"cachePoint": {"type": "default", "ttl": "1h"}})
    );
    assert_eq!(
        body["messages"][0]["content"],
        json!([{"text": "long document"}, {"cachePoint": {"type": "default"}}])
    );
}

#[tokio::test]
async fn handle_defaults_apply_and_requests_win() {
    let (server, _factory, model) = setup().await;
    let tuned = model
        .with_cached_system("you are a librarian")
        .with_top_k(7)
        .with_guardrail("gr1", "DRAFT")
        .with_latency_optimized()
        .with_service_tier(bedrock_pool::sdk::types::ServiceTierType::Flex)
        .with_request_metadata("team", "default-team")
        .with_request_metadata("app", "catalog")
        .with_additional_model_request_fields(doc(json!({"a": 1, "b": 2})));
    tuned
        .converse()
        .user("hi")
        .request_metadata("team", "search")
        .additional_model_request_fields(doc(json!({"b": 3})))
        .send()
        .await
        .unwrap();
    let body = last_body(&server);
    assert_eq!(
        body["system"],
        json!([{"text": "you are a librarian"}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(
        body["additionalModelRequestFields"],
        json!({"a": 1, "b": 3, "top_k": 7})
    );
    assert_eq!(body["guardrailConfig"]["guardrailVersion"], "DRAFT");
    assert_eq!(body["performanceConfig"]["latency"], "optimized");
    assert_eq!(body["serviceTier"]["type"], "flex");
    assert_eq!(
        body["requestMetadata"],
        json!({"team": "search", "app": "catalog"})
    );
    // A thinking handle: max_tokens defaults to the budget plus room for the answer.
    model
        .with_thinking(2000)
        .converse()
        .user("think")
        .send()
        .await
        .unwrap();
    let body = last_body(&server);
    assert_eq!(body["inferenceConfig"]["maxTokens"], 2000 + 4096);
}

#[tokio::test]
async fn handle_defaults_apply_and_requests_win_unary_and_stream() {
    let (server, _factory, model) = setup().await;
    let tuned = model
        .with_system("handle system")
        .with_temperature(0.25)
        .with_max_tokens(64)
        .with_request_metadata("team", "default-team");
    // The request sets nothing: every default reaches the wire.
    let (unary, stream) = both_ways(&server, &tuned, |r| r.user("hi"), |r| r.user("hi")).await;
    for body in [&unary, &stream] {
        assert_eq!(body["system"], json!([{"text": "handle system"}]), "{body}");
        assert_eq!(body["inferenceConfig"]["temperature"], 0.25, "{body}");
        assert_eq!(body["inferenceConfig"]["maxTokens"], 64, "{body}");
        assert_eq!(body["requestMetadata"], json!({"team": "default-team"}));
    }
    // The request's own values win over the handle's.
    let (unary, stream) = both_ways(
        &server,
        &tuned,
        |r| {
            r.system("request system")
                .temperature(0.5)
                .request_metadata("team", "search")
                .user("hi")
        },
        |r| {
            r.system("request system")
                .temperature(0.5)
                .request_metadata("team", "search")
                .user("hi")
        },
    )
    .await;
    for body in [&unary, &stream] {
        assert_eq!(
            body["system"],
            json!([{"text": "request system"}]),
            "{body}"
        );
        assert_eq!(body["inferenceConfig"]["temperature"], 0.5, "{body}");
        assert_eq!(body["inferenceConfig"]["maxTokens"], 64, "{body}");
        assert_eq!(body["requestMetadata"], json!({"team": "search"}));
    }
}

#[tokio::test]
async fn a_prompt_arn_follows_the_services_rules() {
    let (server, factory, _model) = setup().await;
    let arn = "arn:aws:bedrock:us-east-1:123456789012:prompt/PROMPT12345:1";
    let prompt = factory
        .model(arn)
        .with_system("ignored for prompts")
        .with_max_tokens(99);
    // Refused on the request itself, before the network.
    for (field, r) in [
        ("system", prompt.converse().system("no")),
        ("inference_config", prompt.converse().temperature(0.5)),
        (
            "additional_model_request_fields",
            prompt.converse().thinking(2048),
        ),
    ] {
        let e = r.prompt_variable("topic", "cats").send().await.unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
    }
    assert!(server.requests().is_empty());
    // Messages optional; the handle's system and max_tokens are not sent.
    let sent = prompt
        .converse()
        .prompt_variable("topic", "cats")
        .send()
        .await;
    let body = last_body(&server);
    assert_eq!(body["promptVariables"], json!({"topic": {"text": "cats"}}));
    assert!(body.get("system").is_none(), "{body}");
    assert!(body.get("inferenceConfig").is_none(), "{body}");
    let _ = sent; // the local server may refuse an unknown prompt; the wire is what is checked
    // Prompt variables need a prompt ARN.
    let e = factory
        .model(MODEL)
        .converse()
        .user("hi")
        .prompt_variable("topic", "cats")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("prompt_variables"));
}

#[tokio::test]
async fn bad_values_are_refused_before_the_network() {
    let (server, _factory, model) = setup().await;
    let tool = bedrock_pool::sdk::types::Tool::ToolSpec(
        bedrock_pool::sdk::types::ToolSpecification::builder()
            .name("t")
            .input_schema(bedrock_pool::sdk::types::ToolInputSchema::Json(doc(
                json!({"type": "object"}),
            )))
            .build()
            .unwrap(),
    );
    let forced = bedrock_pool::sdk::types::ToolConfiguration::builder()
        .tools(tool)
        .tool_choice(bedrock_pool::sdk::types::ToolChoice::Any(
            bedrock_pool::sdk::types::AnyToolChoice::builder().build(),
        ))
        .build()
        .unwrap();
    let m = || model.converse().user("hi");
    let many_meta = (0..17).fold(m(), |r, i| r.request_metadata(format!("k{i}"), "v"));
    let many_cache = m()
        .cache_point()
        .assistant("a")
        .cache_point()
        .user("b")
        .cache_point()
        .assistant("c")
        .cache_point()
        .user("d")
        .cache_point();
    let cases: Vec<(&str, ConverseRequest)> = vec![
        ("thinking", m().thinking(1000)),
        ("thinking", m().thinking(4096).max_tokens(4096)),
        ("temperature", m().thinking(2048).temperature(0.2)),
        ("top_k", m().thinking(2048).top_k(5)),
        ("top_p", m().thinking(2048).top_p(0.5)),
        ("tool_config", m().thinking(2048).tool_config(forced)),
        ("top_k", m().top_k(0)),
        ("guardrail", m().guardrail("Bad_Id", "1")),
        ("guardrail", m().guardrail("abc", "01")),
        (
            "guardrail",
            m().guardrail("arn:aws:bedrock:us-east-1:12:guardrail/x", "1"),
        ),
        (
            "guardrail",
            m().guardrail_trace(bedrock_pool::sdk::types::GuardrailTrace::Enabled),
        ),
        ("request_metadata", m().request_metadata("", "v")),
        ("request_metadata", m().request_metadata("k", "semi;colon")),
        (
            "request_metadata",
            m().request_metadata("k", "x".repeat(257)),
        ),
        ("request_metadata", many_meta),
        ("cache_point", model.converse().cache_point().user("hi")),
        ("cache_point", many_cache),
        (
            "output_schema",
            m().output_schema("s", Document::String("no".into())),
        ),
        (
            "additional_model_request_fields",
            m().additional_model_request_fields(Document::Array(vec![])),
        ),
    ];
    for (field, r) in cases {
        let e = r.send().await.expect_err(field);
        assert!(e.is_invalid_input(), "{field}: {e}");
        assert_eq!(e.field(), Some(field), "{e}");
    }
    // Interleaved thinking lets the budget exceed max_tokens.
    let ok = m().thinking(8192).max_tokens(4096).interleaved_thinking();
    assert!(server.requests().is_empty(), "nothing reached the server");
    ok.send().await.unwrap();
    let _ = HashMap::<(), ()>::new();
}

#[tokio::test]
async fn a_guardrail_intervention_and_thinking_come_back_typed() {
    let (_server, _factory, model) = setup().await;
    let reply = model
        .converse()
        .user("tell me something forbidden")
        .guardrail("abc123def456", "1")
        .guardrail_trace(bedrock_pool::sdk::types::GuardrailTrace::Enabled)
        .send()
        .await
        .unwrap();
    assert!(reply.guardrail_intervened());
    assert!(reply.guardrail_trace().is_some());
    let reply = model
        .converse()
        .user("think first")
        .thinking(2048)
        .send()
        .await
        .unwrap();
    let reasoning = reply.reasoning().expect("a reasoning block");
    assert!(!reasoning.text().is_empty());
    assert!(reasoning.signature().is_some());
    // The same conversation continued with the reasoning kept: the server accepts it.
    model
        .converse()
        .user("think first")
        .message(reply.message().unwrap().clone())
        .user("and then?")
        .thinking(2048)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bedrock_api_key_authenticates_by_bearer_and_never_shows() {
    let server = server(Protocol::Https).await;
    let builder = common::builder_for(&server).bedrock_api_key(server.api_key());
    assert!(!format!("{builder:?}").contains(server.api_key()));
    let factory = builder.build().await.unwrap();
    assert!(!format!("{factory:?}").contains(server.api_key()));
    factory
        .model(MODEL)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    // The SigV4 credentials are valid too: a wrong key is refused, so the key is what is used.
    let wrong = common::builder_for(&server)
        .bedrock_api_key("ABSKbm90LXRoZS1rZXk=")
        .build()
        .await
        .unwrap();
    let e = wrong
        .model(MODEL)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert!(e.is_access_denied(), "{e:?}");
    assert!(!format!("{e:?}").contains("ABSKbm90LXRoZS1rZXk="));
    // STS takes SigV4 only: the identity probe is skipped, keep-warm works over bearer.
    let e = factory
        .start_heartbeat(bedrock_pool::HeartbeatConfig::default())
        .unwrap_err();
    assert_eq!(e.field(), Some("heartbeat"), "{e}");
    let hb = factory
        .start_heartbeat(
            bedrock_pool::HeartbeatConfig::default()
                .keep_warm(true)
                .keep_warm_interval(std::time::Duration::from_millis(50))
                .activity_aware(false),
        )
        .unwrap();
    assert!(
        common::eventually(std::time::Duration::from_secs(5), || hb
            .stats()
            .keep_warm
            .succeeded
            >= 2)
        .await,
        "{:?}",
        hb.stats()
    );
    assert_eq!(hb.stats().identity.sent, 0);
    assert!(server.requests_for(Operation::GetCallerIdentity).is_empty());
    hb.stop().await;
    let e = common::builder_for(&server)
        .bedrock_api_key("has space")
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("bedrock_api_key"));
}
