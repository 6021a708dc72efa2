//! Each instance's local mirror of the revocations held in Redis.
//!
//! Checks read it without I/O, await or allocation. A background task fills it: on
//! start, and after any gap (a lost connection, an error), it resynchronises from the
//! authoritative keys, then follows the revocation log (a stream read with a blocking
//! `XREAD` from the last id seen). Every completed read, with or without entries,
//! proves the mirror knew everything written before it was sent; if no read completed
//! for longer than the staleness bound, checks fail closed until the mirror caught up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::Value;

use super::connection::Connection;
use super::keys::{Keys, Kind};
use crate::claims::TokenPayload;
use crate::revocation::{StoreError, TokenStatus};

const SHARDS: usize = 16;
/// Entries read from the log per `XREAD`.
const READ_COUNT: usize = 512;
/// Scans of every primary a resynchronisation makes at most while slots migrate.
const SCAN_PASSES: usize = 3;

/// One revocation, as written to the log and applied to every mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) sub: String,
    /// A revoked token: jti, until.
    pub(super) token: Option<(String, u64)>,
    /// A revoked family: id, until.
    pub(super) family: Option<(String, u64)>,
    /// "Log out everywhere": before, until.
    pub(super) subject: Option<(u64, u64)>,
}

impl Entry {
    /// The `XADD` field/value pairs.
    pub(super) fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![("s", self.sub.clone())];
        if let Some((jti, until)) = &self.token {
            fields.push(("j", jti.clone()));
            fields.push(("ju", until.to_string()));
        }
        if let Some((family, until)) = &self.family {
            fields.push(("f", family.clone()));
            fields.push(("fu", until.to_string()));
        }
        if let Some((before, until)) = self.subject {
            fields.push(("b", before.to_string()));
            fields.push(("bu", until.to_string()));
        }
        fields
    }

    fn from_fields(fields: &[Value]) -> Option<Self> {
        let mut map: HashMap<&[u8], &[u8]> = HashMap::new();
        for pair in fields.chunks(2) {
            if let [Value::BulkString(k), Value::BulkString(v)] = pair {
                map.insert(k, v);
            }
        }
        let text = |k: &str| {
            map.get(k.as_bytes())
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let number = |k: &str| text(k).and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            sub: text("s")?.to_owned(),
            token: text("j").zip(number("ju")).map(|(j, u)| (j.to_owned(), u)),
            family: text("f").zip(number("fu")).map(|(f, u)| (f.to_owned(), u)),
            subject: number("b").zip(number("bu")),
        })
    }
}

/// The `p` field of a log entry: the id of the entry appended before it.
fn previous_of(fields: &[Value]) -> Option<String> {
    fields.chunks(2).find_map(|pair| match pair {
        [Value::BulkString(k), Value::BulkString(v)] if k == b"p" => {
            String::from_utf8(v.clone()).ok()
        }
        _ => None,
    })
}

/// An id as the mirror keys it: a uuid (what this crate and AuthX issue) in 16 bytes,
/// anything else as text.
#[derive(Clone, Copy)]
enum Id<'a> {
    Uuid(u128),
    Text(&'a str),
}

impl<'a> Id<'a> {
    fn of(id: &'a str) -> Self {
        match uuid::Uuid::try_parse(id) {
            Ok(u) => Self::Uuid(u.as_u128()),
            Err(_) => Self::Text(id),
        }
    }

    fn shard(self) -> usize {
        let h = match self {
            // The low bits of a v4 uuid are random.
            Self::Uuid(u) => u as u64,
            Self::Text(t) => t.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }),
        };
        // The remainder is below SHARDS.
        (h % SHARDS as u64) as usize
    }
}

/// Hashes a uuid by folding its halves: the ids are random (v4, drawn by the issuer's
/// CSPRNG), so SipHash's protection buys nothing on this path.
#[derive(Clone, Copy, Debug, Default)]
struct UuidHasher(u64);

impl std::hash::Hasher for UuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(chunk) {
                *w = *b;
            }
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncations on purpose: the two halves, folded.
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

type UuidMap = HashMap<u128, u64, std::hash::BuildHasherDefault<UuidHasher>>;

/// Other ids and subjects come from verified tokens (or from Redis): a fast hasher,
/// randomly seeded per map, rather than SipHash on every check.
type TextHasher = foldhash::fast::RandomState;

