//! Multi-region failover against two local servers playing two regions: regional failures move
//! a call to the next region and cool the failed one down; client errors never move; streams move
//! only before their first event; region-scoped model ids stay in their regions.

use crate::common;

use bedrock_pool::CallMetadata;
use bedrock_pool::{ErrorKind, LlmFactory, LlmFactoryBuilder, StreamEvent};
use bedrock_pool_local::{Fault, FaultRule, LocalServer, Operation, Protocol, ServiceError};
use common::{Ask, MODEL, eventually};
use std::time::{Duration, Instant};

const US_PROFILE: &str = "us.anthropic.claude-3-haiku-20240307-v1:0";
const EU_PROFILE: &str = "eu.anthropic.claude-3-haiku-20240307-v1:0";

async fn region_server(region: &str) -> LocalServer {
    LocalServer::builder()
        .protocol(Protocol::Https)
        .region(region)
        .start()
        .await
        .expect("local server starts")
}

/// Two servers: the primary region first.
async fn two(primary: &str, secondary: &str) -> (LocalServer, LocalServer) {
    (region_server(primary).await, region_server(secondary).await)
}

/// A factory over both servers, primary first, one attempt per region, a short cooldown.
fn builder(first: &LocalServer, second: &LocalServer) -> LlmFactoryBuilder {
    common::two_region_builder(first, second).failover_cooldown(Duration::from_millis(300))
}

async fn factory(first: &LocalServer, second: &LocalServer) -> LlmFactory {
    builder(first, second)
        .build()
        .await
        .expect("factory builds")
}

fn model_calls(server: &LocalServer) -> usize {
    server.requests_for(Operation::Converse).len()
        + server.requests_for(Operation::ConverseStream).len()
}

/// The whole cycle: fail over, stay away while the primary cools down, come back after.
#[tokio::test]
async fn a_503_region_fails_over_cools_down_and_comes_back() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    west.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("regional outage".into()),
    )));
    let factory = builder(&west, &east)
        .failover_cooldown(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let model = factory.model(MODEL);

    let reply = model
        .converse()
        .user("hello")
        .send()
        .await
        .expect("served by the second");
    assert_eq!(reply.region(), "us-east-1");
    assert_eq!(reply.text(), "hello");
    assert_eq!(model_calls(&west), 1);
    assert_eq!(model_calls(&east), 1);
    let stats = factory.stats().regions;
    assert_eq!(stats[0].region, "us-west-2");
    assert!(!stats[0].healthy, "{stats:?}");
    assert_eq!(stats[0].failovers, 1);
    assert_eq!(
        stats[0]
            .requests
            .failures
            .get(ErrorKind::ServiceUnavailable),
        1
    );
    assert!(stats[1].healthy);
    assert_eq!(stats[1].failovers, 0);
    assert_eq!(stats[1].requests.successes, 1);
    let overall = factory.stats().requests;
    assert_eq!(
        (overall.requests, overall.successes, overall.in_flight),
        (1, 1, 0)
    );

    // While the primary cools down, calls go straight to the second region.
    for i in 0..3 {
        let reply = model
            .converse()
            .user(format!("call {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.region(), "us-east-1");
    }
    assert_eq!(
        model_calls(&west),
        1,
        "the cooling region received nothing new"
    );
    assert_eq!(model_calls(&east), 4);
    assert_eq!(factory.stats().regions[0].failovers, 1, "no new failover");

    // After the cooldown, with the fault cleared, calls return to the primary.
    west.clear_faults();
    assert!(
        eventually(Duration::from_secs(5), || factory.stats().regions[0]
            .healthy)
        .await,
        "the primary never left its cooldown"
    );
    let reply = model.converse().user("back").send().await.unwrap();
    assert_eq!(reply.region(), "us-west-2");
    assert_eq!(model_calls(&west), 2);
    assert_eq!(model_calls(&east), 4);
    assert!(factory.stats().regions[0].healthy);
}

#[tokio::test]
async fn a_reset_before_headers_fails_over() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    west.push_fault(FaultRule::new(Fault::ResetBeforeHeaders));
    let factory = factory(&west, &east).await;
    let reply = factory.ask("hi").await.unwrap();
    assert_eq!(reply.region(), "us-east-1");
    let stats = factory.stats().regions;
    assert!(!stats[0].healthy);
    assert_eq!(stats[0].failovers, 1);
    assert_eq!(
        stats[0].requests.failures.get(ErrorKind::Network),
        1,
        "{stats:?}"
    );
    assert_eq!(model_calls(&west), 1);
}

#[tokio::test]
async fn a_read_timeout_fails_over() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    west.push_fault(FaultRule::new(Fault::Delay(Duration::from_secs(5))));
    let factory = builder(&west, &east)
        .read_timeout(Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let reply = factory.ask("hi").await.unwrap();
    assert_eq!(reply.region(), "us-east-1");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited the primary's delay"
    );
    let stats = factory.stats().regions;
    assert!(!stats[0].healthy);
    assert_eq!(stats[0].failovers, 1);
    assert_eq!(stats[0].requests.timeouts, 1, "{stats:?}");
}

