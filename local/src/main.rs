//! `bedrock-pool-local`: serves the offline Bedrock Runtime + STS until Ctrl-C, so that any SDK
//! (boto3, the JavaScript SDK, the AWS CLI, the Rust SDK) can be pointed at it.
//!
//! Run `bedrock-pool-local --help` for the flags. It prints the endpoints, the public test
//! credentials, the CA file it wrote and ready-to-paste client settings.

use bedrock_pool_local::{
    Fault, FaultRule, Guardrail, Latency, LocalServer, Protocol, Quota, ServiceError,
    TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY,
};
use std::path::PathBuf;
use std::time::Duration;

const HELP: &str = "\
bedrock-pool-local: an offline Amazon Bedrock Runtime and STS for tests

USAGE: bedrock-pool-local [FLAGS]

  --port N                 Bedrock on 127.0.0.1:N, STS on N+1 (default: free ports)
  --http                   plain HTTP instead of TLS
  --h1                     TLS with HTTP/1.1 only (default: h2 and HTTP/1.1 by ALPN)
  --ca-file PATH           where to write the CA certificate (PEM) that signs the server's
                           certificate (default: a file in the temporary directory)
  --region R               the region it plays (default: us-west-2)
  --latency-ms N           every answer waits N ms before its headers
  --async-delay-ms N       an async invocation ends N ms after it starts (default: 2000)
  --quota MODEL=R/T/W      MODEL admits R requests and T tokens per window of W ms
                           (`-` for no limit: --quota m=60/-/60000); past it, ThrottlingException
  --context-window MODEL=N MODEL's context window is N tokens
  --fault KIND[:N][@MODEL] answer the next N requests (default every one) of MODEL (default
                           any) with KIND: throttling, unavailable, internal, model-not-ready,
                           model-timeout, access-denied, validation, reset, silent
  --guardrail ID:VERSION:WORD
                           a guardrail that intervenes on WORD (the test guardrail is always
                           there unless --no-guardrails)
  --no-guardrails          no guardrail at all
  --help                   this text
";

struct Args {
    builder: bedrock_pool_local::LocalServerBuilder,
    ca_file: Option<PathBuf>,
    faults: Vec<FaultRule>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        builder: LocalServer::builder(),
        ca_file: None,
        faults: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let value = |flag: &str, it: &mut dyn Iterator<Item = String>| {
        it.next().ok_or(format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        let b = std::mem::replace(&mut args.builder, LocalServer::builder());
        args.builder = match arg.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--http" => b.protocol(Protocol::Http),
            "--h1" => b.protocol(Protocol::HttpsH1Only),
            "--port" => {
                let port: u16 = value(&arg, &mut it)?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?;
                let sts = port.checked_add(1).ok_or("--port: too high")?;
                b.bedrock_port(port).sts_port(sts)
            }
            "--ca-file" => {
                args.ca_file = Some(PathBuf::from(value(&arg, &mut it)?));
                b
            }
            "--region" => b.region(value(&arg, &mut it)?),
            "--latency-ms" => {
                let ms: u64 = value(&arg, &mut it)?
                    .parse()
                    .map_err(|e| format!("--latency-ms: {e}"))?;
                b.latency(Latency::fixed(Duration::from_millis(ms)))
            }
            "--async-delay-ms" => {
                let ms: u64 = value(&arg, &mut it)?
                    .parse()
                    .map_err(|e| format!("--async-delay-ms: {e}"))?;
                b.async_invoke_delay(Duration::from_millis(ms))
            }
            "--quota" => {
                let (model, quota) = quota(&value(&arg, &mut it)?)?;
                b.quota(model, quota)
            }
            "--context-window" => {
                let v = value(&arg, &mut it)?;
                let (model, n) = v.split_once('=').ok_or("--context-window: MODEL=N")?;
                let n: u64 = n.parse().map_err(|e| format!("--context-window: {e}"))?;
                b.context_window(model, n)
            }
            "--fault" => {
                args.faults.push(fault(&value(&arg, &mut it)?)?);
                b
            }
            "--guardrail" => {
                let v = value(&arg, &mut it)?;
                let mut parts = v.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(id), Some(version), Some(word)) => {
                        b.guardrail(Guardrail::new(id, version, word))
                    }
                    _ => return Err("--guardrail: ID:VERSION:WORD".into()),
                }
            }
            "--no-guardrails" => b.no_guardrails(),
            other => return Err(format!("unknown flag {other:?} (--help lists them)")),
        };
    }
    Ok(args)
}

