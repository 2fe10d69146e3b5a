//! Every block kind the service streams, three ways (h2 and HTTP/1.1): a unary Converse, a
//! unary call carried as ConverseStream, and an explicit ConverseStream collected. Each must
//! give the same message, and that message must hold the expected blocks: images (bytes and S3),
//! cited text over search results, tool results (text and JSON), and a reply scripted with the
//! SDK's `Document`.

use crate::common;

use bedrock_pool::sdk::Document;
use bedrock_pool::sdk::primitives::Blob;
use bedrock_pool::sdk::types::{
    Citation, CitationGeneratedContent, CitationLocation, CitationSourceContent, CitationsConfig,
    CitationsContentBlock, ContentBlock, ConversationRole, DocumentBlock, DocumentSource,
    ImageBlock, ImageFormat, ImageSource, Message, S3Location, SearchResultBlock,
    SearchResultContentBlock, SearchResultLocation, StopReason, Tool, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
    ToolUseBlock, WebLocation,
};
use bedrock_pool::{Reply, StreamEvent};
use bedrock_pool_local::{
    LocalServer, ModelReply, Operation, ReplyBlock, Responder, ToolResultContent,
};
use common::{MODEL, builder_for, factory_for, server};

/// One request's three answers and the explicit stream's events.
struct Answers {
    unary: Reply,
    carried: Reply,
    streamed: Reply,
    events: Vec<StreamEvent>,
}

/// Sends `messages` (with `tools`) three ways and checks that the three messages are equal.
async fn answers(
    server: &LocalServer,
    messages: Vec<Message>,
    tools: Option<ToolConfiguration>,
) -> Answers {
    let unary_factory = builder_for(server)
        .unary_over_stream(false)
        .build()
        .await
        .unwrap();
    let mut unary = unary_factory
        .model(MODEL)
        .converse()
        .messages(messages.clone());
    let factory = factory_for(server).await;
    let mut carried = factory.model(MODEL).converse().messages(messages.clone());
    let mut streamed = factory.model(MODEL).converse_stream().messages(messages);
    if let Some(t) = tools {
        unary = unary.tool_config(t.clone());
        carried = carried.tool_config(t.clone());
        streamed = streamed.tool_config(t);
    }
    let unary = unary.send().await.unwrap();
    assert_eq!(
        server.requests_for(Operation::Converse).len(),
        1,
        "a real unary call"
    );
    let carried = carried.send().await.unwrap();
    let mut stream = streamed.send().await.unwrap();
    let mut events = Vec::new();
    // Read the first events by hand: collect() keeps them too.
    for _ in 0..3 {
        events.push(stream.next().await.unwrap().unwrap());
    }
    let streamed = stream.collect().await.unwrap();
    assert_eq!(server.requests_for(Operation::ConverseStream).len(), 2);
    assert_eq!(carried.message(), unary.message(), "carried == unary");
    assert_eq!(streamed.message(), unary.message(), "collected == unary");
    assert_eq!(carried.stop_reason(), unary.stop_reason());
    assert_eq!(streamed.stop_reason(), unary.stop_reason());
    Answers {
        unary,
        carried,
        streamed,
        events,
    }
}

fn user(content: Vec<ContentBlock>) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .set_content(Some(content))
        .build()
        .unwrap()
}

fn content(reply: &Reply) -> Vec<ContentBlock> {
    reply.message().unwrap().content().to_vec()
}

fn image(format: ImageFormat, source: ImageSource) -> ImageBlock {
    ImageBlock::builder()
        .format(format)
        .source(source)
        .build()
        .unwrap()
}

fn png() -> ImageSource {
    ImageSource::Bytes(Blob::new(vec![0x89, b'P', b'N', b'G', 0, 1, 2]))
}

fn s3(uri: &str) -> ImageSource {
    ImageSource::S3Location(S3Location::builder().uri(uri).build().unwrap())
}

fn search_result(title: &str, texts: &[&str], cited: bool) -> SearchResultBlock {
    let mut b = SearchResultBlock::builder()
        .source(format!("https://example.com/{title}"))
        .title(title)
        .set_content(Some(
            texts
                .iter()
                .map(|t| {
                    SearchResultContentBlock::builder()
                        .text(*t)
                        .build()
                        .unwrap()
                })
                .collect(),
        ));
    if cited {
        b = b.citations(CitationsConfig::builder().enabled(true).build().unwrap());
    }
    b.build().unwrap()
}

fn cited(text: &str, citation: Citation) -> ContentBlock {
    ContentBlock::CitationsContent(
        CitationsContentBlock::builder()
            .content(CitationGeneratedContent::Text(text.into()))
            .citations(citation)
            .build(),
    )
}

