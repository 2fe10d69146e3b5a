//! The local server's Converse surface beyond plain text (thinking, cache points, guardrails,
//! structured output, citations, echoed members, API keys), driven by the raw SDK client over
//! HTTP/2 with TLS. Validation is in `local_converse_validation.rs`.

use crate::surface_common;

use aws_sdk_bedrockruntime as br;
use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;
use bedrock_pool_local::{Guardrail, LocalServer, Operation, TEST_GUARDRAIL_ID};
use br::operation::converse::ConverseOutput;
use br::types::{
    CitationLocation, ContentBlock, ContentBlockDelta, ConverseStreamOutput, ReasoningContentBlock,
    ReasoningContentBlockDelta, StopReason,
};
use serde_json::{Value, json};
use surface_common::{MODEL, client, converse_json, refusal, stream_json, thinking, user};

fn reasoning_of(out: &ConverseOutput) -> (String, String) {
    let content = out.output().unwrap().as_message().unwrap().content();
    let ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) = &content[0]
    else {
        panic!("first block is not reasoning: {content:?}");
    };
    (r.text().to_owned(), r.signature().unwrap_or("").to_owned())
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn thinking_answers_signed_reasoning_that_later_turns_must_keep() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let ask = json!({ "messages": [user("why is the sky blue")],
                      "additionalModelRequestFields": thinking(1024) });
    let out = converse_json(&client, MODEL, ask.clone()).await.unwrap();
    let (text, signature) = reasoning_of(&out);
    assert!(!text.is_empty() && !signature.is_empty());
    let content = out.output().unwrap().as_message().unwrap().content();
    assert_eq!(content[1].as_text().unwrap(), "why is the sky blue");
    let usage = out.usage().unwrap();
    assert_eq!(
        usage.output_tokens(),
        5 + text.split_whitespace().count() as i32
    );

    let turn = |sig: Option<&str>, text: &str| {
        let mut r = json!({ "text": text });
        if let Some(s) = sig {
            r["signature"] = json!(s);
        }
        json!({ "messages": [
            user("why is the sky blue"),
            { "role": "assistant", "content": [{ "reasoningContent": { "reasoningText": r } }, { "text": "because" }] },
            user("and at night"),
        ], "additionalModelRequestFields": thinking(1024) })
    };
    converse_json(&client, MODEL, turn(Some(&signature), &text))
        .await
        .expect("an untouched reasoning block is accepted");
    let (code, msg) = refusal(
        converse_json(&client, MODEL, turn(Some(&signature), "edited thoughts"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "ValidationException");
    assert_eq!(
        msg,
        "The model returned the following errors: messages.1.content.0: Invalid `signature` in `thinking` block"
    );
    let (_, msg) = refusal(
        converse_json(&client, MODEL, turn(None, &text))
            .await
            .unwrap_err(),
    );
    assert!(
        msg.ends_with("messages.1.content.0.thinking.signature: Field required"),
        "{msg}"
    );
    // Redacted reasoning is passed through unread.
    let redacted = json!({ "messages": [
        user("q"),
        { "role": "assistant", "content": [{ "reasoningContent": { "redactedContent": "AAEC" } }, { "text": "a" }] },
        user("again"),
    ] });
    converse_json(&client, MODEL, redacted)
        .await
        .expect("redacted content");

    // Streams: reasoning pieces then the signature on block 0, the text on block 1.
    let events = stream_json(&client, MODEL, ask).await.unwrap();
    let mut reasoning = String::new();
    let mut sig = None;
    let mut answer = String::new();
    for e in &events {
        if let ConverseStreamOutput::ContentBlockDelta(d) = e {
            match (d.content_block_index(), d.delta().unwrap()) {
                (0, ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(t))) => {
                    assert!(sig.is_none(), "text after the signature");
                    reasoning.push_str(t);
                }
                (
                    0,
                    ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Signature(s)),
                ) => {
                    sig = Some(s.clone());
                }
                (1, ContentBlockDelta::Text(t)) => answer.push_str(t),
                other => panic!("unexpected delta {other:?}"),
            }
        }
    }
    assert_eq!(reasoning, text);
    assert_eq!(sig.as_deref(), Some(signature.as_str()));
    assert_eq!(answer, "why is the sky blue");
}

