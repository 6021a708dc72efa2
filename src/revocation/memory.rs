//! The embedded, in-process store.
//!
//! Entries are grouped by subject and the subjects spread over shards, so a check is
//! one read lock on one shard and one lookup, and a write never blocks the checks of
//! other shards. Nothing ever scans the whole store: every subject has one entry in
//! its shard's expiry queue, and writes pop the expired ones (each subject's entries
//! are bounded by a quota, so handling one costs at most that quota).

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{
    Revocation, RevocationStore, Rotation, RotationOutcome, StoreError, StoreFuture, TokenStatus,
    family_of,
};
use crate::claims::{TokenPayload, TokenType};

/// Subjects, `jti`s and family ids come from verified tokens, not from anyone who can
/// send a request: a fast hasher, randomly seeded per map, is enough (with SipHash,
/// twice per check, a check took about three times as long).
type Hasher = foldhash::fast::RandomState;

/// Refresh tokens a family may keep usable at once (current + those in a grace window).
const MAX_LIVE_PER_FAMILY: usize = 8;
const SHARDS: usize = 16;
/// Expired subjects handled per write, on top of what a full shard needs.
const PURGE_PER_WRITE: usize = 4;

/// An in-memory [`RevocationStore`]: the default, for one instance.
///
/// - **Bounded**: at most `capacity` entries (a revoked token, a revoked or rotated
///   refresh family, a subject's "log out everywhere"), each dropped once the last
///   token it concerns can no longer verify. A logout costs two entries (the token and
///   its family), an explicit refresh one (its family's rotation state), about 200 bytes
///   each.
/// - **Fair**: one subject holds at most `subject_quota` entries (default 1024). Past
///   it, a further revocation of that subject collapses into "every token of this
///   subject issued until now is revoked" (which frees its entries: nothing is ever
///   forgotten), and a further rotation fails. One account's churn cannot fill the
///   store for everybody else.
/// - **Full**: a write that finds no room fails with an error (a logout answers 503)
///   rather than forgetting anything; checks keep working.
/// - **Concurrent**: checks take a read lock on one of 16 shards; writes are
///   `O(log n)` and never scan the store. No lock is held across an await.
///
/// For several instances, use a shared store (the `redis` feature).
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    /// Picks a subject's shard (seeded per store).
    shard_hasher: Hasher,
    shard_capacity: usize,
    subject_quota: usize,
}

#[derive(Debug, Default)]
struct Shard {
    subjects: HashMap<Arc<str>, Subject, Hasher>,
    /// Entries held by every subject of the shard.
    entries: usize,
    /// One item per subject: when to look at it again.
    expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

#[derive(Debug, Default)]
struct Subject {
    /// Tokens issued at or before `.0` are revoked, until `.1`.
    revoked_before: Option<(u64, u64)>,
    /// Revoked jti → until.
    tokens: HashMap<Box<str>, u64, Hasher>,
    families: HashMap<Box<str>, Family, Hasher>,
}

#[derive(Debug, Default)]
struct Family {
    revoked: bool,
    /// Usable refresh jtis; `Some(deadline)` for those in a grace window.
    live: Vec<(Box<str>, Option<u64>)>,
    until: u64,
}

impl Family {
    fn accepts(&self, jti: &str, now: u64) -> bool {
        // A family this store has not seen rotate yet accepts its first token.
        self.live.is_empty()
            || self
                .live
                .iter()
                .any(|(j, d)| &**j == jti && d.is_none_or(|d| d >= now))
    }
}

impl Subject {
    fn len(&self) -> usize {
        self.tokens.len() + self.families.len() + usize::from(self.revoked_before.is_some())
    }

    /// Drops what expired; returns how many entries went.
    fn purge(&mut self, now: u64) -> usize {
        let before = self.len();
        self.tokens.retain(|_, until| *until >= now);
        self.families.retain(|_, f| f.until >= now);
        if self.revoked_before.is_some_and(|(_, until)| until < now) {
            self.revoked_before = None;
        }
        before - self.len()
    }

    /// The earliest instant one of its entries may go.
    fn next_expiry(&self) -> Option<u64> {
        let tokens = self.tokens.values().copied();
        let families = self.families.values().map(|f| f.until);
        let subject = self.revoked_before.map(|(_, until)| until);
        tokens.chain(families).chain(subject).min()
    }

