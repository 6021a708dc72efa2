//! A cache of verified tokens, for every algorithm.
//!
//! A browser or an API client presents the same access token for its whole life, and
//! every request would pay the MAC (or the 30–90 µs RSA/ECDSA check), the base64
//! decode and the JSON parse again. The cache is keyed by the token's exact bytes (a
//! hit compares the whole token, so a hit means these very bytes were verified
//! before: no digest collision to reason about) and keeps the parsed claims behind an
//! `Arc`, so a hit hands them to the request without copying them.
//!
//! It is bounded (S3-FIFO eviction, by [`quick_cache`]) and sharded, so lookups from
//! several cores do not serialize on one lock. Only tokens whose claims were valid are
//! stored; the claims rules (expiry, not-before, issuer, audience, session lifetime)
//! run again on every hit, and type, CSRF, scopes and revocation are checked outside
//! the verifier on every request. Each entry records which key verified it: a hit
//! whose key is no longer held is ignored, and [`VerifiedCache::forget_keys`] drops
//! the entries of keys a remote set took out of service.

use std::any::Any;
use std::hash::BuildHasher;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{Equivalent, UnitWeighter};

use crate::claims::TokenPayload;
use crate::keys::KeyId;
use crate::metrics;

/// Claims of a custom type decoded from a cached token (see `AuthLayer::claims`).
type Custom = Arc<dyn Any + Send + Sync>;

/// One verified token. Every hit counts a reference to its entry: aligned to 128 bytes
/// (two cache lines, as crossbeam's `CachePadded` on x86-64), entries made one after
/// the other do not share a line, so threads hitting different tokens do not contend
/// (`benches/verify.rs`, 2 threads against 1).
#[repr(align(128))]
pub(crate) struct Entry {
    pub(crate) payload: Arc<TokenPayload>,
    /// The key whose signature check admitted the token.
    pub(crate) key: KeyId,
    /// The token decoded once as a caller's claims type, filled on first use.
    custom: OnceLock<Custom>,
}

impl Entry {
    pub(crate) fn new(payload: Arc<TokenPayload>, key: KeyId) -> Self {
        Self {
            payload,
            key,
            custom: OnceLock::new(),
        }
    }

    /// The token's claims as `C`, decoded by `decode` the first time only. A second
    /// claims type on the same token is decoded on every call (it is not kept).
    pub(crate) fn custom<C, E>(&self, decode: impl FnOnce() -> Result<C, E>) -> Result<Arc<C>, E>
    where
        C: Send + Sync + 'static,
    {
        if let Some(kept) = self.custom.get() {
            if let Ok(claims) = Arc::clone(kept).downcast::<C>() {
                return Ok(claims);
            }
            return decode().map(Arc::new);
        }
        let claims = Arc::new(decode()?);
        // Another thread may have won the race; either value is the same token's claims.
        let _ = self.custom.set(claims.clone());
        Ok(claims)
    }
}

type Hasher = foldhash::fast::RandomState;

/// How many trailing bytes of a token are hashed: the end of its signature, which
/// differs between any two tokens a key signed (a MAC or signature over different
/// claims). Hashing only these saves hashing the whole token twice on first sight;
/// equality still compares every byte, so the hash only picks the bucket.
const HASHED_TAIL: usize = 32;

fn hash_token<H: std::hash::Hasher>(token: &[u8], state: &mut H) {
    let tail = token
        .get(token.len().saturating_sub(HASHED_TAIL)..)
        .unwrap_or(token);
    state.write_usize(token.len());
    state.write(tail);
}

/// A cached token's exact bytes.
#[derive(PartialEq, Eq)]
struct TokenKey(Box<[u8]>);

impl Hash for TokenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_token(&self.0, state);
    }
}

/// A presented token, looked up without copying it.
struct Lookup<'a>(&'a [u8]);

impl Hash for Lookup<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_token(self.0, state);
    }
}

impl Equivalent<TokenKey> for Lookup<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        // The whole token, never the hash alone.
        *key.0 == *self.0
    }
}

type Entries =
    Cache<TokenKey, Arc<Entry>, UnitWeighter, Hasher, DefaultLifecycle<TokenKey, Arc<Entry>>>;

