//! Tool use without SDK assembly: declaring a tool from a name, a description and a JSON
//! schema, answering the model's tool uses in one line, and the tool history's rules, checked
//! before the network as the service checks them.
//!
//! The history's rules ([`check_tool_history`]):
//! - `toolUse` or `toolResult` blocks need a tool configuration (Bedrock: "The toolConfig
//!   field must be defined when using toolUse and toolResult content blocks.");
//! - each `toolUse` of an assistant message is answered by a `toolResult` in the next message
//!   (Anthropic on Bedrock: "`tool_use` ids were found without `tool_result` blocks
//!   immediately after");
//! - each `toolResult` answers a `toolUse` of the message before it ("unexpected
//!   `tool_use_id` found in `tool_result` blocks");
//! - a `toolUse` names a tool the history may use: one the tool configuration declares,
//!   unless a `toolRemoval` block of a `system` message removed it (a `toolAddition` block
//!   makes it usable again); both blocks name declared tools.

use super::ConverseRequest;
use crate::error::{Error, Result};
use crate::reply::Reply;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, Message, Tool, ToolConfiguration, ToolInputSchema,
    ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
};
use aws_smithy_types::Document;
use std::collections::HashSet;

impl<K> ConverseRequest<K> {
    /// Declares a tool the model may call: its name (1 to 64 of `[a-zA-Z0-9_-]`), what it does,
    /// and the JSON schema of its input (an object schema), added to the request's tool
    /// configuration. Checked when the request is sent, naming `tool_config`.
    ///
    /// ```no_run
    /// # async fn run(model: bedrock_pool::Model) -> bedrock_pool::Result<()> {
    /// use bedrock_pool::sdk::Document;
    /// let schema: Document = [
    ///     ("type".to_owned(), Document::from("object")),
    ///     ("properties".to_owned(), Document::Object(
    ///         [("city".to_owned(), Document::Object(
    ///             [("type".to_owned(), Document::from("string"))].into(),
    ///         ))].into(),
    ///     )),
    /// ].into_iter().collect::<std::collections::HashMap<_, _>>().into();
    /// let reply = model
    ///     .converse()
    ///     .tool("get_weather", "The weather in a city", schema)
    ///     .user("What is the weather in Paris?")
    ///     .send()
    ///     .await?;
    /// # let _ = reply; Ok(()) }
    /// ```
    pub fn tool(
        self,
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Document,
    ) -> Self {
        let (name, description) = (name.into(), description.into());
        self.with(|i| {
            let spec = ToolSpecification::builder()
                .name(name)
                .description(description)
                .input_schema(ToolInputSchema::Json(input_schema))
                .build();
            // A name and a schema always build; a failure keeps the tools as they were.
            let Ok(spec) = spec else { return };
            let (mut tools, choice) = match i.tool_config.take() {
                Some(tc) => (tc.tools().to_vec(), tc.tool_choice().cloned()),
                None => (Vec::new(), None),
            };
            tools.push(Tool::ToolSpec(spec));
            i.tool_config = ToolConfiguration::builder()
                .set_tools(Some(tools))
                .set_tool_choice(choice)
                .build()
                .ok();
            i.last = crate::inputs::LastAdded::Tools;
        })
    }

    /// Appends the assistant message of `reply` (its text, tool uses, reasoning), so that the
    /// conversation goes on from it: answer its tool uses next.
    pub fn reply(self, reply: &Reply) -> Self {
        match reply.message() {
            Some(m) => self.message(m.clone()),
            None => self,
        }
    }

    /// Answers the tool use `tool_use_id` with JSON.
    pub fn tool_result_json(self, tool_use_id: impl Into<String>, json: Document) -> Self {
        self.tool_result(tool_use_id, [ToolResultContentBlock::Json(json)])
    }

    /// Answers the tool use `tool_use_id` with text.
    pub fn tool_result_text(self, tool_use_id: impl Into<String>, text: impl Into<String>) -> Self {
        self.tool_result(tool_use_id, [ToolResultContentBlock::Text(text.into())])
    }

    /// Answers the tool use `tool_use_id` with an error the model reads (status `error`).
    pub fn tool_error(self, tool_use_id: impl Into<String>, text: impl Into<String>) -> Self {
        self.push_result(
            tool_use_id.into(),
            vec![ToolResultContentBlock::Text(text.into())],
            Some(ToolResultStatus::Error),
        )
    }

    /// Answers the tool use `tool_use_id` with content blocks: JSON, text, images, documents.
    ///
    /// The result goes into the user message that follows the assistant's tool uses (a new
    /// one, or the last message when it is that user message), after the results already
    /// there, where the service wants them.
    pub fn tool_result(
        self,
        tool_use_id: impl Into<String>,
        content: impl IntoIterator<Item = ToolResultContentBlock>,
    ) -> Self {
        self.push_result(tool_use_id.into(), content.into_iter().collect(), None)
    }

