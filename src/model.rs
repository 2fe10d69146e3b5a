//! `Model`: a cheap handle on one model id of a factory, with optional inference defaults.
//!
//! Operations plug in from their own modules (`request`: `converse`, `stream`:
//! `converse_stream`, `invoke`, `embed`, `count_tokens`) through `impl Model` blocks, and run
//! through the call driver (`call`).

use crate::call::{Chain, Fallback, MAX_FALLBACKS, Target};
use crate::error::{Error, Result};
use crate::inputs::{Inputs, cache_point};
use crate::shared::Shared;
use aws_sdk_bedrockruntime::types::{ServiceTierType, SystemContentBlock};
use aws_smithy_types::Document;
use std::fmt;
use std::sync::Arc;

/// The data behind a handle: what its calls target, the defaults its requests start from, and
/// the models its calls may fall back to.
pub(crate) struct ModelInner {
    pub(crate) target: Target,
    /// The handle's defaults: the prototype request each of its requests starts from (a
    /// request's own values win; request metadata and additional model request fields merge,
    /// the request's keys winning).
    pub(crate) defaults: Inputs,
    pub(crate) fallbacks: Arc<[Fallback]>,
    /// Why the fallback list is unusable (reported on every call, naming `fallbacks`).
    pub(crate) fallbacks_invalid: Option<Error>,
}