#[tokio::test]
async fn cache_points_write_then_read_the_prefix() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let body = |q: &str| {
        json!({ "system": [{ "text": "you are a very careful assistant" }, { "cachePoint": { "type": "default" } }],
                "messages": [user(q)] })
    };
    let first = converse_json(&client, MODEL, body("one two three"))
        .await
        .unwrap();
    let u = first.usage().unwrap();
    assert_eq!(u.cache_write_input_tokens(), Some(6));
    assert_eq!(u.cache_read_input_tokens(), Some(0));
    assert_eq!(u.input_tokens(), 3);
    assert_eq!(u.total_tokens(), 3 + 6 + 3);
    let second = converse_json(&client, MODEL, body("four five"))
        .await
        .unwrap();
    let u = second.usage().unwrap();
    assert_eq!(u.cache_read_input_tokens(), Some(6));
    assert_eq!(u.cache_write_input_tokens(), Some(0));
    assert_eq!(u.input_tokens(), 2);

    // Streams report it in the metadata event; another model id has its own cache.
    let events = stream_json(&client, MODEL, body("six")).await.unwrap();
    let Some(ConverseStreamOutput::Metadata(m)) = events.last() else {
        panic!("no metadata")
    };
    assert_eq!(m.usage().unwrap().cache_read_input_tokens(), Some(6));
    let events = stream_json(&client, "other.model-v1:0", body("six"))
        .await
        .unwrap();
    let Some(ConverseStreamOutput::Metadata(m)) = events.last() else {
        panic!("no metadata")
    };
    assert_eq!(m.usage().unwrap().cache_write_input_tokens(), Some(6));
    server.clear_prompt_cache();
    let again = converse_json(&client, MODEL, body("x")).await.unwrap();
    assert_eq!(again.usage().unwrap().cache_write_input_tokens(), Some(6));
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn guardrails_intervene_on_their_trigger_word() {
    let server = LocalServer::start().await.unwrap();
    server.set_guardrail(Guardrail::new("mine", "3", "secret").blocked_message("No."));
    let client = client(&server);
    let guarded = |text: &str, id: &str, version: &str| {
        json!({ "messages": [user(text)],
                "guardrailConfig": { "guardrailIdentifier": id, "guardrailVersion": version, "trace": "enabled" } })
    };
    let out = converse_json(&client, MODEL, guarded("tell me a secret", "mine", "3"))
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::GuardrailIntervened);
    let content = out.output().unwrap().as_message().unwrap().content();
    assert_eq!(content[0].as_text().unwrap(), "No.");
    let assessment = &out
        .trace()
        .unwrap()
        .guardrail()
        .unwrap()
        .input_assessment()
        .unwrap()["mine"];
    assert_eq!(
        assessment.word_policy().unwrap().custom_words()[0].r#match(),
        "secret"
    );
    // The default test guardrail, by ARN and DRAFT; no trigger, no intervention.
    let arn = format!("arn:aws:bedrock:us-west-2:123456789012:guardrail/{TEST_GUARDRAIL_ID}");
    let out = converse_json(&client, MODEL, guarded("all fine", &arn, "DRAFT"))
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    assert!(out.trace().is_none());
    // Unknown id or version.
    let (code, msg) = refusal(
        converse_json(&client, MODEL, guarded("x", "nosuch", "1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "ValidationException");
    assert_eq!(msg, "The provided guardrail identifier is invalid.");
    let (_, msg) = refusal(
        converse_json(&client, MODEL, guarded("x", "mine", "4"))
            .await
            .unwrap_err(),
    );
    assert_eq!(msg, "The provided guardrail version is invalid.");

    // Streams: the blocked message, guardrail_intervened, the trace in the metadata event.
    let events = stream_json(
        &client,
        MODEL,
        guarded("a forbidden word", TEST_GUARDRAIL_ID, "1"),
    )
    .await
    .unwrap();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            ConverseStreamOutput::ContentBlockDelta(d) => d.delta()?.as_text().ok().cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(text, bedrock_pool_local::DEFAULT_BLOCKED_MESSAGE);
    let stop = events.iter().find_map(|e| match e {
        ConverseStreamOutput::MessageStop(s) => Some(s.stop_reason().clone()),
        _ => None,
    });
    assert_eq!(stop, Some(StopReason::GuardrailIntervened));
    let Some(ConverseStreamOutput::Metadata(m)) = events.last() else {
        panic!("no metadata")
    };
    let trace = m.trace().unwrap().guardrail().unwrap();
    assert!(
        trace
            .input_assessment()
            .unwrap()
            .contains_key(TEST_GUARDRAIL_ID)
    );
    server.clear_guardrails();
    let (_, msg) = refusal(
        converse_json(&client, MODEL, guarded("x", "mine", "3"))
            .await
            .unwrap_err(),
    );
    assert_eq!(msg, "The provided guardrail identifier is invalid.");
}

#[tokio::test]
async fn structured_output_follows_the_schema() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let schema = json!({ "type": "object", "required": ["city", "days", "tags", "unit", "geo"],
        "properties": { "city": { "type": "string" }, "days": { "type": "integer", "minimum": 1 },
                        "tags": { "type": "array", "items": { "type": "string" } },
                        "unit": { "enum": ["C", "F"] },
                        "geo": { "type": "object", "required": ["lat"], "properties": { "lat": { "type": "number" } } },
                        "note": { "type": "string" } } });
    let body = json!({ "messages": [user("weather please")],
        "outputConfig": { "textFormat": { "type": "json_schema",
            "structure": { "jsonSchema": { "schema": schema.to_string(), "name": "weather" } } } } });
    let want = json!({ "city": "", "days": 1, "tags": [], "unit": "C", "geo": { "lat": 0.0 } });
    let out = converse_json(&client, MODEL, body.clone()).await.unwrap();
    let text = out.output().unwrap().as_message().unwrap().content()[0]
        .as_text()
        .unwrap()
        .clone();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
    let events = stream_json(&client, MODEL, body).await.unwrap();
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            ConverseStreamOutput::ContentBlockDelta(d) => d.delta()?.as_text().ok().cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), want);
}

