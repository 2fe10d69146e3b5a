//! The tool history's rules, as Bedrock and the Anthropic models behind it refuse a Converse
//! request (each error is a `400 ValidationException` message):
//! - `toolUse` or `toolResult` blocks without `toolConfig`: Bedrock's "The toolConfig field
//!   must be defined when using toolUse and toolResult content blocks.";
//! - an assistant's `toolUse` not answered by a `toolResult` in the next message, and a
//!   `toolResult` that answers no `toolUse` of the message before it: Anthropic's messages,
//!   after "The model returned the following errors: ";
//! - `system` messages hold only `toolAddition` and `toolRemoval` blocks, which name tools
//!   `toolConfig` declares and change the tools later `toolUse` blocks may call (this
//!   server's own wording: the service does not document its message).

use super::wire::MODEL_ERRORS;
use serde_json::Value;
use std::collections::HashSet;

/// Returns the content blocks of a message.
fn blocks(message: &Value) -> &[Value] {
    message
        .get("content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Returns the `toolUseId` of the `toolUse` or `toolResult` member of a block.
fn tool_use_id<'a>(block: &'a Value, member: &str) -> Option<&'a str> {
    block.get(member)?.get("toolUseId")?.as_str()
}

/// Checks the tool history of a Converse body (see the module docs).
pub(crate) fn validate_tool_history(body: &Value) -> Result<(), String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let uses_tools = messages.iter().flat_map(blocks).any(|b| {
        b.get("toolUse").is_some_and(|v| !v.is_null())
            || b.get("toolResult").is_some_and(|v| !v.is_null())
    });
    let Some(config) = body.get("toolConfig").filter(|c| !c.is_null()) else {
        if uses_tools {
            return Err(
                "The toolConfig field must be defined when using toolUse and toolResult content \
                 blocks."
                    .to_owned(),
            );
        }
        return Ok(());
    };
    let declared: HashSet<&str> = config
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/toolSpec/name")
                .or_else(|| t.pointer("/systemTool/name"))
                .and_then(Value::as_str)
        })
        .collect();
    let mut usable = declared.clone();
    let mut pending: Vec<&str> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if role == Some("system") {
            for (j, b) in blocks(message).iter().enumerate() {
                for (member, add) in [("toolAddition", true), ("toolRemoval", false)] {
                    let Some(name) = b.get(member).map(|m| m.pointer("/tool/name")) else {
                        continue;
                    };
                    let name = name.and_then(Value::as_str).unwrap_or("");
                    if !declared.contains(name) {
                        return Err(format!(
                            "messages.{i}.content.{j}.{member}.tool.name: {name} is not a tool \
                             of toolConfig.tools"
                        ));
                    }
                    if add {
                        usable.insert(name);
                    } else {
                        usable.remove(name);
                    }
                }
            }
            continue;
        }
        let results: Vec<&str> = blocks(message)
            .iter()
            .filter_map(|b| tool_use_id(b, "toolResult"))
            .collect();
        let missing: Vec<&str> = pending
            .iter()
            .copied()
            .filter(|id| role != Some("user") || !results.contains(id))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{MODEL_ERRORS}messages.{i}: `tool_use` ids were found without `tool_result` \
                 blocks immediately after: {}. Each `tool_use` block must have a corresponding \
                 `tool_result` block in the next message.",
                missing.join(", ")
            ));
        }
        if role == Some("user") {
            for (j, b) in blocks(message).iter().enumerate() {
                if let Some(id) = tool_use_id(b, "toolResult")
                    && !pending.contains(&id)
                {
                    return Err(format!(
                        "{MODEL_ERRORS}messages.{i}.content.{j}: unexpected `tool_use_id` found \
                         in `tool_result` blocks: {id}. Each `tool_result` block must have a \
                         corresponding `tool_use` block in the previous message."
                    ));
                }
            }
        }
        pending.clear();
        for (j, b) in blocks(message).iter().enumerate() {
            let Some(id) = tool_use_id(b, "toolUse") else {
                continue;
            };
            let name = b
                .pointer("/toolUse/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !usable.contains(name) {
                return Err(format!(
                    "messages.{i}.content.{j}.toolUse.name: {name} is not a tool this \
                     conversation may use here (not in toolConfig.tools, or removed by a \
                     toolRemoval block)"
                ));
            }
            pending.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Value {
        json!({ "tools": [{ "toolSpec": { "name": "w", "inputSchema": { "json": {} } } }] })
    }

    fn call(id: &str, name: &str) -> Value {
        json!({ "role": "assistant", "content": [{ "toolUse": { "toolUseId": id, "name": name, "input": {} } }] })
    }

    fn result(id: &str) -> Value {
        json!({ "role": "user", "content": [{ "toolResult": { "toolUseId": id, "content": [{ "text": "ok" }] } }] })
    }

    fn user() -> Value {
        json!({ "role": "user", "content": [{ "text": "hi" }] })
    }

    #[test]
    fn histories_are_checked_as_the_service_does() {
        let ok =
            json!({ "messages": [user(), call("a", "w"), result("a")], "toolConfig": tools() });
        assert_eq!(validate_tool_history(&ok), Ok(()));
        let no_config = json!({ "messages": [user(), call("a", "w"), result("a")] });
        assert!(
            validate_tool_history(&no_config)
                .unwrap_err()
                .starts_with("The toolConfig field")
        );
        let unanswered =
            json!({ "messages": [user(), call("a", "w"), user()], "toolConfig": tools() });
        let e = validate_tool_history(&unanswered).unwrap_err();
        assert!(e.contains("messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: a."), "{e}");
        let stray =
            json!({ "messages": [user(), call("a", "w"), result("b")], "toolConfig": tools() });
        let e = validate_tool_history(&stray).unwrap_err();
        assert!(
            e.contains("messages.2: `tool_use` ids were found without"),
            "{e}"
        );
        let stray = json!({ "messages": [user(), result("b")], "toolConfig": tools() });
        let e = validate_tool_history(&stray).unwrap_err();
        assert!(
            e.contains(
                "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` blocks: b."
            ),
            "{e}"
        );
        let removal = json!({ "role": "system", "content": [{ "toolRemoval": { "tool": { "name": "w" } } }] });
        let addition = json!({ "role": "system", "content": [{ "toolAddition": { "tool": { "name": "w" } } }] });
        let removed = json!({ "messages": [user(), removal, call("a", "w"), result("a")], "toolConfig": tools() });
        assert!(
            validate_tool_history(&removed)
                .unwrap_err()
                .contains("messages.2.content.0.toolUse.name: w")
        );
        let back = json!({ "messages": [user(), removal, addition, call("a", "w"), result("a")], "toolConfig": tools() });
        assert_eq!(validate_tool_history(&back), Ok(()));
        let unknown = json!({ "messages": [user(), { "role": "system", "content": [{ "toolAddition": { "tool": { "name": "x" } } }] }], "toolConfig": tools() });
        assert!(
            validate_tool_history(&unknown)
                .unwrap_err()
                .contains("toolAddition.tool.name: x")
        );
    }
}
