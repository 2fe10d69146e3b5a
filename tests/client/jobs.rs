//! Async invocations against the local server (h2 and HTTP/1.1): a start through a model
//! handle, the job read back and listed through the factory, waiting with a deadline, typed
//! states, idempotency tokens, bad input refused before the network, and the safety rule: a
//! start is never sent to another region or another model.

use crate::common;

use bedrock_pool::jobs::{AsyncInvokeStarted, AsyncInvokeState};
use bedrock_pool::sdk::Document;
use bedrock_pool::sdk::types::AsyncInvokeStatus;
use bedrock_pool::{CallMetadata, ErrorKind};
use bedrock_pool_local::{
    FAIL_JOB, Fault, FaultRule, LocalServer, Operation, Protocol, ServiceError,
};
use common::{MODEL, PROTOCOLS, factory_for};
use std::time::Duration;

const REEL: &str = "amazon.nova-reel-v1:1";
const S3: &str = "s3://my-bucket/videos/";

fn input(prompt: &str) -> Document {
    Document::Object([("prompt".to_owned(), Document::from(prompt))].into())
}

async fn server(protocol: Protocol, delay: Duration) -> LocalServer {
    LocalServer::builder()
        .protocol(protocol)
        .async_invoke_delay(delay)
        .start()
        .await
        .expect("local server starts")
}