fn tool_config() -> ToolConfiguration {
    let schema = Document::Object([("type".to_owned(), Document::from("object"))].into());
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("search")
                .input_schema(ToolInputSchema::Json(schema))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap()
}

both_protocols! {
    async fn images_come_back_as_images(protocol: Protocol) {
        let server = server(protocol).await;
        let a = answers(
            &server,
            vec![user(vec![
                ContentBlock::Text("look at these".into()),
                ContentBlock::Image(image(ImageFormat::Png, png())),
                ContentBlock::Image(image(ImageFormat::Webp, s3("s3://bucket/cat.webp"))),
            ])],
            None,
        )
        .await;
        assert_eq!(
            content(&a.unary),
            vec![
                ContentBlock::Text("look at these".into()),
                ContentBlock::Image(image(ImageFormat::Png, png())),
                ContentBlock::Image(image(ImageFormat::Webp, s3("s3://bucket/cat.webp"))),
            ]
        );
        assert_eq!(a.events[0], StreamEvent::MessageStart);
        assert_eq!(a.carried.text(), "look at these");
        assert_eq!(a.streamed.text(), "look at these");
    }
}

both_protocols! {
    async fn image_events_are_typed(protocol: Protocol) {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let mut stream = factory
            .model(MODEL)
            .converse_stream()
            .message(user(vec![ContentBlock::Image(image(ImageFormat::Png, png()))]))
            .send()
            .await
            .unwrap();
        let mut events = Vec::new();
        while let Some(ev) = stream.next().await {
            events.push(ev.unwrap());
        }
        assert!(events.contains(&StreamEvent::ImageStart { index: 0, format: ImageFormat::Png }), "{events:?}");
        let mut bytes = Vec::new();
        for ev in &events {
            if let StreamEvent::ImageDelta { index: 0, delta } = ev
                && let Some(ImageSource::Bytes(b)) = delta.source()
            {
                bytes.push(b.as_ref().to_vec());
            }
        }
        assert_eq!(bytes.len(), 2, "two pieces: {events:?}");
        assert_eq!(bytes.concat(), vec![0x89, b'P', b'N', b'G', 0, 1, 2]);
    }
}

both_protocols! {
    async fn search_results_come_back_cited_or_as_text(protocol: Protocol) {
        let server = server(protocol).await;
        let a = answers(
            &server,
            vec![user(vec![
                ContentBlock::Text("what do they say?".into()),
                ContentBlock::SearchResult(search_result("first", &["Paris is big.", "It rains."], true)),
                ContentBlock::SearchResult(search_result("second", &["Not cited."], false)),
            ])],
            None,
        )
        .await;
        let citation = Citation::builder()
            .title("first")
            .source("https://example.com/first")
            .source_content(CitationSourceContent::Text("Paris is big.".into()))
            .source_content(CitationSourceContent::Text("It rains.".into()))
            .location(CitationLocation::SearchResultLocation(
                SearchResultLocation::builder()
                    .search_result_index(0)
                    .start(0)
                    .end(1)
                    .build(),
            ))
            .build();
        assert_eq!(
            content(&a.unary),
            vec![
                ContentBlock::Text("what do they say?".into()),
                cited("Paris is big.\nIt rains.", citation),
                ContentBlock::Text("Not cited.".into()),
            ]
        );
        assert!(
            a.events.iter().any(|e| matches!(e, StreamEvent::TextDelta { index: 0, .. })),
            "{:?}",
            a.events
        );
    }
}

