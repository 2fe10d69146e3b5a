//! The heartbeat task: its schedule per probe kind, its rounds, and what it records and logs.

use super::config::{HeartbeatConfig, MIN_INTERVAL};
use super::status::{HeartbeatStats, ProbeError, ProbeKind, lock};
use crate::error::{Error, ErrorKind, Result};
use crate::factory::{LlmFactory, WeakFactory};
use crate::probe::{identity_probe, keep_warm_probe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// A hint for the operator, by what failed.
fn hint(probe: ProbeKind, e: &Error) -> &'static str {
    match (e.kind(), e.code()) {
        (_, Some("ExpiredToken" | "ExpiredTokenException")) => {
            "the credentials have expired: refresh them (new session token, `aws sso login`, role refresh)"
        }
        (_, Some("InvalidClientTokenId" | "UnrecognizedClientException")) => {
            "the access key is not recognised: check the configured credentials"
        }
        (_, Some("SignatureDoesNotMatch" | "InvalidSignatureException")) => {
            "the signature was rejected: check the secret key and the clock"
        }
        (ErrorKind::AccessDenied, Some(_)) if probe == ProbeKind::Identity => {
            "permission denied: the identity needs sts:GetCallerIdentity"
        }
        (ErrorKind::AccessDenied, Some(_)) => {
            "permission denied: the identity needs bedrock:ListAsyncInvokes for keep-warm"
        }
        (ErrorKind::AccessDenied, None) => {
            "no usable credentials: set up the AWS credentials chain (environment, profile, role)"
        }
        (ErrorKind::Timeout | ErrorKind::Network, _) => {
            "network problem: check connectivity, DNS, proxy and security groups"
        }
        (ErrorKind::Throttled, _) => "throttled: the probe interval may be too short",
        (ErrorKind::ServiceUnavailable, _) => "the service is failing; it will be probed again",
        _ => "unexpected failure",
    }
}

/// Per-probe-kind schedule state.
pub(super) struct Schedule {
    pub(super) kind: ProbeKind,
    pub(super) interval: Duration,
    pub(super) next: Instant,
    pub(super) failures: u32,
}

impl Schedule {
    fn after_result(&mut self, ok: bool, cfg: &HeartbeatConfig) {
        let now = Instant::now();
        if ok {
            self.failures = 0;
            self.next = now + self.interval;
        } else {
            self.failures = self.failures.saturating_add(1);
            let exp = self.failures.saturating_sub(1).min(20);
            let wait = cfg
                .backoff_floor
                .saturating_mul(1u32 << exp)
                .clamp(cfg.backoff_floor, cfg.backoff_max)
                .min(self.interval.max(cfg.backoff_floor));
            self.next = now + wait;
        }
    }
}

/// Outcome of one round of one probe kind.
enum Round {
    Sent(Result<()>),
    Skipped,
}

/// Runs one round; also returns how soon a host skipped for recent traffic needs its probe.
async fn probe_round(
    factory: &LlmFactory,
    kind: ProbeKind,
    cfg: &HeartbeatConfig,
) -> (Round, Option<Duration>) {
    match kind {
        ProbeKind::Identity => (
            Round::Sent(identity_probe(factory.sts_client(), cfg.probe_timeout).await),
            None,
        ),
        ProbeKind::KeepWarm => {
            let mut probes = Vec::new();
            let mut due: Option<Duration> = None;
            for region in factory.shared().regions.iter() {
                let idle = region.activity.idle_for();
                let recently_used = idle.is_some_and(|idle| idle < cfg.keep_warm_interval);
                if cfg.activity_aware && recently_used {
                    // Probe one interval after that traffic, not one interval after now: a
                    // connection must never idle longer than the interval.
                    let wait = cfg
                        .keep_warm_interval
                        .saturating_sub(idle.unwrap_or_default())
                        .max(MIN_INTERVAL);
                    due = Some(due.map_or(wait, |d| d.min(wait)));
                    continue;
                }
                for _ in 0..cfg.keep_warm_connections {
                    let client = region.client.clone();
                    probes.push(async move { keep_warm_probe(&client, cfg.probe_timeout).await });
                }
            }
            if probes.is_empty() {
                return (Round::Skipped, due);
            }
            let results = futures_util::future::join_all(probes).await;
            let result = results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()));
            (Round::Sent(result), due)
        }
    }
}

pub(super) async fn run(
    weak: WeakFactory,
    cfg: HeartbeatConfig,
    mut schedules: Vec<Schedule>,
    status: Arc<Mutex<HeartbeatStats>>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(next) = schedules.iter().map(|s| s.next).min() {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        // Upgrade only for the round: the task must never keep the factory alive.
        let Some(factory) = weak.upgrade() else {
            tracing::debug!("heartbeat: the factory is gone, stopping");
            break;
        };
        let now = Instant::now();
        for s in schedules.iter_mut().filter(|s| s.next <= now) {
            let (round, due) = probe_round(&factory, s.kind, &cfg).await;
            let failed = matches!(round, Round::Sent(Err(_)));
            record(&status, s, round, &cfg);
            if let (Some(due), false) = (due, failed) {
                s.next = s.next.min(Instant::now() + due);
            }
        }
        drop(factory);
    }
    lock(&status).running = false;
}

fn record(status: &Mutex<HeartbeatStats>, s: &mut Schedule, round: Round, cfg: &HeartbeatConfig) {
    let mut st = lock(status);
    let counts = match s.kind {
        ProbeKind::Identity => &mut st.identity,
        ProbeKind::KeepWarm => &mut st.keep_warm,
    };
    match round {
        Round::Skipped => {
            crate::metrics::probe(s.kind.as_str(), "skipped");
            counts.skipped += 1;
            drop(st);
            tracing::debug!(
                probe = s.kind.describe(),
                "heartbeat skipped: recent traffic keeps the host warm"
            );
            s.next = Instant::now() + s.interval;
        }
        Round::Sent(Ok(())) => {
            crate::metrics::probe(s.kind.as_str(), "success");
            counts.sent += 1;
            counts.succeeded += 1;
            let failures = st.consecutive_failures;
            st.consecutive_failures = 0;
            st.last_success = Some(SystemTime::now());
            drop(st);
            if failures > 0 {
                tracing::info!(probe = s.kind.describe(), failures, "heartbeat recovered");
            } else {
                tracing::debug!(probe = s.kind.describe(), "heartbeat ok");
            }
            s.after_result(true, cfg);
        }
        Round::Sent(Err(e)) => {
            crate::metrics::probe(s.kind.as_str(), "failure");
            counts.sent += 1;
            counts.failed += 1;
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
            st.last_failure = Some(SystemTime::now());
            st.last_error = Some(ProbeError {
                probe: s.kind,
                kind: e.kind(),
                message: e.to_string(),
            });
            let failures = st.consecutive_failures;
            drop(st);
            s.after_result(false, cfg);
            tracing::warn!(
                probe = s.kind.describe(),
                error = %e,
                hint = hint(s.kind, &e),
                consecutive_failures = failures,
                retry_in_s = s.next.saturating_duration_since(Instant::now()).as_secs_f64(),
                "heartbeat failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_floored() {
        let cfg =
            HeartbeatConfig::default().backoff(Duration::from_secs(1), Duration::from_secs(8));
        let mut s = Schedule {
            kind: ProbeKind::Identity,
            interval: Duration::from_secs(300),
            next: Instant::now(),
            failures: 0,
        };
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            s.after_result(false, &cfg);
            waits.push((s.next - before).as_secs());
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 8, 8]);
        s.after_result(true, &cfg);
        assert_eq!(s.failures, 0);
    }
}