#[tokio::test]
// Long because it is one job's life, checked step by step on both protocols.
async fn a_job_starts_runs_and_ends_with_typed_states() {
    for protocol in PROTOCOLS {
        let server = server(protocol, Duration::from_millis(400)).await;
        let factory = factory_for(&server).await;
        let model = factory.model(REEL);
        let started: AsyncInvokeStarted = model
            .start_async_invoke(input("a cat surfing"), S3)
            .tag("team", "video")
            .send()
            .await
            .unwrap();
        assert_eq!(
            (started.model_id(), started.region()),
            (REEL, server.region())
        );
        let arn = started.invocation_arn().to_owned();
        assert!(arn.contains(":async-invoke/"), "{arn}");
        // The SDK filled a client request token; the body carried the input and the output.
        let sent = server.requests_for(Operation::StartAsyncInvoke);
        assert_eq!(sent.len(), 1);
        let body = &sent[0].body;
        assert!(
            body["clientRequestToken"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert_eq!(body["modelId"], REEL);
        assert_eq!(body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"], S3);
        assert_eq!(body["tags"][0]["key"], "team");

        let running = factory.async_invoke(&arn).await.unwrap();
        assert_eq!(running.state, AsyncInvokeState::InProgress, "{protocol:?}");
        assert_eq!(running.s3_uri.as_deref(), Some(S3));
        assert!(running.model_arn.ends_with(REEL));
        assert_eq!(running.ended, None);
        let done = factory
            .wait_async_invoke(&arn, Duration::from_secs(20), Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(done.state, AsyncInvokeState::Completed);
        assert!(done.ended.is_some_and(|e| e >= done.submitted));

        // A job that fails ends Failed, with the service's message.
        let failing = model
            .start_async_invoke(input(FAIL_JOB), S3)
            .send()
            .await
            .unwrap();
        let failed = factory
            .wait_async_invoke(
                failing.invocation_arn(),
                Duration::from_secs(20),
                Duration::from_millis(50),
            )
            .await
            .unwrap();
        assert!(
            matches!(&failed.state, AsyncInvokeState::Failed { message: Some(m) } if m.contains(FAIL_JOB)),
            "{failed:?}"
        );

        // Still running at the deadline: a timeout, the job untouched.
        server.set_async_invoke_delay(Duration::from_secs(3600));
        let slow = model
            .start_async_invoke(input("slow"), S3)
            .send()
            .await
            .unwrap();
        let e = factory
            .wait_async_invoke(
                slow.invocation_arn(),
                Duration::from_millis(150),
                Duration::from_millis(50),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");

        // Listed: by status, newest first, a page at a time.
        let completed = factory
            .async_invokes()
            .status(AsyncInvokeStatus::Completed)
            .send()
            .await
            .unwrap();
        let arns: Vec<&str> = completed
            .jobs
            .iter()
            .map(|j| j.invocation_arn.as_str())
            .collect();
        assert_eq!(arns, [arn.as_str()]);
        let first = factory.async_invokes().max_results(2).send().await.unwrap();
        assert_eq!(
            first.jobs[0].invocation_arn,
            slow.invocation_arn(),
            "newest first"
        );
        let token = first.next_token.clone().expect("a second page");
        let rest = factory
            .async_invokes()
            .max_results(2)
            .next_token(token)
            .send()
            .await
            .unwrap();
        assert_eq!(rest.jobs.len(), 1);
        assert_eq!(rest.next_token, None);
        let oldest = factory
            .async_invokes()
            .oldest_first()
            .max_results(1)
            .send()
            .await
            .unwrap();
        assert_eq!(oldest.jobs[0].invocation_arn, arn);

        // The same client request token: the same job, not a second one.
        let once = model
            .start_async_invoke(input("once"), S3)
            .client_request_token("render-42")
            .send()
            .await
            .unwrap();
        let again = model
            .start_async_invoke(input("once"), S3)
            .client_request_token("render-42")
            .send()
            .await
            .unwrap();
        assert_eq!(once.invocation_arn(), again.invocation_arn());
        assert_eq!(factory.model_stats(REEL).unwrap().requests.successes, 5);
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_the_network() {
    let server = server(Protocol::Https, Duration::ZERO).await;
    let factory = factory_for(&server).await;
    let model = factory.model(REEL);
    let start = |uri: &str| model.start_async_invoke(input("x"), uri);
    let cases = [
        (start("https://my-bucket/x"), "s3_uri"),
        (start("s3://My_Bucket/x"), "s3_uri"),
        (
            model.start_async_invoke(Document::from("text"), S3),
            "model_input",
        ),
        (
            start(S3).client_request_token("has space"),
            "client_request_token",
        ),
        (start(S3).tag("", "v"), "tags"),
    ];
    for (request, field) in cases {
        let e = request.send().await.unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
    }
    let arn = "arn:aws:bedrock:us-east-1:123456789012:model/x";
    assert_eq!(
        factory.async_invoke(arn).await.unwrap_err().field(),
        Some("invocation_arn")
    );
    let other = format!(
        "arn:aws:bedrock:eu-west-9:123456789012:async-invoke/{}",
        "a".repeat(12)
    );
    assert_eq!(
        factory.async_invoke(&other).await.unwrap_err().field(),
        Some("invocation_arn")
    );
    let e = factory
        .async_invokes()
        .max_results(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("max_results"));
    let e = factory
        .wait_async_invoke("x", Duration::from_secs(1), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("every"));
    assert!(server.requests_for(Operation::StartAsyncInvoke).is_empty());
    assert!(server.requests_for(Operation::GetAsyncInvoke).is_empty());
}

#[tokio::test]
async fn a_start_never_goes_to_another_region_or_model() {
    let west = LocalServer::builder()
        .region("us-west-2")
        .start()
        .await
        .unwrap();
    let east = LocalServer::builder()
        .region("us-east-1")
        .start()
        .await
        .unwrap();
    // The primary region is down for the start: a regional failure that moves model calls.
    west.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable(
            "outage".into(),
        )))
        .operation(Operation::StartAsyncInvoke),
    );
    let factory = common::two_region_builder(&west, &east)
        .build()
        .await
        .unwrap();
    let e = factory
        .model(REEL)
        .with_fallbacks([MODEL])
        .start_async_invoke(input("x"), S3)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable, "{e}");
    assert_eq!(west.requests_for(Operation::StartAsyncInvoke).len(), 1);
    assert!(
        east.requests_for(Operation::StartAsyncInvoke).is_empty(),
        "no second job in another region"
    );
    let sent: Vec<_> = west.requests_for(Operation::StartAsyncInvoke);
    assert!(
        sent.iter().all(|r| r.body["modelId"] == REEL),
        "no fallback model"
    );
    // The same failure moves a model call to the next region (a Converse goes as a stream).
    west.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable(
            "outage".into(),
        )))
        .operation(Operation::ConverseStream)
        .times(1),
    );
    let reply = factory
        .model(MODEL)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.region(), "us-east-1");
}
