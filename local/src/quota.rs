//! Per-model quotas, as Bedrock's requests-per-minute and tokens-per-minute quotas, and their
//! counting over a sliding window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most admitted requests each quota's log keeps for [`QuotaStats`]; older ones are
/// forgotten in batches once they are out of the window (their busiest windows are kept).
pub(crate) const LOG_LIMIT: usize = 100_000;

/// Returns how many tokens of a tokens-per-minute quota one output token of `model_id` uses on
/// Bedrock, per AWS's token-burndown page: 5 for Anthropic's Claude 3.7 Sonnet and the Claude 4
/// generations on (Opus, Sonnet, Haiku 4 and later), whatever the id's prefix (a cross-region
/// profile `us.`, `global.`); 1 for every other model.
///
/// The client crate keeps the same table for its own limits; the two crates share no code, so
/// that neither depends on the other.
pub fn burndown_rate(model_id: &str) -> u64 {
    let Some(i) = model_id.find("anthropic.claude-") else {
        return 1;
    };
    let name = &model_id[i + "anthropic.claude-".len()..];
    if name.starts_with("3-7-") {
        return 5;
    }
    for family in ["opus-", "sonnet-", "haiku-"] {
        if let Some(rest) = name.strip_prefix(family) {
            let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if major.parse::<u32>().is_ok_and(|m| m >= 4) {
                return 5;
            }
        }
    }
    1
}

/// Limits the requests and tokens one model admits in any sliding window of a given length.
///
/// Bedrock's quotas are per minute; the window here is configurable so that a test can scale
/// time down (a 500 ms window plays a minute). A request is admitted when the requests admitted
/// in the last `window` are fewer than [`Quota::requests`] and the tokens they were charged plus
/// its own are at most [`Quota::tokens`]. A request is charged, as Bedrock does, its input
/// tokens plus its max tokens up front (`inferenceConfig.maxTokens`, or the native field of an
/// InvokeModel body: `max_tokens`, `maxTokens`, `max_gen_len`, `max_new_tokens`,
/// `textGenerationConfig.maxTokenCount`; 0 when absent, and for embeddings), and settled once
/// the answer is known at its input plus cache writes plus its output times the model's
/// burndown rate (5 for recent Anthropic models, see [`burndown_rate`];
/// cache reads are not counted). A quota with neither limit admits everything (and still
/// counts). One server plays one region: each region's quotas are its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub(crate) window: Duration,
    pub(crate) requests: Option<u64>,
    pub(crate) tokens: Option<u64>,
}

impl Quota {
    /// Returns a quota over windows of this length, with no limit yet.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            requests: None,
            tokens: None,
        }
    }

    /// Returns the quota admitting at most `n` requests per window. Default is no limit.
    pub fn requests(mut self, n: u64) -> Self {
        self.requests = Some(n);
        self
    }

    /// Returns the quota admitting at most `n` tokens per window. Default is no limit.
    pub fn tokens(mut self, n: u64) -> Self {
        self.tokens = Some(n);
        self
    }

    /// Returns the window length.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Counts what one model's [`Quota`] did since it was set (a snapshot).
///
/// The busiest-window figures let a test assert that the server never admitted more than the
/// quota in any window. They are exact over the last 100 000 admitted requests; the windows of
/// older requests are kept as they stood when those requests left the log.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaStats {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused with `ThrottlingException` (not admitted, so not counted in any window).
    pub throttled: u64,
    /// The most admitted requests found in any window of the quota's length.
    pub max_requests_in_window: u64,
    /// The most tokens found in any window of the quota's length, with each request's tokens as
    /// corrected by its answer (so it may exceed the limit when an answer used more tokens than
    /// the request reserved).
    pub max_tokens_in_window: u64,
}

/// Names the limit that refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The window already holds `requests` requests.
    Requests,
    /// The request's tokens would take the window over `tokens`.
    Tokens,
}

impl Refusal {
    /// Returns Bedrock's own message for this refusal.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Requests => "Too many requests, please wait before trying again.",
            Self::Tokens => "Too many tokens, please wait before trying again.",
        }
    }
}

/// One admitted request: its id, admission time and tokens.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    at: Instant,
    tokens: u64,
}

/// Holds one model's quota and the log of the requests it admitted (in admission order, so
/// sorted by id and by time).
#[derive(Debug)]
pub(crate) struct QuotaLog {
    quota: Quota,
    log: VecDeque<Entry>,
    limit: usize,
    admitted: u64,
    throttled: u64,
    /// The busiest windows among those that held requests since forgotten.
    folded: (u64, u64),
}