/// Revoked ids → until.
#[derive(Debug, Default)]
struct Ids {
    uuids: UuidMap,
    texts: HashMap<Box<str>, u64, TextHasher>,
}

impl Ids {
    fn get(&self, id: Id<'_>) -> Option<u64> {
        match id {
            Id::Uuid(u) => self.uuids.get(&u).copied(),
            Id::Text(t) => self.texts.get(t).copied(),
        }
    }

    fn insert(&mut self, id: Id<'_>, until: u64) {
        let slot = match id {
            Id::Uuid(u) => self.uuids.entry(u).or_insert(until),
            Id::Text(t) => self.texts.entry(t.into()).or_insert(until),
        };
        *slot = (*slot).max(until);
    }

    fn purge(&mut self, now: u64) {
        self.uuids.retain(|_, until| *until >= now);
        self.texts.retain(|_, until| *until >= now);
    }

    fn len(&self) -> usize {
        self.uuids.len() + self.texts.len()
    }

    /// Heap bytes of the tables (hashbrown: one control byte per bucket besides the
    /// entry) and of the text ids.
    fn bytes(&self) -> usize {
        let uuid = std::mem::size_of::<(u128, u64)>() + 1;
        let text = std::mem::size_of::<(Box<str>, u64)>() + 1;
        self.uuids.capacity() * uuid
            + self.texts.capacity() * text
            + self.texts.keys().map(|k| k.len()).sum::<usize>()
    }
}

#[derive(Debug, Default)]
struct Shard {
    tokens: Ids,
    families: Ids,
    /// sub → (before, until).
    subjects: HashMap<Box<str>, (u64, u64), TextHasher>,
}

impl Shard {
    fn purge(&mut self, now: u64) {
        self.tokens.purge(now);
        self.families.purge(now);
        self.subjects.retain(|_, (_, until)| *until >= now);
    }
}

/// The mirror's state and freshness.
#[derive(Debug)]
pub(super) struct Mirror {
    shards: Box<[RwLock<Shard>]>,
    epoch: Instant,
    /// Milliseconds after `epoch`, plus one, of the last instant up to which every
    /// revocation is known; 0 until the first synchronisation.
    heard: AtomicU64,
    max_staleness: Duration,
    /// The latest `now` the checks used (the application's clock): what purging uses.
    latest_now: AtomicU64,
    next_purge: AtomicU64,
}

fn shards() -> Box<[RwLock<Shard>]> {
    (0..SHARDS).map(|_| RwLock::default()).collect()
}

