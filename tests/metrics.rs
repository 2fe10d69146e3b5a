//! The `metrics` facade export: the figures reach an installed recorder under documented names.

mod common;

use bedrock_pool::CallMetadata;
use bedrock_pool_local::{Fault, FaultRule, Protocol, ServiceError};
use common::{MODEL, factory_for, server};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::collections::HashMap;

/// One metric of a snapshot: name, labels, value.
type Entry = (String, Vec<(String, String)>, DebugValue);

fn entries(snapshot: metrics_util::debugging::Snapshot) -> Vec<Entry> {
    let entry = |(key, _, _, value): (metrics_util::CompositeKey, _, _, DebugValue)| {
        let k = key.key();
        let labels = k
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        (k.name().to_owned(), labels, value)
    };
    snapshot.into_vec().into_iter().map(entry).collect()
}

/// Sums each metric by name (and the `outcome` label when present).
fn totals(entries: &[Entry]) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (name, labels, value) in entries {
        let mut name = name.clone();
        if let Some((_, outcome)) = labels.iter().find(|(k, _)| k == "outcome") {
            name = format!("{name}/{outcome}");
        }
        let v = match value {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        };
        *out.entry(name).or_insert(0.0) += v;
    }
    out
}

#[tokio::test]
// Long because it is one scenario checked step by step.
async fn figures_reach_the_metrics_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = server(Protocol::HttpsH1Only).await;
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::ServiceUnavailable("x".into()))).times(1),
    );
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    for _ in 0..3 {
        model.converse().user("hi").send().await.unwrap();
    }
    let e = factory
        .model("")
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input());
    model
        .converse_stream()
        .user("hi")
        .send()
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let entries = entries(snapshotter.snapshot());
    let gen_ai = gen_ai_series(&entries);
    let t = totals(&entries);
    assert_eq!(t["bedrock_pool_requests_total/success"], 4.0, "{t:?}");
    assert_eq!(t["bedrock_pool_requests_total/invalid_input"], 1.0, "{t:?}");
    assert_eq!(t["bedrock_pool_request_duration_seconds"], 5.0, "{t:?}");
    // Three unary calls carried as streams and one stream: each has a first event.
    assert_eq!(t["bedrock_pool_time_to_first_token_seconds"], 4.0, "{t:?}");
    assert_eq!(t["bedrock_pool_retries_total"], 1.0, "{t:?}");
    assert_eq!(t["bedrock_pool_in_flight"], 0.0, "{t:?}");
    // A 503 answered on a healthy connection keeps it: one connection for every call.
    assert_eq!(t["bedrock_pool_connections_opened_total"], 1.0, "{t:?}");
    assert_eq!(t["bedrock_pool_connection_establish_seconds"], 1.0, "{t:?}");

    // The OpenTelemetry GenAI series, with their attributes.
    let host = server
        .bedrock_url()
        .parse::<http::Uri>()
        .unwrap()
        .host()
        .unwrap()
        .to_owned();
    let ok = format!(
        "gen_ai.operation.name=chat,gen_ai.provider.name=aws.bedrock,gen_ai.request.model={MODEL},server.address={host}"
    );
    let expected = [
        (format!("gen_ai.client.token.usage{{{ok},gen_ai.token.type=input}}"), 4),
        (format!("gen_ai.client.token.usage{{{ok},gen_ai.token.type=output}}"), 4),
        (format!("gen_ai.client.operation.duration{{{ok}}}"), 4),
        // The invalid id reached no region and is not tracked: its model label is `other`.
        (
            "gen_ai.client.operation.duration{gen_ai.operation.name=chat,gen_ai.provider.name=aws.bedrock,gen_ai.request.model=other,error.type=invalid_input}".to_owned(),
            1,
        ),
        (format!("gen_ai.client.operation.time_to_first_chunk{{{ok}}}"), 4),
    ];
    for (series, n) in &expected {
        assert_eq!(gen_ai.get(series), Some(n), "{series} in {gen_ai:#?}");
    }
    assert_eq!(gen_ai.len(), expected.len(), "{gen_ai:#?}");

    // A fallback, a breaker opening and a client-side limit's refusal and wait.
    let limited = common::builder_for(&server)
        .retry_max_attempts(1)
        .circuit_breaker(Some(bedrock_pool::config::BreakerConfig::new(
            1,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
        )))
        .model_limit(
            "amazon.nova-lite-v1:0",
            bedrock_pool::limit::ModelLimit::per_minute()
                .requests(1)
                .mode(bedrock_pool::limit::LimitMode::Reject),
        )
        .build()
        .await
        .unwrap();
    server.push_fault(
        FaultRule::new(Fault::Error(ServiceError::Throttling("x".into())))
            .model(MODEL)
            .times(1),
    );
    let chain = limited
        .model(MODEL)
        .with_fallbacks(["amazon.nova-lite-v1:0"]);
    assert_eq!(
        chain.converse().user("hi").send().await.unwrap().model_id(),
        "amazon.nova-lite-v1:0"
    );
    // The fallback's limit of 1 call per minute is spent.
    let refused = limited
        .model("amazon.nova-lite-v1:0")
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap_err();
    assert!(refused.message().contains("client-side limit"), "{refused}");
    let t = totals(&entries_of(&snapshotter));
    for name in [
        "bedrock_pool_fallbacks_total",
        "bedrock_pool_breaker_opened_total",
        "bedrock_pool_limit_wait_seconds",
        "bedrock_pool_limit_refused_total",
    ] {
        assert!(t.get(name).is_some_and(|n| *n >= 1.0), "{name} in {t:?}");
    }
}

fn entries_of(s: &metrics_util::debugging::Snapshotter) -> Vec<Entry> {
    entries(s.snapshot())
}

/// Counts the samples of each `gen_ai.*` series, keyed `name{label=value,...}`.
fn gen_ai_series(entries: &[Entry]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (name, labels, value) in entries {
        if !name.starts_with("gen_ai.") {
            continue;
        }
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let DebugValue::Histogram(h) = value {
            out.insert(format!("{name}{{{}}}", labels.join(",")), h.len());
        }
    }
    out
}
