//! ConverseStream through model handles: typed events, a stall timeout on every receive, and
//! a stream that ends without `messageStop` reported as the error it is.

use crate::call::OpenCall;
use crate::call::ahead::EventSource;
use crate::call::stall::StallTimer;
use crate::collect::Accumulator;
use crate::error::{Error, ErrorKind, Result, TimeoutKind};
use crate::meta::{CallInfo, CallMetadata};
use crate::reply::Reply;
use crate::stats::Outcome;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    CitationsDelta, ConverseStreamOutput as Event, ConverseStreamTrace, ImageBlockDelta,
    ImageFormat, PerformanceConfiguration, ServiceTier, StopReason, TokenUsage,
    ToolResultBlockDelta, ToolResultBlockStart,
};
use aws_smithy_types::Blob;
use futures_core::Stream;
use std::fmt;
use std::time::Duration;

mod convert;

pub(crate) use convert::in_stream_error;

use convert::{convert, map_stream_error, record};

/// One event of a response stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The assistant message starts.
    MessageStart,
    /// A piece of text of block `index`.
    TextDelta {
        /// Content block index.
        index: i32,
        /// The text piece.
        text: String,
    },
    /// A tool-use block starts.
    ToolUseStart {
        /// Content block index.
        index: i32,
        /// Id to answer with a tool result.
        tool_use_id: String,
        /// Tool name.
        name: String,
    },
    /// A piece of a tool call's JSON input.
    ToolUseDelta {
        /// Content block index.
        index: i32,
        /// The JSON fragment.
        input: String,
    },
    /// Block `index` is complete.
    BlockStop {
        /// Content block index.
        index: i32,
    },
    /// The message is complete.
    MessageStop {
        /// Why the model stopped.
        stop_reason: StopReason,
    },
    /// A piece of the model's reasoning (thinking) text of block `index`.
    ReasoningDelta {
        /// Content block index.
        index: i32,
        /// The reasoning text piece.
        text: String,
    },
    /// The signature of the reasoning in block `index`, to send back with it in later turns.
    ReasoningSignature {
        /// Content block index.
        index: i32,
        /// The signature.
        signature: String,
    },
    /// Reasoning the provider encrypted (redacted), to send back as is in later turns.
    RedactedReasoning {
        /// Content block index.
        index: i32,
        /// The encrypted reasoning.
        data: Blob,
    },
    /// A citation for the text of block `index` (which becomes a `citationsContent` block).
    CitationDelta {
        /// Content block index.
        index: i32,
        /// The citation.
        delta: CitationsDelta,
    },
    /// An image block starts: its format; the image comes in [`ImageDelta`](Self::ImageDelta)
    /// events.
    ImageStart {
        /// Content block index.
        index: i32,
        /// The image format.
        format: ImageFormat,
    },
    /// A piece of the image of block `index`: bytes to append, an S3 location, or an error.
    ImageDelta {
        /// Content block index.
        index: i32,
        /// The piece.
        delta: ImageBlockDelta,
    },
    /// A tool-result block starts (the result of a tool the service ran): the tool-use id it
    /// answers, its type and status.
    ToolResultStart {
        /// Content block index.
        index: i32,
        /// The id, type and status.
        start: ToolResultBlockStart,
    },
    /// Pieces of the tool result of block `index`: text to append to the text before it, or
    /// whole JSON values.
    ToolResultDelta {
        /// Content block index.
        index: i32,
        /// The pieces, in order.
        delta: Vec<ToolResultBlockDelta>,
    },
    /// Token counts (cache reads and writes included), the service's latency, the trace and the
    /// performance and service-tier figures. More fields may come: match with `..`.
    #[non_exhaustive]
    Metadata {
        /// Token counts.
        usage: Option<TokenUsage>,
        /// The latency the service reported.
        latency: Option<Duration>,
        /// The guardrail and prompt-router trace.
        trace: Option<ConverseStreamTrace>,
        /// The performance configuration the call ran with.
        performance: Option<PerformanceConfiguration>,
        /// The service tier that served the call.
        service_tier: Option<ServiceTier>,
    },
    /// An event of a kind this crate does not model (a kind newer than the SDK, which the SDK
    /// reports as `Unknown`), kept raw; [`ReplyStream::collect`] leaves it out.
    Other(Box<Event>),
}

/// The answer of a ConverseStream call: typed events, each receive bounded by the stall timeout.
///
/// Read it with [`next`](Self::next), turn it into a [`Stream`] with
/// [`into_stream`](Self::into_stream), or gather it with [`collect`](Self::collect). Dropping
/// it early cancels the call (counted as cancelled in the statistics).
pub struct ReplyStream {
    receiver: EventSource<Event, ConverseStreamOutputError>,
    /// The call's open figures, finished when the stream ends; its connection is retired if
    /// the stream stalls or breaks.
    call: OpenCall,
    stall: StallTimer,
    acc: Accumulator,
    saw_event: bool,
    done: bool,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream")
            .field("region", &self.call.region())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        // Dropped after `messageStop` but before the metadata a prompt router's call waits
        // for: the answer was whole, the call succeeded (else the call counts as cancelled).
        if self.acc.stop_reason.is_some() {
            self.call.finish(Outcome::Success);
        }
    }
}

