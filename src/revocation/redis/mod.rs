//! A [`RevocationStore`] in Redis or Redis Cluster (and Valkey), shared by every
//! instance.
//!
//! Revocations are rare writes; checks are constant reads. So:
//!
//! - **Checks of access tokens read a local mirror** (no I/O, no await, no allocation).
//!   Each instance's mirror follows a revocation log in Redis (a stream, read with a
//!   blocking `XREAD` from the last id seen) and resynchronises from the authoritative
//!   keys on start and after any gap. If the mirror has not heard from Redis for longer
//!   than the staleness bound `S` (default 1 s), checks fail closed until it caught up:
//!   **a revoked token is rejected everywhere within `S` of its revocation, whatever
//!   fails.** `S = 0` turns the mirror off: every check is a round trip.
//! - **Refresh tokens are checked in Redis**, atomically with their family's rotation
//!   state (reuse detection needs the latest word; refresh tokens are presented rarely).
//! - **Writes are acknowledged only once durable**: a revocation, a "log out
//!   everywhere", a rotation and a reuse detection return `Ok` only after Redis holds
//!   them, and their log entry, on at least one replica when the shard has replicas
//!   (`WAIT`, bounded); otherwise they fail and a logout answers 503. An acknowledged
//!   logout survives a failover, and an instance started afterwards knows it.
//!
//! The key layout (every multi-key script touches one slot) is in the `keys` module's
//! documentation, reproduced in the README.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;

use self::connection::{Connection, store_error};
use self::keys::{Keys, Kind};
use self::mirror::{Entry, Mirror};
use self::scripts::Scripts;
use super::{
    Revocation, RevocationStore, Rotation, RotationOutcome, StoreError, StoreFuture, StoreHealth,
    TokenStatus, family_of,
};
use crate::claims::{TokenPayload, TokenType};

mod connection;
mod keys;
mod mirror;
mod scripts;

/// Configures a [`RedisStore`]; finish with [`connect`](Self::connect) or
/// [`connect_cluster`](Self::connect_cluster).
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: String,
    timeout: Duration,
    max_staleness: Duration,
    acknowledgement: Duration,
    log_retention: Duration,
}

/// The shortest log retention: far above any staleness bound, so a follower that
/// keeps up never finds its next entries trimmed.
const MIN_RETENTION: Duration = Duration::from_secs(60);
/// The longest round-trip timeout and acknowledgement wait accepted.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The longest staleness bound accepted.
const MAX_STALENESS: Duration = Duration::from_secs(3600);

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: "tower-jwt-auth:".into(),
            timeout: Duration::from_millis(500),
            max_staleness: Duration::from_secs(1),
            acknowledgement: Duration::from_millis(500),
            log_retention: Duration::from_secs(600),
        }
    }
}

impl RedisStoreBuilder {
    /// The prefix of every key (default `tower-jwt-auth:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on every round trip (default 500 ms); past it the call fails closed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The staleness bound `S` (default 1 s): a revoked token is rejected everywhere
    /// within `S` of its revocation; a mirror that has not heard from Redis for longer
    /// fails closed. `Duration::ZERO` checks every token in Redis (a round trip per
    /// request).
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// How long a write waits for a replica to hold it (default 500 ms) before it
    /// fails.
    pub fn acknowledgement_timeout(mut self, timeout: Duration) -> Self {
        self.acknowledgement = timeout;
        self
    }

    /// How long revocation log entries are kept (default 10 minutes), measured on
    /// Redis's own entry ids (never the writer's clock), and at least a minute and ten
    /// staleness bounds: a shorter value is raised to that. An instance disconnected
    /// for longer, or that finds entries it had not read trimmed, resynchronises from
    /// the keys.
    pub fn log_retention(mut self, retention: Duration) -> Self {
        self.log_retention = retention;
        self
    }

    /// The retention in force: at least [`MIN_RETENTION`] and ten staleness bounds.
    fn retention(&self) -> Duration {
        self.log_retention
            .max(MIN_RETENTION)
            .max(self.max_staleness.saturating_mul(10))
    }

    /// Refuses settings whose sums would overflow or that no deployment means.
    fn check(&self) -> Result<(), StoreError> {
        let bounded = [
            ("timeout", self.timeout, Duration::from_millis(1), MAX_WAIT),
            (
                "acknowledgement timeout",
                self.acknowledgement,
                Duration::ZERO,
                MAX_WAIT,
            ),
            (
                "staleness bound",
                self.max_staleness,
                Duration::ZERO,
                MAX_STALENESS,
            ),
        ];
        for (name, value, min, max) in bounded {
            if value < min || value > max {
                return Err(StoreError::new(format!(
                    "redis: the {name} must be between {min:?} and {max:?}"
                )));
            }
        }
        Ok(())
    }