/// Parses `MODEL=R/T/W` (`-` for no limit).
fn quota(v: &str) -> Result<(String, Quota), String> {
    let bad = || format!("--quota: {v:?} is not MODEL=REQUESTS/TOKENS/WINDOW_MS");
    let (model, spec) = v.split_once('=').ok_or_else(bad)?;
    let parts: Vec<&str> = spec.split('/').collect();
    let [r, t, w] = parts[..] else {
        return Err(bad());
    };
    let window: u64 = w.parse().map_err(|_| bad())?;
    let mut q = Quota::new(Duration::from_millis(window));
    if r != "-" {
        q = q.requests(r.parse().map_err(|_| bad())?);
    }
    if t != "-" {
        q = q.tokens(t.parse().map_err(|_| bad())?);
    }
    Ok((model.to_owned(), q))
}

/// Parses `KIND[:N][@MODEL]`.
fn fault(v: &str) -> Result<FaultRule, String> {
    let (rest, model) = match v.split_once('@') {
        Some((r, m)) => (r, Some(m)),
        None => (v, None),
    };
    let (kind, times) = match rest.split_once(':') {
        Some((k, n)) => (
            k,
            Some(n.parse::<usize>().map_err(|e| format!("--fault: {e}"))?),
        ),
        None => (rest, None),
    };
    let msg = |m: &str| m.to_owned();
    let fault = match kind {
        "throttling" => Fault::Error(ServiceError::Throttling(msg(
            "Too many requests, please wait before trying again.",
        ))),
        "unavailable" => Fault::Error(ServiceError::ServiceUnavailable(msg(
            "Bedrock is unable to process your request.",
        ))),
        "internal" => Fault::Error(ServiceError::InternalServer(msg("internal error"))),
        "model-not-ready" => Fault::Error(ServiceError::ModelNotReady(msg("model not ready"))),
        "model-timeout" => Fault::Error(ServiceError::ModelTimeout(msg("model timed out"))),
        "access-denied" => Fault::Error(ServiceError::AccessDenied(msg("access denied"))),
        "validation" => Fault::Error(ServiceError::Validation(msg("invalid request"))),
        "reset" => Fault::ResetBeforeHeaders,
        "silent" => Fault::GoSilent,
        other => {
            return Err(format!(
                "--fault: unknown kind {other:?} (--help lists them)"
            ));
        }
    };
    let mut rule = FaultRule::new(fault);
    if let Some(n) = times {
        rule = rule.times(n);
    }
    if let Some(m) = model {
        rule = rule.model(m);
    }
    Ok(rule)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let server = args.builder.start().await?;
    for rule in args.faults {
        server.push_fault(rule);
    }
    let ca = args.ca_file.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("bedrock-pool-local-ca-{}.pem", std::process::id()))
    });
    server.write_ca_pem(&ca)?;
    let tls = server.protocol() != Protocol::Http;
    let verify = if tls {
        format!("{:?}", ca.display().to_string())
    } else {
        "False".to_owned()
    };

    println!("Bedrock Runtime: {}", server.bedrock_url());
    println!("STS:             {}", server.sts_url());
    println!("region:          {}", server.region());
    println!("access key id:   {TEST_ACCESS_KEY_ID}");
    println!("secret key:      {TEST_SECRET_ACCESS_KEY}");
    if tls {
        println!("CA (PEM):        {}", ca.display());
    }
    println!();
    println!("# environment for any SDK or the AWS CLI:");
    println!(
        "export AWS_ACCESS_KEY_ID={TEST_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={TEST_SECRET_ACCESS_KEY}"
    );
    println!("export AWS_REGION={}", server.region());
    if tls {
        println!("export AWS_CA_BUNDLE={}", ca.display());
    }
    println!(
        "aws bedrock-runtime converse --endpoint-url {} --model-id any.model-v1:0 \
         --messages '[{{\"role\":\"user\",\"content\":[{{\"text\":\"hello there\"}}]}}]'",
        server.bedrock_url()
    );
    println!();
    println!("# boto3:");
    println!(
        "import boto3; brt = boto3.client(\"bedrock-runtime\", endpoint_url={:?}, verify={verify})",
        server.bedrock_url()
    );
    println!();
    println!("Serving; Ctrl-C stops.");

    tokio::signal::ctrl_c().await?;
    println!("{} requests served.", server.requests().len());
    Ok(())
}
