//! The Lua scripts that keep the shared window and the cooldowns atomic, their keys, and the
//! types their answers turn into.
//!
//! Every key starts with the prefix as a hash tag, `{prefix}:`, so that all the keys of a
//! fleet live in one hash slot: in a Redis Cluster every script touches one slot (one node),
//! a call costs one round trip, and the region cooldowns that every model's acquire reads
//! exist once. The price: one fleet's keys live on one shard (different fleets, with different
//! prefixes, spread over the shards). A fleet makes a few round trips per call, far below what
//! one shard serves.
//!
//! Per model and window length: `{prefix}:win:{window ms}:{model}`, a sorted set of admitted
//! entries (member = the client's ticket id, score = when the entry leaves the window, in ms
//! of Redis `TIME`, so the fleet shares one clock), and `{prefix}:tok:{window ms}:{model}`, a
//! hash of member -> tokens plus `_sum` (tokens of the entries in the set). Per fleet:
//! `{prefix}:procs`, the processes seen admitting lately (for the outage share), and
//! `{prefix}:gone:{ticket}`, a tombstone left by [`FORGET`] so that a late copy of a forgotten
//! acquire adds nothing.
//!
//! As in the local window, an entry leaves one window after its call **ended**: admitted, it
//! leaves two windows later (a call in flight, or a process that died during it); settled
//! ([`SETTLE`]) when the call ends, it leaves one window after that. Both keys expire three
//! windows after the last admission, two after the last settlement.

use std::time::Duration;

/// Limits of one model's sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowSpec {
    /// Requests admitted per window; `None` for no limit.
    pub(crate) requests: Option<u64>,
    /// Tokens admitted per window; `None` for no limit.
    pub(crate) tokens: Option<u64>,
    /// The window's length.
    pub(crate) window: Duration,
}

impl WindowSpec {
    pub(crate) fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Returns the window in whole milliseconds, at least 1.
    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX / 4)
            .max(1)
    }
}

/// Identifies an admitted entry, for [`Fleet::settle`](super::Fleet::settle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The entry's member in the model's log, made by the client before it asks, so that an
    /// acquire sent twice finds its own entry, and one that timed out can be forgotten.
    pub(crate) id: u64,
    /// Its admission time (Redis clock, ms).
    pub(crate) at_ms: u64,
}

/// Returns a new ticket id: random, below 2^53 (exact in Lua's numbers, though the scripts
/// keep it a string).
pub(crate) fn new_ticket_id() -> u64 {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (r >> 11).max(1)
}

/// The shared window's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted and logged; correct its tokens later with the ticket.
    Admitted(Ticket),
    /// Not admitted; enough of the oldest entries leave the window after this long.
    RetryAfter(Duration),
    /// The request alone is over a limit (tokens over the tokens limit, or a zero limit).
    NeverFits,
}

/// The answer of one `acquire`: the admission and the cooldowns asked about, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acquired {
    /// The window's answer; `Admitted` with a zero ticket when the spec had no limit.
    pub(crate) admission: Admission,
    /// Per cooldown key asked about: the cooldown left, or `None` when there is none.
    pub(crate) cooldowns: Vec<Option<Duration>>,
    /// The fleet's processes that asked within the last two windows, this one included (0 when
    /// the spec had no limit: not counted then).
    pub(crate) processes: u64,
    /// The requests and tokens in the shared window after this admission (0 when unknown).
    pub(crate) fill: (u64, u64),
}

/// A cooldown shared by the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CooldownKey {
    /// A whole region cools down.
    Region(String),
    /// One model in one region cools down (its breaker opened).
    ModelRegion {
        /// The model id.
        model: String,
        /// The region.
        region: String,
    },
    /// The half-open trial of one model in one region, claimed by one process of the fleet.
    Trial {
        /// The model id.
        model: String,
        /// The region.
        region: String,
    },
    /// One model was throttled in one region: that region comes last for it.
    Throttled {
        /// The model id.
        model: String,
        /// The region.
        region: String,
    },
}

impl CooldownKey {
    /// Returns the Redis key under `prefix`.
    pub(crate) fn redis_key(&self, prefix: &str) -> String {
        match self {
            CooldownKey::Region(r) => format!("{{{prefix}}}:cool:region:{r}"),
            CooldownKey::ModelRegion { model, region } => {
                format!("{{{prefix}}}:cool:model:{model}|{region}")
            }
            CooldownKey::Throttled { model, region } => {
                format!("{{{prefix}}}:cool:throttle:{model}|{region}")
            }
            CooldownKey::Trial { model, region } => {
                format!("{{{prefix}}}:trial:{model}|{region}")
            }
        }
    }
}

/// Returns the model's window log key and its tokens hash key, for a window of `window_ms`.
///
/// The window's length is part of the key: processes configured with different windows for
/// one model keep separate windows, instead of trimming and expiring each other's entries.
pub(crate) fn window_keys(prefix: &str, model_id: &str, window_ms: u64) -> [String; 2] {
    [
        format!("{{{prefix}}}:win:{window_ms}:{model_id}"),
        format!("{{{prefix}}}:tok:{window_ms}:{model_id}"),
    ]
}