/// The service's 4xx answers are the caller's problem, the same in every region.
#[tokio::test]
async fn client_errors_never_fail_over() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    let factory = factory(&west, &east).await;
    let cases = [
        (
            ServiceError::Validation("messages.0: bad".into()),
            ErrorKind::Validation,
        ),
        (
            ServiceError::AccessDenied("not allowed".into()),
            ErrorKind::AccessDenied,
        ),
        (
            ServiceError::ResourceNotFound("no such model".into()),
            ErrorKind::ModelNotFound,
        ),
    ];
    for (i, (error, kind)) in cases.into_iter().enumerate() {
        west.push_fault(FaultRule::new(Fault::Error(error)).times(2));
        let e = factory.ask("hi").await.expect_err("the error is returned");
        assert_eq!(e.kind(), kind, "{e:?}");
        let e = factory
            .model(MODEL)
            .converse_stream()
            .user("hi")
            .send()
            .await
            .expect_err("the stream error is returned");
        assert_eq!(e.kind(), kind, "stream: {e:?}");
        assert_eq!(model_calls(&west), 2 * (i + 1));
    }
    assert_eq!(model_calls(&east), 0, "{:?}", east.requests());
    let stats = factory.stats().regions;
    assert!(stats[0].healthy, "{stats:?}");
    assert_eq!(stats[0].failovers, 0);
}

#[tokio::test]
async fn invalid_input_neither_sends_nor_fails_over() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    let factory = factory(&west, &east).await;
    let e = factory
        .model(MODEL)
        .converse()
        .user("hi")
        .temperature(3.0)
        .send()
        .await;
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
    let e = factory
        .model("has space")
        .converse_stream()
        .user("hi")
        .send()
        .await;
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(west.requests().is_empty());
    assert!(east.requests().is_empty());
    let stats = factory.stats().regions;
    assert!(
        stats.iter().all(|r| r.healthy && r.failovers == 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_stream_fails_over_before_its_first_event() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    west.push_fault(FaultRule::new(Fault::ResetBeforeHeaders).operation(Operation::ConverseStream));
    let factory = factory(&west, &east).await;
    let stream = factory
        .model(MODEL)
        .converse_stream()
        .user("one two three")
        .send()
        .await
        .expect("served by the second");
    assert_eq!(stream.region(), "us-east-1");
    assert_eq!(
        factory.stats().regions[1].requests.in_flight,
        1,
        "the open stream is in flight"
    );
    let reply = stream.collect().await.unwrap();
    assert_eq!(reply.region(), "us-east-1");
    assert_eq!(reply.text(), "one two three");
    let stats = factory.stats().regions;
    assert!(!stats[0].healthy);
    assert_eq!(stats[0].failovers, 1);
    let east_calls = stats[1].requests;
    assert_eq!(
        (east_calls.successes, east_calls.in_flight),
        (1, 0),
        "{east_calls:?}"
    );
    assert_eq!(east_calls.time_to_first_token.count, 1);
    assert_eq!(west.requests_for(Operation::ConverseStream).len(), 1);
    assert_eq!(east.requests_for(Operation::ConverseStream).len(), 1);
}

/// Once events flowed, the answer is half given: retrying elsewhere would duplicate it.
#[tokio::test]
async fn a_stream_broken_after_events_does_not_fail_over() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    west.push_fault(FaultRule::new(Fault::StreamException {
        after_events: 2,
        error: ServiceError::ServiceUnavailable("went away".into()),
    }));
    let factory = factory(&west, &east).await;
    let mut stream = factory
        .model(MODEL)
        .converse_stream()
        .user("one two three")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.region(), "us-west-2");
    let mut events = Vec::new();
    let e = loop {
        match stream.next().await {
            Some(Ok(ev)) => events.push(ev),
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly: {events:?}"),
        }
    };
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable, "{e:?}");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], StreamEvent::MessageStart);
    assert_eq!(model_calls(&east), 0, "{:?}", east.requests());
    let stats = factory.stats().regions;
    assert_eq!(stats[0].failovers, 0);
    // The region's figures tell the same story as the call's: a failure, not a success.
    let west_calls = stats[0].requests;
    assert_eq!(west_calls.successes, 0, "{west_calls:?}");
    assert_eq!(west_calls.failures.get(ErrorKind::ServiceUnavailable), 1);
    assert_eq!(west_calls.in_flight, 0);
}

