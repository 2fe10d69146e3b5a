//! Helpers of the Converse-surface tests: raw JSON bodies sent (and signed) by the real SDK.
#![allow(dead_code)]

use aws_sdk_bedrockruntime as br;
use aws_smithy_types::body::SdkBody;
use bedrock_pool_local::LocalServer;
use br::error::{ProvideErrorMetadata, SdkError};
use br::operation::converse::{ConverseError, ConverseOutput};
use br::types::{ContentBlock, ConversationRole, ConverseStreamOutput, Message};
use serde_json::{Value, json};

pub const MODEL: &str = "anthropic.claude-3-7-sonnet-20250219-v1:0";
pub const PROMPT_ARN: &str = "arn:aws:bedrock:us-west-2:123456789012:prompt/PROMPT12AB:1";

pub fn client(server: &LocalServer) -> br::Client {
    br::Client::new(&server.sdk_config().expect("sdk config"))
}

pub fn placeholder() -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("placeholder".into()))
        .build()
        .expect("valid message")
}

/// Replaces the serialized body before signing, so that any JSON goes out signed.
pub fn with_body(req: &mut aws_smithy_runtime_api::http::Request, body: &Value) {
    let bytes = body.to_string();
    req.headers_mut()
        .insert("content-length", bytes.len().to_string());
    *req.body_mut() = SdkBody::from(bytes);
}

pub async fn converse_json(
    client: &br::Client,
    model: &str,
    body: Value,
) -> Result<ConverseOutput, SdkError<ConverseError>> {
    client
        .converse()
        .model_id(model)
        .messages(placeholder())
        .customize()
        .mutate_request(move |req| with_body(req, &body))
        .send()
        .await
}

/// Sends a ConverseStream body; returns its events or the error's message.
pub async fn stream_json(
    client: &br::Client,
    model: &str,
    body: Value,
) -> Result<Vec<ConverseStreamOutput>, String> {
    let out = client
        .converse_stream()
        .model_id(model)
        .messages(placeholder())
        .customize()
        .mutate_request(move |req| with_body(req, &body))
        .send()
        .await
        .map_err(|e| e.into_service_error().message().unwrap_or("").to_owned())?;
    let mut stream = out.stream;
    let mut events = Vec::new();
    while let Some(e) = stream.recv().await.map_err(|e| e.to_string())? {
        events.push(e);
    }
    Ok(events)
}

pub fn user(text: &str) -> Value {
    json!({ "role": "user", "content": [{ "text": text }] })
}

pub fn refusal(err: SdkError<ConverseError>) -> (String, String) {
    let err = err.into_service_error();
    (
        err.code().unwrap_or("").to_owned(),
        err.message().unwrap_or("").to_owned(),
    )
}

pub fn thinking(budget: u64) -> Value {
    json!({ "thinking": { "type": "enabled", "budget_tokens": budget } })
}