/// Returns the tombstone key of a forgotten ticket.
pub(crate) fn gone_key(prefix: &str, ticket: u64) -> String {
    format!("{{{prefix}}}:gone:{ticket}")
}

/// Returns the key of the processes seen admitting lately.
pub(crate) fn procs_key(prefix: &str) -> String {
    format!("{{{prefix}}}:procs")
}

/// Acquire: KEYS = log, tokens, the ticket's tombstone, the processes, cooldown keys...; ARGV =
/// limited (0/1), requests limit (-1 for none), tokens limit (-1 for none), window ms, this
/// request's tokens, the client's ticket id, the process's id. Answers {status, retry ms, live
/// processes, at ms, pttl per cooldown key...}; status 0 admitted (also when the ticket is in
/// the log already: a repeat of the same acquire; or forgotten: a late copy of one that timed
/// out), 1 retry later, 2 never fits, 3 not limited (cooldowns read only); then the window's
/// requests and tokens after this admission (for the outage share).
pub(crate) const ACQUIRE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local out = {0, 0, 0, 0, 0, 0}
for i = 5, #KEYS do out[#out + 1] = redis.call('PTTL', KEYS[i]) end
local function answer(status, wait, procs, at)
  out[1], out[2], out[3], out[4] = status, wait, procs, at
  return out
end
if ARGV[1] == '0' then return answer(3, 0, 0, 0) end
local log, toks = KEYS[1], KEYS[2]
local rl, tl = tonumber(ARGV[2]), tonumber(ARGV[3])
local win, n, ticket = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The processes that asked within two windows share the limit while Redis is out of reach.
redis.call('ZADD', KEYS[4], now + 2 * win, ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('PEXPIRE', KEYS[4], 2 * win)
local procs = redis.call('ZCARD', KEYS[4])
if rl == 0 or (tl >= 0 and n > tl) then return answer(2, 0, procs, 0) end
if redis.call('ZSCORE', log, ticket) or redis.call('EXISTS', KEYS[3]) == 1 then
  return answer(0, 0, procs, now)
end
-- Entries that left the window go, and their tokens leave the sum (in batches: unpack's limit).
while true do
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now, 'LIMIT', 0, 500)
  if #old == 0 then break end
  local freed = 0
  for _, v in ipairs(redis.call('HMGET', toks, unpack(old))) do freed = freed + (tonumber(v) or 0) end
  redis.call('ZREM', log, unpack(old))
  redis.call('HDEL', toks, unpack(old))
  redis.call('HINCRBY', toks, '_sum', -freed)
  if #old < 500 then break end
end
local count = redis.call('ZCARD', log)
-- An empty log holds no tokens: a sum left by a lost (evicted) log would refuse every call.
if count == 0 then redis.call('DEL', toks) end
local sum = tonumber(redis.call('HGET', toks, '_sum') or '0')
out[5], out[6] = count, sum
local ok_r = rl < 0 or count < rl
local ok_t = tl < 0 or sum + n <= tl
if ok_r and ok_t then
  redis.call('ZADD', log, now + 2 * win, ticket)
  redis.call('HSET', toks, ticket, n)
  redis.call('HINCRBY', toks, '_sum', n)
  redis.call('PEXPIRE', log, 3 * win)
  redis.call('PEXPIRE', toks, 3 * win)
  out[5], out[6] = count + 1, sum + n
  return answer(0, 0, procs, now)
end
-- Not admitted: wait until enough of the oldest entries leave the window.
local wait = 1
if not ok_r then
  local e = redis.call('ZRANGE', log, count - rl, count - rl, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) - now)
end
if not ok_t then
  local need, freed, from = sum + n - tl, 0, 0
  while freed < need and from < count do
    local e = redis.call('ZRANGE', log, from, from + 499, 'WITHSCORES')
    local ids = {}
    for i = 1, #e, 2 do ids[#ids + 1] = e[i] end
    local ts = redis.call('HMGET', toks, unpack(ids))
    for i = 1, #ids do
      freed = freed + (tonumber(ts[i]) or 0)
      if freed >= need then
        wait = math.max(wait, tonumber(e[2 * i]) - now)
        break
      end
    end
    from = from + 500
  end
end
return answer(1, wait, procs, 0)
"#;

/// Settle: KEYS = log, tokens; ARGV = ticket id, admitted ms, actual tokens (-1 to keep the
/// estimate), window ms. The call ended: its entry leaves one window from now, with its actual
/// tokens. Only that exact entry, if still in the window; answers 1 if it was.
pub(crate) const SETTLE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[1], id) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, win = tonumber(ARGV[3]), tonumber(ARGV[4])
if n >= 0 then
  local old = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  redis.call('HSET', KEYS[2], id, n)
  redis.call('HINCRBY', KEYS[2], '_sum', n - old)
