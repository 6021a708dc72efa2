//! The embedded, in-process store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{RevocationStore, Rotation, RotationOutcome, StoreError, StoreFuture};
use crate::claims::TokenPayload;

/// Refresh tokens a family may keep usable at once (current + those in a grace window).
const MAX_LIVE_PER_FAMILY: usize = 8;

/// An in-memory [`RevocationStore`]: the default, for one instance.
///
/// Bounded (at most `capacity` entries; entries are dropped once the token they
/// concern has expired) and safe under concurrency. Its lock is never held across an
/// await. For several instances, use a shared store (the `redis` feature).
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    /// jti → until.
    tokens: HashMap<String, u64>,
    /// sub → (revoked before, until).
    subjects: HashMap<String, (u64, u64)>,
    families: HashMap<String, Family>,
    next_purge: usize,
}

#[derive(Debug, Default)]
struct Family {
    revoked: bool,
    /// Usable refresh jtis; `Some(deadline)` for those in a grace window.
    live: Vec<(String, Option<u64>)>,
    until: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryStore {
    /// A store holding at most `capacity` entries. When full, and nothing has expired,
    /// revoking fails (it is never silently forgotten).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A poisoned lock means a panic mid-update: fail closed rather than guess.
        self.state
            .lock()
            .map_err(|_| StoreError::new("memory store lock poisoned"))
    }

    /// Entries currently held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().map_or(0, |s| s.len())
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self, now: u64, f: impl FnOnce(&mut State)) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        if state.len() >= state.next_purge.max(1024).min(self.capacity) {
            state.purge(now);
            state.next_purge = state.len().saturating_mul(2);
        }
        if state.len() >= self.capacity {
            return Err(StoreError::new("memory store is full"));
        }
        f(&mut state);
        Ok(())
    }
}

impl State {
    fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len() + self.families.len()
    }

    fn purge(&mut self, now: u64) {
        self.tokens.retain(|_, until| *until >= now);
        self.subjects.retain(|_, (_, until)| *until >= now);
        self.families.retain(|_, f| f.until >= now);
    }
}

impl RevocationStore for MemoryStore {
    fn is_revoked(&self, token: &TokenPayload, _now: u64) -> StoreFuture<bool> {
        // Empty maps are skipped without hashing: most requests meet no revocation.
        StoreFuture::ready(self.lock().map(|s| {
            (!s.tokens.is_empty() && s.tokens.contains_key(&token.jti))
                || (!s.families.is_empty()
                    && token
                        .family
                        .as_ref()
                        .and_then(|f| s.families.get(f))
                        .is_some_and(|f| f.revoked))
                || (!s.subjects.is_empty()
                    && s.subjects
                        .get(&token.sub)
                        .is_some_and(|(before, _)| token.iat <= *before))
        }))
    }

    fn revoke_token(&self, jti: &str, until: u64, now: u64) -> StoreFuture<()> {
        StoreFuture::ready(self.write(now, |s| {
            s.tokens.insert(jti.to_owned(), until);
        }))
    }

    fn revoke_family(&self, family: &str, until: u64, now: u64) -> StoreFuture<()> {
        StoreFuture::ready(self.write(now, |s| {
            let f = s.families.entry(family.to_owned()).or_default();
            f.revoked = true;
            f.live.clear();
            f.until = f.until.max(until);
        }))
    }

    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()> {
        StoreFuture::ready(self.write(now, |s| {
            let e = s.subjects.entry(sub.to_owned()).or_insert((before, until));
            e.0 = e.0.max(before);
            e.1 = e.1.max(until);
        }))
    }

    fn rotate(&self, r: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        let mut outcome = RotationOutcome::Rotated;
        let result = self.write(r.now, |s| {
            let f = s.families.entry(r.family.to_owned()).or_default();
            f.until = f.until.max(r.until);
            if f.revoked {
                outcome = RotationOutcome::Revoked;
                return;
            }
            f.live
                .retain(|(_, deadline)| deadline.is_none_or(|d| d >= r.now));
            let presented = f.live.iter().position(|(jti, _)| jti == r.presented);
            let known = !f.live.is_empty() || presented.is_some();
            match presented {
                Some(i) => {
                    if f.live.get(i).is_some_and(|(_, d)| d.is_none()) {
                        f.live.remove(i);
                        // Only the immediately preceding token keeps a grace window
                        // (RFC 9700; django-oauth-toolkit #1617 re-opened all ancestors).
                        f.live.retain(|(_, d)| d.is_none());
                        if r.grace > 0 {
                            f.live.push((
                                r.presented.to_owned(),
                                Some(r.now.saturating_add(r.grace)),
                            ));
                        }
                    }
                }
                // First rotation of a family this store has not seen yet.
                None if !known => {
                    if r.grace > 0 {
                        f.live
                            .push((r.presented.to_owned(), Some(r.now.saturating_add(r.grace))));
                    }
                }
                None => {
                    f.revoked = true;
                    f.live.clear();
                    outcome = RotationOutcome::Reused;
                    return;
                }
            }
            f.live.push((r.next.to_owned(), None));
            if f.live.len() > MAX_LIVE_PER_FAMILY {
                f.live.remove(0);
            }
        });
        StoreFuture::ready(result.map(|()| outcome))
    }
}
