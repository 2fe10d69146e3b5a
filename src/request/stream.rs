//! ConverseStream requests: a Converse request with [`Streaming`], its stream's own settings,
//! its policy and its send, which answers a [`ReplyStream`].

use super::{ConverseRequest, Streaming, prepared_send};
use crate::call::ahead::EventSource;
use crate::call::drive;
use crate::error::Result;
use crate::model::Model;
use crate::op::Op;
use crate::policy::CallPolicy;
use crate::stream::ReplyStream;
use crate::transport::RetryRule;
use std::time::Duration;

/// A ConverseStream request being built: the same inputs as [`ConverseRequest`].
pub type ConverseStreamRequest = ConverseRequest<Streaming>;

impl ConverseRequest<Streaming> {
    /// Sets the longest gap allowed between two events of this stream. Default is the
    /// factory's `stream_stall_timeout` (60 s).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.inputs.stall_timeout = Some(timeout);
        self
    }

    /// Sets how the guardrail processes the stream: `sync` (each chunk is assessed before it is
    /// sent) or `async` (chunks flow while the guardrail assesses in the background).
    pub fn stream_processing_mode(
        mut self,
        mode: aws_sdk_bedrockruntime::types::GuardrailStreamProcessingMode,
    ) -> Self {
        self.inputs.stream_processing_mode = Some(mode);
        self
    }

    /// Returns the timeouts and retry rule this call will use.
    pub fn policy(&self) -> CallPolicy {
        let target = &self.model.inner().target;
        let falls_back = !self.model.chain().fallbacks.is_empty();
        let mut p = CallPolicy::of(
            target,
            RetryRule::default(),
            true,
            falls_back,
            self.inputs.read_timeout,
        );
        p.stall_timeout = Some(
            self.inputs
                .stall_timeout
                .unwrap_or(target.shared.config.timeouts.stream_stall),
        );
        p
    }

    /// Sends the call and returns the stream once the response headers arrived.
    ///
    /// # Errors
    /// As [`ConverseRequest::send`]; failover to the next region happens only here, before the
    /// first event.
    pub async fn send(self) -> Result<ReplyStream> {
        let model = self.model.clone();
        let target = &model.inner().target;
        let stall = self
            .inputs
            .stall_timeout
            .unwrap_or(target.shared.config.timeouts.stream_stall);
        let answer = drive(
            model.chain(),
            Op::ConverseStream,
            RetryRule::default(),
            || self.validate(),
            |v, id, to| {
                prepared_send!(
                    to.client.converse_stream(),
                    id,
                    v,
                    v.guardrail_stream_config()
                )
            },
        )
        .await?;
        Ok(ReplyStream::new(
            EventSource::read_ahead(answer.output.stream),
            answer.call,
            stall,
        ))
    }
}

impl Model {
    /// Starts a ConverseStream call: the same inputs, a stream of events as the answer.
    pub fn converse_stream(&self) -> ConverseStreamRequest {
        ConverseRequest::new(self.clone())
    }
}
