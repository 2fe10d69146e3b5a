//! A real OpenTelemetry pipeline (tracing-opentelemetry into the SDK's in-memory exporter): each
//! call's span carries the GenAI semantic-convention name, kind, status and attributes.
#![cfg(feature = "otel")]

mod common;

use bedrock_pool_local::{Fault, FaultRule, LocalServer, Protocol, ServiceError};
use common::{MODEL, factory_for, server};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};

/// An OpenTelemetry pipeline set as this thread's subscriber until the guard drops.
struct Pipeline {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Pipeline {
    /// Installs the pipeline; spans above `max` are not exported.
    fn install(max: LevelFilter) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_filter(max);
        let subscriber = tracing_subscriber::registry().with(layer);
        let guard = tracing::subscriber::set_default(subscriber);
        Pipeline {
            exporter,
            provider,
            _guard: guard,
        }
    }

    /// Returns the exported spans named `name` (the SDK's own spans are left out).
    fn spans(&self, name: &str) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        let mut spans = self.exporter.get_finished_spans().unwrap();
        spans.retain(|s| s.name == name);
        self.exporter.reset();
        spans
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(n)) => *n,
        other => panic!("{key} is not an int: {other:?}"),
    }
}

fn string(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(Value::String(s)) => s.as_str().to_owned(),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn host_and_port(server: &LocalServer) -> (String, i64) {
    let uri: http::Uri = server.bedrock_url().parse().unwrap();
    (
        uri.host().unwrap().to_owned(),
        i64::from(uri.port_u16().unwrap()),
    )
}

/// The attributes every call's span has, whatever its outcome.
fn assert_common(span: &SpanData, server: &LocalServer) {
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(string(span, "gen_ai.operation.name"), "chat");
    assert_eq!(string(span, "gen_ai.provider.name"), "aws.bedrock");
    assert_eq!(string(span, "gen_ai.request.model"), MODEL);
    assert_eq!(string(span, "cloud.region"), server.region());
    let (host, port) = host_and_port(server);
    assert_eq!(string(span, "server.address"), host);
    assert_eq!(
        int(span, "server.port"),
        port,
        "the local server's port is not 443"
    );
    assert_eq!(int(span, "aws.bedrock.attempts"), 1);
    // The operation is a field (the `tracing` span name is the one static `bedrock.call`).
    assert_eq!(string(span, "rpc.system"), "aws-api");
    assert_eq!(string(span, "rpc.service"), "BedrockRuntime");
    let method = string(span, "rpc.method");
    assert!(
        [
            "Converse",
            "ConverseStream",
            "InvokeModel",
            "InvokeModelWithResponseStream"
        ]
        .contains(&method.as_str()),
        "{method}"
    );
    for key in ["gen_ai.input.messages", "gen_ai.output.messages"] {
        assert!(attr(span, key).is_none(), "content is never recorded");
    }
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn unary_stream_and_failed_calls_export_gen_ai_spans() {
    let pipeline = Pipeline::install(LevelFilter::TRACE);
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let name = format!("chat {MODEL}");

    // Unary, with a cache point twice: a cache write, then a cache read.
    let mut replies = Vec::new();
    for _ in 0..2 {
        let reply = model
            .converse()
            .system("a long policy that is worth caching")
            .cache_point()
            .user("question")
            .temperature(0.5)
            .top_p(0.9)
            .max_tokens(200)
            .send()
            .await
            .unwrap();
        replies.push(reply);
    }
    let spans = pipeline.spans(&name);
    assert_eq!(spans.len(), 2, "one span per call");
    for (span, reply) in spans.iter().zip(&replies) {
        assert_common(span, &server);
        assert_eq!(
            span.status,
            Status::Unset,
            "success leaves the status unset"
        );
        assert_eq!(int(span, "gen_ai.request.max_tokens"), 200);
        assert_eq!(
            attr(span, "gen_ai.request.temperature"),
            Some(&Value::F64(0.5))
        );
        assert_eq!(
            attr(span, "gen_ai.request.top_p"),
            Some(&Value::F64(f64::from(0.9f32)))
        );
        assert_eq!(
            attr(span, "gen_ai.response.finish_reasons"),
            Some(&Value::Array(Array::String(vec!["end_turn".into()]))),
            "a real string array with the otel feature"
        );
        let u = reply.usage().unwrap();
        let read = u.cache_read_input_tokens().unwrap_or(0);
        let write = u.cache_write_input_tokens().unwrap_or(0);
        assert_eq!(
            int(span, "gen_ai.usage.input_tokens"),
            i64::from(u.input_tokens() + read + write),
            "input tokens include cached input"
        );
        assert_eq!(
            int(span, "gen_ai.usage.output_tokens"),
            i64::from(u.output_tokens())
        );
        assert!(attr(span, "error.type").is_none());
    }
    let (write, read) = (&spans[0], &spans[1]);
    assert!(int(write, "gen_ai.usage.cache_creation.input_tokens") > 0);
    assert!(int(read, "gen_ai.usage.cache_read.input_tokens") > 0);

    // A stream: its span ends with the stream, usage (sent after messageStop) included.
    let reply = model
        .converse_stream()
        .user("four five six seven")
        .send()
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let spans = pipeline.spans(&name);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_common(span, &server);
    assert_eq!(span.status, Status::Unset);
    assert!(
        attr(span, "gen_ai.request.temperature").is_none(),
        "not sent"
    );
    assert_eq!(
        attr(span, "gen_ai.response.finish_reasons"),
        Some(&Value::Array(Array::String(vec!["end_turn".into()])))
    );
    let u = reply.usage().unwrap();
    assert_eq!(
        int(span, "gen_ai.usage.output_tokens"),
        i64::from(u.output_tokens())
    );
    assert_eq!(string(span, "outcome"), "success");

    // A failed call: error status and the service's error code.
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Validation(
            "messages.0: bad".into(),
        )))
        .times(1),
    );
    let e = model.converse().user("hi").send().await.unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"), "{e:?}");
    let spans = pipeline.spans(&name);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_common(span, &server);
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(string(span, "error.type"), "ValidationException");
    assert!(attr(span, "gen_ai.usage.input_tokens").is_none());

    // Input refused before the network: the kind names the error, no server was reached.
    let e = model
        .converse()
        .user("hi")
        .temperature(3.0)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input());
    let spans = pipeline.spans(&name);
    assert_eq!(spans.len(), 1);
    assert_eq!(string(&spans[0], "error.type"), "invalid_input");
    assert!(attr(&spans[0], "server.address").is_none());
}

