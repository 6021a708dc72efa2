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
//! A check is one round trip (`MGET` of three keys); a rotation is one atomic script.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{RevocationStore, Rotation, RotationOutcome, StoreError, StoreFuture};
use crate::claims::TokenPayload;

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
if present == nil and count > 0 then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[5])
  redis.call('DEL', KEYS[1])
  return 1
end
if present == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  for i = 1, #live, 2 do
    if tonumber(live[i + 1]) ~= 0 then redis.call('HDEL', KEYS[1], live[i]) end
  end
end
if (present == nil or present == 0) and grace > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], now + grace)
end
redis.call('HSET', KEYS[1], ARGV[2], 0)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 0
";

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
    script: Arc<redis::Script>,
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
            script: Arc::new(redis::Script::new(ROTATE)),
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

    fn set_until(&self, key: String, value: u64, until: u64, now: u64) -> StoreFuture<()> {
        let mut conn = self.conn.clone();
        let ttl = until.saturating_sub(now).max(1);
        self.run(async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut conn)
                .await
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

impl RevocationStore for RedisStore {
    fn is_revoked(&self, token: &TokenPayload, _now: u64) -> StoreFuture<bool> {
        let mut conn = self.conn.clone();
        let jti = self.key("jti", &token.jti);
        let fam = token
            .family
            .as_deref()
            .map_or_else(|| self.key("famrev", ""), |f| self.key("famrev", f));
        let sub = self.key("sub", &token.sub);
        let iat = token.iat;
        self.run(async move {
            let (j, f, s): (Option<String>, Option<String>, Option<u64>) = redis::cmd("MGET")
                .arg(jti)
                .arg(fam)
                .arg(sub)
                .query_async(&mut conn)
                .await?;
            Ok(j.is_some() || f.is_some() || s.is_some_and(|before| iat <= before))
        })
    }

    fn revoke_token(&self, jti: &str, until: u64, now: u64) -> StoreFuture<()> {
        self.set_until(self.key("jti", jti), 1, until, now)
    }

    fn revoke_family(&self, family: &str, until: u64, now: u64) -> StoreFuture<()> {
        self.set_until(self.key("famrev", family), 1, until, now)
    }

    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()> {
        self.set_until(self.key("sub", sub), before, until, now)
    }

    fn rotate(&self, r: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        let mut conn = self.conn.clone();
        let script = Arc::clone(&self.script);
        let family = self.key("fam", r.family);
        let revoked = self.key("famrev", r.family);
        let (presented, next) = (r.presented.to_owned(), r.next.to_owned());
        let ttl = r.until.saturating_sub(r.now).max(1);
        let (now, grace) = (r.now, r.grace);
        self.run(async move {
            let code: i64 = script
                .key(family)
                .key(revoked)
                .arg(presented)
                .arg(next)
                .arg(now)
                .arg(grace)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await?;
            Ok(match code {
                0 => RotationOutcome::Rotated,
                1 => RotationOutcome::Reused,
                _ => RotationOutcome::Revoked,
            })
        })
    }
}
