//! The sliding window of one limit: a log of the calls admitted and not yet out of the window,
//! with their tokens. Exact (no buckets).
//!
//! A call leaves the window `window` after it **ended** (its answer, its failure or its
//! cancellation), not after it was admitted: the service counts a call when it receives it,
//! some time between the two, so only this rule guarantees that the service never sees more
//! than the limit in any window of its own, whatever the latency. A call in flight stays in.

use super::ModelLimit;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    seq: u64,
    tokens: u64,
    /// When the call leaves the window: `None` while it is in flight.
    leaves: Option<Instant>,
}

/// The calls admitted and still in the window, in the order they were admitted.
#[derive(Debug, Default)]
pub(super) struct Window {
    entries: VecDeque<Entry>,
    tokens: u64,
    next_seq: u64,
}

impl Window {
    /// Forgets the calls that left the window by `now`. Calls behind one still in flight are
    /// forgotten only when the window is full (the scan is then worth it).
    pub(super) fn trim(&mut self, now: Instant, limit: &ModelLimit) {
        while let Some(e) = self.entries.front() {
            if e.leaves.is_none_or(|l| l > now) {
                break;
            }
            self.tokens -= e.tokens;
            self.entries.pop_front();
        }
        let full = limit.requests.is_some_and(|r| self.len() >= r)
            || limit.tokens.is_some_and(|t| self.tokens >= t / 2);
        if full {
            let mut freed = 0;
            self.entries.retain(|e| {
                let keep = e.leaves.is_none_or(|l| l > now);
                if !keep {
                    freed += e.tokens;
                }
                keep
            });
            self.tokens -= freed;
        }
    }

    /// Returns the calls in the window.
    pub(super) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Returns the tokens in the window.
    pub(super) fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Returns true when a call of `tokens` fits now (after `trim`).
    pub(super) fn has_room(&self, limit: &ModelLimit, tokens: u64) -> bool {
        limit.requests.is_none_or(|r| self.len() < r)
            && limit.tokens.is_none_or(|t| self.tokens + tokens <= t)
    }

    /// Returns how long until enough calls leave the window for a call of `tokens` to fit
    /// (zero when it fits now). While the calls that must leave are still in flight it is not
    /// known: then it returns `window` (a waiting call is also woken when a call ends).
    pub(super) fn room_in(&self, now: Instant, limit: &ModelLimit, tokens: u64) -> Duration {
        if self.has_room(limit, tokens) {
            return Duration::ZERO;
        }
        // The calls that ended, in the order they leave.
        let mut ended: Vec<(Instant, u64)> = self
            .entries
            .iter()
            .filter_map(|e| e.leaves.map(|l| (l, e.tokens)))
            .collect();
        ended.sort_unstable_by_key(|(l, _)| *l);
        let mut need_requests = limit
            .requests
            .map_or(0, |r| (self.len() + 1).saturating_sub(r));
        let mut need_tokens = limit
            .tokens
            .map_or(0, |t| (self.tokens + tokens).saturating_sub(t));
        for (leaves, t) in ended {
            need_requests = need_requests.saturating_sub(1);
            need_tokens = need_tokens.saturating_sub(t);
            if need_requests == 0 && need_tokens == 0 {
                return leaves.saturating_duration_since(now);
            }
        }
        limit.window
    }

    /// Logs a call admitted now; returns its number, for [`Window::correct`] and
    /// [`Window::end`].
    pub(super) fn push(&mut self, tokens: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.tokens += tokens;
        self.entries.push_back(Entry {
            seq,
            tokens,
            leaves: None,
        });
        seq
    }

    fn entry(&mut self, seq: u64) -> Option<&mut Entry> {
        let i = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        self.entries.get_mut(i)
    }

    /// Sets the tokens of call `seq` (if still in the window); returns true when that made room.
    pub(super) fn correct(&mut self, seq: u64, tokens: u64) -> bool {
        let Some(e) = self.entry(seq) else {
            return false;
        };
        let old = std::mem::replace(&mut e.tokens, tokens);
        self.tokens = self.tokens - old + tokens;
        tokens < old
    }

    /// Call `seq` ended at `now`: it leaves the window `window` later.
    pub(super) fn end(&mut self, seq: u64, now: Instant, window: Duration) {
        if let Some(e) = self.entry(seq) {
            e.leaves = Some(now + window);
        }
    }
}