    /// Connects to one Redis node (for example `redis://127.0.0.1:6379`) and, with a
    /// staleness bound, loads the mirror before returning (within twenty timeouts;
    /// past them the mirror goes on loading in the background, failing closed).
    ///
    /// A Redis that is down or unreachable is no error: the store answers every call
    /// with an error (the layer answers 503, [`health`](RevocationStore::health) is
    /// not ready) and becomes ready once Redis is, without a restart. Only a URL that
    /// does not parse, or out-of-range settings, are errors.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        self.check()?;
        let client = redis::Client::open(url).map_err(|e| store_error(&e))?;
        let settings = self.clone();
        let open = move || {
            let (client, s) = (client.clone(), settings.clone());
            Box::pin(async move {
                let manager = |response: Duration| {
                    let config = ConnectionManagerConfig::new()
                        .set_number_of_retries(1)
                        .set_connection_timeout(Some(s.timeout))
                        .set_response_timeout(Some(response));
                    ConnectionManager::new_with_config(client.clone(), config)
                };
                let reads = manager(s.timeout).await?;
                // Writes wait for replicas: their own connection, so no check queues
                // behind.
                let writes = manager(s.timeout.saturating_add(s.acknowledgement)).await?;
                let follower = match s.max_staleness.is_zero() {
                    true => None,
                    false => Some(Connection::Single(
                        manager(s.block().saturating_add(s.timeout)).await?,
                    )),
                };
                Ok(Links {
                    reads: Connection::Single(reads),
                    writes: Connection::Single(writes),
                    follower,
                })
            }) as Opening
        };
        self.finish(Box::new(open)).await
    }

    /// Connects to a Redis Cluster (or Valkey in cluster mode) through any of its
    /// nodes (`redis://127.0.0.1:7000`, …). MOVED/ASK redirections, topology changes
    /// and failovers are handled by the `redis` crate's cluster client.
    ///
    /// A cluster that is down, unreachable or settling (`CLUSTERDOWN`, a node still
    /// loading, seed nodes that came back as replicas) is no error: as with
    /// [`connect`](Self::connect), the store fails closed and becomes ready when the
    /// cluster is.
    pub async fn connect_cluster<I, S>(self, nodes: I) -> Result<RedisStore, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.check()?;
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        let client = |response: Duration, retries: u32| {
            ClusterClient::builder(nodes.clone())
                .connection_timeout(self.timeout)
                .response_timeout(response)
                .retries(retries)
                .build()
                .map_err(|e| store_error(&e))
        };
        let reads = client(self.timeout, 2)?;
        let writes = client(self.timeout.saturating_add(self.acknowledgement), 2)?;
        // No retries: a redirection after a failover must surface as a gap, so the
        // mirror resynchronises instead of reading on from an id the new primary may
        // never have had.
        let follower = client(self.block().saturating_add(self.timeout), 0)?;
        let with_mirror = !self.max_staleness.is_zero();
        let open = move || {
            let (reads, writes, follower) = (reads.clone(), writes.clone(), follower.clone());
            Box::pin(async move {
                let reads = reads.get_async_connection().await?;
                let writes = writes.get_async_connection().await?;
                let follower = match with_mirror {
                    true => Some(Connection::Cluster(follower.get_async_connection().await?)),
                    false => None,
                };
                Ok(Links {
                    reads: Connection::Cluster(reads),
                    writes: Connection::Cluster(writes),
                    follower,
                })
            }) as Opening
        };
        self.finish(Box::new(open)).await
    }

    /// How long one blocking log read waits: well within the staleness bound, so a
    /// healthy mirror always has a read completed less than `S` ago.
    fn block(&self) -> Duration {
        (self.max_staleness / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Opens the connections and loads the mirror, each bounded; what could not be
    /// done in time goes on in the background (the store fails closed meanwhile).
    async fn finish(self, open: Box<Open>) -> Result<RedisStore, StoreError> {
        let keys = Keys::new(self.prefix.clone());
        let mirror =
            (!self.max_staleness.is_zero()).then(|| Arc::new(Mirror::new(self.max_staleness)));
        let links = Arc::new(OnceLock::new());
        let bound = self.timeout.saturating_mul(4);
        let mut first = None;
        if let Ok(Ok(opened)) = tokio::time::timeout(bound, open()).await {
            let mut follower = opened.follower.clone();
            let _ = links.set(opened);
            if let (Some(mirror), Some(follower)) = (&mirror, follower.as_mut()) {
                let load = mirror::synchronise(mirror, follower, &keys);
                if let Ok(Ok(last)) =
                    tokio::time::timeout(self.timeout.saturating_mul(20), load).await
                {
                    first = Some(last);
                }
            }
        }
        let task = tokio::spawn(keep_up(
            open,
            Arc::clone(&links),
            mirror.clone(),
            keys.clone(),
            self.block(),
            first,
        ));
        Ok(RedisStore {
            shared: Arc::new(Shared {
                links,
                keys,
                scripts: Scripts::new(),
                mirror,
                settings: self,
                replicas_seen: AtomicUsize::new(0),
                _task: AbortOnDrop(task.abort_handle()),
            }),
        })
    }
}

/// The store's connections, opened once (each then reconnects by itself).
struct Links {
    reads: Connection,
    writes: Connection,
    follower: Option<Connection>,
}

type Opening = std::pin::Pin<Box<dyn Future<Output = redis::RedisResult<Links>> + Send>>;
type Open = dyn Fn() -> Opening + Send + Sync;

/// The background task: opens the connections if they are not open yet (retrying
/// with backoff and jitter, so instances started together do not retry together),
/// then keeps the mirror.
async fn keep_up(
    open: Box<Open>,
    links: Arc<OnceLock<Links>>,
    mirror: Option<Arc<Mirror>>,
    keys: Keys,
    block: Duration,
    first: Option<String>,
) {
    let mut backoff = Duration::from_millis(50);
    while links.get().is_none() {
        match open().await {
            Ok(opened) => {
                let _ = links.set(opened);
            }
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = ?_e.kind(), "redis unreachable; revocation store failing closed");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = backoff.saturating_mul(2).min(Duration::from_secs(2));
            }
        }
    }
    let follower = links.get().and_then(|l| l.follower.clone());
    if let (Some(mirror), Some(follower)) = (mirror, follower) {
        mirror::run(mirror, follower, keys, block, first).await;
    }
}

