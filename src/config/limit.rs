//! The limits' public settings: [`LimitMode`], [`ModelLimit`], and [`burndown_rate`] (output
//! tokens' weight in a tokens-per-minute quota). Plain configuration, kept here with the
//! factory's other settings; the module `limit` shows them, with the limits' figures.

use std::time::Duration;

/// What a call over the limit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitMode {
    /// Wait for room, first come first served, in a queue of at most `max_queue` calls, for at
    /// most `deadline`; a call that finds the queue full, or whose deadline passes, fails with
    /// `Throttled`. The default, with a queue of 1024 and a 10 s deadline.
    Wait {
        /// Most calls waiting at once.
        max_queue: usize,
        /// Longest wait of one call.
        deadline: Duration,
    },
    /// Fail at once with `Throttled` (and [`Error::retry_after`](crate::error::Error::retry_after)).
    Reject,
}

impl LimitMode {
    /// Waits in a queue of at most `max_queue` calls, each for at most `deadline`.
    pub fn wait(max_queue: usize, deadline: Duration) -> Self {
        LimitMode::Wait {
            max_queue,
            deadline,
        }
    }
}

impl Default for LimitMode {
    fn default() -> Self {
        LimitMode::wait(1024, Duration::from_secs(10))
    }
}

/// The client-side limit of one model in each region: requests and tokens per sliding window.
///
/// It counts as Bedrock counts its quotas: per model id (a cross-region inference profile is an
/// id of its own) and per region (each region of a multi-region factory has a limit of this
/// size, and its calls count against it only; see
/// [`model_limit_in`](crate::LlmFactoryBuilder::model_limit_in) for a region's own); Converse,
/// InvokeModel and their streams draw on the same limit. A call reserves its input plus its
/// `max_tokens` when it starts, and is settled when it ends at its input plus cache writes plus
/// its output times the model's burndown rate (5 for the Anthropic models that AWS lists on its
/// token-burndown page, Claude 3.7 Sonnet and the Claude 4 generations on; 1 else; see
/// [`burndown`](ModelLimit::burndown)).
///
/// ```
/// use bedrock_pool::limit::{LimitMode, ModelLimit};
/// let limit = ModelLimit::per_minute().requests(60).tokens(100_000).mode(LimitMode::Reject);
/// # let _ = limit;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelLimit {
    /// Most calls admitted in any window; `None` for no request limit.
    pub requests: Option<u64>,
    /// Most tokens (input and output) admitted in any window; `None` for no token limit.
    pub tokens: Option<u64>,
    /// The window's length: 60 s for Bedrock's per-minute quotas (shorter in tests).
    pub window: Duration,
    /// What a call over the limit does.
    pub mode: LimitMode,
    /// How many tokens of the limit one output token uses at settlement; `None` for the
    /// model's own rate (see [`burndown_rate`]).
    pub burndown: Option<u64>,
}

impl ModelLimit {
    /// A limit per minute, as Bedrock's quotas are counted; set `requests` and/or `tokens`.
    pub fn per_minute() -> Self {
        ModelLimit::per_window(Duration::from_secs(60))
    }

    /// A limit per sliding window of `window`.
    pub fn per_window(window: Duration) -> Self {
        ModelLimit {
            requests: None,
            tokens: None,
            window,
            mode: LimitMode::default(),
            burndown: None,
        }
    }

    /// Sets how many tokens of the limit one output token uses (the model's burndown rate):
    /// for a model newer than this crate's table. At least 1.
    pub fn burndown(mut self, rate: u64) -> Self {
        self.burndown = Some(rate);
        self
    }

    /// Admits at most `n` calls per window.
    pub fn requests(mut self, n: u64) -> Self {
        self.requests = Some(n);
        self
    }

    /// Admits at most `n` tokens (input estimate plus `max_tokens`, corrected by the usage)
    /// per window.
    pub fn tokens(mut self, n: u64) -> Self {
        self.tokens = Some(n);
        self
    }

    /// Sets what a call over the limit does.
    pub fn mode(mut self, mode: LimitMode) -> Self {
        self.mode = mode;
        self
    }
}

/// Returns how many tokens of a tokens-per-minute quota one output token of `model_id` uses on
/// Bedrock: 5 for Anthropic's Claude 3.7 Sonnet and the Claude 4 generations on (Opus, Sonnet,
/// Haiku 4 and later), whatever the id's prefix (a cross-region profile `us.`, `global.`); 1
/// for every other model.
pub fn burndown_rate(model_id: &str) -> u64 {
    let Some(i) = model_id.find("anthropic.claude-") else {
        return 1;
    };
    let name = &model_id[i + "anthropic.claude-".len()..];
    if name.starts_with("3-7-") {
        return 5;
    }
    // claude-{family}-{major}[-{minor}]: the fourth generation on.
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
