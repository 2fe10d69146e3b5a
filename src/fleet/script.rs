//! The Lua scripts that keep the shared window and the cooldowns atomic, their keys, and the
//! types their answers turn into.
//!
//! Per model: `{prefix}:win:{model}`, a sorted set of admitted entries (member = `seq:admitted
//! ms`, score = when the entry leaves the window, in ms of Redis `TIME`, so the fleet shares
//! one clock), and `{prefix}:tok:{model}`, a hash of member -> tokens plus `_sum` (tokens of
//! the entries in the set) and `_seq` (the id counter).
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
    /// The entry's id in the model's log.
    pub(crate) id: u64,
    /// Its admission time (Redis clock, ms): with `id`, the entry's member.
    pub(crate) at_ms: u64,
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
}

impl CooldownKey {
    /// Returns the Redis key under `prefix`.
    pub(crate) fn redis_key(&self, prefix: &str) -> String {
        match self {
            CooldownKey::Region(r) => format!("{prefix}:cool:region:{r}"),
            CooldownKey::ModelRegion { model, region } => {
                format!("{prefix}:cool:model:{model}|{region}")
            }
        }
    }
}

/// Returns the model's window log key and its tokens hash key.
pub(crate) fn window_keys(prefix: &str, model_id: &str) -> [String; 2] {
    [
        format!("{prefix}:win:{model_id}"),
        format!("{prefix}:tok:{model_id}"),
    ]
}

/// Acquire: KEYS = log, tokens, cooldown keys...; ARGV = limited (0/1), requests limit (-1 for
/// none), tokens limit (-1 for none), window ms, this request's tokens.
/// Answers {status, retry ms, id, at ms, pttl per cooldown key...}; status 0 admitted,
/// 1 retry later, 2 never fits, 3 not limited (cooldowns read only).
pub(crate) const ACQUIRE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local out = {0, 0, 0, 0}
for i = 3, #KEYS do out[#out + 1] = redis.call('PTTL', KEYS[i]) end
local function answer(status, wait, id, at)
  out[1], out[2], out[3], out[4] = status, wait, id, at
  return out
end
if ARGV[1] == '0' then return answer(3, 0, 0, 0) end
local log, toks = KEYS[1], KEYS[2]
local rl, tl = tonumber(ARGV[2]), tonumber(ARGV[3])
local win, n = tonumber(ARGV[4]), tonumber(ARGV[5])
if rl == 0 or (tl >= 0 and n > tl) then return answer(2, 0, 0, 0) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
local sum = tonumber(redis.call('HGET', toks, '_sum') or '0')
local ok_r = rl < 0 or count < rl
local ok_t = tl < 0 or sum + n <= tl
if ok_r and ok_t then
  local seq = redis.call('HINCRBY', toks, '_seq', 1)
  local id = seq .. ':' .. now
  redis.call('ZADD', log, now + 2 * win, id)
  redis.call('HSET', toks, id, n)
  redis.call('HINCRBY', toks, '_sum', n)
  redis.call('PEXPIRE', log, 3 * win)
  redis.call('PEXPIRE', toks, 3 * win)
  return answer(0, 0, seq, now)
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
return answer(1, wait, 0, 0)
"#;

/// Settle: KEYS = log, tokens; ARGV = seq, admitted ms, actual tokens (-1 to keep the
/// estimate), window ms. The call ended: its entry leaves one window from now, with its actual
/// tokens. Only that exact entry, if still in the window; answers 1 if it was.
pub(crate) const SETTLE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local id = ARGV[1] .. ':' .. ARGV[2]
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

/// Cooldown: KEYS = the cooldown key; ARGV = ms. Sets it for that long unless it already has
/// longer to run (never shortens); answers 1 if it was set.
pub(crate) const COOLDOWN: &str = r#"
local left = redis.call('PTTL', KEYS[1])
if left >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
"#;

/// Turns the acquire script's answer into an [`Acquired`]; `None` if it has the wrong shape.
pub(crate) fn parse_acquire(v: &[i64], cooldowns: usize) -> Option<Acquired> {
    if v.len() != 4 + cooldowns {
        return None;
    }
    let ms = |x: i64| Duration::from_millis(u64::try_from(x).unwrap_or(0));
    let admission = match v[0] {
        0 | 3 => Admission::Admitted(Ticket {
            id: u64::try_from(v[2]).ok()?,
            at_ms: u64::try_from(v[3]).ok()?,
        }),
        1 => Admission::RetryAfter(ms(v[1].max(1))),
        2 => Admission::NeverFits,
        _ => return None,
    };
    // PTTL: -2 no key, -1 no expiry (not ours: we always set one), else ms left.
    let cooldowns = v[4..].iter().map(|&t| (t > 0).then(|| ms(t))).collect();
    Some(Acquired {
        admission,
        cooldowns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        assert_eq!(
            CooldownKey::Region("us-east-1".into()).redis_key("p"),
            "p:cool:region:us-east-1"
        );
        let k = CooldownKey::ModelRegion {
            model: "m".into(),
            region: "eu-west-1".into(),
        };
        assert_eq!(k.redis_key("p"), "p:cool:model:m|eu-west-1");
        assert_eq!(window_keys("p", "m"), ["p:win:m", "p:tok:m"]);
    }

    #[test]
    fn answers_parse() {
        let a = parse_acquire(&[1, 250, 0, 0, -2, 900], 2).unwrap();
        assert_eq!(
            a.admission,
            Admission::RetryAfter(Duration::from_millis(250))
        );
        assert_eq!(a.cooldowns, vec![None, Some(Duration::from_millis(900))]);
        let a = parse_acquire(&[0, 0, 7, 1_700_000_000_000], 0).unwrap();
        assert_eq!(
            a.admission,
            Admission::Admitted(Ticket {
                id: 7,
                at_ms: 1_700_000_000_000
            })
        );
        assert_eq!(
            parse_acquire(&[2, 0, 0, 0, -1], 1).unwrap().cooldowns,
            vec![None]
        );
        assert!(parse_acquire(&[0, 0, 0], 0).is_none());
        assert!(parse_acquire(&[9, 0, 0, 0], 0).is_none());
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
