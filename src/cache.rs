//! A cache of tokens whose asymmetric signature was verified.
//!
//! RSA and ECDSA checks cost 20–60 µs; a browser or API client presents the same
//! token many times. The cache is keyed by the token's exact bytes (so a hit means
//! these very bytes were verified before: no digest collision to reason about), keeps
//! the parsed claims, and is only filled after a successful verification. Claims
//! rules (expiry, type, scopes, revocation) still run on every request.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::claims::TokenPayload;
use crate::metrics;

pub(crate) struct VerifiedCache {
    entries: RwLock<HashMap<Box<[u8]>, TokenPayload>>,
    capacity: usize,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, token: &[u8], now: u64) -> Option<TokenPayload> {
        let entries = self.entries.read().ok()?;
        let hit = entries.get(token).filter(|p| p.exp >= now).cloned();
        metrics::verified_cache(hit.is_some());
        hit
    }

    pub(crate) fn insert(&self, token: &[u8], payload: &TokenPayload, now: u64) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity {
            // Bounded: drop what expired; if that is not enough, start over.
            entries.retain(|_, p| p.exp >= now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(token.into(), payload.clone());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(exp: u64) -> TokenPayload {
        serde_json::from_str(&format!(
            r#"{{"sub":"a","jti":"j","type":"access","iat":1,"exp":{exp}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn hits_only_exact_bytes_and_unexpired_entries() {
        let cache = VerifiedCache::new(2);
        cache.insert(b"a.b.c", &payload(100), 10);
        assert!(cache.get(b"a.b.c", 50).is_some());
        assert!(cache.get(b"a.b.C", 50).is_none());
        assert!(cache.get(b"a.b.c", 101).is_none(), "no hit past exp");
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedCache::new(2);
        cache.insert(b"1", &payload(100), 10);
        cache.insert(b"2", &payload(5), 10);
        cache.insert(b"3", &payload(100), 10);
        assert_eq!(cache.len(), 2, "the expired entry made room");
        cache.insert(b"4", &payload(100), 10);
        assert!(cache.len() <= 2);
    }
}