impl Mirror {
    pub(super) fn new(max_staleness: Duration) -> Self {
        Self {
            shards: shards(),
            epoch: Instant::now(),
            heard: AtomicU64::new(0),
            max_staleness,
            latest_now: AtomicU64::new(0),
            next_purge: AtomicU64::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Every revocation written before `at` is known.
    fn heard(&self, at: Instant) {
        self.heard
            .fetch_max(self.millis(at).saturating_add(1), Ordering::AcqRel);
    }

    /// How long since the mirror was last known complete (`None`: never).
    pub(super) fn lag(&self) -> Option<Duration> {
        match self.heard.load(Ordering::Acquire) {
            0 => None,
            heard => Some(Duration::from_millis(
                self.millis(Instant::now()).saturating_sub(heard - 1),
            )),
        }
    }

    fn shard(&self, index: usize) -> Result<std::sync::RwLockReadGuard<'_, Shard>, StoreError> {
        self.shards
            .get(index)
            .ok_or_else(|| StoreError::new("mirror shard"))?
            .read()
            .map_err(|_| StoreError::new("mirror lock poisoned"))
    }

    /// The standing of an access token, from memory: no I/O, no allocation.
    pub(super) fn check(&self, token: &TokenPayload, now: u64) -> Result<TokenStatus, StoreError> {
        match self.lag() {
            Some(lag) if lag <= self.max_staleness => {}
            // Fail closed: the mirror may be missing revocations.
            _ => return Err(StoreError::new("revocation mirror is stale")),
        }
        if now > self.latest_now.load(Ordering::Relaxed) {
            self.latest_now.store(now, Ordering::Relaxed);
        }
        let sub = Id::Text(&token.sub);
        let revoked_subject = self
            .shard(sub.shard())?
            .subjects
            .get(token.sub.as_str())
            .is_some_and(|(before, until)| token.iat <= *before && *until >= now);
        let jti = Id::of(&token.jti);
        let revoked_token = self
            .shard(jti.shard())?
            .tokens
            .get(jti)
            .is_some_and(|until| until >= now);
        let revoked_family = match token.family.as_deref() {
            Some(family) => {
                let family = Id::of(family);
                self.shard(family.shard())?
                    .families
                    .get(family)
                    .is_some_and(|until| until >= now)
            }
            None => false,
        };
        Ok(if revoked_subject || revoked_token || revoked_family {
            TokenStatus::Revoked
        } else {
            TokenStatus::Active
        })
    }

    pub(super) fn apply(&self, entry: &Entry) {
        if let Some((jti, until)) = &entry.token {
            let id = Id::of(jti);
            if let Some(mut shard) = self.shards.get(id.shard()).and_then(|s| s.write().ok()) {
                shard.tokens.insert(id, *until);
            }
        }
        if let Some((family, until)) = &entry.family {
            let id = Id::of(family);
            if let Some(mut shard) = self.shards.get(id.shard()).and_then(|s| s.write().ok()) {
                shard.families.insert(id, *until);
            }
        }
        if let Some((before, until)) = entry.subject {
            let id = Id::Text(&entry.sub);
            if let Some(mut shard) = self.shards.get(id.shard()).and_then(|s| s.write().ok()) {
                let e = shard
                    .subjects
                    .entry(entry.sub.as_str().into())
                    .or_insert((before, until));
                e.0 = e.0.max(before);
                e.1 = e.1.max(until);
            }
        }
    }

    /// Drops expired entries of one shard (a shard per call: never a long stall).
    fn purge_some(&self) {
        let now = self.latest_now.load(Ordering::Relaxed);
        let index = self.next_purge.fetch_add(1, Ordering::Relaxed) as usize % SHARDS;
        if let Some(mut shard) = self.shards.get(index).and_then(|s| s.write().ok()) {
            shard.purge(now);
        }
    }

    fn replace(&self, fresh: Box<[RwLock<Shard>]>) {
        for (slot, new) in self.shards.iter().zip(fresh.into_vec()) {
            if let (Ok(mut slot), Ok(new)) = (slot.write(), new.into_inner()) {
                *slot = new;
            }
        }
    }

    /// Revocations held.
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .map(|s| s.tokens.len() + s.families.len() + s.subjects.len())
            .sum()
    }

    /// Heap bytes held by the tables.
    pub(super) fn bytes(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .map(|s| {
                s.tokens.bytes()
                    + s.families.bytes()
                    + s.subjects.capacity() * (std::mem::size_of::<(Box<str>, (u64, u64))>() + 1)
            })
            .sum()
    }
}

/// The background task: synchronise, follow, and start over after any gap.
pub(super) async fn run(
    mirror: Arc<Mirror>,
    mut conn: Connection,
    keys: Keys,
    block: Duration,
    mut first: Option<String>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let synchronised = match first.take() {
            Some(last) => Ok(last),
            None => synchronise(&mirror, &mut conn, &keys).await,
        };
        if let Ok(last) = synchronised {
            backoff = Duration::from_millis(50);
            let _gap = follow(&mirror, &mut conn, &keys, last, block).await;
            #[cfg(feature = "tracing")]
            if let Err(e) = &_gap {
                tracing::warn!(error = ?e.kind(), "revocation log interrupted; resynchronising");
            }
        }
        // Jittered: instances that lost Redis together do not come back together.
        tokio::time::sleep(super::jitter(backoff)).await;
        backoff = (backoff * 2).min(block.max(Duration::from_millis(200)));
    }
}

