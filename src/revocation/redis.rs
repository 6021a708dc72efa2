//! A [`RevocationStore`] in Redis, shared by every instance.
//!
//! Key layout (with the default prefix `tower-jwt-auth:`), every key with a TTL equal
//! to the remaining life of what it concerns:
//!
//! | key | value |
//! | --- | --- |
//! | `tower-jwt-auth:jti:<jti>` | `1`: the token is revoked |
//! | `tower-jwt-auth:famrev:<family>` | `1`: the refresh family is revoked |
//! | `tower-jwt-auth:fam:<family>` | hash: usable refresh `jti` → `0` (current) or grace deadline |
//! | `tower-jwt-auth:sub:<sub>` | seconds: tokens of `sub` issued at or before are revoked |
//!
//! A check, a revocation and a rotation are each one round trip: one atomic script.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{
    Revocation, RevocationStore, Rotation, RotationOutcome, StoreError, StoreFuture, TokenStatus,
    family_of,
};
use crate::claims::{TokenPayload, TokenType};

/// A check: `KEYS` jti, sub, then the family's `famrev` and (refresh tokens) `fam`;
/// `ARGV` iat, jti, now. 0 active, 1 reused (the family is revoked here), 2 revoked.
const CHECK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
local before = redis.call('GET', KEYS[2])
if before and tonumber(ARGV[1]) <= tonumber(before) then return 2 end
if #KEYS < 3 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if #KEYS < 4 then return 0 end
local live = redis.call('HGETALL', KEYS[4])
if #live == 0 then return 0 end
local now = tonumber(ARGV[3])
for i = 1, #live, 2 do
  local d = tonumber(live[i + 1])
  if live[i] == ARGV[2] and (d == 0 or d >= now) then return 0 end
end
local ttl = math.max(redis.call('TTL', KEYS[4]), 1)
redis.call('SET', KEYS[3], '1', 'EX', ttl)
redis.call('DEL', KEYS[4])
return 1
";

/// A revocation: `KEYS` jti, then famrev and fam; `ARGV` the TTLs of the token and
/// the family. TTLs only ever grow: a revocation never expires before the family
/// state it guards, whatever order instances write in.
const REVOKE: &str = r"
local function keep(key, ttl)
  if redis.call('TTL', key) < ttl then redis.call('SET', key, '1', 'EX', ttl) end
end
keep(KEYS[1], tonumber(ARGV[1]))
if #KEYS > 1 then
  keep(KEYS[2], math.max(tonumber(ARGV[2]), redis.call('TTL', KEYS[3])))
end
return 0
";

/// "Log out everywhere": `KEYS` sub; `ARGV` before, ttl. Keeps the maximum of both, so
/// instances with skewed clocks never un-revoke.
const REVOKE_SUBJECT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = math.max(current, tonumber(ARGV[1]))
local ttl = math.max(redis.call('TTL', KEYS[1]), tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%d', before), 'EX', ttl)
return 0
";

/// A rotation: `KEYS` fam, famrev; `ARGV` presented, next, now, grace, ttl. 0
/// rotated, 1 reused (the family is revoked here), 2 revoked before. A grace use makes
/// the current token join the window with the window's deadline, so a family never
/// keeps two live chains once the window closes.
const ROTATE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
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
  redis.call('SET', KEYS[2], '1', 'EX', ttl)
  redis.call('DEL', KEYS[1])
  return 1
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
return 0
";

/// The scripts, hashed once.
struct Scripts {
    check: redis::Script,
    revoke: redis::Script,
    revoke_subject: redis::Script,
    rotate: redis::Script,
}

/// Revocations in Redis, through a [`ConnectionManager`] that reconnects by itself.
///
/// Every call is bounded by a timeout (default 500 ms); an error or a timeout fails
/// closed (the layer answers 503). When Redis comes back, the next request succeeds
/// without restarting the application.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (for example `redis://127.0.0.1:6379`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::new(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::new(e.to_string()))?;
        Ok(Self::new(conn))
    }

    /// Uses an existing connection manager.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Arc::from("tower-jwt-auth:"),
            timeout: Duration::from_millis(500),
            scripts: Arc::new(Scripts {
                check: redis::Script::new(CHECK),
                revoke: redis::Script::new(REVOKE),
                revoke_subject: redis::Script::new(REVOKE_SUBJECT),
                rotate: redis::Script::new(ROTATE),
            }),
        }
    }

    /// The prefix of every key (default `tower-jwt-auth:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The bound on every call (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn run<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let timeout = self.timeout;
        StoreFuture::boxed(async move {
            match tokio::time::timeout(timeout, f).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StoreError::new(format!("redis: {}", e.kind_name()))),
                Err(_) => Err(StoreError::new("redis: timed out")),
            }
        })
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    // The error's category only: its text may echo arguments (token ids).
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

