//! The per-model limits checked after validation and before the model answers: the context
//! window, then the quota (counted in `quota.rs`). The server's methods that set them are in
//! `server_limits.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::fault::ServiceError;
use super::lock::lock;
use super::quota::{Quota, QuotaLog, QuotaStats};
use super::wire::MODEL_ERRORS;

/// Holds every model's quota and context window.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The id of the next admitted request, unique across quotas (a replaced quota's tickets
    /// never correct the new one's entries).
    next_id: u64,
    quotas: HashMap<String, QuotaLog>,
    context_windows: HashMap<String, u64>,
}

/// Names an admitted request, so that its tokens are corrected once its answer is known.
#[derive(Debug)]
pub(crate) struct Ticket {
    model_id: String,
    id: u64,
}

impl Limits {
    /// Sets (or with `None` removes) a model's quota; its counting starts afresh.
    pub(crate) fn set_quota(&self, model_id: impl Into<String>, quota: Option<Quota>) {
        let mut inner = lock(&self.inner);
        match quota {
            Some(q) => inner.quotas.insert(model_id.into(), QuotaLog::new(q)),
            None => inner.quotas.remove(&model_id.into()),
        };
    }

    /// Returns the counts of a model's quota, if it has one.
    pub(crate) fn quota_stats(&self, model_id: &str) -> Option<QuotaStats> {
        lock(&self.inner).quotas.get(model_id).map(QuotaLog::stats)
    }

    /// Sets (or with `None` removes) a model's context window.
    pub(crate) fn set_context_window(&self, model_id: impl Into<String>, tokens: Option<u64>) {
        let mut inner = lock(&self.inner);
        match tokens {
            Some(n) => inner.context_windows.insert(model_id.into(), n),
            None => inner.context_windows.remove(&model_id.into()),
        };
    }

    /// Checks a request of `input` tokens asking for up to `max_tokens` against its model's
    /// context window, then admits it under its quota; returns its ticket (`None` without a
    /// quota) or the error to answer.
    ///
    /// One lock covers the check and the admission, so two requests never take the last slot.
    pub(crate) fn admit(
        &self,
        model_id: &str,
        input: u64,
        max_tokens: u64,
    ) -> Result<Option<Ticket>, ServiceError> {
        let mut inner = lock(&self.inner);
        if let Some(&window) = inner.context_windows.get(model_id)
            && input.saturating_add(max_tokens) > window
        {
            return Err(ServiceError::Validation(too_long(
                model_id, input, max_tokens, window,
            )));
        }
        let id = inner.next_id;
        let Some(log) = inner.quotas.get_mut(model_id) else {
            return Ok(None);
        };
        log.admit(id, Instant::now(), input.saturating_add(max_tokens))
            .map_err(|r| ServiceError::Throttling(r.message().to_owned()))?;
        inner.next_id += 1;
        Ok(Some(Ticket {
            model_id: model_id.to_owned(),
            id,
        }))
    }

    /// Settles an admitted request's tokens at what its answer used, as Bedrock does: its
    /// input (cache reads and writes not included) plus its cache writes plus its output times
    /// the model's burndown rate (5 for recent Anthropic models; see
    /// [`burndown_rate`]).
    pub(crate) fn settle(&self, ticket: Option<Ticket>, input: u64, cache_write: u64, output: u64) {
        let Some(t) = ticket else { return };
        let burndown = super::quota::burndown_rate(&t.model_id);
        let tokens = input
            .saturating_add(cache_write)
            .saturating_add(output.saturating_mul(burndown));
        if let Some(log) = lock(&self.inner).quotas.get_mut(&t.model_id) {
            log.settle(t.id, tokens);
        }
    }
}

/// Returns the message Bedrock sends when a prompt does not fit the model's context window:
/// Anthropic's words (wrapped as Bedrock wraps them) for Anthropic models (the prompt alone too
/// long, or the prompt and `max_tokens` together), Bedrock's own else.
fn too_long(model_id: &str, input: u64, max_tokens: u64, window: u64) -> String {
    if model_id.contains("anthropic") && input > window {
        format!("{MODEL_ERRORS}prompt is too long: {input} tokens > {window} maximum")
    } else if model_id.contains("anthropic") {
        format!(
            "{MODEL_ERRORS}input length and `max_tokens` exceed context limit: {input} + {max_tokens} > {window}, decrease input length or `max_tokens` and try again"
        )
    } else {
        "Input is too long for requested model.".to_owned()
    }
}