/// Between half and all of `d`, at random.
pub(super) fn jitter(d: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1024) as u32;
    d / 2 + (d / 2) * random / 1024
}

/// Stops the mirror's task with the last clone of the store.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    /// Empty until Redis could be reached.
    links: Arc<OnceLock<Links>>,
    keys: Keys,
    scripts: Scripts,
    mirror: Option<Arc<Mirror>>,
    settings: RedisStoreBuilder,
    /// The most replicas a primary was seen with.
    replicas_seen: AtomicUsize,
    _task: AbortOnDrop,
}

/// Revocations in Redis or Redis Cluster, shared by every instance, checked from a
/// local mirror with a bounded staleness (see the module documentation).
///
/// Every round trip is bounded by a timeout; an error or a timeout fails closed (the
/// layer answers 503). When Redis comes back, requests succeed again without
/// restarting the application. Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_jwt_auth::{JwtAuth, revocation::RedisStore};
///
/// let store = RedisStore::builder()
///     .max_staleness(Duration::from_millis(500))
///     .connect_cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
///     .await?;
/// let auth = JwtAuth::builder()
///     .hs256(b"a secret of at least thirty-two bytes")
///     .revocation_store(store)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.shared.settings)
            .field("mirror_lag", &self.mirror_lag())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Starts a configuration.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Connects to one Redis node with the default settings.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// Connects to a Redis Cluster with the default settings.
    pub async fn connect_cluster<I, S>(nodes: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().connect_cluster(nodes).await
    }

    /// How long ago the mirror was last known complete (`None` without a mirror or
    /// before its first synchronisation). Checks fail closed past the staleness bound.
    pub fn mirror_lag(&self) -> Option<Duration> {
        self.shared.mirror.as_ref().and_then(|m| m.lag())
    }

    /// Revocations the mirror holds.
    pub fn mirror_len(&self) -> usize {
        self.shared.mirror.as_ref().map_or(0, |m| m.len())
    }

    /// Approximate heap bytes of the mirror's tables.
    pub fn mirror_bytes(&self) -> usize {
        self.shared.mirror.as_ref().map_or(0, |m| m.bytes())
    }

    fn run<T, F>(&self, bound: Duration, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        StoreFuture::boxed(async move {
            tokio::time::timeout(bound, f)
                .await
                .unwrap_or_else(|_| Err(StoreError::new("redis: timed out")))
        })
    }

    /// The bound on a write: the script, its acknowledgement, the log entry and its
    /// acknowledgement.
    fn write_bound(&self) -> Duration {
        let s = &self.shared.settings;
        s.timeout
            .saturating_add(s.acknowledgement)
            .saturating_mul(2)
    }
}

