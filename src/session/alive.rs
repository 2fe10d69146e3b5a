//! Telling a silent session from a dead connection.
//!
//! A voice session may say nothing for minutes, and the factory's pool sends no HTTP/2 PING.
//! So silence alone never ends a session: after a stall timeout without an event, the session
//! sends a probe (ListAsyncInvokes, one result, one attempt) on the client of the region it
//! runs in. Over HTTP/2 the pool puts the probe on the host's one connection, the session's
//! own: an answer there (even an error answer) proves the connection alive; no answer within
//! the probe timeout proves it dead (the probe's failure retires it, as the heartbeat's does).
//! When the probe went over another connection (the session's was retired after some other
//! call failed on it), its answer proves nothing of the session's: the session goes on and
//! checks again after the next stall timeout, and counts the check as unverified.

use crate::error::{Error, TimeoutKind};
use crate::probe::keep_warm_probe;
use crate::shared::Shared;
use crate::transport::{CALL, CallScope, RetryRule};
use aws_smithy_runtime_api::client::connection::ConnectionId;
use std::sync::Arc;
use std::time::Duration;

/// What a liveness probe found.
pub(super) enum Liveness {
    /// The session's connection answered.
    Alive,
    /// Another connection answered: nothing is known of the session's.
    Unverified,
    /// No answer: the connection is dead.
    Dead(Error),
}

/// Probes the connection `session` of a session in `region` (see the module docs).
pub(super) async fn probe(
    shared: Arc<Shared>,
    region: String,
    session: Option<ConnectionId>,
    timeout: Duration,
) -> Liveness {
    let Some(r) = shared.regions.iter().find(|r| r.region == region) else {
        return Liveness::Unverified;
    };
    let scope = Arc::new(CallScope::new(RetryRule::default()));
    let answered = match CALL
        .scope(scope.clone(), keep_warm_probe(&r.client, timeout))
        .await
    {
        Ok(()) => true,
        // An error answer (no permission to list jobs, say) came over the connection.
        Err(e) => e.code().is_some(),
    };
    let probed = shared
        .transport
        .last_connection(&scope)
        .and_then(|c| c.id());
    match (answered, probed.is_some() && probed == session) {
        (true, true) => Liveness::Alive,
        (true, false) => Liveness::Unverified,
        (false, _) => Liveness::Dead(Error::timeout(
            TimeoutKind::StreamStall,
            format!(
                "invoke_model_with_bidirectional_stream failed: no event, and the connection \
                 did not answer a liveness probe within {timeout:?}"
            ),
        )),
    }
}
