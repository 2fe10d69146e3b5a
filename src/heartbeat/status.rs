//! What the heartbeat reports: probe kinds, counts, the last error, the status snapshot.

use crate::error::ErrorKind;
use std::sync::Mutex;
use std::time::SystemTime;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeKind {
    /// STS GetCallerIdentity.
    Identity,
    /// Bedrock ListAsyncInvokes on a region's host.
    KeepWarm,
}

impl ProbeKind {
    /// Returns a short lowercase name, as used in logs and statistics: `identity` or
    /// `keep_warm`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Identity => "identity",
            ProbeKind::KeepWarm => "keep_warm",
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            ProbeKind::Identity => "identity probe (STS GetCallerIdentity)",
            ProbeKind::KeepWarm => "keep-warm probe (Bedrock ListAsyncInvokes, maxResults=1)",
        }
    }
}

// The kind serialises as its `as_str` name, as the statistics' enums do (`stats::json`).
#[cfg(feature = "serde")]
mod json {
    impl serde::Serialize for super::ProbeKind {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of one probe kind.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeStats {
    /// Probes sent.
    pub sent: u64,
    /// Probes that succeeded.
    pub succeeded: u64,
    /// Probes that failed.
    pub failed: u64,
    /// Probes skipped because real traffic kept the host warm.
    pub skipped: u64,
}

/// The last probe error: its kind and message (never a secret).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeError {
    /// Which probe failed.
    pub probe: ProbeKind,
    /// The error kind.
    pub kind: ErrorKind,
    /// The error message.
    pub message: String,
}

/// A snapshot of the heartbeat's state.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatStats {
    /// Time of the last successful probe.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "last_success_unix_ms",
            serialize_with = "crate::stats::json::unix_ms"
        )
    )]
    pub last_success: Option<SystemTime>,
    /// Time of the last failed probe.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "last_failure_unix_ms",
            serialize_with = "crate::stats::json::unix_ms"
        )
    )]
    pub last_failure: Option<SystemTime>,
    /// Failed probes since the last success.
    pub consecutive_failures: u32,
    /// The last error.
    pub last_error: Option<ProbeError>,
    /// Identity probe counts.
    pub identity: ProbeStats,
    /// Keep-warm probe counts (all regions).
    pub keep_warm: ProbeStats,
    /// False once the task has stopped.
    pub running: bool,
}

/// Returns the guard of a mutex, ignoring poisoning (the status stays consistent).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
