//! `Model`: a cheap handle on one model id of a factory, with optional inference defaults.
//!
//! Operations plug in from their own files (`request.rs`: `converse`, `stream.rs`:
//! `converse_stream`) through `impl Model` blocks, and run through the call driver.

use crate::call::Target;
use crate::error::{Error, Result};
use crate::shared::Shared;
use crate::stats::OTHER_MODELS;
use std::fmt;
use std::sync::Arc;

/// Inference defaults carried by a handle; a request's own values win.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct InferenceDefaults {
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<i32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) system: Option<String>,
}

/// The data behind a handle: what its calls target, and the defaults its requests start from.
pub(crate) struct ModelInner {
    pub(crate) target: Target,
    pub(crate) defaults: InferenceDefaults,
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
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Returns a handle on `id`. A valid id gets its own statistics (up to the tracked cap);
    /// an invalid one allocates nothing and reports `invalid` on every call.
    pub(crate) fn new(id: &str, shared: Arc<Shared>, invalid: Option<Error>) -> Self {
        let (counters, label) = match invalid {
            None => {
                let (c, l) = shared.models.entry(id);
                (Some(c), l)
            }
            // Counted overall only; in metric labels with the untracked ids.
            Some(_) => (None, Arc::from(OTHER_MODELS)),
        };
        Model {
            inner: Arc::new(ModelInner {
                target: Target {
                    id: id.to_owned(),
                    label,
                    shared,
                    counters,
                    invalid,
                },
                defaults: InferenceDefaults::default(),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &ModelInner {
        &self.inner
    }

    /// Returns the model id.
    pub fn id(&self) -> &str {
        &self.inner.target.id
    }

    /// Returns true when `other` is the same handle (the same cached allocation).
    pub fn same_handle(&self, other: &Model) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn with(&self, f: impl FnOnce(&mut InferenceDefaults)) -> Model {
        let mut defaults = self.inner.defaults.clone();
        f(&mut defaults);
        let t = &self.inner.target;
        Model {
            inner: Arc::new(ModelInner {
                target: Target {
                    id: t.id.clone(),
                    label: t.label.clone(),
                    shared: t.shared.clone(),
                    counters: t.counters.clone(),
                    invalid: t.invalid.as_ref().map(Error::shallow_clone),
                },
                defaults,
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
        self.with(|d| d.system = Some(system.into()))
    }
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
