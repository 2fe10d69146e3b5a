//! Prints the OpenTelemetry spans of a few calls (a unary call, a stream and a failed call)
//! through the stdout exporter: each span is named `chat {model}`, of kind client, with the
//! GenAI semantic-convention attributes (model, request settings, finish reasons, token usage,
//! server, region, `error.type` and an error status on failure). Message content is never
//! recorded.
//!
//! It talks to the embedded local Bedrock server, so no AWS account is needed (the `local` and
//! `otel` features are on for examples through the crate's dev-dependency on itself). Run it
//! with:
//!
//! ```text
//! cargo run --example otel
//! ```

use bedrock_pool_local::{Fault, FaultRule, LocalServer, ServiceError};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The OpenTelemetry SDK with the stdout exporter, fed by the tracing-opentelemetry layer;
    // only this crate's spans (at INFO, their default level) are exported.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bedrock-pool-example"));
    tracing_subscriber::registry()
        .with(layer)
        .with(Targets::new().with_target("bedrock_pool", tracing::Level::INFO))
        .init();

    let server = LocalServer::start().await?;
    let factory = bedrock_pool::LlmFactory::builder()
        .local_endpoints(
            server.region(),
            server.bedrock_url(),
            server.sts_url(),
            server.ca_pem(),
            server.credentials(),
        )
        .build()
        .await?;
    let model = factory.model(MODEL);

    let reply = model
        .converse()
        .user("Say hello.")
        .temperature(0.2)
        .max_tokens(64)
        .send()
        .await?;
    println!("unary reply: {:?}\n", reply.text());

    let streamed = model
        .converse_stream()
        .user("Stream a short answer.")
        .send()
        .await?
        .collect()
        .await?;
    println!("stream reply: {:?}\n", streamed.text());

    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Validation(
            "a bad request".into(),
        )))
        .times(1),
    );
    let e = model
        .converse()
        .user("Fail, please.")
        .send()
        .await
        .unwrap_err();
    println!("failed call: {e}\n");

    // Each span was printed when it ended; flush and stop the exporter.
    provider.shutdown()?;
    Ok(())
}
