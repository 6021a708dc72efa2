//! The Lua scripts: each one atomic, each touching the keys of one subject (one slot).
//! TTLs and "revoked before" instants only ever grow, so instances writing in any
//! order, with skewed clocks, never un-revoke.

/// A check of a refresh token (or of any token when the mirror is off): `KEYS` jti,
/// sub, then the family's `famrev` and (refresh tokens) `fam`; `ARGV` iat, jti, now.
/// `{0}` active, `{1, until}` reused (the family is revoked here), `{2}` revoked.
const CHECK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {2, 0} end
local before = redis.call('HGET', KEYS[2], 'b')
if before and tonumber(ARGV[1]) <= tonumber(before) then return {2, 0} end
if #KEYS < 3 then return {0, 0} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {2, 0} end
if #KEYS < 4 then return {0, 0} end
local live = redis.call('HGETALL', KEYS[4])
if #live == 0 then return {0, 0} end
local now = tonumber(ARGV[3])
for i = 1, #live, 2 do
  local d = tonumber(live[i + 1])
  if live[i] == ARGV[2] and (d == 0 or d >= now) then return {0, 0} end
end
local ttl = math.max(redis.call('TTL', KEYS[4]), 1)
redis.call('SET', KEYS[3], string.format('%d', now + ttl), 'EX', ttl)
redis.call('DEL', KEYS[4])
return {1, now + ttl}
";

/// A revocation: `KEYS` jti, then famrev and fam; `ARGV` now, the TTLs of the token
/// and of the family. A family's revocation lives at least as long as its rotation
/// state. Returns the untils kept `{token, family}`.
const REVOKE: &str = r"
local now = tonumber(ARGV[1])
local function keep(key, ttl)
  local current = redis.call('TTL', key)
  if current < ttl then
    redis.call('SET', key, string.format('%d', now + ttl), 'EX', ttl)
    return now + ttl
  end
  return now + current
end
local token = keep(KEYS[1], tonumber(ARGV[2]))
local family = 0
if #KEYS > 1 then
  family = keep(KEYS[2], math.max(tonumber(ARGV[3]), redis.call('TTL', KEYS[3])))
end
return {token, family}
";

/// "Log out everywhere": `KEYS` sub; `ARGV` before, now, ttl. Returns `{before, until}`
/// as kept (the maximum of every call).
const REVOKE_SUBJECT: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
local before = math.max(current, tonumber(ARGV[1]))
local ttl = math.max(redis.call('TTL', KEYS[1]), tonumber(ARGV[3]))
local untl = tonumber(ARGV[2]) + ttl
redis.call('HSET', KEYS[1], 'b', string.format('%d', before), 'u', string.format('%d', untl))
redis.call('EXPIRE', KEYS[1], ttl)
return {before, untl}
";

/// A rotation: `KEYS` fam, famrev; `ARGV` presented, next, now, grace, ttl. `{0}`
/// rotated, `{1, until}` reused (the family is revoked here), `{2}` revoked before. A
/// grace use makes the current token join the window with the window's deadline, so a
/// family never keeps two live chains once the window closes.
const ROTATE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return {2, 0} end
local now = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local live = redis.call('HGETALL', KEYS[1])
local present = nil
local count = 0
for i = 1, #live, 2 do
  local d = tonumber(live[i + 1])
  if d ~= 0 and d < now then
    redis.call('HDEL', KEYS[1], live[i])
  else
    count = count + 1
    if live[i] == ARGV[1] then present = d end
  end
end
local ttl = math.max(redis.call('TTL', KEYS[1]), tonumber(ARGV[5]))
if present == nil and count > 0 then
  redis.call('SET', KEYS[2], string.format('%d', now + ttl), 'EX', ttl)
  redis.call('DEL', KEYS[1])
  return {1, now + ttl}
end
if present == 0 then
  redis.call('DEL', KEYS[1])
  if grace > 0 then redis.call('HSET', KEYS[1], ARGV[1], now + grace) end
elseif present ~= nil then
  for i = 1, #live, 2 do
    if tonumber(live[i + 1]) == 0 then redis.call('HSET', KEYS[1], live[i], present) end
  end
elseif grace > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], now + grace)
end
redis.call('HSET', KEYS[1], ARGV[2], 0)
redis.call('EXPIRE', KEYS[1], ttl)
return {0, 0}
";

/// Appends a revocation to the log and trims entries older than the retention, both
/// by Redis's own ids (never the writer's clock): `KEYS` log; `ARGV` retention in
/// milliseconds, then the entry's field/value pairs. The entry names the entry before
/// it (`p`, `0-0` for the first): a follower that reads another predecessor than the
/// last entry it read knows it missed entries. Returns the entry's id.
const APPEND: &str = r"
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = '0-0'
if #newest > 0 then previous = newest[1][1] end
local id = redis.call('XADD', KEYS[1], '*', 'p', previous, unpack(ARGV, 2))
local ms = tonumber(string.match(id, '^(%d+)'))
local floor = ms - tonumber(ARGV[1])
if floor > 0 then redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', floor)) end
return id
";

/// The scripts, hashed once.
pub(super) struct Scripts {
    pub(super) check: redis::Script,
    pub(super) revoke: redis::Script,
    pub(super) revoke_subject: redis::Script,
    pub(super) rotate: redis::Script,
    pub(super) append: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            check: redis::Script::new(CHECK),
            revoke: redis::Script::new(REVOKE),
            revoke_subject: redis::Script::new(REVOKE_SUBJECT),
            rotate: redis::Script::new(ROTATE),
            append: redis::Script::new(APPEND),
        }
    }
}
