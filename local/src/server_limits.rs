//! The local server's methods for quotas and context windows (the state is `limits.rs`).

use super::quota::{Quota, QuotaStats};
use super::server::{LocalServer, LocalServerBuilder};

impl LocalServerBuilder {
    /// Returns the builder enforcing this [`Quota`] on one model id (replacing its quota).
    /// Default is no quota.
    ///
    /// It applies to Converse, ConverseStream, InvokeModel (embeddings included) and
    /// InvokeModelWithResponseStream; CountTokens is free. A request past it gets
    /// `429 ThrottlingException` with Bedrock's message (`Too many requests, please wait before
    /// trying again.` or `Too many tokens, ...`) and is not counted.
    pub fn quota(self, model_id: impl Into<String>, quota: Quota) -> Self {
        self.setup.limits.set_quota(model_id, Some(quota));
        self
    }

    /// Returns the builder giving one model id a context window of `tokens`. Default is none.
    ///
    /// A request whose input tokens plus max tokens exceed it gets `400 ValidationException`
    /// with Bedrock's message (see the module docs), checked before the quota.
    pub fn context_window(self, model_id: impl Into<String>, tokens: u64) -> Self {
        self.setup.limits.set_context_window(model_id, Some(tokens));
        self
    }
}

impl LocalServer {
    /// Sets (or with `None` removes) the [`Quota`] of one model id, while the server runs; the
    /// counting starts afresh (see [`LocalServerBuilder::quota`]).
    pub fn set_quota(&self, model_id: impl Into<String>, quota: Option<Quota>) {
        self.shared.limits.set_quota(model_id, quota);
    }

    /// Returns what the quota of one model id counted since it was set, or `None` if the model
    /// has no quota.
    pub fn quota_stats(&self, model_id: &str) -> Option<QuotaStats> {
        self.shared.limits.quota_stats(model_id)
    }

    /// Sets (or with `None` removes) the context window of one model id, while the server runs
    /// (see [`LocalServerBuilder::context_window`]).
    pub fn set_context_window(&self, model_id: impl Into<String>, tokens: Option<u64>) {
        self.shared.limits.set_context_window(model_id, tokens);
    }
}
