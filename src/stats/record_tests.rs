//! Tests of the call guard's figures, the histogram and the cost.
use super::*;
use crate::stats::{Activity, CallGuard};

#[test]
fn cost_splits_cache_writes_by_ttl_and_multiplies_by_tier() {
    let t = Tokens {
        input: 1_000,
        output: 100,
        cache_read: 10_000,
        cache_write: 3_000,
        cache_write_1h: 2_000,
    };
    let p = Prices::per_million_usd(3.0, 15.0)
        .cache_read(0.3)
        .cache_write(3.75);
    // nano-dollars: 3000/token input, 15000 output, 300 read, 3750 written.
    let base = 1_000 * 3_000 + 100 * 15_000 + 10_000 * 300;
    assert_eq!(
        t.cost(&p, None),
        base + 3_000 * 3_750,
        "1h as 5m when unpriced"
    );
    let p = p.cache_write_1h(6.0);
    let split = base + 1_000 * 3_750 + 2_000 * 6_000;
    assert_eq!(t.cost(&p, None), split);
    assert_eq!(t.cost(&p, Some(&ServiceTierType::Default)), split);
    let p = p.tier(ServiceTierType::Flex, 0.5);
    assert_eq!(t.cost(&p, Some(&ServiceTierType::Flex)), split / 2);
    assert_eq!(t.cost(&p, Some(&ServiceTierType::Priority)), split);
    assert_eq!(t.cost(&p, Some(&ServiceTierType::from("future"))), split);
    // More 1-hour tokens than writes (a usage that disagrees): never more than written.
    let odd = Tokens {
        cache_write_1h: 9_000,
        ..t
    };
    assert_eq!(odd.cost(&p, None), base + 3_000 * 6_000);
}

#[test]
fn histogram_buckets_are_monotonic_and_tight() {
    let mut prev = 0;
    for us in [
        0u64,
        1,
        7,
        8,
        9,
        15,
        16,
        100,
        1_000,
        65_432,
        1_000_000,
        123_456_789,
    ] {
        let b = Histogram::bucket_of(us);
        assert!(b >= prev, "bucket order broke at {us}");
        prev = b;
        let v = Histogram::value_of(b) as f64;
        let err = (v - us as f64).abs() / (us.max(1) as f64);
        assert!(err <= 0.07 || us < 8, "{us} us -> {v} ({err})");
    }
}

#[test]
fn percentiles_of_a_known_mix() {
    let h = Histogram::new();
    for _ in 0..90 {
        h.record(Duration::from_millis(10));
    }
    for _ in 0..10 {
        h.record(Duration::from_millis(200));
    }
    let s = h.summary();
    assert_eq!(s.count, 100);
    let near = |d: Duration, want: f64| {
        let ms = d.as_secs_f64() * 1000.0;
        (ms - want).abs() / want < 0.07
    };
    assert!(near(s.p50, 10.0), "{s:?}");
    assert!(near(s.p90, 10.0), "{s:?}");
    assert!(near(s.p99, 200.0), "{s:?}");
    assert_eq!(s.max, Duration::from_millis(200));
    assert!(near(s.mean, 29.0), "{s:?}");
}

#[test]
fn dropped_guard_counts_cancelled_and_leaves_no_flight() {
    let c = std::sync::Arc::new(RequestCounters::new());
    let act = std::sync::Arc::new(Activity::new(Duration::from_secs(30)));
    let g = CallGuard::start([Some(c.clone()), None], act.clone(), None);
    assert_eq!(c.snapshot().in_flight, 1);
    drop(g);
    let s = c.snapshot();
    assert_eq!((s.in_flight, s.cancelled, s.requests), (0, 1, 1));
    CallGuard::start([Some(c.clone()), None], act, None)
        .finish(Outcome::Failure(ErrorKind::Throttled));
    let s = c.snapshot();
    assert_eq!(
        (s.throttles, s.failures.total(), s.latency.count),
        (1, 1, 1)
    );
}