/// Reads every authoritative key into a fresh state, then swaps it in. The log's last
/// id is taken first: whatever is written during the scan is in the scan or after it.
pub(super) async fn synchronise(
    mirror: &Mirror,
    conn: &mut Connection,
    keys: &Keys,
) -> redis::RedisResult<String> {
    let started = Instant::now();
    let log = keys.log();
    let mut last_cmd = redis::cmd("XREVRANGE");
    last_cmd.arg(&log).arg("+").arg("-").arg("COUNT").arg(1);
    let last: Value = conn.query(&last_cmd).await?;
    let last = first_id(&last).unwrap_or_else(|| "0-0".to_owned());

    let fresh = shards();
    let pattern = keys.pattern();
    // A key that moves between two primaries during a pass (slot migration) can be
    // missed by it: scan again until a pass ran while nothing moved. Passes add up,
    // so if slots keep moving the last passes together still hold every key that
    // moved at most once meanwhile.
    for _ in 0..SCAN_PASSES {
        let before = conn.placement().await?;
        for node in &before.primaries {
            let mut cursor = 0;
            loop {
                let (next, batch) = conn.scan(node.as_ref(), cursor, &pattern).await?;
                load(&fresh, conn, node.as_ref(), keys, &batch).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        if before.settled_until(&conn.placement().await?) {
            break;
        }
    }
    mirror.replace(fresh);
    mirror.heard(started);
    Ok(last)
}

/// Reads the values of one scanned batch into `fresh`.
async fn load(
    fresh: &[RwLock<Shard>],
    conn: &mut Connection,
    node: Option<&super::connection::Node>,
    keys: &Keys,
    batch: &[String],
) -> redis::RedisResult<()> {
    let wanted: Vec<(&String, Kind, &str)> = batch
        .iter()
        .filter_map(|k| keys.parse(k).map(|(kind, id)| (k, kind, id)))
        .filter(|(_, kind, _)| *kind != Kind::Family)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut pipeline = redis::pipe();
    for (key, kind, _) in &wanted {
        match kind {
            Kind::Subject => pipeline.cmd("HMGET").arg(*key).arg("b").arg("u"),
            _ => pipeline.cmd("GET").arg(*key),
        };
    }
    let values = conn.pipeline_on(node, pipeline, wanted.len()).await?;
    let number = |v: &Value| -> Option<u64> {
        match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    };
    for ((_, kind, id), value) in wanted.iter().zip(&values) {
        match kind {
            Kind::Token | Kind::FamilyRevoked => {
                let Some(until) = number(value) else { continue };
                let key = Id::of(id);
                if let Some(mut shard) = fresh.get(key.shard()).and_then(|s| s.write().ok()) {
                    match kind {
                        Kind::Token => shard.tokens.insert(key, until),
                        _ => shard.families.insert(key, until),
                    }
                }
            }
            Kind::Subject => {
                let Value::Array(pair) = value else { continue };
                let (Some(before), Some(until)) =
                    (pair.first().and_then(number), pair.get(1).and_then(number))
                else {
                    continue;
                };
                let key = Id::Text(id);
                if let Some(mut shard) = fresh.get(key.shard()).and_then(|s| s.write().ok()) {
                    shard.subjects.insert((*id).into(), (before, until));
                }
            }
            Kind::Family => {}
        }
    }
    Ok(())
}

/// Follows the log from `last` until an error.
async fn follow(
    mirror: &Mirror,
    conn: &mut Connection,
    keys: &Keys,
    mut last: String,
    block: Duration,
) -> redis::RedisResult<()> {
    let log = keys.log();
    let block_ms = u64::try_from(block.as_millis()).unwrap_or(1000).max(1);
    loop {
        let sent = Instant::now();
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&log)
            .arg(&last);
        let reply: Value = conn.on_node_of_once(&log, read).await?;
        let entries = entries(&reply);
        // Only a read that drained the log proves it knew everything written before
        // it was sent; a full batch may have left entries behind.
        let drained = entries.len() < READ_COUNT;
        for (id, previous, entry) in entries {
            // Each entry names the one appended before it: another name means entries
            // between were trimmed before this mirror read them (or a promoted replica
            // never had them).
            if previous.is_some_and(|p| p != last) {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "revocation log entries missed",
                )));
            }
            if let Some(entry) = entry {
                mirror.apply(&entry);
            }
            last = id;
        }
        if drained {
            mirror.heard(sent);
        }
        mirror.purge_some();
    }
}