impl RedisStore {
    /// Runs one of the scripts with `keys` and `args`, bounded by the timeout.
    fn invoke<T>(
        &self,
        script: fn(&Scripts) -> &redis::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> StoreFuture<T>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        let mut conn = self.conn.clone();
        let scripts = Arc::clone(&self.scripts);
        self.run(async move {
            let mut invocation = script(&scripts).prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async(&mut conn).await
        })
    }
}

impl RevocationStore for RedisStore {
    fn check(&self, token: &TokenPayload, now: u64) -> StoreFuture<TokenStatus> {
        let mut keys = vec![self.key("jti", &token.jti), self.key("sub", &token.sub)];
        let family = match token.token_type {
            TokenType::Refresh => Some(family_of(token)),
            _ => token.family.as_deref(),
        };
        // Family-less tokens read no family key (an empty id would be shared by all).
        if let Some(family) = family.filter(|f| !f.is_empty()) {
            keys.push(self.key("famrev", family));
            if token.token_type == TokenType::Refresh {
                keys.push(self.key("fam", family));
            }
        }
        let args = vec![token.iat.to_string(), token.jti.clone(), now.to_string()];
        let code = self.invoke::<i64>(|s| &s.check, keys, args);
        StoreFuture::boxed(async move {
            Ok(match code.await? {
                0 => TokenStatus::Active,
                1 => TokenStatus::Reused,
                _ => TokenStatus::Revoked,
            })
        })
    }

    fn revoke(&self, r: Revocation<'_>) -> StoreFuture<()> {
        let mut keys = vec![self.key("jti", r.jti)];
        if let Some(family) = r.family.filter(|f| !f.is_empty()) {
            keys.push(self.key("famrev", family));
            keys.push(self.key("fam", family));
        }
        let args = vec![
            ttl(r.until, r.now).to_string(),
            ttl(r.family_until, r.now).to_string(),
        ];
        self.invoke(|s| &s.revoke, keys, args)
    }

    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()> {
        let keys = vec![self.key("sub", sub)];
        let args = vec![before.to_string(), ttl(until, now).to_string()];
        self.invoke(|s| &s.revoke_subject, keys, args)
    }

    fn rotate(&self, r: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        let keys = vec![self.key("fam", r.family), self.key("famrev", r.family)];
        let args = vec![
            r.presented.to_owned(),
            r.next.to_owned(),
            r.now.to_string(),
            r.grace.to_string(),
            ttl(r.until, r.now).to_string(),
        ];
        let code = self.invoke::<i64>(|s| &s.rotate, keys, args);
        StoreFuture::boxed(async move {
            Ok(match code.await? {
                0 => RotationOutcome::Rotated,
                1 => RotationOutcome::Reused,
                _ => RotationOutcome::Revoked,
            })
        })
    }
}

/// Seconds from `now` until `until`, at least one (a Redis TTL of 0 is refused).
fn ttl(until: u64, now: u64) -> u64 {
    until.saturating_sub(now).max(1)
}
