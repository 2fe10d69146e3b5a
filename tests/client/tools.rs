//! Tool use without SDK assembly: a tool declared from a name, a description and a JSON
//! schema, the model's tool uses answered in one line, the declare-answer-loop of the README
//! (unary and streamed, h2 and HTTP/1.1), and the tool history's rules: refused before the
//! network by the client, naming the field, and by the local server with Bedrock's messages.

use crate::common;

use bedrock_pool::Error;
use bedrock_pool::sdk::Document;
use bedrock_pool::sdk::types::{
    ContentBlock, ConversationRole, Message, Tool, ToolAdditionBlock, ToolConfiguration,
    ToolInputSchema, ToolReference, ToolRemovalBlock, ToolResultBlock, ToolResultContentBlock,
    ToolSpecification, ToolUseBlock,
};
use bedrock_pool_local::{ModelReply, Operation, Responder};
use common::{MODEL, PROTOCOLS, factory_for, server};

/// `{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`.
fn city_schema() -> Document {
    let obj = |pairs: Vec<(&str, Document)>| {
        Document::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    };
    obj(vec![
        ("type", "object".into()),
        (
            "properties",
            obj(vec![("city", obj(vec![("type", "string".into())]))]),
        ),
        ("required", Document::Array(vec!["city".into()])),
    ])
}

/// A model that asks for the weather until it has a tool result, then answers with it.
fn weather_model() -> Responder {
    Responder::from_fn(|call| {
        let result = call
            .body
            .pointer("/messages")
            .and_then(|m| m.as_array())
            .and_then(|m| m.last())
            .and_then(|m| m.pointer("/content/0/toolResult/content/0/json/temp_c"))
            .and_then(|t| t.as_i64());
        match result {
            Some(t) => ModelReply::text(format!("It is {t} degrees in Paris.")),
            None => ModelReply::tool_use(
                "tooluse_1",
                "get_weather",
                serde_json::json!({ "city": "Paris" }),
            ),
        }
    })
}

fn temp(c: i64) -> Document {
    Document::Object([("temp_c".to_owned(), Document::from(c))].into())
}

/// The README's loop: send, answer every tool use, send again until the model answers; returns
/// the answer and the rounds. `$send` turns a request into a `Reply`.
macro_rules! tool_loop {
    ($request:expr, $send:expr) => {{
        let mut request = $request;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let reply = $send(request.clone()).await;
            let uses: Vec<ToolUseBlock> = reply.tool_uses().into_iter().cloned().collect();
            if uses.is_empty() {
                break (reply.text(), rounds);
            }
            request = request.reply(&reply);
            for u in &uses {
                assert_eq!(u.name(), "get_weather");
                request = request.tool_result_json(u.tool_use_id(), temp(21));
            }
        }
    }};
}

#[tokio::test]
async fn declare_answer_loop_unary_and_streamed() {
    for protocol in PROTOCOLS {
        let server = server(protocol).await;
        server.set_responder(weather_model());
        let factory = factory_for(&server).await;
        let model = factory.model(MODEL);
        let question = "What is the weather in Paris?";
        let unary = tool_loop!(
            model
                .converse()
                .tool("get_weather", "The weather in a city", city_schema())
                .user(question),
            |r: bedrock_pool::ConverseRequest| async move { r.send().await.unwrap() }
        );
        let streamed = tool_loop!(
            model
                .converse_stream()
                .tool("get_weather", "The weather in a city", city_schema())
                .user(question),
            |r: bedrock_pool::ConverseStreamRequest| async move {
                r.send().await.unwrap().collect().await.unwrap()
            }
        );
        for (answer, rounds) in [unary, streamed] {
            assert_eq!(answer, "It is 21 degrees in Paris.", "{protocol:?}");
            assert_eq!(rounds, 2);
        }
        // The second request of each loop carried the declared tool, the model's tool use and
        // the result.
        let seconds: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| matches!(r.operation, Operation::Converse | Operation::ConverseStream))
            .map(|r| r.body)
            .filter(|b| b.pointer("/messages/2").is_some())
            .collect();
        assert_eq!(seconds.len(), 2, "{protocol:?}");
        for b in seconds {
            assert_eq!(
                b.pointer("/toolConfig/tools/0/toolSpec/name").unwrap(),
                "get_weather"
            );
            assert_eq!(
                b.pointer("/messages/1/content/0/toolUse/toolUseId")
                    .unwrap(),
                "tooluse_1"
            );
            assert_eq!(
                b.pointer("/messages/2/content/0/toolResult/toolUseId")
                    .unwrap(),
                "tooluse_1"
            );
        }
    }
}

