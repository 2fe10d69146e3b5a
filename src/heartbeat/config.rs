//! `HeartbeatConfig`: the heartbeat's settings, their defaults and their validation.

use crate::error::{Error, Result};
use std::time::Duration;

/// Shortest interval or timeout the heartbeat accepts.
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval, timeout or backoff accepted: a day.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Settings of the heartbeat task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    /// Runs the STS GetCallerIdentity probe. Default is true.
    pub identity_probe: bool,
    /// Interval of the identity probe. Default is 300 s.
    pub identity_interval: Duration,
    /// Runs the Bedrock keep-warm probe (`ListAsyncInvokes`) on each region's host. Default is
    /// false.
    pub keep_warm: bool,
    /// Interval of the keep-warm probe; must be shorter than the pool idle timeout.
    /// Default is 40 s.
    pub keep_warm_interval: Duration,
    /// Concurrent keep-warm probes per region and round. Over HTTP/1.1 each probe keeps its own
    /// connection warm. Over HTTP/2 the probes are multiplexed on the one connection that carries
    /// every call, so a value above 1 keeps no more connections, only sends more probes (and
    /// on a cold pool the first round may race that many handshakes, of which one is kept).
    /// Default is 1.
    pub keep_warm_connections: usize,
    /// Skips a keep-warm probe when model calls reached that region within the interval; the
    /// probe then runs one interval after that traffic. Default is true.
    pub activity_aware: bool,
    /// Time allowed for one probe. Default is 10 s.
    pub probe_timeout: Duration,
    /// Shortest wait after a failed probe; waits double with each consecutive failure.
    /// Default is 1 s.
    pub backoff_floor: Duration,
    /// Longest wait after failed probes. Default is 600 s.
    pub backoff_max: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            identity_probe: true,
            identity_interval: Duration::from_secs(300),
            keep_warm: false,
            keep_warm_interval: Duration::from_secs(40),
            keep_warm_connections: 1,
            activity_aware: true,
            probe_timeout: Duration::from_secs(10),
            backoff_floor: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
        }
    }
}

impl HeartbeatConfig {
    /// Turns the identity probe on or off.
    pub fn identity_probe(mut self, on: bool) -> Self {
        self.identity_probe = on;
        self
    }

    /// Sets the identity probe interval.
    pub fn identity_interval(mut self, interval: Duration) -> Self {
        self.identity_interval = interval;
        self
    }

    /// Turns the keep-warm probe on or off.
    pub fn keep_warm(mut self, on: bool) -> Self {
        self.keep_warm = on;
        self
    }

    /// Sets the keep-warm interval.
    pub fn keep_warm_interval(mut self, interval: Duration) -> Self {
        self.keep_warm_interval = interval;
        self
    }

    /// Sets how many connections per region the keep-warm probe keeps warm over HTTP/1.1;
    /// over HTTP/2 it keeps the one connection, whatever `n`.
    pub fn keep_warm_connections(mut self, n: usize) -> Self {
        self.keep_warm_connections = n;
        self
    }

    /// Turns activity-aware skipping on or off.
    pub fn activity_aware(mut self, on: bool) -> Self {
        self.activity_aware = on;
        self
    }

    /// Sets the time allowed for one probe's answer (its read timeout; a probe makes one
    /// attempt). A probe that times out retires its connection, so over HTTP/2 a dead
    /// connection is found by the probe instead of by the next call.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Sets the backoff bounds after failed probes.
    pub fn backoff(mut self, floor: Duration, max: Duration) -> Self {
        self.backoff_floor = floor;
        self.backoff_max = max;
        self
    }

    pub(super) fn validate(&self, pool_idle_timeout: Option<Duration>) -> Result<()> {
        for (field, d) in [
            ("identity_interval", self.identity_interval),
            ("keep_warm_interval", self.keep_warm_interval),
            ("probe_timeout", self.probe_timeout),
            ("backoff_floor", self.backoff_floor),
            ("backoff_max", self.backoff_max),
        ] {
            if d < MIN_INTERVAL {
                return Err(Error::invalid(
                    field,
                    format!("{d:?} is shorter than {MIN_INTERVAL:?}"),
                ));
            }
            // Beyond this, `Instant + d` could overflow and panic.
            if d > MAX_INTERVAL {
                return Err(Error::invalid(
                    field,
                    format!("{d:?} is longer than {MAX_INTERVAL:?} (a day)"),
                ));
            }
        }
        if self.backoff_max < self.backoff_floor {
            return Err(Error::invalid(
                "backoff_max",
                format!(
                    "{:?} is shorter than backoff_floor ({:?})",
                    self.backoff_max, self.backoff_floor
                ),
            ));
        }
        if self.keep_warm {
            if self.keep_warm_connections == 0 || self.keep_warm_connections > 1000 {
                return Err(Error::invalid(
                    "keep_warm_connections",
                    format!("{} is outside 1..=1000", self.keep_warm_connections),
                ));
            }
            if let Some(idle) = pool_idle_timeout
                && self.keep_warm_interval >= idle
            {
                return Err(Error::invalid(
                    "keep_warm_interval",
                    format!(
                        "keep_warm_interval ({:?}) must be shorter than pool_idle_timeout ({idle:?}), or the pool evicts the connection it keeps warm",
                        self.keep_warm_interval
                    ),
                ));
            }
        }
        if !self.identity_probe && !self.keep_warm {
            return Err(Error::invalid(
                "heartbeat",
                "both the identity probe and keep-warm are off: nothing to do",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_warm_interval_must_be_below_idle_timeout() {
        let cfg = HeartbeatConfig::default()
            .keep_warm(true)
            .keep_warm_interval(Duration::from_secs(60));
        let e = cfg.validate(Some(Duration::from_secs(50))).unwrap_err();
        assert_eq!(e.field(), Some("keep_warm_interval"));
        assert!(
            e.to_string().contains("60s") && e.to_string().contains("50s"),
            "{e}"
        );
        assert!(cfg.validate(None).is_ok());
        assert!(
            HeartbeatConfig::default()
                .validate(Some(Duration::from_secs(50)))
                .is_ok()
        );
    }
}
