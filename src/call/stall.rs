//! [`StallTimer`]: the stall timeout of a response stream's receives, with one timer per
//! stream instead of one per event.
//!
//! `tokio::time::timeout` around each receive registers a timer in the runtime's timer wheel
//! and removes it again for every event (a lock on the wheel each time, shared by every task).
//! A stream's events come far faster than its stall timeout, so the timer here is registered
//! once and moved only when it fires before the receive's own deadline: each event costs a
//! clock read.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Bounds each receive of a stream by `stall` (see the module docs).
#[derive(Debug)]
pub(crate) struct StallTimer {
    stall: Duration,
    /// Armed at the first receive that has to wait; its deadline is never later than the
    /// current receive's.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The receive did not complete within the stall timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stalled;

impl StallTimer {
    /// Returns a timer that bounds each receive by `stall`.
    pub(crate) fn new(stall: Duration) -> Self {
        StallTimer { stall, timer: None }
    }

    /// Returns the stall timeout.
    pub(crate) fn stall(&self) -> Duration {
        self.stall
    }

    /// Runs `receive`, failing with [`Stalled`] when it has not completed `stall` after this
    /// call (the time the caller spends between receives is not counted).
    pub(crate) async fn within<F: Future>(&mut self, receive: F) -> Result<F::Output, Stalled> {
        // Saturates: a stall timeout too large to add (Duration::MAX) never fires.
        let deadline = Instant::now().checked_add(self.stall);
        let mut receive = std::pin::pin!(receive);
        let timer = &mut self.timer;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = receive.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            // A timer left later than this receive's deadline (armed by an earlier receive
            // and not yet fired) cannot happen: deadlines only grow. One that fired early is
            // moved to this deadline.
            loop {
                match timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= deadline => {
                        return Poll::Ready(Err(Stalled));
                    }
                    Poll::Ready(()) => timer.as_mut().reset(deadline),
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_receive_gets_the_whole_stall_timeout() {
        let mut t = StallTimer::new(Duration::from_secs(10));
        // Receives that complete in time, with the caller's own time between them.
        for _ in 0..3 {
            let out = t.within(tokio::time::sleep(Duration::from_secs(9))).await;
            assert_eq!(out, Ok(()));
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        // The timer armed at the first receive fired long ago; this receive still gets 10 s.
        let started = Instant::now();
        let out = t.within(std::future::pending::<()>()).await;
        assert_eq!(out, Err(Stalled));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_receive_wins_and_no_deadline_never_fires() {
        let mut t = StallTimer::new(Duration::ZERO);
        assert_eq!(t.within(async { 7 }).await, Ok(7));
        let mut forever = StallTimer::new(Duration::MAX);
        let out = tokio::time::timeout(
            Duration::from_secs(3600),
            forever.within(std::future::pending::<()>()),
        )
        .await;
        assert!(out.is_err(), "a stall timeout of Duration::MAX never fires");
        assert_eq!(forever.stall(), Duration::MAX);
    }
}
