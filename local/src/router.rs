//! Prompt routers: a Converse call whose model id is a prompt router's ARN is answered by one of
//! two models of the router's family, chosen by the length of the last user message, and the
//! answer names it in `trace.promptRouter.invokedModelId` (as Bedrock's routers do, on Converse
//! and ConverseStream alike, whether or not the request asked for a trace).

use serde_json::{Value, json};

/// Words of the last user message up to which a router picks its family's smaller model.
pub const ROUTER_SHORT_PROMPT_WORDS: u64 = 10;

/// Returns the model a prompt router chooses for a prompt of `words` words, as the inference
/// profile ARN Bedrock reports, or `None` when `model_id` is not a prompt router's ARN
/// (`arn:aws:bedrock:REGION:ACCOUNT:default-prompt-router/NAME` or `...:prompt-router/ID`).
///
/// A default router's name picks its family (`anthropic.claude`, `meta.llama`, `amazon.nova`;
/// a custom router answers with the Anthropic pair); prompts of at most
/// [`ROUTER_SHORT_PROMPT_WORDS`] words go to the smaller model.
pub fn routed_model(model_id: &str, words: u64) -> Option<String> {
    let parts: Vec<&str> = model_id.splitn(6, ':').collect();
    let [arn, partition, "bedrock", region, account, resource] = parts.as_slice() else {
        return None;
    };
    if *arn != "arn" || !partition.starts_with("aws") || region.is_empty() || account.len() != 12 {
        return None;
    }
    let name = resource
        .strip_prefix("default-prompt-router/")
        .or_else(|| resource.strip_prefix("prompt-router/"))
        .filter(|n| !n.is_empty())?;
    let (small, large) = match name.split(':').next().unwrap_or("") {
        "meta.llama" => (
            "meta.llama3-1-8b-instruct-v1:0",
            "meta.llama3-1-70b-instruct-v1:0",
        ),
        "amazon.nova" => ("amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0"),
        _ => (
            "anthropic.claude-3-haiku-20240307-v1:0",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
    };
    let geo = match region.split('-').next().unwrap_or("") {
        "eu" => "eu",
        "ap" => "apac",
        _ => "us",
    };
    let model = if words <= ROUTER_SHORT_PROMPT_WORDS {
        small
    } else {
        large
    };
    Some(format!(
        "arn:{partition}:bedrock:{region}:{account}:inference-profile/{geo}.{model}"
    ))
}

/// Adds the router's choice to an answer's `trace` (keeping a guardrail's trace beside it).
pub(crate) fn add_trace(trace: Option<Value>, invoked: &str) -> Value {
    let mut t = trace.unwrap_or_else(|| json!({}));
    t["promptRouter"] = json!({ "invokedModelId": invoked });
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_choose_by_prompt_length_and_family() {
        let default =
            "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        assert_eq!(
            routed_model(default, 3).as_deref(),
            Some(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
            )
        );
        assert!(
            routed_model(default, 40)
                .unwrap()
                .ends_with("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
        );
        let nova = "arn:aws:bedrock:eu-west-1:123456789012:default-prompt-router/amazon.nova:1";
        assert!(
            routed_model(nova, 1)
                .unwrap()
                .ends_with("inference-profile/eu.amazon.nova-lite-v1:0")
        );
        let custom = "arn:aws:bedrock:ap-southeast-2:123456789012:prompt-router/abcd1234";
        assert!(
            routed_model(custom, 1)
                .unwrap()
                .contains(":inference-profile/apac.anthropic.")
        );
        for not in [
            "anthropic.claude-3-haiku-20240307-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x.y",
            "arn:aws:bedrock:us-east-1:123:default-prompt-router/anthropic.claude:1",
            "arn:aws:bedrock:us-east-1:123456789012:prompt-router/",
        ] {
            assert_eq!(routed_model(not, 1), None, "{not}");
        }
    }

    #[test]
    fn the_trace_keeps_a_guardrail_beside_the_router() {
        let t = add_trace(Some(json!({ "guardrail": { "x": 1 } })), "m");
        assert_eq!(
            t,
            json!({ "guardrail": { "x": 1 }, "promptRouter": { "invokedModelId": "m" } })
        );
        assert_eq!(
            add_trace(None, "m"),
            json!({ "promptRouter": { "invokedModelId": "m" } })
        );
    }
}
