//! Serves the local Bedrock Runtime + STS server until Ctrl-C, so that any SDK can talk to it.
//!
//! Run: `cargo run --example local_server -- [--h1] [--http] [--port N]`
//! (`--h1`: TLS with HTTP/1.1 only; `--http`: plain HTTP; `--port N`: Bedrock on N, STS on N+1).
//! It prints the endpoints, the public test credentials, the CA file it wrote and a boto3 snippet.

use bedrock_pool::local::{LocalServer, Protocol, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = LocalServer::builder();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--h1" => builder = builder.protocol(Protocol::HttpsH1Only),
            "--http" => builder = builder.protocol(Protocol::Http),
            "--port" => {
                let port: u16 = args.next().ok_or("--port needs a number")?.parse()?;
                builder = builder
                    .bedrock_port(port)
                    .sts_port(port.checked_add(1).ok_or("port too high")?);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let server = builder.start().await?;
    let ca = std::env::temp_dir().join(format!("bedrock-pool-local-ca-{}.pem", std::process::id()));
    server.write_ca_pem(&ca)?;
    let verify = match server.protocol() {
        Protocol::Http => "False".to_owned(),
        _ => format!("{:?}", ca.display().to_string()),
    };

    println!("Bedrock Runtime: {}", server.bedrock_url());
    println!("STS:             {}", server.sts_url());
    println!("region:          {}", server.region());
    println!("access key id:   {TEST_ACCESS_KEY_ID}");
    println!("secret key:      {TEST_SECRET_ACCESS_KEY}");
    println!("CA (PEM):        {}", ca.display());
    println!();
    println!("# boto3:");
    println!("import boto3");
    println!(
        "s = boto3.Session(aws_access_key_id={TEST_ACCESS_KEY_ID:?}, \
         aws_secret_access_key={TEST_SECRET_ACCESS_KEY:?}, region_name={:?})",
        server.region()
    );
    println!(
        "brt = s.client(\"bedrock-runtime\", endpoint_url={:?}, verify={verify})",
        server.bedrock_url()
    );
    println!(
        "print(brt.converse(modelId=\"any.model-v1:0\", \
         messages=[{{\"role\": \"user\", \"content\": [{{\"text\": \"hello there\"}}]}}])[\"output\"])"
    );
    println!(
        "print(s.client(\"sts\", endpoint_url={:?}, verify={verify}).get_caller_identity()[\"Arn\"])",
        server.sts_url()
    );
    println!();
    println!("Serving; Ctrl-C stops.");

    tokio::signal::ctrl_c().await?;
    let _ = std::fs::remove_file(&ca);
    println!("{} requests served.", server.requests().len());
    Ok(())
}