impl Shared {
    fn links(&self) -> Result<&Links, StoreError> {
        self.links
            .get()
            .ok_or_else(|| StoreError::new("redis: not connected yet"))
    }

    fn reads(&self) -> Result<Connection, StoreError> {
        self.links().map(|l| l.reads.clone())
    }

    fn writes(&self) -> Result<Connection, StoreError> {
        self.links().map(|l| l.writes.clone())
    }

    /// Waits for `key`'s writes to reach a replica, or fails.
    ///
    /// Once any replica was seen, every write needs one: a replica that dropped off
    /// does not make a lone primary's word durable.
    async fn acknowledge(&self, conn: &mut Connection, key: &str) -> Result<(), StoreError> {
        let replicas = conn.replicas(key).await.map_err(|e| store_error(&e))?;
        let seen = self
            .replicas_seen
            .fetch_max(replicas, Ordering::AcqRel)
            .max(replicas);
        if seen == 0 {
            return Ok(());
        }
        match conn
            .wait_for_replica(key, self.settings.acknowledgement)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::new(
                "redis: the write was not acknowledged by a replica in time",
            )),
            Err(e) => Err(store_error(&e)),
        }
    }

    /// Appends a revocation to the log (acknowledged like the keys), then applies it
    /// to this instance's mirror at once.
    async fn publish(&self, conn: &mut Connection, entry: Entry) -> Result<(), StoreError> {
        let log = self.keys.log();
        let retention_ms = u64::try_from(self.settings.retention().as_millis()).unwrap_or(u64::MAX);
        let mut args = vec![retention_ms.to_string()];
        for (field, value) in entry.fields() {
            args.push(field.to_owned());
            args.push(value);
        }
        let _: String = conn
            .invoke(&self.scripts.append, std::slice::from_ref(&log), &args)
            .await
            .map_err(|e| store_error(&e))?;
        self.acknowledge(conn, &log).await?;
        if let Some(mirror) = &self.mirror {
            mirror.apply(&entry);
        }
        Ok(())
    }
}

/// `(code, until)` of the check and rotation scripts.
type Outcome = (i64, u64);

impl RevocationStore for RedisStore {
    fn check(&self, token: &TokenPayload, now: u64) -> StoreFuture<TokenStatus> {
        let shared = &self.shared;
        if let Some(mirror) = &shared.mirror
            && token.token_type != TokenType::Refresh
        {
            return StoreFuture::ready(mirror.check(token, now));
        }
        let keys = &shared.keys;
        let mut list = vec![
            keys.key(Kind::Token, &token.sub, &token.jti),
            keys.key(Kind::Subject, &token.sub, &token.sub),
        ];
        let family = match token.token_type {
            TokenType::Refresh => Some(family_of(token)),
            _ => token.family.as_deref(),
        };
        // Family-less tokens read no family key.
        if let Some(family) = family.filter(|f| !f.is_empty()) {
            list.push(keys.key(Kind::FamilyRevoked, &token.sub, family));
            if token.token_type == TokenType::Refresh {
                list.push(keys.key(Kind::Family, &token.sub, family));
            }
        }
        let args = vec![token.iat.to_string(), token.jti.clone(), now.to_string()];
        let reused = family.map(|f| Entry {
            sub: token.sub.clone(),
            family: Some((f.to_owned(), 0)),
            ..Entry::default()
        });
        let shared = Arc::clone(shared);
        let bound = self.write_bound();
        self.run(bound, async move {
            let mut conn = shared.reads()?;
            let (code, until): Outcome = conn
                .invoke(&shared.scripts.check, &list, &args)
                .await
                .map_err(|e| store_error(&e))?;
            match code {
                0 => Ok(TokenStatus::Active),
                1 => {
                    // The script revoked the family: make it durable and known.
                    let mut writes = shared.writes()?;
                    if let Some(mut entry) = reused {
                        if let Some((_, u)) = entry.family.as_mut() {
                            *u = until;
                        }
                        shared.publish(&mut writes, entry).await?;
                    }
                    Ok(TokenStatus::Reused)
                }
                _ => Ok(TokenStatus::Revoked),
            }
        })
    }