/// A `us.` inference profile never goes outside us-* regions, even when the primary is elsewhere
/// and even when its only us region fails.
#[tokio::test]
async fn a_us_profile_goes_to_us_regions_only() {
    let (eu, us) = two("eu-west-1", "us-east-1").await;
    let factory = factory(&eu, &us).await;
    let reply = factory
        .model(US_PROFILE)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.region(), "us-east-1");
    assert_eq!(us.requests()[0].model_id.as_deref(), Some(US_PROFILE));
    // A plain model id goes to the primary.
    let reply = factory.ask("hi").await.unwrap();
    assert_eq!(reply.region(), "eu-west-1");
    assert_eq!(model_calls(&eu), 1);

    us.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("down".into()),
    )));
    let e = factory
        .model(US_PROFILE)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable, "{e:?}");
    assert_eq!(
        model_calls(&eu),
        1,
        "the us profile never went to eu-west-1"
    );
    assert_eq!(factory.stats().regions[1].failovers, 0);
}

/// Observed behaviour: an `eu.` profile with no eu-* region configured is not refused; it uses
/// the configured regions in order (primary first, failover as for any model id), and the
/// service decides whether it accepts the profile there.
#[tokio::test]
async fn an_eu_profile_without_eu_regions_falls_back_to_the_configured_regions() {
    let (west, east) = two("us-west-2", "us-east-1").await;
    let factory = factory(&west, &east).await;
    let reply = factory
        .model(EU_PROFILE)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.region(), "us-west-2");
    west.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("down".into()),
    )));
    let reply = factory
        .model(EU_PROFILE)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.region(), "us-east-1");
    assert_eq!(east.requests()[0].model_id.as_deref(), Some(EU_PROFILE));
}

/// An ARN names its region: the call goes there even though another region is primary, and does
/// not fail over anywhere else.
#[tokio::test]
async fn an_arn_goes_to_the_region_it_names() {
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
    let (west, east) = two("us-west-2", "us-east-1").await;
    let factory = factory(&west, &east).await;
    let reply = factory
        .model(arn)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.region(), "us-east-1");
    assert_eq!(east.requests()[0].model_id.as_deref(), Some(arn));
    let stream = factory
        .model(arn)
        .converse_stream()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.region(), "us-east-1");
    stream.collect().await.unwrap();

    east.push_fault(FaultRule::new(Fault::Error(
        ServiceError::ServiceUnavailable("down".into()),
    )));
    let e = factory
        .model(arn)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable, "{e:?}");
    assert!(west.requests().is_empty(), "{:?}", west.requests());
    assert!(factory.stats().regions.iter().all(|r| r.failovers == 0));
}

#[tokio::test]
async fn an_endpoint_for_a_region_not_served_is_refused() {
    let (a, b) = two("us-east-1", "us-west-2").await;
    let e = builder(&a, &b)
        .region_endpoint_url("eu-west-1", a.bedrock_url())
        .build()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input());
    assert_eq!(e.field(), Some("region_endpoint_url"));
    assert!(e.to_string().contains("eu-west-1"), "{e}");
}
