//! Client-side limits per model: requests and tokens per sliding window, so that a process
//! never sends past the quota it was given. A call over the limit waits in a bounded queue
//! with a deadline ([`LimitMode::Wait`]) or fails at once ([`LimitMode::Reject`]), with
//! [`ErrorKind::Throttled`] either way, never sent.
//!
//! Tokens are counted when a call is admitted as an estimate (the input's UTF-8 bytes / 4,
//! plus `max_tokens`), then corrected to the usage the service reports. A call stays in the
//! window until one window after it ended (see `window.rs`, which holds the arithmetic; this
//! file the queue).

#[cfg(feature = "redis")]
mod shared;
mod window;

use crate::error::{Error, ErrorKind, Result};
use crate::stats::Histogram;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use window::Window;

pub use crate::config::limit::{LimitMode, ModelLimit, burndown_rate};
#[doc(inline)]
pub use crate::stats::LimitStats;

struct State {
    window: Window,
    /// Waiting calls, first come first served.
    queue: VecDeque<u64>,
    next_waiter: u64,
}

/// One model's limiter.
pub(crate) struct Limiter {
    pub(crate) limit: ModelLimit,
    /// The model id, as the metrics label (limits are few: set when the factory is built).
    label: Arc<str>,
    /// The region whose quota this limit mirrors.
    region: Arc<str>,
    /// The window's key in the fleet's Redis: `{model}|{region}`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    key: Arc<str>,
    /// Tokens of the limit one output token uses.
    burndown: u64,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    admitted: AtomicU64,
    waited: AtomicU64,
    wait: Histogram,
    rejected: AtomicU64,
    expired: AtomicU64,
    /// The fleet's shared window, when the factory shares its limits through Redis.
    #[cfg(feature = "redis")]
    fleet: Option<crate::fleet::Fleet>,
    /// Calls waiting for room in the fleet's window now (bounded by `max_queue`).
    #[cfg(feature = "redis")]
    shared_waiting: std::sync::atomic::AtomicUsize,
    /// The fleet's processes seen at the last shared admission (0 before the first): while
    /// Redis is out of reach, this process admits its share of the limit, the limit divided
    /// by them.
    #[cfg(feature = "redis")]
    processes: AtomicU64,
    /// The shared window's requests and tokens at the last shared admission.
    #[cfg(feature = "redis")]
    fill_requests: AtomicU64,
    #[cfg(feature = "redis")]
    fill_tokens: AtomicU64,
    /// When they were read, in ms since `created`.
    #[cfg(feature = "redis")]
    fill_at_ms: AtomicU64,
    /// This process's share while the fleet is out of reach (see [`Limiter::begin_outage`]).
    #[cfg(feature = "redis")]
    outage: Mutex<Option<ModelLimit>>,
    /// When a call was last admitted by the local window while the limiter has a fleet (Redis
    /// out of reach), in ms since `created` plus one; 0 for never. Such calls are not in the
    /// fleet's window: until they left it, this process also holds to its share.
    #[cfg(feature = "redis")]
    local_admitted_ms: AtomicU64,
    #[cfg(feature = "redis")]
    created: Instant,
}

/// A call admitted by a limiter: correct its tokens with the usage reported. Dropping it
/// ends the call: it leaves the window one window later.
pub(crate) struct Lease {
    limiter: Arc<Limiter>,
    seq: u64,
    /// The entry in the fleet's window (admitted through Redis), and the tokens it used once
    /// known (`u64::MAX` until then): both go to Redis when the call ends.
    #[cfg(feature = "redis")]
    shared: Option<(crate::fleet::Ticket, AtomicU64)>,
    /// Keeps the shared entry in the fleet's window while the call is in flight.
    #[cfg(feature = "redis")]
    renewal: Option<crate::fleet::Renewal>,
}