    /// "Every token issued until now is revoked": replaces every entry (each concerns
    /// a token issued before now), so the subject holds one entry.
    fn collapse(&mut self, now: u64, until: u64) {
        let until = self
            .tokens
            .values()
            .copied()
            .chain(self.families.values().map(|f| f.until))
            .chain(self.revoked_before.map(|(_, u)| u))
            .fold(until, u64::max);
        let revoked_before = self.revoked_before.map_or(now, |(b, _)| b.max(now));
        self.tokens.clear();
        self.families.clear();
        self.revoked_before = Some((revoked_before, until));
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryStore {
    /// A store holding at most `capacity` entries (about 200 bytes each). When full,
    /// and nothing has expired, writes fail (nothing is ever silently forgotten).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_hasher: Hasher::default(),
            shard_capacity: capacity.div_ceil(SHARDS),
            subject_quota: 1024,
        }
    }

    /// The most entries one subject may hold (default 1024, at least 2); see the type's
    /// documentation.
    pub fn subject_quota(mut self, quota: usize) -> Self {
        self.subject_quota = quota.max(2);
        self
    }

    fn shard_index(&self, sub: &str) -> usize {
        // The remainder is below SHARDS, so the cast is lossless.
        (self.shard_hasher.hash_one(sub) % SHARDS as u64) as usize
    }

    fn read(&self, sub: &str) -> Result<RwLockReadGuard<'_, Shard>, StoreError> {
        self.shards
            .get(self.shard_index(sub))
            .ok_or_else(|| StoreError::new("memory store shard"))?
            .read()
            // A poisoned lock means a panic mid-update: fail closed rather than guess.
            .map_err(|_| StoreError::new("memory store lock poisoned"))
    }

    fn write(&self, sub: &str) -> Result<RwLockWriteGuard<'_, Shard>, StoreError> {
        self.shards
            .get(self.shard_index(sub))
            .ok_or_else(|| StoreError::new("memory store shard"))?
            .write()
            .map_err(|_| StoreError::new("memory store lock poisoned"))
    }

    /// Entries currently held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .map(|s| s.entries)
            .sum()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs a write on `sub`'s entries after making room; `added` is how many entries
    /// it may add at most.
    fn update<T>(
        &self,
        sub: &str,
        now: u64,
        added: usize,
        f: impl FnOnce(&mut Subject, &Limits) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut shard = self.write(sub)?;
        shard.purge(now, self.shard_capacity.saturating_sub(added));
        let limits = Limits {
            room: self.shard_capacity.saturating_sub(shard.entries),
            quota: self.subject_quota,
        };
        let shard = &mut *shard;
        let (subject, created) = match shard.subjects.entry(Arc::from(sub)) {
            Entry::Occupied(e) => (e.into_mut(), None),
            Entry::Vacant(e) => {
                let key = Arc::clone(e.key());
                (e.insert(Subject::default()), Some(key))
            }
        };
        let removed = subject.purge(now);
        let before = subject.len();
        let result = f(subject, &limits);
        let after = subject.len();
        let next = subject.next_expiry();
        shard.entries = shard.entries.saturating_sub(removed + before) + after;
        if let Some(key) = created {
            match next {
                Some(at) => shard.expiry.push(Reverse((at, key))),
                None => {
                    shard.subjects.remove(sub);
                }
            }
        }
        result
    }
}

struct Limits {
    /// Entries the shard can still take.
    room: usize,
    quota: usize,
}

impl Shard {
    /// Handles subjects whose next expiry has passed: a few per write, and as many as
    /// it takes (and have expired) to get below `target` entries.
    fn purge(&mut self, now: u64, target: usize) {
        let mut handled = 0;
        while let Some(Reverse((at, _))) = self.expiry.peek() {
            if *at >= now || (handled >= PURGE_PER_WRITE && self.entries <= target) {
                break;
            }
            handled += 1;
            let Some(Reverse((_, sub))) = self.expiry.pop() else {
                break;
            };
            let Some(subject) = self.subjects.get_mut(&sub) else {
                continue;
            };
            self.entries = self.entries.saturating_sub(subject.purge(now));
            match subject.next_expiry() {
                Some(next) => self.expiry.push(Reverse((next.max(now), sub))),
                None => {
                    self.subjects.remove(&sub);
                }
            }
        }
    }
}

fn full() -> StoreError {
    StoreError::new("memory store is full")
}