    fn revoke(&self, r: Revocation<'_>) -> StoreFuture<()> {
        let keys = &self.shared.keys;
        let mut list = vec![keys.key(Kind::Token, r.sub, r.jti)];
        let family = r.family.filter(|f| !f.is_empty());
        if let Some(family) = family {
            list.push(keys.key(Kind::FamilyRevoked, r.sub, family));
            list.push(keys.key(Kind::Family, r.sub, family));
        }
        let args = vec![
            r.now.to_string(),
            ttl(r.until, r.now).to_string(),
            ttl(r.family_until, r.now).to_string(),
        ];
        let (sub, jti, family) = (
            r.sub.to_owned(),
            r.jti.to_owned(),
            family.map(str::to_owned),
        );
        let shared = Arc::clone(&self.shared);
        self.run(self.write_bound(), async move {
            let mut conn = shared.writes()?;
            let (token_until, family_until): (u64, u64) = conn
                .invoke(&shared.scripts.revoke, &list, &args)
                .await
                .map_err(|e| store_error(&e))?;
            shared.acknowledge(&mut conn, &list[0]).await?;
            let entry = Entry {
                sub,
                token: Some((jti, token_until)),
                family: family.map(|f| (f, family_until)),
                subject: None,
            };
            shared.publish(&mut conn, entry).await
        })
    }

    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()> {
        let list = vec![self.shared.keys.key(Kind::Subject, sub, sub)];
        let args = vec![
            before.to_string(),
            now.to_string(),
            ttl(until, now).to_string(),
        ];
        let sub = sub.to_owned();
        let shared = Arc::clone(&self.shared);
        self.run(self.write_bound(), async move {
            let mut conn = shared.writes()?;
            let kept: (u64, u64) = conn
                .invoke(&shared.scripts.revoke_subject, &list, &args)
                .await
                .map_err(|e| store_error(&e))?;
            shared.acknowledge(&mut conn, &list[0]).await?;
            let entry = Entry {
                sub,
                subject: Some(kept),
                ..Entry::default()
            };
            shared.publish(&mut conn, entry).await
        })
    }

    fn rotate(&self, r: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        let keys = &self.shared.keys;
        let list = vec![
            keys.key(Kind::Family, r.sub, r.family),
            keys.key(Kind::FamilyRevoked, r.sub, r.family),
        ];
        let args = vec![
            r.presented.to_owned(),
            r.next.to_owned(),
            r.now.to_string(),
            r.grace.to_string(),
            ttl(r.until, r.now).to_string(),
        ];
        let (sub, family) = (r.sub.to_owned(), r.family.to_owned());
        let shared = Arc::clone(&self.shared);
        self.run(self.write_bound(), async move {
            let mut conn = shared.writes()?;
            let (code, until): Outcome = conn
                .invoke(&shared.scripts.rotate, &list, &args)
                .await
                .map_err(|e| store_error(&e))?;
            shared.acknowledge(&mut conn, &list[0]).await?;
            match code {
                0 => Ok(RotationOutcome::Rotated),
                1 => {
                    let entry = Entry {
                        sub,
                        family: Some((family, until)),
                        ..Entry::default()
                    };
                    shared.publish(&mut conn, entry).await?;
                    Ok(RotationOutcome::Reused)
                }
                _ => Ok(RotationOutcome::Revoked),
            }
        })
    }

    /// Ready when Redis answers a `PING` within the store's timeout and, with a
    /// mirror, when the mirror is within the staleness bound (its lag is reported).
    fn health(&self) -> StoreFuture<StoreHealth> {
        let shared = Arc::clone(&self.shared);
        self.run(self.shared.settings.timeout, async move {
            let mut conn = shared.reads()?;
            let _: String = conn
                .query(&redis::cmd("PING"))
                .await
                .map_err(|e| store_error(&e))?;
            let Some(mirror) = &shared.mirror else {
                return Ok(StoreHealth::ready());
            };
            match mirror.lag() {
                Some(lag) if lag <= shared.settings.max_staleness => {
                    Ok(StoreHealth::ready().lag(lag))
                }
                // Access-token checks fail closed until it has caught up.
                _ => Err(StoreError::new("revocation mirror is stale")),
            }
        })
    }
}

/// Seconds from `now` until `until`, at least one (a Redis TTL of 0 is refused).
fn ttl(until: u64, now: u64) -> u64 {
    until.saturating_sub(now).max(1)
}
