//! [`plain_call`]: a call that names no model (ApplyGuardrail, reading async invocations),
//! sent to one region with the SDK's retries, under the same span as model calls, counted in
//! the factory's and the region's statistics.

use crate::error::{Error, Result, from_sdk};
use crate::op::Op;
use crate::region::RegionClient;
use crate::shared::Shared;
use crate::stats::{CallGuard, Outcome};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// Sends `call` (an SDK call on `region`'s client) for `op`, naming `subject` (an invocation
/// ARN, or the region) as its span's `gen_ai.request.model`; maps the SDK's error.
///
/// # Errors
/// The SDK's error mapped to an [`ErrorKind`](crate::ErrorKind).
pub(crate) async fn plain_call<O, E, Fut>(
    shared: &Shared,
    op: Op,
    subject: &str,
    region: &RegionClient,
    call: Fut,
) -> Result<O>
where
    Fut: Future<Output = std::result::Result<O, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let span = op.span(subject, shared.config.span_level);
    super::span::record_region(&span, region);
    let started = Instant::now();
    let guard = CallGuard::start(
        [Some(shared.overall.clone()), Some(region.counters.clone())],
        region.activity.clone(),
        None,
    );
    let result = call.instrument(span.clone()).await;
    span.record("latency_ms", started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Ok(o) => {
            span.record("outcome", "success");
            guard.finish(Outcome::Success);
            Ok(o)
        }
        Err(e) => {
            let e: Error = from_sdk(op.name(), e);
            guard.finish(Outcome::Failure(e.kind()));
            span.record("outcome", e.kind().as_str());
            super::span::record_error(&span, e.code().unwrap_or(e.kind().as_str()));
            Err(e)
        }
    }
}
