//! The serialised form of the statistics, pinned: a change of a name or a unit breaks the
//! services that read it, so it must show here first.

use super::*;
use crate::error::ErrorKind;
use crate::heartbeat::{HeartbeatStats, ProbeError, ProbeKind, ProbeStats};
use crate::stats::{BreakerState, SessionStats};
use crate::stats::{Cost, FailureStats, HttpProtocol, LatencyStats, OriginPoolStats, RateStats};
use std::time::{Duration, SystemTime};

fn latency(count: u64, p50_ms: u64) -> LatencyStats {
    LatencyStats {
        count,
        mean: Duration::from_micros(p50_ms * 1000 + 500),
        p50: Duration::from_millis(p50_ms),
        p90: Duration::from_millis(p50_ms * 2),
        p99: Duration::from_millis(p50_ms * 3),
        max: Duration::from_millis(p50_ms * 4),
    }
}

fn requests() -> RequestStats {
    let mut failures = FailureStats::default();
    failures.counts[ErrorKind::Throttled.index()] = 2;
    failures.counts[ErrorKind::Timeout.index()] = 1;
    RequestStats {
        requests: 10,
        successes: 7,
        failures,
        timeouts: 1,
        throttles: 2,
        retries: 3,
        repeats: 1,
        in_flight: 0,
        cancelled: 0,
        retired_connections: 1,
        latency: latency(10, 250),
        wakeups: 1,
        wakeup_latency: latency(1, 900),
        time_to_first_token: LatencyStats::default(),
        input_tokens: 1200,
        output_tokens: 340,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        output_tokens_per_second: RateStats {
            count: 2,
            mean: 80,
            p50: 78,
            p90: 95,
            max: 96,
        },
        cost: Some(Cost {
            nano_usd: 1_500_000,
        }),
        fallbacks: 0,
    }
}

fn origin() -> OriginPoolStats {
    OriginPoolStats {
        capacity: 64,
        open: 2,
        idle: 1,
        active: 1,
        establishing: 0,
        waiting: 0,
        utilization: 0.03125,
        protocol: Some(HttpProtocol::Http2),
        retired: 1,
        max_in_flight_per_connection: 3,
        opened: 3,
        max_open: 2,
        closed_idle: 0,
        closed_error: 1,
        closed_by_peer: 0,
        closed_dropped: 0,
        establishment_failures: 0,
        establishment_last: Duration::from_micros(12_500),
        establishment_mean: Duration::from_millis(15),
        establishment_max: Duration::from_millis(20),
        transport_mean: Duration::from_millis(4),
        handshake_mean: Duration::from_millis(11),
    }
}

fn factory_stats() -> FactoryStats {
    FactoryStats {
        pool: PoolStats {
            bedrock: origin(),
            sts: OriginPoolStats::default(),
        },
        requests: requests(),
        models: vec![ModelStats {
            model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
            requests: requests(),
        }],
        regions: vec![RegionStats {
            region: "us-east-1".into(),
            endpoint_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
            healthy: true,
            failovers: 0,
            requests: requests(),
            pool: origin(),
        }],
        cache: CacheStats {
            cached: 1,
            hits: 9,
            misses: 1,
            invalidated: 0,
        },
        sessions: SessionStats {
            opened: 3,
            active: 1,
            completed: 1,
            failed: 1,
            cancelled: 0,
            duration_total: Duration::from_secs(480),
            duration_max: Duration::from_secs(470),
            liveness_probes: 4,
            liveness_unverified: 1,
        },
        breakers: vec![
            BreakerStats {
                model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
                region: "us-east-1".into(),
                state: BreakerState::Open {
                    remaining: Duration::from_millis(1500),
                },
                recent_failures: 5,
                opened: 1,
                skipped: 4,
            },
            BreakerStats {
                model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
                region: "us-west-2".into(),
                state: BreakerState::HalfOpen,
                recent_failures: 0,
                opened: 0,
                skipped: 0,
            },
        ],
        limits: vec![LimitStats {
            model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
            region: "us-east-1".into(),
            admitted: 10,
            waited: 2,
            queue_wait: latency(10, 5),
            rejected: 1,
            expired: 0,
            queued: 0,
            requests_in_window: 4,
            tokens_in_window: 2048,
        }],
        #[cfg(feature = "redis")]
        fleet: None,
    }
}

fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(format!("{path}.{k}"));
                walk(v, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, &format!("{path}[]"), out)),
        _ => {}
    }
}

#[test]
fn the_factory_snapshot_serialises_as_the_pinned_json() {
    let json = serde_json::to_string_pretty(&factory_stats()).unwrap();
    let expected = include_str!("snapshot.json");
    assert_eq!(
        json,
        expected.trim_end(),
        "the JSON format changed:\n{json}"
    );
    // No serde default for a Duration anywhere: every key holding a time ends in `_ms`.
    let mut keys = Vec::new();
    walk(&serde_json::from_str(&json).unwrap(), "", &mut keys);
    assert!(keys.len() > 100, "{keys:?}");
    for k in &keys {
        assert!(!k.ends_with(".secs") && !k.ends_with(".nanos"), "{k}");
    }
}

#[test]
fn floats_that_are_not_finite_serialise_as_null() {
    let pool = OriginPoolStats {
        utilization: f64::NAN,
        ..OriginPoolStats::default()
    };
    let v = serde_json::to_value(pool).unwrap();
    assert!(v["utilization"].is_null(), "{v}");
    let pool = OriginPoolStats {
        utilization: 0.5,
        ..OriginPoolStats::default()
    };
    assert_eq!(serde_json::to_value(pool).unwrap()["utilization"], 0.5);
}

#[test]
fn heartbeat_stats_serialise_with_unix_ms_and_names() {
    let st = HeartbeatStats {
        last_success: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        last_failure: None,
        consecutive_failures: 1,
        last_error: Some(ProbeError {
            probe: ProbeKind::KeepWarm,
            kind: ErrorKind::Network,
            message: "connection refused".into(),
        }),
        identity: ProbeStats {
            sent: 3,
            succeeded: 3,
            failed: 0,
            skipped: 0,
        },
        keep_warm: ProbeStats::default(),
        running: true,
    };
    let json = serde_json::to_string(&st).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"last_success_unix_ms":1700000000123,"last_failure_unix_ms":null,"#,
            r#""consecutive_failures":1,"last_error":{"probe":"keep_warm","kind":"network","#,
            r#""message":"connection refused"},"identity":{"sent":3,"succeeded":3,"failed":0,"#,
            r#""skipped":0},"keep_warm":{"sent":0,"succeeded":0,"failed":0,"skipped":0},"#,
            r#""running":true}"#
        )
    );
}

#[cfg(feature = "redis")]
#[test]
fn the_fleet_serialises_when_there_is_one() {
    let mut stats = factory_stats();
    stats.fleet = Some(crate::fleet::FleetStats {
        up: true,
        round_trips: 12,
        processes: 3,
        ..Default::default()
    });
    let v = serde_json::to_value(&stats).unwrap();
    assert!(v["fleet"]["up"].is_boolean(), "{v}");
    assert_eq!(
        serde_json::to_string(&stats.fleet).unwrap(),
        concat!(
            r#"{"up":true,"round_trips":12,"errors":0,"fallbacks":0,"corrections":0,"#,
            r#""cooldowns_set":0,"dropped":0,"reconnects":0,"forgotten":0,"cluster":false,"#,
            r#""processes":3}"#
        )
    );
}