#[tokio::test]
async fn span_level_is_configurable() {
    let name = format!("chat {MODEL}");
    let pipeline = Pipeline::install(LevelFilter::INFO);
    let server = server(Protocol::Https).await;
    let default = factory_for(&server).await;
    default
        .model(MODEL)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(pipeline.spans(&name).len(), 1, "INFO by default");
    let debug = common::builder_for(&server)
        .span_level(tracing::Level::DEBUG)
        .build()
        .await
        .unwrap();
    debug
        .model(MODEL)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert!(
        pipeline.spans(&name).is_empty(),
        "a DEBUG span is filtered out at INFO"
    );
}

#[tokio::test]
async fn a_prompt_router_call_names_the_model_that_answered() {
    let pipeline = Pipeline::install(LevelFilter::TRACE);
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let router = format!(
        "arn:aws:bedrock:{}:123456789012:default-prompt-router/anthropic.claude:1",
        server.region()
    );
    let invoked = bedrock_pool_local::routed_model(&router, 2).unwrap();
    let model = factory.model(&router);
    model.converse().user("hi there").send().await.unwrap();
    let stream = model
        .converse_stream()
        .user("hi there")
        .send()
        .await
        .unwrap();
    stream.collect().await.unwrap();
    let spans = pipeline.spans(&format!("chat {router}"));
    assert_eq!(spans.len(), 2, "one span per call, named for the id called");
    for span in &spans {
        assert_eq!(string(span, "gen_ai.request.model"), router);
        assert_eq!(string(span, "gen_ai.response.model"), invoked);
    }
}

#[tokio::test]
async fn a_session_is_one_chat_span_with_its_tokens() {
    use bedrock_pool::session::{SessionInput, SessionOutput};
    const SONIC: &str = "amazon.nova-sonic-v1:0";
    let pipeline = Pipeline::install(LevelFilter::TRACE);
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let mut session = factory
        .model(SONIC)
        .session()
        .event(SessionInput::session_start(1024, 0.9, 0.7))
        .event(SessionInput::prompt_start("p", "matthew"))
        .open()
        .await
        .unwrap();
    session
        .send_all(SessionInput::user_text("p", "t", "three words here"))
        .await
        .unwrap();
    while let Some(event) = session.next().await {
        if matches!(event.unwrap(), SessionOutput::Usage(_)) {
            break;
        }
    }
    session.send(SessionInput::session_end()).await.unwrap();
    while let Some(event) = session.next().await {
        event.unwrap();
    }
    let spans = pipeline.spans(&format!("chat {SONIC}"));
    assert_eq!(spans.len(), 1, "one span for the whole session");
    let span = &spans[0];
    assert_eq!(
        string(span, "rpc.method"),
        "InvokeModelWithBidirectionalStream"
    );
    assert_eq!(string(span, "gen_ai.operation.name"), "chat");
    assert_eq!(string(span, "gen_ai.response.model"), SONIC);
    assert_eq!(int(span, "gen_ai.usage.input_tokens"), 3);
    assert_eq!(int(span, "gen_ai.usage.output_tokens"), 3);
    assert_eq!(string(span, "outcome"), "success");
}
