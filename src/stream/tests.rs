//! The accumulator: SDK events through `convert` and `record` into the exact SDK output.

use super::{StreamEvent, convert, record};
use crate::collect::Accumulator;
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    Citation, CitationGeneratedContent, CitationSourceContent, CitationSourceContentDelta,
    CitationsContentBlock, CitationsDelta, ContentBlock, ContentBlockDelta, ContentBlockDeltaEvent,
    ContentBlockStart, ContentBlockStartEvent, ConverseStreamMetadataEvent, ConverseStreamMetrics,
    ConverseStreamOutput as Event, ConverseStreamTrace, ErrorBlock, GuardrailTraceAssessment,
    ImageBlock, ImageBlockDelta, ImageBlockStart, ImageFormat, ImageSource, MessageStopEvent,
    PerformanceConfigLatency, PerformanceConfiguration, ReasoningContentBlock,
    ReasoningContentBlockDelta, ReasoningTextBlock, S3Location, ServiceTier, ServiceTierType,
    StopReason, TokenUsage, ToolResultBlock, ToolResultBlockDelta, ToolResultBlockStart,
    ToolResultContentBlock, ToolResultStatus, ToolUseBlock, ToolUseBlockDelta, ToolUseBlockStart,
};
use aws_smithy_types::{Blob, Document};

fn delta(index: i32, d: ContentBlockDelta) -> Event {
    Event::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(index)
            .delta(d)
            .build()
            .unwrap(),
    )
}

fn thinking(index: i32, text: &str) -> Event {
    delta(
        index,
        ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(text.into())),
    )
}

fn signature(index: i32, sig: &str) -> Event {
    delta(
        index,
        ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Signature(sig.into())),
    )
}

fn text(index: i32, text: &str) -> Event {
    delta(index, ContentBlockDelta::Text(text.into()))
}

fn tool_start(index: i32, id: &str, name: &str) -> Event {
    let start = ToolUseBlockStart::builder()
        .tool_use_id(id)
        .name(name)
        .build()
        .unwrap();
    Event::ContentBlockStart(
        ContentBlockStartEvent::builder()
            .content_block_index(index)
            .start(ContentBlockStart::ToolUse(start))
            .build()
            .unwrap(),
    )
}

fn tool_input(index: i32, piece: &str) -> Event {
    let d = ToolUseBlockDelta::builder().input(piece).build().unwrap();
    delta(index, ContentBlockDelta::ToolUse(d))
}

fn stop(reason: StopReason) -> Event {
    Event::MessageStop(
        MessageStopEvent::builder()
            .stop_reason(reason)
            .build()
            .unwrap(),
    )
}

fn usage() -> TokenUsage {
    TokenUsage::builder()
        .input_tokens(10)
        .output_tokens(5)
        .total_tokens(15)
        .cache_read_input_tokens(7)
        .cache_write_input_tokens(3)
        .build()
        .unwrap()
}

/// Runs the events through the stream's conversion and the accumulator.
fn collect(events: Vec<Event>) -> ConverseOutput {
    let mut acc = Accumulator::default();
    for ev in events {
        record(&mut acc, &convert(ev));
    }
    acc.into_output().expect("valid output")
}

fn content(out: &ConverseOutput) -> Vec<ContentBlock> {
    out.output()
        .and_then(|o| o.as_message().ok())
        .map(|m| m.content().to_vec())
        .unwrap_or_default()
}

fn citation_delta(title: &str) -> CitationsDelta {
    CitationsDelta::builder()
        .title(title)
        .source_content(CitationSourceContentDelta::builder().text("quoted").build())
        .build()
}

#[test]
fn mixed_index_order_rebuilds_the_exact_blocks() {
    let out = collect(vec![
        tool_start(2, "t-1", "lookup"),
        thinking(0, "Let me "),
        text(1, "Calling "),
        tool_input(2, "{\"city\":"),
        thinking(0, "think."),
        signature(0, "sig-0"),
        text(1, "the tool."),
        tool_input(2, "\"Paris\"}"),
        stop(StopReason::ToolUse),
    ]);
    let expected = vec![
        ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
            ReasoningTextBlock::builder()
                .text("Let me think.")
                .signature("sig-0")
                .build()
                .unwrap(),
        )),
        ContentBlock::Text("Calling the tool.".into()),
        ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id("t-1")
                .name("lookup")
                .input(Document::Object(
                    [("city".to_owned(), Document::String("Paris".into()))].into(),
                ))
                .build()
                .unwrap(),
        ),
    ];
    assert_eq!(content(&out), expected);
    assert_eq!(out.stop_reason(), &StopReason::ToolUse);
}