/// Returns a Converse request's `inferenceConfig.maxTokens`, or 0.
pub(crate) fn converse_max_tokens(body: &Value) -> u64 {
    body.pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Returns the max tokens of an InvokeModel body in its provider's native field (Anthropic,
/// Mistral, Cohere `max_tokens`; AI21 `maxTokens`; Meta `max_gen_len`; `max_new_tokens`, also
/// under Nova's `inferenceConfig`; Titan `textGenerationConfig.maxTokenCount`), or 0.
pub(crate) fn invoke_max_tokens(body: &Value) -> u64 {
    [
        "/max_tokens",
        "/maxTokens",
        "/max_gen_len",
        "/max_new_tokens",
        "/inferenceConfig/max_new_tokens",
        "/textGenerationConfig/maxTokenCount",
    ]
    .iter()
    .find_map(|p| body.pointer(p).and_then(Value::as_u64))
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn max_tokens_come_from_the_native_fields() {
        assert_eq!(
            converse_max_tokens(&json!({"inferenceConfig": {"maxTokens": 9}})),
            9
        );
        assert_eq!(converse_max_tokens(&json!({})), 0);
        for (body, n) in [
            (json!({"max_tokens": 5, "messages": []}), 5),
            (json!({"maxTokens": 6}), 6),
            (json!({"max_gen_len": 7}), 7),
            (json!({"inferenceConfig": {"max_new_tokens": 8}}), 8),
            (json!({"textGenerationConfig": {"maxTokenCount": 9}}), 9),
            (json!({"inputText": "hi"}), 0),
        ] {
            assert_eq!(invoke_max_tokens(&body), n, "{body}");
        }
    }

    #[test]
    fn the_context_window_comes_first_and_is_not_admitted() {
        let limits = Limits::default();
        let model = "anthropic.claude-x";
        limits.set_context_window(model, Some(10));
        limits.set_quota(model, Some(Quota::new(Duration::from_secs(60)).requests(1)));
        let err = limits.admit(model, 4, 7).unwrap_err();
        assert_eq!(err.name(), "ValidationException");
        assert_eq!(
            err.message(),
            "The model returned the following errors: input length and `max_tokens` exceed context limit: 4 + 7 > 10, decrease input length or `max_tokens` and try again"
        );
        let err = limits.admit(model, 11, 0).unwrap_err();
        assert!(
            err.message()
                .ends_with("prompt is too long: 11 tokens > 10 maximum")
        );
        assert!(limits.admit(model, 4, 6).unwrap().is_some());
        let err = limits.admit(model, 1, 0).unwrap_err();
        assert_eq!((err.status(), err.name()), (429, "ThrottlingException"));
        let s = limits.quota_stats(model).unwrap();
        assert_eq!((s.admitted, s.throttled), (1, 1));
        let err = limits.admit("amazon.nova-lite-v1:0", 1, 0);
        assert!(matches!(err, Ok(None)));
        limits.set_context_window("amazon.nova-lite-v1:0", Some(1));
        let err = limits.admit("amazon.nova-lite-v1:0", 1, 1).unwrap_err();
        assert_eq!(err.message(), "Input is too long for requested model.");
    }

    #[test]
    fn a_replaced_quota_ignores_old_tickets() {
        let limits = Limits::default();
        let q = Quota::new(Duration::from_secs(60)).tokens(10);
        limits.set_quota("m", Some(q));
        let old = limits.admit("m", 5, 5).unwrap();
        limits.set_quota("m", Some(q));
        let new = limits.admit("m", 5, 5).unwrap();
        limits.settle(old, 0, 0, 0);
        assert_eq!(limits.quota_stats("m").unwrap().max_tokens_in_window, 10);
        limits.settle(new, 2, 0, 0);
        assert_eq!(limits.quota_stats("m").unwrap().max_tokens_in_window, 2);
        limits.set_quota("m", None);
        assert_eq!(limits.quota_stats("m"), None);
    }
}
