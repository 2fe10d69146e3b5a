//! What every reply says about the call that answered it: one [`CallInfo`], read through the
//! [`CallMetadata`] trait that each reply type implements.

use std::time::Duration;

/// Where and how a call was answered: the model and region that answered, the attempts the
/// SDK made there, and the latency the client measured.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallInfo {
    /// The model that answered: the handle's own, a fallback's when the call moved (see
    /// [`Model::with_fallbacks`](crate::Model::with_fallbacks)), or the one a prompt router
    /// chose (its trace's `invokedModelId`).
    pub model_id: String,
    /// The prompt router the call named, when the answer says which model the router chose
    /// (Converse and ConverseStream; `model_id` is then that model).
    pub router: Option<String>,
    /// The region that answered.
    pub region: String,
    /// The attempts the SDK made in that region.
    pub attempts: u32,
    /// The latency the client measured, retries and failovers included: until the whole
    /// answer for a unary call, until the headers for a stream (its events come after).
    pub latency: Duration,
}

/// The call metadata every reply carries ([`Reply`](crate::Reply),
/// [`ReplyStream`](crate::ReplyStream), [`InvokeReply`](crate::invoke::InvokeReply),
/// [`InvokeStream`](crate::invoke::InvokeStream)); embeddings, sent as several calls, keep one
/// [`CallInfo`] per call ([`Embeddings::calls`](crate::embed::Embeddings::calls)).
///
/// ```no_run
/// use bedrock_pool::CallMetadata;
/// # async fn f(factory: bedrock_pool::LlmFactory) -> bedrock_pool::Result<()> {
/// let reply = factory.model("amazon.nova-micro-v1:0").converse().user("hi").send().await?;
/// println!("{} in {} after {:?}", reply.model_id(), reply.region(), reply.latency());
/// # Ok(()) }
/// ```
pub trait CallMetadata {
    /// Returns the call's metadata.
    fn call_info(&self) -> &CallInfo;

    /// Returns the model that answered: the handle's own, a fallback's when the call moved, or
    /// the one a prompt router chose.
    fn model_id(&self) -> &str {
        &self.call_info().model_id
    }

    /// Returns the prompt router the call named, when a router chose the model that answered.
    fn router(&self) -> Option<&str> {
        self.call_info().router.as_deref()
    }

    /// Returns the region that answered.
    fn region(&self) -> &str {
        &self.call_info().region
    }

    /// Returns the attempts the SDK made in the region that answered.
    fn attempts(&self) -> u32 {
        self.call_info().attempts
    }

    /// Returns the latency the client measured, retries included: until the whole answer for
    /// a unary call, until the headers for a stream.
    fn latency(&self) -> Duration {
        self.call_info().latency
    }
}