fn text(role: ConversationRole, t: &str) -> Message {
    Message::builder()
        .role(role)
        .content(ContentBlock::Text(t.into()))
        .build()
        .unwrap()
}

fn tool_use(id: &str, name: &str) -> Message {
    let u = ToolUseBlock::builder()
        .tool_use_id(id)
        .name(name)
        .input(Document::Object(Default::default()))
        .build()
        .unwrap();
    Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::ToolUse(u))
        .build()
        .unwrap()
}

fn tool_result(id: &str) -> Message {
    let r = ToolResultBlock::builder()
        .tool_use_id(id)
        .content(ToolResultContentBlock::Text("21 degrees".into()))
        .build()
        .unwrap();
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::ToolResult(r))
        .build()
        .unwrap()
}

/// A system message that removes (or adds back) the tool `name`.
fn tool_change(name: &str, add: bool) -> Message {
    let tool = ToolReference::builder().name(name).build();
    let block = if add {
        ContentBlock::ToolAddition(ToolAdditionBlock::builder().tool(tool).build())
    } else {
        ContentBlock::ToolRemoval(ToolRemovalBlock::builder().tool(tool).build())
    };
    Message::builder()
        .role(ConversationRole::System)
        .content(block)
        .build()
        .unwrap()
}

fn weather_tool() -> ToolConfiguration {
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .input_schema(ToolInputSchema::Json(city_schema()))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap()
}

#[tokio::test]
// Long because it is one table, each row checked by the client and by the server.
async fn bad_tool_histories_are_refused_by_the_client_and_the_server_alike() {
    use ConversationRole::User;
    let ask = || text(User, "weather in Paris?");
    // (what, history, with the tool configuration, the field the client names, what the
    // server's ValidationException says)
    let rows: Vec<(&str, Vec<Message>, bool, &str, &str)> = vec![
        (
            "tool blocks without a tool configuration",
            vec![ask(), tool_use("t1", "get_weather"), tool_result("t1")],
            false,
            "tool_config",
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ),
        (
            "a toolUse left unanswered",
            vec![
                ask(),
                tool_use("t1", "get_weather"),
                text(User, "never mind"),
            ],
            true,
            "messages",
            "The model returned the following errors: messages.2: `tool_use` ids were found \
             without `tool_result` blocks immediately after: t1. Each `tool_use` block must have \
             a corresponding `tool_result` block in the next message.",
        ),
        (
            "a toolResult that answers no toolUse",
            vec![
                ask(),
                text(ConversationRole::Assistant, "hm"),
                tool_result("t9"),
            ],
            true,
            "messages",
            "The model returned the following errors: messages.2.content.0: unexpected \
             `tool_use_id` found in `tool_result` blocks: t9. Each `tool_result` block must have \
             a corresponding `tool_use` block in the previous message.",
        ),
        (
            "a toolUse of a removed tool",
            vec![
                ask(),
                tool_change("get_weather", false),
                tool_use("t1", "get_weather"),
                tool_result("t1"),
            ],
            true,
            "messages",
            "messages.2.content.0.toolUse.name: get_weather is not a tool",
        ),
        (
            "a removal of a tool never declared",
            vec![ask(), tool_change("get_time", false)],
            true,
            "messages",
            "messages.1.content.0.toolRemoval.tool.name: get_time is not a tool of toolConfig.tools",
        ),
    ];
    for protocol in PROTOCOLS {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let model = factory.model(MODEL);
        for (what, history, with_tools, field, service_says) in &rows {
            let sent = server.requests().len();
            let mut request = model.converse().messages(history.clone());
            if *with_tools {
                request = request.tool_config(weather_tool());
            }
            let e: Error = request.send().await.unwrap_err();
            assert_eq!(e.field(), Some(*field), "{protocol:?} {what}: {e}");
            assert_eq!(server.requests().len(), sent, "{what}: nothing was sent");
            // The same history sent raw: the server refuses it as the service does.
            let raw = factory
                .bedrock_client()
                .converse()
                .model_id(MODEL)
                .set_messages(Some(history.clone()))
                .set_tool_config(with_tools.then(weather_tool))
                .send()
                .await
                .unwrap_err();
            let service = raw.into_service_error();
            assert!(service.is_validation_exception(), "{what}: {service:?}");
            let message = service.meta().message().unwrap_or("");
            assert!(message.contains(service_says), "{what}: {message}");
        }
        // Removed, then added back: usable again; and the answered history goes through.
        let back = vec![
            ask(),
            tool_change("get_weather", false),
            tool_change("get_weather", true),
            tool_use("t1", "get_weather"),
            tool_result("t1"),
        ];
        model
            .converse()
            .messages(back)
            .tool_config(weather_tool())
            .send()
            .await
            .unwrap();
    }
}