impl CallMetadata for ReplyStream {
    fn call_info(&self) -> &CallInfo {
        self.call.info()
    }
}

impl ReplyStream {
    /// Returns the stream of a call that got its headers, read with `stall` between events.
    pub(crate) fn new(
        receiver: EventSource<Event, ConverseStreamOutputError>,
        call: OpenCall,
        stall: Duration,
    ) -> Self {
        ReplyStream {
            receiver,
            call,
            stall: StallTimer::new(stall),
            acc: Accumulator::default(),
            saw_event: false,
            done: false,
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<StreamEvent>> {
        self.done = true;
        if self.acc.stop_reason.is_some() {
            // The whole answer came (a router's call waits for its metadata to finish): the
            // call succeeded, whatever broke after it.
            self.call.finish(Outcome::Success);
        }
        self.call.fail(&e);
        tracing::debug!(parent: self.call.span(), error = %e, "stream failed");
        Some(Err(e))
    }

    /// Returns the next event, `None` at the clean end of the stream.
    ///
    /// # Errors
    /// A stall timeout when no event arrives in time; a network error when the stream ends
    /// without `messageStop` or breaks; the service's in-stream exceptions mapped to kinds.
    /// After an error the stream is over. A stall or a break retires the connection the stream
    /// came on (over HTTP/2 it would otherwise carry later calls); an in-stream exception or a
    /// clean end does not.
    pub async fn next(&mut self) -> Option<Result<StreamEvent>> {
        if self.done {
            return None;
        }
        let received = self.stall.within(self.receiver.recv()).await;
        let event = match received {
            Err(_) => {
                self.call.retire_connection();
                return self.fail(Error::timeout(
                    TimeoutKind::StreamStall,
                    format!(
                        "converse_stream failed: no event within the stall timeout of {:?}",
                        self.stall.stall()
                    ),
                ));
            }
            Ok(Err(e)) => {
                let e = map_stream_error(e);
                if e.code().is_none() {
                    self.call.retire_connection();
                }
                return self.fail(e);
            }
            Ok(Ok(None)) => {
                if self.acc.stop_reason.is_none() {
                    return self.fail(Error::new(
                        ErrorKind::Network,
                        "converse_stream failed: the stream ended before messageStop (truncated answer)",
                    ));
                }
                self.done = true;
                self.call.finish(Outcome::Success);
                return None;
            }
            Ok(Ok(Some(ev))) => ev,
        };
        if !self.saw_event {
            self.saw_event = true;
            self.call.first_token();
        }
        let ev = convert(event);
        record(&mut self.acc, &ev);
        if let StreamEvent::Metadata {
            usage,
            service_tier,
            trace,
            ..
        } = &ev
        {
            self.call.route(
                trace
                    .as_ref()
                    .and_then(|t| t.prompt_router())
                    .and_then(|r| r.invoked_model_id()),
            );
            self.call
                .served_by(service_tier.as_ref().map(|t| t.r#type()));
            if let Some(u) = usage {
                self.call.usage(u);
            }
            if self.acc.stop_reason.is_some() {
                self.call.finish(Outcome::Success);
            }
        }
        if let StreamEvent::MessageStop { stop_reason } = &ev {
            self.call.finish_reason(stop_reason);
            // A call to a prompt router ends with its metadata, which names the model that
            // answered; any other ends here.
            if !self.call.awaits_route() {
                self.call.finish(Outcome::Success);
            }
        }
        Some(Ok(ev))
    }

    /// Reads the rest of the stream and returns the whole answer as a [`Reply`] (including the
    /// events already read).
    ///
    /// The message is the one unary Converse returns for the same answer: blocks in index
    /// order, reasoning with its signature (or redacted), citations, tool calls, text, images
    /// (their bytes joined, or their S3 location) and tool results (text and JSON contents), so
    /// it can go back as history (multi-turn thinking with tool use); stop reason, usage,
    /// metrics, trace, performance and service tier come from the last events. Events kept as
    /// [`StreamEvent::Other`] (kinds newer than the SDK) are left out.
    ///
    /// # Errors
    /// The first error [`next`](Self::next) returns.
    pub async fn collect(mut self) -> Result<Reply> {
        while let Some(ev) = self.next().await {
            ev?;
        }
        let acc = std::mem::take(&mut self.acc);
        Ok(Reply {
            output: acc.into_output()?,
            info: self.call.finished_info(),
        })
    }

    /// Turns the reply into a [`Stream`] of events.
    pub fn into_stream(self) -> impl Stream<Item = Result<StreamEvent>> + Send + Unpin {
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            s.next().await.map(|ev| (ev, s))
        }))
    }
}

#[cfg(test)]
mod tests;