#[test]
fn citations_become_a_citations_block_whichever_comes_first() {
    let cite = |index| delta(index, ContentBlockDelta::Citation(citation_delta("doc")));
    let out = collect(vec![
        text(0, "The sky "),
        cite(0),
        text(0, "is blue."),
        cite(1),
        text(1, "Grass is green."),
        text(2, "plain"),
        stop(StopReason::EndTurn),
    ]);
    let citation = Citation::builder()
        .title("doc")
        .source_content(CitationSourceContent::Text("quoted".into()))
        .build();
    let block = |t: &str| {
        ContentBlock::CitationsContent(
            CitationsContentBlock::builder()
                .content(CitationGeneratedContent::Text(t.into()))
                .citations(citation.clone())
                .build(),
        )
    };
    assert_eq!(
        content(&out),
        vec![
            block("The sky is blue."),
            block("Grass is green."),
            ContentBlock::Text("plain".into())
        ]
    );
}

#[test]
fn redacted_reasoning_keeps_its_bytes() {
    let redacted = |b: &[u8]| {
        delta(
            0,
            ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::RedactedContent(
                Blob::new(b),
            )),
        )
    };
    let events = vec![
        redacted(b"\x00cipher"),
        redacted(b"text\x00"),
        text(1, "answer"),
        stop(StopReason::EndTurn),
    ];
    assert!(matches!(
        convert(events[0].clone()),
        StreamEvent::RedactedReasoning { index: 0, .. }
    ));
    assert_eq!(
        content(&collect(events)),
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(Blob::new(
                b"\x00ciphertext\x00".to_vec()
            ))),
            ContentBlock::Text("answer".into()),
        ]
    );
}

#[test]
fn metadata_fills_usage_metrics_trace_performance_and_tier() {
    let guardrail = GuardrailTraceAssessment::builder()
        .action_reason("blocked")
        .build();
    let performance = PerformanceConfiguration::builder()
        .latency(PerformanceConfigLatency::Optimized)
        .build();
    let tier = ServiceTier::builder()
        .r#type(ServiceTierType::Flex)
        .build()
        .unwrap();
    let meta = Event::Metadata(
        ConverseStreamMetadataEvent::builder()
            .usage(usage())
            .metrics(
                ConverseStreamMetrics::builder()
                    .latency_ms(42)
                    .build()
                    .unwrap(),
            )
            .trace(
                ConverseStreamTrace::builder()
                    .guardrail(guardrail.clone())
                    .build(),
            )
            .performance_config(performance.clone())
            .service_tier(tier.clone())
            .build(),
    );
    let StreamEvent::Metadata {
        usage: u, trace, ..
    } = convert(meta.clone())
    else {
        panic!("a metadata event");
    };
    assert_eq!(u.and_then(|u| u.cache_read_input_tokens), Some(7));
    assert!(trace.is_some());
    let out = collect(vec![
        text(0, "no"),
        stop(StopReason::GuardrailIntervened),
        meta,
    ]);
    assert_eq!(out.usage(), Some(&usage()));
    assert_eq!(out.metrics().map(|m| m.latency_ms()), Some(42));
    assert_eq!(out.trace().and_then(|t| t.guardrail()), Some(&guardrail));
    assert_eq!(out.performance_config(), Some(&performance));
    assert_eq!(out.service_tier(), Some(&tier));
}

fn block_start(index: i32, start: ContentBlockStart) -> Event {
    Event::ContentBlockStart(
        ContentBlockStartEvent::builder()
            .content_block_index(index)
            .start(start)
            .build()
            .unwrap(),
    )
}

fn image_start(index: i32) -> Event {
    let start = ImageBlockStart::builder()
        .format(ImageFormat::Png)
        .build()
        .unwrap();
    block_start(index, ContentBlockStart::Image(start))
}

