//! [`EventSource`]: where a response stream's events come from. A stream handed to the caller
//! is read ahead by a task of its own, as the events arrive; a stream the crate reads itself
//! to its end at once (a carried unary call, collected) is read directly.
//!
//! Why: over HTTP/2 every call shares one connection. Events the caller has not asked for yet
//! would otherwise wait in that connection, in its flow-control window (5 MB, hyper's default)
//! and in the h2 crate's budget of small DATA frames buffered unread (about 2.5 MB of framing
//! overhead, some 24,000 one-word deltas), past which h2 closes the whole connection
//! (`ENHANCE_YOUR_CALM`, "too_many_data_frames") and every call on it fails. Read ahead, they
//! wait in memory (at most the answer) and the connection stays free.

use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_smithy_types::event_stream::RawMessage;
use tokio::sync::mpsc;

/// What one receive of an event stream gives.
pub(crate) type Received<T, E> = Result<Option<T>, SdkError<E, RawMessage>>;

/// Where a stream's events come from (see the module docs).
// The direct receiver is the larger variant: it is a carried unary call's, built once per
// call; boxing it would allocate on every unary call.
#[allow(clippy::large_enum_variant)]
pub(crate) enum EventSource<T, E> {
    /// Read when asked (a stream the crate reads to its end at once).
    Direct(EventReceiver<T, E>),
    /// Read ahead by a task; its events wait in the channel.
    Ahead {
        events: mpsc::UnboundedReceiver<Received<T, E>>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl<T: Send + 'static, E: Send + 'static> EventSource<T, E> {
    /// Reads the stream when asked.
    pub(crate) fn direct(receiver: EventReceiver<T, E>) -> Self {
        EventSource::Direct(receiver)
    }

    /// Reads the stream ahead, in a task, until its end or its first error.
    pub(crate) fn read_ahead(mut receiver: EventReceiver<T, E>) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let received = receiver.recv().await;
                let last = !matches!(received, Ok(Some(_)));
                if tx.send(received).is_err() || last {
                    return;
                }
            }
        });
        EventSource::Ahead { events, task }
    }

    /// Returns the next receive: an event, the end (`Ok(None)`), or the stream's error.
    pub(crate) async fn recv(&mut self) -> Received<T, E> {
        match self {
            EventSource::Direct(r) => r.recv().await,
            // The task ends after the last receive it handed over.
            EventSource::Ahead { events, .. } => events.recv().await.unwrap_or(Ok(None)),
        }
    }
}

impl<T, E> Drop for EventSource<T, E> {
    fn drop(&mut self) {
        // A stream dropped before its end stops being read (its h2 stream is reset).
        if let EventSource::Ahead { task, .. } = self {
            task.abort();
        }
    }
}