impl RevocationStore for MemoryStore {
    fn check(&self, token: &TokenPayload, now: u64) -> StoreFuture<TokenStatus> {
        let status = self.read(&token.sub).map(|shard| {
            // Most requests meet a store with nothing for their subject.
            let Some(subject) = shard.subjects.get(token.sub.as_str()) else {
                return Some(TokenStatus::Active);
            };
            if subject
                .revoked_before
                .is_some_and(|(before, until)| token.iat <= before && until >= now)
                || subject
                    .tokens
                    .get(token.jti.as_str())
                    .is_some_and(|u| *u >= now)
            {
                return Some(TokenStatus::Revoked);
            }
            let family = match token.token_type {
                TokenType::Refresh => Some(family_of(token)),
                _ => token.family.as_deref(),
            };
            let Some(family) = family.and_then(|f| subject.families.get(f)) else {
                return Some(TokenStatus::Active);
            };
            if family.revoked {
                return Some(TokenStatus::Revoked);
            }
            if token.token_type == TokenType::Refresh && !family.accepts(&token.jti, now) {
                // Reuse: revoked under the write lock below.
                return None;
            }
            Some(TokenStatus::Active)
        });
        let status = match status {
            Ok(Some(status)) => Ok(status),
            Ok(None) => self.update(&token.sub, now, 0, |subject, _| {
                let Some(family) = subject.families.get_mut(family_of(token)) else {
                    return Ok(TokenStatus::Active);
                };
                if !family.revoked && family.accepts(&token.jti, now) {
                    return Ok(TokenStatus::Active); // rotated meanwhile: not ours to judge
                }
                family.revoked = true;
                family.live.clear();
                Ok(TokenStatus::Reused)
            }),
            Err(e) => Err(e),
        };
        StoreFuture::ready(status)
    }

    fn revoke(&self, r: Revocation<'_>) -> StoreFuture<()> {
        let added = 1 + usize::from(r.family.is_some());
        StoreFuture::ready(self.update(r.sub, r.now, added, |s, limits| {
            let new_family = r.family.is_some_and(|f| !s.families.contains_key(f));
            let needed = usize::from(!s.tokens.contains_key(r.jti)) + usize::from(new_family);
            if s.len() + needed > limits.quota {
                // Never forgets, never grows: one entry covers the whole subject.
                s.collapse(r.now, r.until.max(r.family_until));
                return Ok(());
            }
            if needed > limits.room {
                return Err(full());
            }
            let until = s.tokens.entry(r.jti.into()).or_insert(r.until);
            *until = (*until).max(r.until);
            if let Some(family) = r.family {
                let f = s.families.entry(family.into()).or_default();
                f.revoked = true;
                f.live.clear();
                f.until = f.until.max(r.family_until);
            }
            Ok(())
        }))
    }

    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()> {
        StoreFuture::ready(self.update(sub, now, 1, |s, limits| {
            match &mut s.revoked_before {
                Some((b, u)) => {
                    *b = (*b).max(before);
                    *u = (*u).max(until);
                }
                None if limits.room == 0 => return Err(full()),
                None => s.revoked_before = Some((before, until)),
            }
            Ok(())
        }))
    }

    fn rotate(&self, r: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        StoreFuture::ready(self.update(r.sub, r.now, 1, |s, limits| {
            if !s.families.contains_key(r.family) {
                if s.len() >= limits.quota {
                    return Err(StoreError::new("memory store: subject quota reached"));
                }
                if limits.room == 0 {
                    return Err(full());
                }
            }
            let f = s.families.entry(r.family.into()).or_default();
            f.until = f.until.max(r.until);
            Ok(rotate_family(f, &r))
        }))
    }
}

