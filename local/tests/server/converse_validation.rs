//! The local server's validation of the optional Converse members and prompt ARNs, driven by the
//! raw SDK client over HTTP/2 with TLS.

use crate::surface_common;

use aws_sdk_bedrockruntime::types::StopReason;
use bedrock_pool_local::{LocalServer, TEST_GUARDRAIL_ID};
use serde_json::{Value, json};
use surface_common::{
    MODEL, PROMPT_ARN, client, converse_json, refusal, stream_json, thinking, user,
};

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn new_members_are_validated_naming_the_field() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let hi = || json!([user("hi")]);
    let cp = |ty: &str| json!({ "cachePoint": { "type": ty } });
    let many_meta: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "messages": hi(), "guardrailConfig": { "guardrailIdentifier": "Bad Id", "guardrailVersion": "1" } }),
            "guardrailConfig.guardrailIdentifier:",
        ),
        (
            json!({ "messages": hi(), "guardrailConfig": { "guardrailIdentifier": "abc", "guardrailVersion": "01" } }),
            "guardrailConfig.guardrailVersion:",
        ),
        (
            json!({ "messages": hi(), "guardrailConfig": { "guardrailIdentifier": "abc", "guardrailVersion": "1", "trace": "loud" } }),
            "guardrailConfig.trace:",
        ),
        (
            json!({ "messages": hi(), "requestMetadata": {} }),
            "requestMetadata:",
        ),
        (
            json!({ "messages": hi(), "requestMetadata": many_meta }),
            "requestMetadata:",
        ),
        (
            json!({ "messages": hi(), "requestMetadata": { "bad!": "v" } }),
            "requestMetadata.bad!:",
        ),
        (
            json!({ "messages": hi(), "requestMetadata": { "k": "x".repeat(257) } }),
            "requestMetadata.k:",
        ),
        (
            json!({ "messages": hi(), "performanceConfig": { "latency": "fast" } }),
            "performanceConfig.latency:",
        ),
        (
            json!({ "messages": hi(), "serviceTier": { "type": "gold" } }),
            "serviceTier.type:",
        ),
        (
            json!({ "messages": hi(), "outputConfig": { "textFormat": { "type": "xml", "structure": { "jsonSchema": { "schema": "{}" } } } } }),
            "outputConfig.textFormat.type:",
        ),
        (
            json!({ "messages": hi(), "outputConfig": { "textFormat": { "type": "json_schema", "structure": { "jsonSchema": { "schema": "[1]" } } } } }),
            "outputConfig.textFormat.structure.jsonSchema.schema:",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [{ "text": "a" }, cp("ephemeral")] }] }),
            "messages.0.content.1.cachePoint.type:",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [{ "text": "a" }, { "cachePoint": { "type": "default", "ttl": "2h" } }] }] }),
            "messages.0.content.1.cachePoint.ttl:",
        ),
        (
            json!({ "messages": hi(), "system": [{ "text": "s" }, { "cachePoint": { "type": "default", "ttl": "1d" } }] }),
            "system.1.cachePoint.ttl:",
        ),
        (
            json!({ "messages": hi(), "promptVariables": { "x": { "text": "y" } } }),
            "promptVariables:",
        ),
    ];
    for (body, field) in cases {
        let (code, msg) = refusal(converse_json(&client, MODEL, body).await.expect_err(field));
        assert_eq!(code, "ValidationException", "{field}: {msg}");
        assert!(msg.starts_with(field), "{msg} should start with {field}");
    }
    // Streams also check streamProcessingMode.
    let body = json!({ "messages": hi(), "guardrailConfig": { "guardrailIdentifier": TEST_GUARDRAIL_ID,
                       "guardrailVersion": "1", "streamProcessingMode": "later" } });
    let msg = stream_json(&client, MODEL, body).await.unwrap_err();
    assert!(
        msg.starts_with("guardrailConfig.streamProcessingMode:"),
        "{msg}"
    );

    // What Anthropic models check behind Bedrock comes with Bedrock's prefix.
    let model_cases: Vec<(Value, &str)> = vec![
        (
            json!({ "messages": hi(), "additionalModelRequestFields": thinking(100) }),
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            json!({ "messages": hi(), "inferenceConfig": { "maxTokens": 2000 }, "additionalModelRequestFields": thinking(2048) }),
            "`max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (
            json!({ "messages": hi(), "inferenceConfig": { "temperature": 0.5 }, "additionalModelRequestFields": thinking(1024) }),
            "`temperature` may only be set to 1 when thinking is enabled",
        ),
        (
            json!({ "messages": hi(), "inferenceConfig": { "topP": 0.5 }, "additionalModelRequestFields": thinking(1024) }),
            "`top_p` must be greater than or equal to 0.95",
        ),
        (
            json!({ "messages": hi(), "additionalModelRequestFields": { "thinking": thinking(1024)["thinking"], "top_k": 5 } }),
            "`top_k` must be unset when thinking is enabled",
        ),
        (
            json!({ "messages": hi(), "additionalModelRequestFields": { "top_k": 0 } }),
            "top_k: Input should be greater than or equal to 1",
        ),
        (
            json!({ "messages": hi(), "additionalModelRequestFields": thinking(1024),
                 "toolConfig": { "tools": [{ "toolSpec": { "name": "t", "inputSchema": { "json": { "type": "object" } } } }],
                                 "toolChoice": { "any": {} } } }),
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [cp("default"), cp("default"), cp("default"), { "text": "a" }] }],
                 "system": [{ "text": "s" }, cp("default"), cp("default")] }),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
    ];
    for (body, want) in model_cases {
        let (code, msg) = refusal(converse_json(&client, MODEL, body).await.expect_err(want));
        assert_eq!(code, "ValidationException", "{want}: {msg}");
        assert!(
            msg.starts_with("The model returned the following errors: ") && msg.contains(want),
            "{msg} should contain {want}"
        );
    }

    // Allowed: budget over maxTokens with interleaved thinking, temperature 1, topP 0.95.
    let ok = json!({ "messages": hi(), "inferenceConfig": { "maxTokens": 2000, "temperature": 1.0, "topP": 0.95 },
                     "additionalModelRequestFields": { "thinking": thinking(4096)["thinking"],
                                                       "anthropic_beta": ["interleaved-thinking-2025-05-14"] },
                     "requestMetadata": { "team": "a-b_c:d@e/f+g=h,i.j $#" } });
    converse_json(&client, MODEL, ok)
        .await
        .expect("valid request");
}

#[tokio::test]
async fn prompt_arns_take_variables_and_refuse_what_the_prompt_defines() {
    let server = LocalServer::start().await.unwrap();
    let client = client(&server);
    let vars = json!({ "topic": { "text": "rust" } });
    let out = converse_json(&client, PROMPT_ARN, json!({ "promptVariables": vars }))
        .await
        .expect("messages are optional with a prompt ARN");
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    for field in [
        "system",
        "inferenceConfig",
        "toolConfig",
        "additionalModelRequestFields",
    ] {
        let value = match field {
            "system" => json!([{ "text": "s" }]),
            "inferenceConfig" => json!({ "maxTokens": 5 }),
            "toolConfig" => json!({ "tools": [] }),
            _ => json!({ "top_k": 5 }),
        };
        let body = json!({ "messages": [user("hi")], "promptVariables": vars, field: value });
        let (code, msg) = refusal(converse_json(&client, PROMPT_ARN, body).await.unwrap_err());
        assert_eq!(code, "ValidationException");
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
}
