//! What the crate reads of model-native JSON: the request values a span records, and usage
//! and the finish reason of an answer or a stream chunk (Anthropic, Nova and Titan spell them
//! differently).

use crate::call::RequestAttrs;
use aws_sdk_bedrockruntime::types::{StopReason, TokenUsage};
use aws_smithy_types::Document;

/// Reads the common request values of a model-native body for the span (Anthropic, Nova and
/// Titan spell them differently).
pub(super) fn attrs_of(doc: &Document) -> RequestAttrs {
    let num = |path: &[&str]| -> Option<f64> {
        let mut d = doc;
        for p in path {
            d = d.as_object()?.get(*p)?;
        }
        d.as_number().map(|n| n.to_f64_lossy())
    };
    let first = |paths: &[&[&str]]| paths.iter().find_map(|p| num(p));
    RequestAttrs {
        max_tokens: first(&[
            &["max_tokens"],
            &["inferenceConfig", "max_new_tokens"],
            &["textGenerationConfig", "maxTokenCount"],
        ])
        .map(|v| v as i32),
        temperature: first(&[
            &["temperature"],
            &["inferenceConfig", "temperature"],
            &["textGenerationConfig", "temperature"],
        ])
        .map(|v| v as f32),
        top_p: first(&[
            &["top_p"],
            &["inferenceConfig", "top_p"],
            &["textGenerationConfig", "topP"],
        ])
        .map(|v| v as f32),
    }
}

/// Reads usage and the finish reason from a model-native JSON answer or stream chunk:
/// Bedrock's `amazon-bedrock-invocationMetrics`, Anthropic's `usage`, Titan's token counts.
pub(super) fn usage_of(doc: &Document) -> (Option<TokenUsage>, Option<StopReason>) {
    let Some(o) = doc.as_object() else {
        return (None, None);
    };
    let int = |d: Option<&Document>| {
        d.and_then(|d| d.as_number())
            .map(|n| n.to_f64_lossy() as i32)
    };
    let pair = if let Some(m) = o
        .get("amazon-bedrock-invocationMetrics")
        .and_then(|m| m.as_object())
    {
        (
            int(m.get("inputTokenCount")),
            int(m.get("outputTokenCount")),
        )
    } else if let Some(u) = o.get("usage").and_then(|u| u.as_object()) {
        (int(u.get("input_tokens")), int(u.get("output_tokens")))
    } else {
        (
            int(o.get("inputTextTokenCount")),
            int(o.get("outputTextTokenCount")),
        )
    };
    let usage = match pair {
        (None, None) => None,
        (i, out) => TokenUsage::builder()
            .input_tokens(i.unwrap_or(0))
            .output_tokens(out.unwrap_or(0))
            .total_tokens(i.unwrap_or(0) + out.unwrap_or(0))
            .build()
            .ok(),
    };
    let reason = o
        .get("stop_reason")
        .or_else(|| {
            o.get("delta")
                .and_then(|d| d.as_object()?.get("stop_reason"))
        })
        .or_else(|| o.get("completionReason"))
        .and_then(|r| r.as_string())
        .map(StopReason::from);
    (usage, reason)
}
