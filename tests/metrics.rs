//! The `metrics` facade export: the figures reach an installed recorder under documented names.

mod common;

use bedrock_pool::local::{Fault, FaultRule, Protocol, ServiceError};
use common::{MODEL, factory_for, server};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::collections::HashMap;

/// Sums each metric by name (and the `outcome` label when present).
fn totals(snapshot: metrics_util::debugging::Snapshot) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshot.into_vec() {
        let k = key.key();
        let mut name = k.name().to_owned();
        if let Some(outcome) = k.labels().find(|l| l.key() == "outcome") {
            name = format!("{name}/{}", outcome.value());
        }
        let v = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        };
        *out.entry(name).or_insert(0.0) += v;
    }
    out
}

#[tokio::test]
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
    let t = totals(snapshotter.snapshot());
    assert_eq!(t["bedrock_pool_requests_total/success"], 3.0, "{t:?}");
    assert_eq!(t["bedrock_pool_requests_total/invalid_input"], 1.0, "{t:?}");
    assert_eq!(t["bedrock_pool_request_duration_seconds"], 4.0, "{t:?}");
    assert_eq!(t["bedrock_pool_retries_total"], 1.0, "{t:?}");
    assert_eq!(t["bedrock_pool_in_flight"], 0.0, "{t:?}");
    // A 503 answered on a healthy connection keeps it: one connection for every call.
    assert_eq!(t["bedrock_pool_connections_opened_total"], 1.0, "{t:?}");
    assert_eq!(t["bedrock_pool_connection_establish_seconds"], 1.0, "{t:?}");
}
