//! The operations that name no model: the async invocations' (`jobs.rs`), ApplyGuardrail and
//! InvokeGuardrailChecks (`guardrail.rs`), answered as JSON.

use serde_json::Value;

/// Answers the operations that name no model (the async invocations', ApplyGuardrail and
/// InvokeGuardrailChecks):
/// the answer's body or a validation message; `None` for the others.
pub(crate) fn without_model(
    shared: &crate::state::Shared,
    parts: &http::request::Parts,
    rec: &crate::record::RecordedRequest,
) -> Option<Result<Value, String>> {
    use crate::record::Operation;
    let jobs = &shared.jobs;
    let path_label = rec.model_id.as_deref().unwrap_or("");
    match rec.operation {
        Operation::ListAsyncInvokes => Some(jobs.list(parts.uri.query().unwrap_or(""))),
        Operation::StartAsyncInvoke => Some(jobs.start(&rec.body, &shared.region)),
        Operation::GetAsyncInvoke => Some(jobs.get(path_label)),
        Operation::ApplyGuardrail => {
            let (id, version) = path_label.rsplit_once('/').unwrap_or((path_label, ""));
            Some(crate::guardrail::apply(
                &shared.guardrails(),
                id,
                version,
                &rec.body,
            ))
        }
        Operation::InvokeGuardrailChecks => {
            Some(crate::guardrail::checks(&shared.guardrails(), &rec.body))
        }
        _ => None,
    }
}