    fn push_result(
        self,
        tool_use_id: String,
        content: Vec<ToolResultContentBlock>,
        status: Option<ToolResultStatus>,
    ) -> Self {
        let block = ToolResultBlock::builder()
            .tool_use_id(tool_use_id)
            .set_content(Some(content))
            .set_status(status)
            .build();
        // An id and a content list always build; a failure keeps the request as it was.
        let Ok(block) = block else { return self };
        self.with(|i| {
            let result = ContentBlock::ToolResult(block);
            let last_is_user = i
                .messages
                .last()
                .is_some_and(|m| *m.role() == ConversationRole::User);
            if last_is_user && let Some(last) = i.messages.pop() {
                let mut content = last.content().to_vec();
                let at = content
                    .iter()
                    .take_while(|b| matches!(b, ContentBlock::ToolResult(_)))
                    .count();
                content.insert(at, result);
                let rebuilt = Message::builder()
                    .role(ConversationRole::User)
                    .set_content(Some(content))
                    .build();
                i.messages.push(rebuilt.unwrap_or(last));
            } else if let Ok(m) = Message::builder()
                .role(ConversationRole::User)
                .content(result)
                .build()
            {
                i.messages.push(m);
            }
            i.last = crate::inputs::LastAdded::Message;
        })
    }
}

/// Returns the names of the tools `tc` declares (specifications and system tools).
fn declared(tc: &ToolConfiguration) -> HashSet<&str> {
    tc.tools()
        .iter()
        .filter_map(|t| match t {
            Tool::ToolSpec(s) => Some(s.name()),
            Tool::SystemTool(s) => Some(s.name()),
            _ => None,
        })
        .collect()
}

/// Checks the tool history of `messages` against the tool configuration (see the module
/// docs), naming `tool_config` or `messages`.
///
/// # Errors
/// An invalid-input error naming the field and the message.
pub(crate) fn check_tool_history(
    messages: &[Message],
    tools: Option<&ToolConfiguration>,
) -> Result<()> {
    let uses_tools = messages
        .iter()
        .flat_map(Message::content)
        .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)));
    let Some(tc) = tools else {
        if uses_tools {
            return Err(Error::invalid(
                "tool_config",
                "the messages hold toolUse or toolResult blocks: the service needs the tool \
                 configuration with them (The toolConfig field must be defined when using \
                 toolUse and toolResult content blocks.)",
            ));
        }
        return Ok(());
    };
    let declared = declared(tc);
    let mut usable = declared.clone();
    // The tool uses of the latest assistant message, waiting for their results.
    let mut pending: Vec<(usize, &str)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.role() {
            ConversationRole::System => {
                for b in m.content() {
                    let (name, add) = match b {
                        ContentBlock::ToolAddition(a) => (a.tool().and_then(|t| t.name()), true),
                        ContentBlock::ToolRemoval(r) => (r.tool().and_then(|t| t.name()), false),
                        _ => continue,
                    };
                    let name = name.unwrap_or("");
                    let Some(&known) = declared.get(name) else {
                        return Err(Error::invalid(
                            "messages",
                            format!(
                                "message {i}: a tool {} names {name:?}, which the tool \
                                 configuration does not declare",
                                if add { "addition" } else { "removal" }
                            ),
                        ));
                    };
                    if add {
                        usable.insert(known);
                    } else {
                        usable.remove(known);
                    }
                }
                continue;
            }
            ConversationRole::Assistant => {
                answered(&pending, m, i)?;
                pending.clear();
                for b in m.content() {
                    if let ContentBlock::ToolUse(u) = b {
                        if !usable.contains(u.name()) {
                            return Err(Error::invalid(
                                "messages",
                                format!(
                                    "message {i}: toolUse {} calls {:?}, a tool the history \
                                     may not use here (not declared, or removed)",
                                    u.tool_use_id(),
                                    u.name()
                                ),
                            ));
                        }
                        pending.push((i, u.tool_use_id()));
                    }
                }
                continue;
            }
            _ => {}
        }
        answered(&pending, m, i)?;
        let expected: HashSet<&str> = pending.iter().map(|(_, id)| *id).collect();
        for (j, b) in m.content().iter().enumerate() {
            if let ContentBlock::ToolResult(r) = b
                && !expected.contains(r.tool_use_id())
            {
                return Err(Error::invalid(
                    "messages",
                    format!(
                        "message {i} block {j}: toolResult {} answers no toolUse of the message \
                         before it",
                        r.tool_use_id()
                    ),
                ));
            }
        }
        pending.clear();
    }
    Ok(())
}

/// Checks that message `i` answers every tool use in `pending` (those of the assistant
/// message before it), when there are any.
fn answered(pending: &[(usize, &str)], m: &Message, i: usize) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let results: HashSet<&str> = m
        .content()
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult(r) => Some(r.tool_use_id()),
            _ => None,
        })
        .collect();
    let missing: Vec<&str> = pending
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| *m.role() != ConversationRole::User || !results.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        "messages",
        format!(
            "message {i}: the toolUse blocks {} of message {} have no toolResult here: each \
             toolUse is answered in the next message, a user message",
            missing.join(", "),
            pending[0].0
        ),
    ))
}
