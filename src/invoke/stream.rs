//! [`InvokeStream`], the answer of an InvokeModelWithResponseStream call: its chunks, each
//! receive bounded by the stall timeout.

use super::InvokeReply;
use super::native::usage_of;
use crate::call::OpenCall;
use crate::collect::parse_json;
use crate::error::{Error, ErrorKind, Result, TimeoutKind, from_sdk};
use crate::meta::{CallInfo, CallMetadata};
use crate::stats::Outcome;
use aws_sdk_bedrockruntime::types::ResponseStream;
use aws_smithy_types::Blob;
use std::fmt;

/// The answer of an InvokeModelWithResponseStream call: the model's JSON chunks, each receive
/// bounded by the stall timeout; a stall or a broken stream retires its connection.
pub struct InvokeStream {
    pub(super) receiver: crate::call::ahead::EventSource<
        ResponseStream,
        aws_sdk_bedrockruntime::types::error::ResponseStreamError,
    >,
    pub(super) call: OpenCall,
    pub(super) stall: crate::call::stall::StallTimer,
    pub(super) saw_chunk: bool,
    pub(super) done: bool,
}

impl fmt::Debug for InvokeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeStream")
            .field("region", &self.call.region())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl CallMetadata for InvokeStream {
    fn call_info(&self) -> &CallInfo {
        self.call.info()
    }
}

impl InvokeStream {
    fn fail(&mut self, e: Error) -> Option<Result<Blob>> {
        self.done = true;
        self.call.fail(&e);
        Some(Err(e))
    }

    /// Returns the next chunk (the model's JSON bytes), `None` at the end of the stream.
    ///
    /// # Errors
    /// A stall timeout when no chunk arrives in time; the service's in-stream exceptions and
    /// network errors mapped to kinds. After an error the stream is over.
    pub async fn next(&mut self) -> Option<Result<Blob>> {
        if self.done {
            return None;
        }
        let event = match self.stall.within(self.receiver.recv()).await {
            Err(_) => {
                self.call.retire_connection();
                return self.fail(Error::timeout(
                    TimeoutKind::StreamStall,
                    format!(
                        "invoke_model_with_response_stream failed: no chunk within the stall timeout of {:?}",
                        self.stall.stall()
                    ),
                ));
            }
            Ok(Err(e)) => {
                let e = from_sdk("invoke_model_with_response_stream", e);
                if e.code().is_none() {
                    self.call.retire_connection();
                }
                return self.fail(e);
            }
            Ok(Ok(None)) => {
                self.done = true;
                self.call.finish(Outcome::Success);
                return None;
            }
            Ok(Ok(Some(ev))) => ev,
        };
        if !self.saw_chunk {
            self.saw_chunk = true;
            self.call.first_token();
        }
        let bytes = match event {
            ResponseStream::Chunk(part) => {
                part.bytes().cloned().unwrap_or_else(|| Blob::new(vec![]))
            }
            _ => Blob::new(vec![]),
        };
        if let Some(doc) = std::str::from_utf8(bytes.as_ref())
            .ok()
            .and_then(|t| parse_json(t).ok())
        {
            let (usage, reason) = usage_of(&doc);
            if let Some(u) = usage
                && doc
                    .as_object()
                    .is_some_and(|o| o.contains_key("amazon-bedrock-invocationMetrics"))
            {
                self.call.usage(&u);
            }
            if let Some(r) = reason {
                self.call.finish_reason(&r);
            }
        }
        Some(Ok(bytes))
    }

    /// Reads a carried Anthropic stream to its end and returns the message unary InvokeModel
    /// would have answered.
    pub(super) async fn collect_message(mut self) -> Result<InvokeReply> {
        let mut message = crate::anthropic::MessageBuilder::default();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            let text = std::str::from_utf8(chunk.as_ref()).ok();
            match text.and_then(|t| parse_json(t).ok()) {
                Some(doc) => {
                    if let Err(e) = message.push(&doc) {
                        return Err(self.fail_collect(e));
                    }
                }
                None => {
                    let e = Error::new(ErrorKind::Other, "invoke_model: a chunk is not JSON");
                    return Err(self.fail_collect(e));
                }
            }
        }
        let body = match message.finish() {
            Ok(b) => Blob::new(b),
            Err(e) => return Err(self.fail_collect(e)),
        };
        Ok(InvokeReply {
            body,
            info: self.call.finished_info(),
        })
    }

    /// Ends a collect that failed after the stream itself ended or while it still ran.
    fn fail_collect(&mut self, e: Error) -> Error {
        if !self.done {
            self.done = true;
            self.call.fail(&e);
        }
        e
    }

    /// Reads the rest of the stream and returns every chunk, in order.
    ///
    /// # Errors
    /// The first error [`next`](Self::next) returns.
    pub async fn collect(mut self) -> Result<Vec<Blob>> {
        let mut chunks = Vec::new();
        while let Some(c) = self.next().await {
            chunks.push(c?);
        }
        Ok(chunks)
    }
}