fn image_piece(index: i32, source: ImageSource) -> Event {
    let d = ImageBlockDelta::builder().source(source).build();
    delta(index, ContentBlockDelta::Image(d))
}

fn tool_result_start(index: i32) -> Event {
    let start = ToolResultBlockStart::builder()
        .tool_use_id("srv-1")
        .r#type("web_search")
        .status(ToolResultStatus::Success)
        .build()
        .unwrap();
    block_start(index, ContentBlockStart::ToolResult(start))
}

fn tool_result_piece(index: i32, pieces: Vec<ToolResultBlockDelta>) -> Event {
    delta(index, ContentBlockDelta::ToolResult(pieces))
}

#[test]
fn images_join_their_bytes_or_keep_their_s3_location() {
    let bytes = |b: &[u8]| ImageSource::Bytes(Blob::new(b.to_vec()));
    let s3 = S3Location::builder().uri("s3://b/cat.png").build().unwrap();
    let error = ErrorBlock::builder().message("too large").build();
    let out = collect(vec![
        image_start(0),
        image_piece(0, bytes(b"\x89PN")),
        image_piece(0, bytes(b"G")),
        text(1, "and"),
        image_start(2),
        image_piece(2, ImageSource::S3Location(s3.clone())),
        delta(
            2,
            ContentBlockDelta::Image(ImageBlockDelta::builder().error(error.clone()).build()),
        ),
        stop(StopReason::EndTurn),
    ]);
    let image = |source, error| {
        ContentBlock::Image(
            ImageBlock::builder()
                .format(ImageFormat::Png)
                .source(source)
                .set_error(error)
                .build()
                .unwrap(),
        )
    };
    assert_eq!(
        content(&out),
        vec![
            image(bytes(b"\x89PNG"), None),
            ContentBlock::Text("and".into()),
            image(ImageSource::S3Location(s3), Some(error)),
        ]
    );
}

#[test]
fn tool_results_join_text_pieces_and_keep_each_json_value() {
    let json = Document::Object([("hits".to_owned(), Document::from(2u64))].into());
    let out = collect(vec![
        tool_result_start(0),
        tool_result_piece(0, vec![ToolResultBlockDelta::Text("two ".into())]),
        tool_result_piece(
            0,
            vec![
                ToolResultBlockDelta::Text("hits".into()),
                ToolResultBlockDelta::Json(json.clone()),
            ],
        ),
        tool_result_piece(0, vec![ToolResultBlockDelta::Json(Document::Null)]),
        tool_result_piece(0, vec![ToolResultBlockDelta::Text("end".into())]),
        stop(StopReason::EndTurn),
    ]);
    let expected = ToolResultBlock::builder()
        .tool_use_id("srv-1")
        .r#type("web_search")
        .status(ToolResultStatus::Success)
        .content(ToolResultContentBlock::Text("two hits".into()))
        .content(ToolResultContentBlock::Json(json))
        .content(ToolResultContentBlock::Json(Document::Null))
        .content(ToolResultContentBlock::Text("end".into()))
        .build()
        .unwrap();
    assert_eq!(content(&out), vec![ContentBlock::ToolResult(expected)]);
}

#[test]
fn an_image_or_tool_result_without_its_start_is_an_error_naming_the_block() {
    for ev in [
        image_piece(3, ImageSource::Bytes(Blob::new(b"x".to_vec()))),
        tool_result_piece(3, vec![ToolResultBlockDelta::Text("x".into())]),
    ] {
        let mut acc = Accumulator::default();
        record(&mut acc, &convert(ev));
        let e = acc.into_output().unwrap_err();
        assert!(e.to_string().contains("content block 3"), "{e}");
    }
}

#[test]
fn bad_tool_input_is_an_error_naming_the_tool() {
    let mut acc = Accumulator::default();
    for ev in [tool_start(0, "t", "lookup"), tool_input(0, "{\"a\":")] {
        record(&mut acc, &convert(ev));
    }
    let e = acc.into_output().unwrap_err();
    assert!(e.to_string().contains("tool lookup"), "{e}");
}
