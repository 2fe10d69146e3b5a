//! Streams a reply token by token through a model handle, then prints the stop reason, the token
//! usage and the time to first token from the factory's request statistics.
//!
//! It talks to the embedded local Bedrock server, so no AWS account is needed (the `local`
//! feature is on for examples through the crate's dev-dependency on itself). Run it with:
//!
//! ```text
//! cargo run --example stream
//! ```

use bedrock_pool::StreamEvent;
use bedrock_pool_local::{Latency, LocalServer};
use std::io::Write;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = LocalServer::start().await?;
    // A little model latency, so the time to first token is visible.
    server.set_latency(Latency::fixed(Duration::from_millis(150)));
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

    let mut stream = factory
        .model("anthropic.claude-3-haiku-20240307-v1:0")
        .converse_stream()
        .system("answer briefly")
        .user("Streaming shows each token as soon as it arrives, long before the answer is whole.")
        .max_tokens(64)
        .send()
        .await?;

    let mut stdout = std::io::stdout();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::TextDelta { text, .. } => {
                print!("{text}");
                stdout.flush()?;
            }
            StreamEvent::MessageStop { stop_reason } => {
                println!("\n\nstop reason: {}", stop_reason.as_str());
            }
            StreamEvent::Metadata {
                usage: Some(usage), ..
            } => println!(
                "usage: {} input + {} output = {} tokens",
                usage.input_tokens(),
                usage.output_tokens(),
                usage.total_tokens()
            ),
            _ => {}
        }
    }

    let stats = factory.stats().requests;
    println!(
        "time to first token: {:?} ({} stream, {} succeeded)",
        stats.time_to_first_token.max, stats.time_to_first_token.count, stats.successes
    );
    Ok(())
}