both_protocols! {
    async fn tool_results_come_back_with_their_text_and_json(protocol: Protocol) {
        let server = server(protocol).await;
        let json = Document::Object(
            [
                ("hits".to_owned(), Document::from(2u64)),
                ("delta".to_owned(), Document::from(-3i64)),
                ("score".to_owned(), Document::from(0.25f64)),
            ]
            .into(),
        );
        let ask = Message::builder()
            .role(ConversationRole::Assistant)
            .content(ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id("tooluse_9")
                    .name("search")
                    .input(Document::Object(Default::default()))
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap();
        let result = ToolResultBlock::builder()
            .tool_use_id("tooluse_9")
            .status(ToolResultStatus::Error)
            .content(ToolResultContentBlock::Json(json.clone()))
            .content(ToolResultContentBlock::Text("two hits, one gone".into()))
            .content(ToolResultContentBlock::Image(image(ImageFormat::Gif, s3("s3://b/chart.gif"))))
            .content(ToolResultContentBlock::SearchResult(search_result("hit", &["A hit."], true)))
            .content(ToolResultContentBlock::Document(
                DocumentBlock::builder()
                    .name("notes")
                    .source(DocumentSource::Text("read by no one".into()))
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap();
        let a = answers(
            &server,
            vec![
                user(vec![ContentBlock::Text("search".into())]),
                ask,
                user(vec![ContentBlock::ToolResult(result)]),
            ],
            Some(tool_config()),
        )
        .await;
        let echoed = ToolResultBlock::builder()
            .tool_use_id("tooluse_9")
            .status(ToolResultStatus::Error)
            .content(ToolResultContentBlock::Json(json))
            .content(ToolResultContentBlock::Text("two hits, one gone".into()))
            .build()
            .unwrap();
        let citation = Citation::builder()
            .title("hit")
            .source("https://example.com/hit")
            .source_content(CitationSourceContent::Text("A hit.".into()))
            .location(CitationLocation::SearchResultLocation(
                SearchResultLocation::builder()
                    .search_result_index(0)
                    .start(0)
                    .end(0)
                    .build(),
            ))
            .build();
        assert_eq!(
            content(&a.unary),
            vec![
                ContentBlock::ToolResult(echoed),
                ContentBlock::Image(image(ImageFormat::Gif, s3("s3://b/chart.gif"))),
                cited("A hit.", citation),
            ]
        );
        assert!(
            a.events.iter().any(|e| matches!(e, StreamEvent::ToolResultStart { index: 0, start }
                if start.tool_use_id() == "tooluse_9"
                    && start.status() == Some(&ToolResultStatus::Error))),
            "{:?}",
            a.events
        );
    }
}

/// A reply scripted with the SDK's own types: the tool input and JSON tool result are the
/// `Document`s the test then compares the client's answer to, numbers of every kind.
fn scripted(input: Document, result: Document) -> Responder {
    Responder::from_fn(move |call| {
        // The request's own JSON, read back as a Document.
        let asked = call
            .document("/messages/0/content/0/text")
            .and_then(|d| d.as_string().map(str::to_owned))
            .unwrap_or_default();
        ModelReply::tool_use("tooluse_1", "search", &input)
            .with_block(ReplyBlock::tool_result(
                "srv_1",
                [
                    ToolResultContent::json(result.clone()),
                    ToolResultContent::Text(format!("searched {asked}")),
                ],
            ))
            .with_block(ReplyBlock::image("jpeg", b"\xff\xd8\xff".to_vec()))
            .with_block(ReplyBlock::Cited {
                text: "From the web.".into(),
                citations: vec![serde_json::json!({
                    "title": "Example",
                    "location": { "web": { "url": "https://example.com/", "domain": "example.com" } },
                })],
            })
    })
}

both_protocols! {
    async fn a_responder_scripted_with_documents_answers_every_kind(protocol: Protocol) {
        let server = server(protocol).await;
        let input = Document::Object(
            [
                ("query".to_owned(), Document::from("rust")),
                ("limit".to_owned(), Document::from(u64::MAX)),
                ("offset".to_owned(), Document::from(-7i64)),
                ("boost".to_owned(), Document::from(2.0f64)),
                ("tags".to_owned(), Document::Array(vec![Document::Null, Document::Bool(true)])),
            ]
            .into(),
        );
        let result = Document::Array(vec![Document::from(1.5f64), Document::from(-1i64)]);
        server.set_responder(scripted(input.clone(), result.clone()));
        let a = answers(
            &server,
            vec![user(vec![ContentBlock::Text("rust".into())])],
            Some(tool_config()),
        )
        .await;
        assert_eq!(a.unary.stop_reason(), &StopReason::ToolUse);
        let tool_result = ToolResultBlock::builder()
            .tool_use_id("srv_1")
            .status(ToolResultStatus::Success)
            .content(ToolResultContentBlock::Json(result))
            .content(ToolResultContentBlock::Text("searched rust".into()))
            .build()
            .unwrap();
        let web = Citation::builder()
            .title("Example")
            .location(CitationLocation::Web(
                WebLocation::builder()
                    .url("https://example.com/")
                    .domain("example.com")
                    .build(),
            ))
            .build();
        assert_eq!(
            content(&a.unary),
            vec![
                ContentBlock::ToolUse(
                    ToolUseBlock::builder()
                        .tool_use_id("tooluse_1")
                        .name("search")
                        .input(input)
                        .build()
                        .unwrap()
                ),
                ContentBlock::ToolResult(tool_result),
                ContentBlock::Image(image(
                    ImageFormat::Jpeg,
                    ImageSource::Bytes(Blob::new(b"\xff\xd8\xff".to_vec()))
                )),
                cited("From the web.", web),
            ]
        );
    }
}