impl Lease {
    /// Settles the call's tokens as Bedrock does at the end of a call: its input plus cache
    /// writes plus its output times the model's burndown rate (cache reads are not counted).
    pub(crate) fn settle_usage(&self, input: u64, cache_write: u64, output: u64) {
        let b = self.limiter.burndown;
        self.correct(
            input
                .saturating_add(cache_write)
                .saturating_add(output.saturating_mul(b)),
        );
    }

    /// Replaces the call's token estimate with the tokens it used.
    pub(crate) fn correct(&self, tokens: u64) {
        #[cfg(feature = "redis")]
        if let Some((_, used)) = &self.shared {
            used.store(tokens.min(u64::MAX - 1), Relaxed);
        }
        let freed = {
            let mut s = self.limiter.lock();
            s.window.correct(self.seq, tokens)
        };
        if freed {
            self.limiter.notify.notify_waiters();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let l = &self.limiter;
        // The renewal stops first, so that it never pushes a settled entry back.
        #[cfg(feature = "redis")]
        drop(self.renewal.take());
        #[cfg(feature = "redis")]
        if let (Some((ticket, used)), Some(fleet)) = (&self.shared, &l.fleet) {
            let used = Some(used.load(Relaxed)).filter(|u| *u != u64::MAX);
            fleet.settle(&l.key, *ticket, used, l.limit.window);
        }
        // The local window holds the calls admitted through the fleet too: while Redis is out
        // of reach, this process's share counts what it sent just before.
        l.lock()
            .window
            .end(self.seq, Instant::now(), l.limit.window);
        // A waiting call may now know when room comes.
        l.notify.notify_waiters();
    }
}

/// Removes a waiting call from the queue however its wait ends (admitted, expired, dropped).
struct Waiting<'a> {
    limiter: &'a Limiter,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        if let Some(i) = s.queue.iter().position(|w| *w == self.id) {
            s.queue.remove(i);
        }
        drop(s);
        // The next in line may go now.
        self.limiter.notify.notify_waiters();
    }
}