impl QuotaLog {
    /// Returns an empty log for this quota.
    pub(crate) fn new(quota: Quota) -> Self {
        Self::with_limit(quota, LOG_LIMIT)
    }

    fn with_limit(quota: Quota, limit: usize) -> Self {
        Self {
            quota,
            log: VecDeque::new(),
            limit: limit.max(1),
            admitted: 0,
            throttled: 0,
            folded: (0, 0),
        }
    }

    /// Returns the index of the first entry inside the window ending at `now`: admitted less
    /// than `window` before it.
    fn window_start(&self, now: Instant) -> usize {
        let window = self.quota.window;
        self.log
            .partition_point(|e| now.saturating_duration_since(e.at) >= window)
    }

    /// Admits a request charged `tokens` at `now` under id `id`, or counts it throttled and
    /// returns the limit that refused it. `now` must not go back between calls.
    pub(crate) fn admit(&mut self, id: u64, now: Instant, tokens: u64) -> Result<(), Refusal> {
        let start = self.window_start(now);
        let in_window = (self.log.len() - start) as u64;
        let refusal = if self.quota.requests.is_some_and(|max| in_window >= max) {
            Some(Refusal::Requests)
        } else if self.quota.tokens.is_some_and(|max| {
            let used: u64 = self.log.range(start..).map(|e| e.tokens).sum();
            used.saturating_add(tokens) > max
        }) {
            Some(Refusal::Tokens)
        } else {
            None
        };
        if let Some(r) = refusal {
            self.throttled += 1;
            return Err(r);
        }
        self.log.push_back(Entry {
            id,
            at: now,
            tokens,
        });
        self.admitted += 1;
        self.trim(now);
        Ok(())
    }

    /// Sets the tokens of an admitted request (its input plus output tokens, once known); a
    /// request no longer in the log is ignored.
    pub(crate) fn settle(&mut self, id: u64, tokens: u64) {
        let i = self.log.partition_point(|e| e.id < id);
        if let Some(e) = self.log.get_mut(i).filter(|e| e.id == id) {
            e.tokens = tokens;
        }
    }

    /// Forgets the oldest entries out of the window once the log holds half as many again as
    /// its limit, after folding the windows that held them into `folded`.
    fn trim(&mut self, now: Instant) {
        if self.log.len() <= self.limit.saturating_add(self.limit / 2) {
            return;
        }
        let drop = self.window_start(now).min(self.log.len() - self.limit);
        let Some(last) = drop.checked_sub(1).and_then(|i| self.log.get(i)) else {
            return;
        };
        // Every window holding a dropped entry ends before `last.at + window`.
        let end_at = last.at + self.quota.window;
        let end = self.log.partition_point(|e| e.at < end_at);
        let (r, t) = busiest(self.log.range(..end).copied(), self.quota.window);
        self.folded = (self.folded.0.max(r), self.folded.1.max(t));
        self.log.drain(..drop);
    }

    /// Returns the counts and busiest windows so far.
    pub(crate) fn stats(&self) -> QuotaStats {
        let (r, t) = busiest(self.log.iter().copied(), self.quota.window);
        QuotaStats {
            admitted: self.admitted,
            throttled: self.throttled,
            max_requests_in_window: r.max(self.folded.0),
            max_tokens_in_window: t.max(self.folded.1),
        }
    }
}