/// A cheap, cloneable handle on one model id of a factory, with optional inference defaults.
///
/// Get one with [`LlmFactory::model`](crate::LlmFactory::model); every handle reuses the
/// factory's shared client and pool.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.inner.target.id)
            .field("defaults", &self.inner.defaults)
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Returns a handle on `id`. A valid id gets its own statistics (up to the tracked cap);
    /// an invalid one allocates nothing and reports `invalid` on every call.
    pub(crate) fn new(id: &str, shared: Arc<Shared>, invalid: Option<Error>) -> Self {
        Model {
            inner: Arc::new(ModelInner {
                target: Target::new(id, shared, invalid),
                defaults: Inputs::default(),
                fallbacks: Arc::new([]),
                fallbacks_invalid: None,
            }),
        }
    }

    pub(crate) fn inner(&self) -> &ModelInner {
        &self.inner
    }

    /// Returns the models a call may use: this one, then its fallbacks.
    pub(crate) fn chain(&self) -> Chain<'_> {
        Chain {
            first: &self.inner.target,
            fallbacks: &self.inner.fallbacks,
            invalid: self.inner.fallbacks_invalid.as_ref(),
        }
    }

    /// Returns the fallback model ids, in order.
    pub fn fallbacks(&self) -> Vec<&str> {
        self.inner
            .fallbacks
            .iter()
            .map(|f| f.target.id.as_str())
            .collect()
    }

    /// Returns a handle whose Converse and ConverseStream calls move to the next of `ids`, in
    /// order, when they fail with an error that [falls back](Error::falls_back) after the SDK's
    /// retries and the region failover: throttling (the service's, a model not ready, or this
    /// crate's client-side limit), the service unavailable, the model failing, or the input
    /// too long for the model's context window. Invalid input, validation and access errors,
    /// timeouts and network errors never move.
    ///
    /// A call sends to at most 4 model and region pairs in all (see the README's "Fallbacks
    /// and limits"). The reply says which model answered ([`CallMetadata::model_id`](crate::CallMetadata::model_id)).
    /// A stream moves only before its first event. `invoke`, `embed` and `count_tokens` do not
    /// move: see [`Model::with_compatible_fallbacks`]. The list replaces any earlier one; up
    /// to 3 ids, each a valid model id, none repeated nor this handle's own, no prompt ARN: a
    /// list that breaks these rules makes every call fail with an error naming `fallbacks`.
    /// The returned handle is not cached: build it once and keep it (a clone is cheap).
    pub fn with_fallbacks<I, S>(&self, ids: I) -> Model
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.with_chain(ids, false)
    }

    /// Like [`Model::with_fallbacks`], with `ids` declared compatible with this model: they take
    /// the same native request body and give embeddings in the same vector space (the same model
    /// through another inference profile, say). Then `invoke`, `invoke_stream` and `embed` calls
    /// move to them too.
    pub fn with_compatible_fallbacks<I, S>(&self, ids: I) -> Model
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.with_chain(ids, true)
    }

    fn with_chain<I, S>(&self, ids: I, compatible: bool) -> Model
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let t = &self.inner.target;
        let mut fallbacks: Vec<Fallback> = Vec::new();
        let mut invalid = None;
        for id in ids {
            let id = id.as_ref();
            let problem = if fallbacks.len() == MAX_FALLBACKS {
                Some(format!("at most {MAX_FALLBACKS} fallback models"))
            } else if let Err(e) = validate_model_id(id) {
                Some(format!("{id:?}: {}", e.message()))
            } else if is_prompt_arn(id) {
                Some(format!(
                    "{id:?} is a prompt ARN, which cannot take another model's request"
                ))
            } else if id == t.id || fallbacks.iter().any(|f| f.target.id == id) {
                Some(format!("{id:?} is listed twice"))
            } else {
                None
            };
            if let Some(p) = problem {
                invalid.get_or_insert_with(|| Error::invalid("fallbacks", p));
                continue;
            }
            fallbacks.push(Fallback {
                target: Target::new(id, t.shared.clone(), None),
                compatible,
            });
        }
        Model {
            inner: Arc::new(ModelInner {
                target: t.share(),
                defaults: self.inner.defaults.clone(),
                fallbacks: fallbacks.into(),
                fallbacks_invalid: invalid,
            }),
        }
    }

    /// Returns the model id.
    pub fn id(&self) -> &str {
        &self.inner.target.id
    }

    /// Returns true when `other` is the same handle (the same cached allocation).
    pub fn same_handle(&self, other: &Model) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn with(&self, f: impl FnOnce(&mut Inputs)) -> Model {
        let mut defaults = self.inner.defaults.clone();
        f(&mut defaults);
        Model {
            inner: Arc::new(ModelInner {
                target: self.inner.target.share(),
                defaults,
                fallbacks: self.inner.fallbacks.clone(),
                fallbacks_invalid: self
                    .inner
                    .fallbacks_invalid
                    .as_ref()
                    .map(Error::shallow_clone),
            }),
        }
    }

    /// Returns a handle whose calls default to this temperature (checked when sent: `0..=1`).
    pub fn with_temperature(&self, temperature: f32) -> Model {
        self.with(|d| d.temperature = Some(temperature))
    }

    /// Returns a handle whose calls default to this output token limit (checked when sent: >= 1).
    pub fn with_max_tokens(&self, max_tokens: i32) -> Model {
        self.with(|d| d.max_tokens = Some(max_tokens))
    }

    /// Returns a handle whose calls default to this nucleus sampling value (`0..=1`).
    pub fn with_top_p(&self, top_p: f32) -> Model {
        self.with(|d| d.top_p = Some(top_p))
    }

    /// Returns a handle whose calls default to this system prompt.
    pub fn with_system(&self, system: impl Into<String>) -> Model {
        let text = system.into();
        self.with(|d| d.system = vec![SystemContentBlock::Text(text)])
    }

    /// Returns a handle whose calls default to this system prompt followed by a cache point,
    /// so the service caches it (prompt caching) and later calls read it from the cache.
    pub fn with_cached_system(&self, system: impl Into<String>) -> Model {
        let text = system.into();
        self.with(|d| {
            d.system = vec![
                SystemContentBlock::Text(text),
                SystemContentBlock::CachePoint(cache_point(None)),
            ]
        })
    }

    /// Returns a handle whose calls default to extended thinking with this token budget (see
    /// [`ConverseRequest::thinking`](crate::ConverseRequest::thinking)).
    pub fn with_thinking(&self, budget_tokens: i32) -> Model {
        self.with(|d| d.thinking = Some(budget_tokens))
    }

    /// Returns a handle whose calls default to this `top_k` (see
    /// [`ConverseRequest::top_k`](crate::ConverseRequest::top_k)).
    pub fn with_top_k(&self, top_k: i32) -> Model {
        self.with(|d| d.top_k = Some(top_k))
    }

    /// Returns a handle whose calls default to these additional model request fields (a JSON
    /// object; a request's own fields are merged over them).
    pub fn with_additional_model_request_fields(&self, fields: Document) -> Model {
        self.with(|d| d.additional_fields = Some(fields))
    }

    /// Returns a handle whose calls go through this guardrail (identifier, version).
    pub fn with_guardrail(&self, id: impl Into<String>, version: impl Into<String>) -> Model {
        let g = (id.into(), version.into());
        self.with(|d| d.guardrail = Some(g))
    }

    /// Returns a handle whose calls ask for the latency-optimized version of the model.
    pub fn with_latency_optimized(&self) -> Model {
        self.with(|d| d.latency_optimized = true)
    }

    /// Returns a handle whose calls ask for this service tier.
    pub fn with_service_tier(&self, tier: ServiceTierType) -> Model {
        self.with(|d| d.service_tier = Some(tier))
    }

    /// Returns a handle whose calls carry this request metadata entry (for cost allocation and
    /// invocation logs); a request's own value for the key wins.
    pub fn with_request_metadata(&self, key: impl Into<String>, value: impl Into<String>) -> Model {
        let kv = (key.into(), value.into());
        self.with(|d| {
            d.request_metadata.retain(|(k, _)| *k != kv.0);
            d.request_metadata.push(kv)
        })
    }
}

/// Returns true when `id` names a prompt from Prompt management (`arn:...:prompt/...`).
pub(crate) fn is_prompt_arn(id: &str) -> bool {
    id.starts_with("arn:")
        && id
            .split(':')
            .nth(5)
            .is_some_and(|resource| resource.starts_with("prompt/"))
}

/// Longest model id the service accepts.
const MAX_MODEL_ID: usize = 2048;

/// Checks a model id's syntax as the service does (length, no whitespace or control bytes).
pub(crate) fn validate_model_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("model_id", "the model id is empty"));
    }
    if id.len() > MAX_MODEL_ID {
        return Err(Error::invalid(
            "model_id",
            format!("{} bytes, at most {MAX_MODEL_ID}", id.len()),
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "model_id",
            format!("{id:?} contains whitespace or control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_checked() {
        assert!(validate_model_id("anthropic.claude-3-haiku-20240307-v1:0").is_ok());
        assert!(validate_model_id("arn:aws:bedrock:us-east-1:1:inference-profile/x").is_ok());
        for bad in ["", "a b", "tab\there", &"x".repeat(3000)] {
            let e = validate_model_id(bad).unwrap_err();
            assert_eq!(e.field(), Some("model_id"), "{bad:?}");
        }
    }
}