/// One rotation of a family (see `Rotation`): the presented token must be the current
/// one, or one in a grace window. A grace use never starts a second chain: the token
/// that was current joins the grace window (with the window's own deadline, never
/// extended), so once the window closes exactly one token of the family is usable.
fn rotate_family(f: &mut Family, r: &Rotation<'_>) -> RotationOutcome {
    if f.revoked {
        return RotationOutcome::Revoked;
    }
    f.live
        .retain(|(_, deadline)| deadline.is_none_or(|d| d >= r.now));
    let presented = f.live.iter().position(|(jti, _)| &**jti == r.presented);
    match presented.and_then(|i| f.live.get(i).map(|(_, d)| *d)) {
        // The current token: it alone may enter a new grace window.
        Some(None) => {
            f.live.clear();
            if r.grace > 0 {
                f.live
                    .push((r.presented.into(), Some(r.now.saturating_add(r.grace))));
            }
        }
        // Within a grace window: the current token joins the window.
        Some(Some(deadline)) => {
            for (_, d) in &mut f.live {
                if d.is_none() {
                    *d = Some(deadline);
                }
            }
        }
        // First rotation of a family this store has not seen yet.
        None if f.live.is_empty() => {
            if r.grace > 0 {
                f.live
                    .push((r.presented.into(), Some(r.now.saturating_add(r.grace))));
            }
        }
        None => {
            f.revoked = true;
            f.live.clear();
            return RotationOutcome::Reused;
        }
    }
    f.live.push((r.next.into(), None));
    if f.live.len() > MAX_LIVE_PER_FAMILY {
        f.live.remove(0);
    }
    RotationOutcome::Rotated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(sub: &str, jti: &str, family: Option<&str>, ty: &str, iat: u64) -> TokenPayload {
        let fam = family.map_or(String::new(), |f| format!(r#","fam":"{f}""#));
        serde_json::from_str(&format!(
            r#"{{"sub":"{sub}","jti":"{jti}","type":"{ty}","iat":{iat},"exp":{}{fam}}}"#,
            iat + 100
        ))
        .unwrap()
    }

    fn status(store: &MemoryStore, t: &TokenPayload, now: u64) -> TokenStatus {
        store.check(t, now).try_ready().ok().unwrap().unwrap()
    }

    fn revoke(store: &MemoryStore, sub: &str, jti: &str, until: u64, now: u64) {
        let r = Revocation {
            sub,
            jti,
            family: None,
            until,
            family_until: until,
            now,
        };
        store.revoke(r).try_ready().ok().unwrap().unwrap();
    }

    #[test]
    fn entries_expire_incrementally_and_free_room() {
        let store = MemoryStore::new(SHARDS * 2);
        let attempt = |sub: &str, until, now| {
            let r = Revocation {
                sub,
                jti: "j",
                family: None,
                until,
                family_until: until,
                now,
            };
            store.revoke(r).try_ready().ok().unwrap()
        };
        let mut stored = Vec::new();
        let mut refused = 0;
        for i in 0..(SHARDS * 8) {
            let sub = format!("user{i}");
            match attempt(&sub, 10, 1) {
                Ok(()) => stored.push(sub),
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 0, "a full store refuses");
        assert_eq!(store.len(), stored.len());
        assert!(store.len() <= SHARDS * 2, "bounded: {}", store.len());
        // A full store refuses rather than forgets.
        let t = token(&stored[0], "j", None, "access", 1);
        assert_eq!(status(&store, &t, 5), TokenStatus::Revoked);
        // After the entries' expiry, the same writes find room again.
        for sub in &stored {
            attempt(sub, 100, 20).unwrap();
        }
        assert_eq!(store.len(), stored.len());
    }

    #[test]
    fn one_subject_cannot_exhaust_the_store() {
        // 16 entries per shard.
        let store = MemoryStore::new(SHARDS * 16).subject_quota(4);
        for i in 0..1000 {
            revoke(&store, "churner", &format!("j{i}"), 100, 1);
        }
        assert!(
            store.len() <= 4,
            "the churner holds {} entries",
            store.len()
        );
        // Every token the churner had is still revoked: nothing was forgotten.
        for i in [0, 500, 999] {
            let t = token("churner", &format!("j{i}"), None, "access", 1);
            assert_eq!(status(&store, &t, 2), TokenStatus::Revoked);
        }
        // Everybody else can still log out, those sharing the churner's shard included
        // (without the quota the churner would have filled it).
        let shard = store.shard_index("churner");
        let neighbours = (0..)
            .map(|i| format!("user{i}"))
            .filter(|sub| store.shard_index(sub) == shard)
            .take(11);
        for sub in neighbours {
            revoke(&store, &sub, "x", 100, 1);
        }
    }

    #[test]
    fn rotated_away_refresh_token_is_reuse() {
        let store = MemoryStore::default();
        let r0 = token("a", "r0", Some("f"), "refresh", 1);
        assert_eq!(status(&store, &r0, 2), TokenStatus::Active);
        let rotation = Rotation {
            sub: "a",
            family: "f",
            presented: "r0",
            next: "r1",
            now: 2,
            grace: 0,
            until: 200,
        };
        assert_eq!(
            store.rotate(rotation).try_ready().ok().unwrap().unwrap(),
            RotationOutcome::Rotated
        );
        let r1 = token("a", "r1", Some("f"), "refresh", 2);
        assert_eq!(status(&store, &r1, 3), TokenStatus::Active);
        assert_eq!(status(&store, &r0, 3), TokenStatus::Reused);
        assert_eq!(
            status(&store, &r1, 3),
            TokenStatus::Revoked,
            "family revoked"
        );
    }

    #[test]
    fn grace_never_leaves_two_chains() {
        let mut f = Family::default();
        let rot = |presented, next, now| Rotation {
            sub: "a",
            family: "f",
            presented,
            next,
            now,
            grace: 5,
            until: 100,
        };
        assert_eq!(
            rotate_family(&mut f, &rot("r0", "r1", 10)),
            RotationOutcome::Rotated
        );
        // r0 again within the window: r1b, and r1 joins the window.
        assert_eq!(
            rotate_family(&mut f, &rot("r0", "r1b", 12)),
            RotationOutcome::Rotated
        );
        assert!(f.accepts("r1", 15) && f.accepts("r1b", 15));
        // After the window only the newest chain lives.
        assert!(!f.accepts("r1", 16) && !f.accepts("r0", 16));
        assert!(f.accepts("r1b", 16));
    }
}
