//! The probes: STS GetCallerIdentity, and `ListAsyncInvokes` on a Bedrock host (one result,
//! one attempt). The heartbeat sends both; a silent bidirectional session sends the second to
//! learn whether its connection is alive.

use crate::error::{Error, Result, from_sdk};
use std::time::Duration;

/// Returns the per-call settings of a probe: one attempt, and the probe timeout as the read
/// timeout, so that a probe that gets no answer fails in the connector, which retires its
/// connection (over h2, the one connection every call would use next). The heartbeat's probes
/// and a silent session's liveness probe use it.
fn probe_settings(
    timeout: Duration,
) -> (
    aws_smithy_types::timeout::TimeoutConfig,
    aws_smithy_types::retry::RetryConfig,
) {
    (
        aws_smithy_types::timeout::TimeoutConfig::builder()
            .read_timeout(timeout)
            .build(),
        aws_smithy_types::retry::RetryConfig::standard()
            .with_max_attempts(1)
            // As the factory's clients: an error answer keeps its (healthy) connection.
            .with_reconnect_mode(aws_smithy_types::retry::ReconnectMode::ReuseAllConnections),
    )
}

/// Returns the probe timeout error, for a probe the safety net below had to cut.
fn probe_timed_out(op: &str, timeout: Duration) -> Error {
    Error::timeout(
        crate::error::TimeoutKind::Operation,
        format!("{op} failed: no answer within the probe timeout of {timeout:?}"),
    )
}

/// Longest a probe may take in all: the connect timeout plus the read timeout fit in it.
fn probe_deadline(timeout: Duration) -> Duration {
    timeout * 2
}

/// Sends the keep-warm probe on `client`: Ok when the host answered with a list.
///
/// # Errors
/// The SDK's error mapped (an error answer keeps its service code), or the probe timeout.
pub(crate) async fn keep_warm_probe(
    client: &aws_sdk_bedrockruntime::Client,
    timeout: Duration,
) -> Result<()> {
    let (t, r) = probe_settings(timeout);
    let call = client
        .list_async_invokes()
        .max_results(1)
        .customize()
        .config_override(
            aws_sdk_bedrockruntime::config::Builder::default()
                .timeout_config(t)
                .retry_config(r),
        )
        .send();
    match tokio::time::timeout(probe_deadline(timeout), call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(from_sdk("list_async_invokes", e)),
        Err(_) => Err(probe_timed_out("list_async_invokes", timeout)),
    }
}

/// Sends the identity probe (STS GetCallerIdentity) on `client`.
///
/// # Errors
/// The SDK's error mapped, or the probe timeout.
pub(crate) async fn identity_probe(client: &aws_sdk_sts::Client, timeout: Duration) -> Result<()> {
    let (t, r) = probe_settings(timeout);
    let call = client
        .get_caller_identity()
        .customize()
        .config_override(
            aws_sdk_sts::config::Builder::default()
                .timeout_config(t)
                .retry_config(r),
        )
        .send();
    match tokio::time::timeout(probe_deadline(timeout), call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(from_sdk("get_caller_identity", e)),
        Err(_) => Err(probe_timed_out("get_caller_identity", timeout)),
    }
}