/// Returns the most requests and the most tokens in any window of length `window`, windows being
/// `(t - window, t]` for each entry time `t` (what admission checks); an entry always counts in
/// its own window.
fn busiest(entries: impl Iterator<Item = Entry> + Clone, window: Duration) -> (u64, u64) {
    let mut starts = entries.clone();
    let mut first = starts.next();
    let (mut count, mut tokens) = (0u64, 0u64);
    let (mut max_count, mut max_tokens) = (0, 0);
    for e in entries {
        count += 1;
        tokens += e.tokens;
        while let Some(s) = first.filter(|s| count > 1 && e.at.duration_since(s.at) >= window) {
            count -= 1;
            tokens -= s.tokens;
            first = starts.next();
        }
        max_count = max_count.max(count);
        max_tokens = max_tokens.max(tokens);
    }
    (max_count, max_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Admits at these offsets from `t0` (ids in order); returns which ones were admitted.
    fn run(log: &mut QuotaLog, t0: Instant, calls: &[(u64, u64)]) -> Vec<Result<(), Refusal>> {
        calls
            .iter()
            .enumerate()
            .map(|(id, &(at, tokens))| log.admit(id as u64, t0 + ms(at), tokens))
            .collect()
    }

    #[test]
    fn requests_slide_with_the_window() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(ms(100)).requests(2));
        let got = run(
            &mut log,
            t0,
            &[(0, 1), (10, 1), (50, 1), (100, 1), (105, 1), (110, 1)],
        );
        let r = Err(Refusal::Requests);
        // At 100 the entry of 0 has left (exactly one window old); at 110 the entry of 10 has.
        assert_eq!(got, [Ok(()), Ok(()), r, Ok(()), r, Ok(())]);
        let s = log.stats();
        assert_eq!((s.admitted, s.throttled), (4, 2));
        assert_eq!(s.max_requests_in_window, 2);
        assert_eq!(s.max_tokens_in_window, 2);
    }

    #[test]
    fn tokens_count_up_to_the_limit_inclusive() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(ms(100)).tokens(10));
        let got = run(&mut log, t0, &[(0, 6), (1, 5), (2, 4), (3, 1), (102, 10)]);
        let t = Err(Refusal::Tokens);
        assert_eq!(got, [Ok(()), t, Ok(()), t, Ok(())]);
        let s = log.stats();
        assert_eq!((s.admitted, s.throttled), (3, 2));
        assert_eq!(s.max_tokens_in_window, 10);
        assert_eq!(s.max_requests_in_window, 2);
    }

    #[test]
    fn a_request_over_the_whole_limit_is_always_refused() {
        let mut log = QuotaLog::new(Quota::new(ms(100)).tokens(10).requests(5));
        assert_eq!(log.admit(0, Instant::now(), 11), Err(Refusal::Tokens));
        assert_eq!(log.stats().admitted, 0);
    }

    #[test]
    fn the_requests_limit_is_checked_first() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(ms(100)).requests(1).tokens(1));
        assert_eq!(log.admit(0, t0, 1), Ok(()));
        assert_eq!(log.admit(1, t0, 1), Err(Refusal::Requests));
    }

    #[test]
    fn no_limit_admits_everything() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(ms(100)));
        assert!(
            run(&mut log, t0, &[(0, 1000); 50])
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(log.stats().max_requests_in_window, 50);
        assert_eq!(log.stats().max_tokens_in_window, 50_000);
    }

    #[test]
    fn settling_corrects_the_charge() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(ms(100)).tokens(20));
        assert_eq!(log.admit(7, t0, 13), Ok(()));
        assert_eq!(log.admit(8, t0, 13), Err(Refusal::Tokens));
        log.settle(7, 6);
        log.settle(99, 1); // unknown ids are ignored
        assert_eq!(log.admit(9, t0, 13), Ok(()));
        assert_eq!(log.stats().max_tokens_in_window, 19);
    }

    #[test]
    fn busiest_window_is_found_anywhere_in_the_run() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(ms(100)));
        // Three in [200, 299], two elsewhere; a window of (t - 100, t].
        run(
            &mut log,
            t0,
            &[(0, 1), (150, 1), (200, 5), (250, 5), (299, 5), (400, 1)],
        );
        let s = log.stats();
        assert_eq!(s.max_requests_in_window, 3);
        assert_eq!(s.max_tokens_in_window, 15);
    }

    #[test]
    fn a_zero_window_counts_each_request_alone() {
        let t0 = Instant::now();
        let mut log = QuotaLog::new(Quota::new(Duration::ZERO).requests(1));
        assert!(
            run(&mut log, t0, &[(0, 1), (0, 1), (1, 1)])
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(log.stats().max_requests_in_window, 1);
    }

    #[test]
    fn trimming_keeps_the_busiest_windows() {
        let t0 = Instant::now();
        let mut log = QuotaLog::with_limit(Quota::new(ms(100)), 4);
        // A burst of 5 at the start, then one request per window.
        let mut calls = vec![(0, 2); 5];
        calls.extend((1..20).map(|i| (i * 200, 1)));
        run(&mut log, t0, &calls);
        assert!(log.log.len() <= 6, "{}", log.log.len());
        let s = log.stats();
        assert_eq!(s.admitted, 24);
        assert_eq!(s.max_requests_in_window, 5);
        assert_eq!(s.max_tokens_in_window, 10);
    }

    #[test]
    fn trimming_never_drops_the_window_in_force() {
        let t0 = Instant::now();
        let mut log = QuotaLog::with_limit(Quota::new(ms(1000)).requests(8), 2);
        let got = run(&mut log, t0, &[(0, 1); 9]);
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 8);
        assert_eq!(log.log.len(), 8);
    }
}