end
redis.call('ZADD', KEYS[1], 'XX', now + win, id)
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < 2 * win then redis.call('PEXPIRE', k, 2 * win) end
end
return 1
"#;

/// Renew: KEYS = log, tokens; ARGV = ticket id, admitted ms, window ms. The call is still in flight:
/// its entry stays two windows from now (as at admission), so that a call longer than two
/// windows keeps counting, as in the local window. Only that exact entry, if still there (an
/// entry already settled, or trimmed, is left alone); answers 1 if it was renewed.
pub(crate) const RENEW: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local id = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[3])
local score = redis.call('ZSCORE', KEYS[1], id)
if not score or tonumber(score) <= now + win then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + 2 * win, id)
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < 3 * win then redis.call('PEXPIRE', k, 3 * win) end
end
return 1
"#;

/// Forget: KEYS = log, tokens, the ticket's tombstone; ARGV = ticket id, window ms. An acquire
/// that timed out on the client may still have run on the server, or still be on its way (a
/// cluster client sends a command again after a redirect): its entry (if any) leaves the
/// window, its tokens the sum, and a tombstone keeps a late copy from adding it again.
/// Answers 1 if there was one.
pub(crate) const FORGET: &str = r#"
redis.call('SET', KEYS[3], '1', 'PX', 3 * tonumber(ARGV[2]))
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], '_sum', -n)
return 1
"#;

/// Cooldown: KEYS = the cooldown key; ARGV = ms. Sets it for that long unless it already has
/// longer to run (never shortens); answers 1 if it was set.
pub(crate) const COOLDOWN: &str = r#"
local left = redis.call('PTTL', KEYS[1])
if left >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
"#;

/// Turns the acquire script's answer into an [`Acquired`]; `None` if it has the wrong shape.
pub(crate) fn parse_acquire(v: &[i64], cooldowns: usize, ticket: u64) -> Option<Acquired> {
    if v.len() != 6 + cooldowns {
        return None;
    }
    let ms = |x: i64| Duration::from_millis(u64::try_from(x).unwrap_or(0));
    let admission = match v[0] {
        0 | 3 => Admission::Admitted(Ticket {
            id: ticket,
            at_ms: u64::try_from(v[3]).ok()?,
        }),
        1 => Admission::RetryAfter(ms(v[1].max(1))),
        2 => Admission::NeverFits,
        _ => return None,
    };
    // PTTL: -2 no key, -1 no expiry (not ours: we always set one), else ms left.
    let cooldowns = v[6..].iter().map(|&t| (t > 0).then(|| ms(t))).collect();
    let n = |x: i64| u64::try_from(x).unwrap_or(0);
    Some(Acquired {
        admission,
        cooldowns,
        processes: u64::try_from(v[2]).ok()?,
        fill: (n(v[4]), n(v[5])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        assert_eq!(
            CooldownKey::Region("us-east-1".into()).redis_key("p"),
            "{p}:cool:region:us-east-1"
        );
        let k = CooldownKey::ModelRegion {
            model: "m".into(),
            region: "eu-west-1".into(),
        };
        assert_eq!(k.redis_key("p"), "{p}:cool:model:m|eu-west-1");
        assert_eq!(
            window_keys("p", "m", 60_000),
            ["{p}:win:60000:m", "{p}:tok:60000:m"]
        );
        assert_eq!(gone_key("p", 7), "{p}:gone:7");
        assert_eq!(procs_key("p"), "{p}:procs");
    }

    #[test]
    fn answers_parse() {
        let a = parse_acquire(&[1, 250, 3, 0, 10, 400, -2, 900], 2, 7).unwrap();
        assert_eq!((a.processes, a.fill), (3, (10, 400)));
        assert_eq!(
            a.admission,
            Admission::RetryAfter(Duration::from_millis(250))
        );
        assert_eq!(a.cooldowns, vec![None, Some(Duration::from_millis(900))]);
        let a = parse_acquire(&[0, 0, 0, 1_700_000_000_000, 1, 1], 0, 7).unwrap();
        assert_eq!(
            a.admission,
            Admission::Admitted(Ticket {
                id: 7,
                at_ms: 1_700_000_000_000
            })
        );
        assert_eq!(
            parse_acquire(&[2, 0, 0, 0, 0, 0, -1], 1, 7)
                .unwrap()
                .cooldowns,
            vec![None]
        );
        assert!(parse_acquire(&[0, 0, 0, 0], 0, 7).is_none());
        assert!(parse_acquire(&[9, 0, 0, 0, 0, 0], 0, 7).is_none());
    }

    #[test]
    fn window_is_whole_milliseconds() {
        let spec = |w| WindowSpec {
            requests: Some(1),
            tokens: None,
            window: w,
        };
        assert_eq!(spec(Duration::from_micros(10)).window_ms(), 1);
        assert_eq!(spec(Duration::from_secs(60)).window_ms(), 60_000);
    }
}
