//! The two probes: STS GetCallerIdentity, and `ListAsyncInvokes` on a Bedrock host.

use crate::error::{Error, Result, from_sdk};
use crate::transport::probe_settings;
use std::time::Duration;

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

pub(super) async fn keep_warm_probe(
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

pub(super) async fn identity_probe(client: &aws_sdk_sts::Client, timeout: Duration) -> Result<()> {
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