#[tokio::test]
async fn documents_with_citations_get_cited_answers() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let body = json!({ "messages": [{ "role": "user", "content": [
        { "document": { "name": "Handbook", "format": "txt",
                        "source": { "text": "Dogs are allowed on Fridays." },
                        "citations": { "enabled": true } } },
        { "text": "may I bring my dog" },
    ] }] });
    let out = converse_json(&client, MODEL, body.clone()).await.unwrap();
    let content = out.output().unwrap().as_message().unwrap().content();
    let ContentBlock::CitationsContent(c) = &content[0] else {
        panic!("no citations block: {content:?}")
    };
    assert_eq!(c.content()[0].as_text().unwrap(), "may I bring my dog");
    let cite = &c.citations()[0];
    assert_eq!(cite.title(), Some("Handbook"));
    let Some(CitationLocation::DocumentChar(loc)) = cite.location() else {
        panic!("no document location")
    };
    assert_eq!(
        (loc.document_index(), loc.start(), loc.end()),
        (Some(0), Some(0), Some(28))
    );

    let events = stream_json(&client, MODEL, body).await.unwrap();
    let citations: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ConverseStreamOutput::ContentBlockDelta(d) => d.delta()?.as_citation().ok().cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(citations.len(), 1);
    assert_eq!(citations[0].title(), Some("Handbook"));
    assert_eq!(
        citations[0].source_content()[0].text(),
        Some("Dogs are allowed on Fridays.")
    );
}

#[tokio::test]
async fn performance_tier_and_response_fields_are_echoed() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let body = json!({ "messages": [user("go left STOP then right")],
        "inferenceConfig": { "stopSequences": ["STOP"] },
        "performanceConfig": { "latency": "optimized" }, "serviceTier": { "type": "flex" },
        "additionalModelResponseFieldPaths": ["/stop_sequence", "/unknown"] });
    let out = converse_json(&client, MODEL, body.clone()).await.unwrap();
    assert_eq!(
        out.performance_config().unwrap().latency().as_str(),
        "optimized"
    );
    assert_eq!(out.service_tier().unwrap().r#type().as_str(), "flex");
    let fields = out.additional_model_response_fields().unwrap();
    assert_eq!(
        fields.as_object().unwrap()["stop_sequence"].as_string(),
        Some("STOP")
    );
    let events = stream_json(&client, MODEL, body).await.unwrap();
    let Some(ConverseStreamOutput::Metadata(m)) = events.last() else {
        panic!("no metadata")
    };
    assert_eq!(
        m.performance_config().unwrap().latency().as_str(),
        "optimized"
    );
    assert_eq!(m.service_tier().unwrap().r#type().as_str(), "flex");
    let stop = events.iter().find_map(|e| match e {
        ConverseStreamOutput::MessageStop(s) => s.additional_model_response_fields().cloned(),
        _ => None,
    });
    assert!(stop.is_some());
}

fn bearer_client(server: &LocalServer, key: &str) -> br::Client {
    let conf = server.sdk_config().unwrap();
    br::Client::from_conf(
        br::config::Builder::from(&conf)
            .bearer_token(br::config::Token::new(key, None))
            .auth_scheme_preference([HTTP_BEARER_AUTH_SCHEME_ID])
            .build(),
    )
}

#[tokio::test]
async fn bedrock_api_keys_are_accepted_as_bearer_tokens() {
    let server = LocalServer::start().await.unwrap();
    assert!(server.api_key().starts_with("ABSK"));
    let good = bearer_client(&server, server.api_key());
    converse_json(&good, MODEL, json!({ "messages": [user("hi")] }))
        .await
        .expect("the test API key is accepted");
    let bad = bearer_client(&server, "ABSKnotTheKey");
    let err = converse_json(&bad, MODEL, json!({ "messages": [user("hi")] }))
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (code, msg) = refusal(err);
    assert_eq!(
        (status, code.as_str()),
        (Some(403), "AccessDeniedException")
    );
    assert_eq!(
        msg,
        "Authentication failed: Please make sure your API Key is valid."
    );
    // The requests went out as bearer auth, and SigV4 still works.
    converse_json(&client(&server), MODEL, json!({ "messages": [user("hi")] }))
        .await
        .unwrap();

    // STS never accepts bearer auth.
    let conf = server.sdk_config().unwrap();
    let to_sts = br::Client::from_conf(
        br::config::Builder::from(&conf)
            .endpoint_url(server.sts_url())
            .bearer_token(br::config::Token::new(server.api_key(), None))
            .auth_scheme_preference([HTTP_BEARER_AUTH_SCHEME_ID])
            .build(),
    );
    let _ = converse_json(&to_sts, MODEL, json!({ "messages": [user("hi")] })).await;
    let sts = server.requests_for(Operation::Other);
    assert!(!sts.is_empty());
    assert!(
        sts.iter().all(|r| (400..500).contains(&r.outcome)),
        "{sts:?}"
    );
}
