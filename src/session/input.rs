//! The input side of a session: the stream the SDK sends as the request body. It plays the
//! opening events first (again for each attempt, so that an attempt that failed before the
//! answer's headers can be sent to another region or model whole), then what the session's
//! senders send, until the session ends.

use aws_sdk_bedrockruntime::types::InvokeModelWithBidirectionalStreamInput as SdkInput;
use aws_sdk_bedrockruntime::types::error::InvokeModelWithBidirectionalStreamInputError as SdkInputError;
use futures_core::Stream;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// What the session and every attempt's input stream share.
pub(super) struct Shared {
    pub(super) receiver: Mutex<mpsc::Receiver<SdkInput>>,
    /// Set when the session is over: the input ends at once.
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl Shared {
    pub(super) fn new(receiver: mpsc::Receiver<SdkInput>) -> Arc<Self> {
        Arc::new(Shared {
            receiver: Mutex::new(receiver),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    /// Ends the input (the request body's end): the session is over.
    pub(super) fn close(&self) {
        // Senders fail from now on; the events they had buffered are not sent.
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close();
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// One attempt's request body: the opening events, then the live ones.
pub(super) struct Input {
    opening: VecDeque<SdkInput>,
    shared: Arc<Shared>,
}

impl Input {
    pub(super) fn new(opening: VecDeque<SdkInput>, shared: Arc<Shared>) -> Self {
        Input { opening, shared }
    }
}

impl Stream for Input {
    type Item = Result<SdkInput, SdkInputError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.opening.pop_front() {
            return Poll::Ready(Some(Ok(e)));
        }
        let shared = &self.shared;
        shared.waker.register(cx.waker());
        if shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        let mut rx = shared.receiver.lock().unwrap_or_else(|e| e.into_inner());
        rx.poll_recv(cx).map(|e| e.map(Ok))
    }
}