/// The id of the first entry of an `XRANGE`/`XREVRANGE` reply.
fn first_id(reply: &Value) -> Option<String> {
    let Value::Array(entries) = reply else {
        return None;
    };
    match entries.first()? {
        Value::Array(entry) => match entry.first()? {
            Value::BulkString(id) => String::from_utf8(id.clone()).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The entries of an `XREAD` reply on one stream: id, the id of the entry appended
/// before it (absent from entries not written by this crate's append), and the parsed
/// entry.
fn entries(reply: &Value) -> Vec<(String, Option<String>, Option<Entry>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let Value::Array(parts) = stream else {
            continue;
        };
        let Some(Value::Array(items)) = parts.get(1) else {
            continue;
        };
        for item in items {
            let Value::Array(item) = item else { continue };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (item.first(), item.get(1))
            else {
                continue;
            };
            if let Ok(id) = String::from_utf8(id.clone()) {
                out.push((id, previous_of(fields), Entry::from_fields(fields)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(sub: &str, jti: &str, family: Option<&str>, iat: u64) -> TokenPayload {
        let fam = family.map_or(String::new(), |f| format!(r#","fam":"{f}""#));
        serde_json::from_str(&format!(
            r#"{{"sub":"{sub}","jti":"{jti}","type":"access","iat":{iat},"exp":{}{fam}}}"#,
            iat + 100
        ))
        .unwrap()
    }

    fn fresh_mirror() -> Mirror {
        let mirror = Mirror::new(Duration::from_secs(1));
        mirror.heard(Instant::now());
        mirror
    }

    #[test]
    fn answers_from_memory_and_fails_closed_when_stale() {
        let never = Mirror::new(Duration::from_secs(1));
        assert!(
            never.check(&token("a", "j", None, 1), 2).is_err(),
            "never synced"
        );

        let mirror = fresh_mirror();
        let uuid = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        mirror.apply(&Entry {
            sub: "a".into(),
            token: Some((uuid.into(), 50)),
            family: Some(("fam".into(), 80)),
            subject: None,
        });
        mirror.apply(&Entry {
            sub: "b".into(),
            subject: Some((10, 90)),
            ..Entry::default()
        });
        let status = |t: &TokenPayload, now| mirror.check(t, now).unwrap();
        assert_eq!(status(&token("a", uuid, None, 1), 20), TokenStatus::Revoked);
        assert_eq!(
            status(&token("a", uuid, None, 1), 51),
            TokenStatus::Active,
            "expired"
        );
        assert_eq!(
            status(&token("a", "x", Some("fam"), 1), 20),
            TokenStatus::Revoked
        );
        assert_eq!(status(&token("b", "y", None, 10), 20), TokenStatus::Revoked);
        assert_eq!(status(&token("b", "y", None, 11), 20), TokenStatus::Active);

        let stale = Mirror::new(Duration::from_millis(10));
        stale.heard(Instant::now());
        assert!(stale.check(&token("a", "j", None, 1), 2).is_ok(), "fresh");
        std::thread::sleep(Duration::from_millis(30));
        assert!(stale.check(&token("a", "j", None, 1), 2).is_err(), "stale");
    }

    #[test]
    fn entries_round_trip_through_log_fields() {
        let entry = Entry {
            sub: "alice".into(),
            token: Some(("j".into(), 5)),
            family: Some(("f".into(), 6)),
            subject: Some((7, 8)),
        };
        let fields: Vec<Value> = entry
            .fields()
            .into_iter()
            .flat_map(|(k, v)| {
                [
                    Value::BulkString(k.as_bytes().to_vec()),
                    Value::BulkString(v.into_bytes()),
                ]
            })
            .collect();
        assert_eq!(Entry::from_fields(&fields), Some(entry));
    }

    /// The memory a million revoked tokens take (uuid jtis, as issued): the tables'
    /// allocated capacity, in bytes per entry.
    #[test]
    fn a_million_revocations_stay_small() {
        let mirror = fresh_mirror();
        for i in 0..1_000_000u128 {
            let id =
                uuid::Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            mirror.apply(&Entry {
                sub: "s".into(),
                token: Some((id.to_string(), 10)),
                ..Entry::default()
            });
        }
        assert_eq!(mirror.len(), 1_000_000);
        let per_entry = mirror.bytes() / 1_000_000;
        println!("mirror: {per_entry} bytes per revoked token");
        assert!(per_entry <= 64, "{per_entry} bytes per revoked token");
    }
}