impl Limiter {
    pub(crate) fn new(model_id: &str, region: &str, limit: ModelLimit) -> Self {
        Limiter {
            limit,
            label: Arc::from(model_id),
            region: Arc::from(region),
            key: Arc::from(format!("{model_id}|{region}")),
            burndown: limit
                .burndown
                .unwrap_or_else(|| burndown_rate(model_id))
                .max(1),
            state: Mutex::new(State {
                window: Window::default(),
                queue: VecDeque::new(),
                next_waiter: 0,
            }),
            notify: tokio::sync::Notify::new(),
            admitted: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait: Histogram::new(),
            rejected: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            fleet: None,
            #[cfg(feature = "redis")]
            shared_waiting: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(feature = "redis")]
            processes: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            fill_requests: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            fill_tokens: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            fill_at_ms: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            outage: Mutex::new(None),
            #[cfg(feature = "redis")]
            local_admitted_ms: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            created: Instant::now(),
        }
    }

    /// Returns this process's share of the limit while the fleet's Redis is out of reach, or
    /// after it came back while this process still has calls it admitted alone in its window
    /// (see [`Limiter::begin_outage`]). `None` without a fleet, or outside an outage.
    fn outage_share(&self) -> Option<ModelLimit> {
        #[cfg(feature = "redis")]
        if self.fleet.is_some() {
            return *self.outage.lock().unwrap_or_else(|e| e.into_inner());
        }
        None
    }

    /// Fixes this process's share for an outage of the fleet's Redis, when the first call goes
    /// the local way: the calls it has in the window now (admitted through the fleet, mirrored
    /// here), plus an equal part, among the processes it last saw, of the room the shared window
    /// had at its last admission. The shares of the fleet's processes then add up to no more
    /// than the limit, however unevenly the window was filled. When that admission is older
    /// than a window (this process was idle), what the window holds is unknown: the limit
    /// divided by the processes. Before the fleet was first reached there is nothing to share:
    /// the whole limit.
    #[cfg(feature = "redis")]
    fn begin_outage(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.processes.load(Relaxed);
        if outage.is_some() || n == 0 {
            return;
        }
        let (held_requests, held_tokens) = {
            let mut s = self.lock();
            s.window.trim(Instant::now(), &self.limit);
            (s.window.len(), s.window.tokens())
        };
        let age = self
            .created
            .elapsed()
            .saturating_sub(Duration::from_millis(self.fill_at_ms.load(Relaxed)));
        let fresh = age <= self.limit.window;
        let room = |limit: u64, fill: u64| {
            if fresh {
                limit.saturating_sub(fill) / n
            } else {
                limit / n
            }
        };
        *outage = Some(ModelLimit {
            requests: self
                .limit
                .requests
                .map(|r| held_requests + room(r, self.fill_requests.load(Relaxed))),
            tokens: self
                .limit
                .tokens
                .map(|t| held_tokens + room(t, self.fill_tokens.load(Relaxed))),
            ..self.limit
        });
    }

    /// Ends the outage's share once the fleet admits again and no call admitted alone is left
    /// in the window.
    #[cfg(feature = "redis")]
    pub(crate) fn end_outage(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        if outage.is_some() && !self.recovering() {
            *outage = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn throttled(
        &self,
        model_id: &str,
        reason: &'static str,
        why: &str,
        retry_after: Option<Duration>,
    ) -> Error {
        crate::metrics::limit_refused(&self.label, reason);
        let e = Error::new(
            ErrorKind::Throttled,
            format!(
                "client-side limit of {model_id} in {}: {why}; not sent",
                self.region
            ),
        );
        match retry_after {
            Some(r) => e.with_retry_after(r),
            None => e,
        }
    }

    /// Returns the error of a call whose estimate exceeds the whole window: no wait or retry
    /// can admit it, so it is the caller's input, not a throttle, and it does not fall back.
    pub(crate) fn never_fits(&self, model_id: &str, tokens: u64, max: u64) -> Error {
        crate::metrics::limit_refused(&self.label, "too_large");
        Error::invalid(
            "max_tokens",
            format!(
                "the call's estimate of {tokens} tokens (its input and max_tokens) exceeds the \
                 client-side limit of {max} tokens per window of {model_id} in {}: it can never \
                 be admitted; lower max_tokens or raise the limit; not sent",
                self.region
            ),
        )
    }

    /// Admits a call of `tokens` estimated tokens, waiting for room in `Wait` mode.
    ///
    /// # Errors
    /// `Throttled` when the call is refused (see [`LimitMode`]).
    // Long because the admission loop (room, queue, deadline) is one state machine.
    pub(crate) async fn acquire(self: &Arc<Self>, model_id: &str, tokens: u64) -> Result<Lease> {
        let tokens = tokens.max(1);
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet
            && let Some(shared) = self.acquire_shared(fleet, model_id, tokens, &[]).await
        {
            return shared.map(|(lease, _)| lease);
        }
        if let Some(max) = self.limit.tokens
            && tokens > max
        {
            self.rejected.fetch_add(1, Relaxed);
            return Err(self.never_fits(model_id, tokens, max));
        }
        #[cfg(feature = "redis")]
        self.begin_outage();
        let share = self.outage_share();
        let limit = share.as_ref().unwrap_or(&self.limit);
        let started = Instant::now();
        let (waiting, deadline) = {
            let mut s = self.lock();
            s.window.trim(started, limit);
            if s.queue.is_empty() && s.window.has_room(limit, tokens) {
                return Ok(self.admit(&mut s, started, tokens, started));
            }
            let (max_queue, deadline) = match limit.mode {
                LimitMode::Reject => {
                    let after = s.window.room_in(started, limit, tokens);
                    drop(s);
                    self.rejected.fetch_add(1, Relaxed);
                    let why = "the limit is reached";
                    return Err(self.throttled(model_id, "reject", why, Some(after)));
                }
                LimitMode::Wait {
                    max_queue,
                    deadline,
                } => (max_queue, deadline),
            };
            if s.queue.len() >= max_queue {
                drop(s);
                self.rejected.fetch_add(1, Relaxed);
                let why = format!("{max_queue} calls already wait for the limit");
                return Err(self.throttled(model_id, "queue_full", &why, None));
            }
            let id = s.next_waiter;
            s.next_waiter += 1;
            s.queue.push_back(id);
            (Waiting { limiter: self, id }, deadline)
        };
        let deadline_at = started + deadline;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let wake = {
                let mut s = self.lock();
                s.window.trim(now, limit);
                if s.queue.front() == Some(&waiting.id) {
                    if s.window.has_room(limit, tokens) {
                        s.queue.pop_front();
                        self.waited.fetch_add(1, Relaxed);
                        return Ok(self.admit(&mut s, now, tokens, started));
                    }
                    Some(now + s.window.room_in(now, limit, tokens))
                } else {
                    None
                }
            };
            if now >= deadline_at {
                self.expired.fetch_add(1, Relaxed);
                let why = format!("waited {deadline:?} for room");
                let after = wake.map(|w| w.saturating_duration_since(now));
                return Err(self.throttled(model_id, "deadline", &why, after));
            }
            let until = wake.map_or(deadline_at, |w| w.min(deadline_at));
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = &mut notified => {}
            }
        }
    }

    fn admit(self: &Arc<Self>, s: &mut State, now: Instant, tokens: u64, asked: Instant) -> Lease {
        let seq = s.window.push(tokens);
        #[cfg(feature = "redis")]
        if self.fleet.is_some() {
            let ms = u64::try_from(now.saturating_duration_since(self.created).as_millis());
            self.local_admitted_ms
                .store(ms.unwrap_or(u64::MAX - 1) + 1, Relaxed);
        }
        self.count_admitted(now.saturating_duration_since(asked));
        Lease {
            limiter: self.clone(),
            seq,
            #[cfg(feature = "redis")]
            shared: None,
            #[cfg(feature = "redis")]
            renewal: None,
        }
    }

    fn count_admitted(&self, waited: Duration) {
        self.admitted.fetch_add(1, Relaxed);
        self.wait.record(waited);
        crate::metrics::limit_wait(&self.label, waited);
    }

    /// Returns the limiter's figures now.
    pub(crate) fn stats(&self) -> LimitStats {
        let (queued, requests_in_window, tokens_in_window) = {
            let mut s = self.lock();
            s.window.trim(Instant::now(), &self.limit);
            (s.queue.len() as u64, s.window.len(), s.window.tokens())
        };
        #[cfg(feature = "redis")]
        let queued = queued + self.shared_waiting.load(Relaxed) as u64;
        LimitStats {
            model_id: self.label.to_string(),
            region: self.region.to_string(),
            admitted: self.admitted.load(Relaxed),
            waited: self.waited.load(Relaxed),
            queue_wait: self.wait.summary(),
            rejected: self.rejected.load(Relaxed),
            expired: self.expired.load(Relaxed),
            queued,
            requests_in_window,
            tokens_in_window,
        }
    }
}

/// Estimates the tokens of `input_bytes` of text plus `max_tokens` of output: about four bytes
/// a token, rounded up.
pub(crate) fn estimate(input_bytes: usize, max_tokens: Option<i32>) -> u64 {
    let input = (input_bytes as u64).div_ceil(4);
    input + max_tokens.and_then(|m| u64::try_from(m).ok()).unwrap_or(0)
}

/// Returns `d` stretched by a random 0 to 25%, so that waiters told the same time spread out.
pub(crate) fn jittered(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    let frac = (r % 1024) as f64 / 4096.0;
    d.mul_f64(1.0 + frac)
}

#[cfg(test)]
mod tests;