pub(crate) struct VerifiedCache {
    entries: Entries,
    /// A doorkeeper: the hashes of tokens verified once, one per slot. A token is only
    /// cached on its second sight, so a token presented once (a client that never
    /// repeats its token, a flood of fresh tokens) costs no copy, no allocation and no
    /// eviction of a token that is in use. A collision or an overwritten slot only
    /// moves a token's admission one sight earlier or later: never a wrong answer.
    seen: Box<[AtomicU64]>,
    hasher: Hasher,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let hasher = Hasher::default();
        let slots = capacity.next_power_of_two().max(64);
        Self {
            entries: Cache::with(
                capacity,
                capacity as u64,
                UnitWeighter,
                hasher.clone(),
                DefaultLifecycle::default(),
            ),
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hasher,
        }
    }

    /// Whether `token` was verified before (per the doorkeeper); records it if not.
    fn seen_before(&self, token: &[u8]) -> bool {
        // Never 0, the value of an empty slot.
        let hash = self.hasher.hash_one(Lookup(token)) | 1;
        let mask = self.seen.len() - 1; // a power of two, at least 64
        let Some(slot) = self.seen.get((hash as usize) & mask) else {
            return false;
        };
        if slot.load(Ordering::Relaxed) == hash {
            return true;
        }
        slot.store(hash, Ordering::Relaxed);
        false
    }

    /// Caches a verified token on its second sight; the entry when it was stored.
    pub(crate) fn admit(
        &self,
        token: &[u8],
        entry: impl FnOnce() -> Arc<Entry>,
    ) -> Option<Arc<Entry>> {
        if !self.seen_before(token) {
            return None;
        }
        let entry = entry();
        self.insert(token, Arc::clone(&entry));
        Some(entry)
    }

    /// The entry for exactly these bytes, if any.
    pub(crate) fn get(&self, token: &[u8]) -> Option<Arc<Entry>> {
        let hit = self.entries.get(&Lookup(token));
        metrics::verified_cache(hit.is_some());
        hit
    }

    pub(crate) fn insert(&self, token: &[u8], entry: Arc<Entry>) {
        self.entries.insert(TokenKey(token.into()), entry);
    }

    pub(crate) fn remove(&self, token: &[u8]) {
        self.entries.remove(&Lookup(token));
    }

    /// Drops every token verified by one of `keys`, when a remote set removes or
    /// rotates them out. Hits already refuse entries whose key is gone: this frees
    /// their memory now rather than on their next look-up or eviction.
    #[cfg(any(feature = "jwks", test))]
    pub(crate) fn forget_keys(&self, keys: &[KeyId]) {
        if !keys.is_empty() {
            self.entries.retain(|_, entry| !keys.contains(&entry.key));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64) -> Arc<Entry> {
        let payload: TokenPayload =
            serde_json::from_str(r#"{"sub":"a","jti":"j","type":"access","iat":1,"exp":100}"#)
                .unwrap();
        Arc::new(Entry::new(Arc::new(payload), KeyId::for_tests(key)))
    }

    #[test]
    fn hits_only_exact_bytes() {
        let cache = VerifiedCache::new(16);
        cache.insert(b"a.b.c", entry(1));
        assert!(cache.get(b"a.b.c").is_some());
        assert!(cache.get(b"a.b.C").is_none());
        assert!(cache.get(b"a.b.c.").is_none());
        assert!(cache.get(b"a.b").is_none());
    }

    #[test]
    fn tokens_with_the_same_tail_are_told_apart() {
        let cache = VerifiedCache::new(16);
        let tail = [b'x'; 40];
        let (mut a, mut b) = (b"aaaa.".to_vec(), b"bbbb.".to_vec());
        a.extend_from_slice(&tail);
        b.extend_from_slice(&tail);
        cache.insert(&a, entry(1));
        assert!(cache.get(&a).is_some());
        assert!(cache.get(&b).is_none(), "same hash, other bytes: no hit");
        assert!(cache.get(&tail).is_none());
    }

    #[test]
    fn admits_a_token_on_its_second_sight() {
        let cache = VerifiedCache::new(16);
        assert!(cache.admit(b"a.b.c", || entry(1)).is_none(), "first sight");
        assert!(cache.get(b"a.b.c").is_none());
        assert!(cache.admit(b"a.b.c", || entry(1)).is_some(), "second sight");
        assert!(cache.get(b"a.b.c").is_some());
        assert!(
            cache.admit(b"x.y.z", || entry(1)).is_none(),
            "another token starts over"
        );
    }

    #[test]
    fn stays_bounded_by_evicting() {
        let cache = VerifiedCache::new(100);
        for i in 0..1_000u32 {
            cache.insert(&i.to_be_bytes(), entry(1));
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
        assert!(cache.len() >= 50, "evicts, does not clear: {}", cache.len());
    }

    #[test]
    fn forgetting_a_key_drops_its_entries_only() {
        let cache = VerifiedCache::new(16);
        cache.insert(b"by-1", entry(1));
        cache.insert(b"by-2", entry(2));
        cache.forget_keys(&[KeyId::for_tests(1)]);
        assert!(cache.get(b"by-1").is_none());
        assert!(cache.get(b"by-2").is_some());
    }

    #[test]
    fn custom_claims_are_decoded_once() {
        let e = entry(1);
        let mut calls = 0;
        let first = e.custom(|| {
            calls += 1;
            Ok::<_, ()>(String::from("x"))
        });
        let second = e.custom(|| {
            calls += 1;
            Ok::<_, ()>(String::from("y"))
        });
        assert_eq!(first.unwrap().as_str(), "x");
        assert_eq!(second.unwrap().as_str(), "x");
        assert_eq!(calls, 1);
        // Another type on the same entry is decoded, not confused with the first.
        assert_eq!(*e.custom(|| Ok::<_, ()>(7u8)).unwrap(), 7);
    }
}
