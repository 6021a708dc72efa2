//! One remote key set: the keys in use behind an atomic swap, and the task that
//! fetches them.
//!
//! The request path only ever loads the current keys (`ArcSwap`: no lock, no
//! wait). Every fetch is made by one background task per set, so there is never
//! more than one in flight; a request that meets an unknown `kid` asks that task
//! for a fetch (at most once per cooldown) and may wait for it, and requests that
//! ask while one is pending share it. No lock is held across I/O: the one mutex
//! guards a few counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use jsonwebtoken::Algorithm;
use tokio::sync::{Notify, watch};

use super::fetch::{FetchError, Fetcher};
use super::{Settings, Source, jwk};
use crate::cache::VerifiedCache;
use crate::keys::{KeyId, VerifyingKey};

/// First retry after a failed fetch; doubled per failure, never above the cooldown.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The keys in use. Empty: no usable keys (never fetched, or too stale).
pub(crate) struct Snapshot {
    pub(crate) keys: Vec<VerifyingKey>,
}

/// Why a key set gave no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No usable keys are held (not fetched yet, or past the max staleness).
    Unavailable,
    /// No key has this `kid` (a refresh may find it).
    UnknownKid,
    /// A key has this `kid` but not this algorithm: never worth a fetch.
    WrongAlgorithm,
}

struct Control {
    /// When a request last triggered a fetch (the cooldown counts these only).
    last_demand: Option<Instant>,
    /// Fetches started so far.
    started: u64,
    /// The fetch number that will serve pending requests, if any wait.
    demand_target: Option<u64>,
    /// The fetch number that serves the latest demand (0: none yet), kept after that
    /// fetch started, so that requests can wait for it to finish.
    served_target: u64,
}

struct Shared {
    source: Source,
    settings: Settings,
    fetcher: Fetcher,
    current: ArcSwap<Snapshot>,
    control: Mutex<Control>,
    /// The number of the last finished fetch (successful or not).
    finished: watch::Sender<u64>,
    started: AtomicBool,
    /// When the keys in use stop verifying, in milliseconds after `epoch` (`u64::MAX`:
    /// never). Checked on every lookup, so staleness fails closed even if the
    /// fetching task is gone.
    stale_at: AtomicU64,
    epoch: Instant,
    /// The verified-token cache, told which keys left the set.
    cache: Option<Arc<VerifiedCache>>,
}

/// A remote key set in use. Cloning shares it.
#[derive(Clone)]
pub(crate) struct KeySet {
    shared: Arc<Shared>,
    /// Wakes the fetching task; kept outside `Shared` so that the task, which waits
    /// on it, does not keep the set alive.
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Let a sleeping task notice that the set is gone (see `run`).
        self.finished.send_replace(u64::MAX);
    }
}

impl KeySet {
    pub(crate) fn new(
        source: Source,
        settings: Settings,
        cache: Option<Arc<VerifiedCache>>,
    ) -> Result<Self, String> {
        let fetcher = Fetcher::new(settings.max_bytes)?;
        let set = Self {
            shared: Arc::new(Shared {
                source,
                settings,
                fetcher,
                current: ArcSwap::from_pointee(Snapshot { keys: Vec::new() }),
                control: Mutex::new(Control {
                    last_demand: None,
                    started: 0,
                    demand_target: None,
                    served_target: 0,
                }),
                finished: watch::channel(0).0,
                started: AtomicBool::new(false),
                stale_at: AtomicU64::new(u64::MAX),
                epoch: Instant::now(),
                cache,
            }),
            wake: Arc::new(Notify::new()),
        };
        set.start();
        Ok(set)
    }

    /// Starts the fetching task if a Tokio runtime is at hand and it is not running.
    /// Called at build time and on every lookup (one atomic load once started), so a
    /// set built outside a runtime starts with the first request.
    fn start(&self) {
        if self.shared.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(run(Arc::downgrade(&self.shared), self.wake.clone()));
    }

    /// Runs `f` with the key for (`kid`, `alg`). Never waits: the keys are loaded
    /// from an atomic pointer.
    pub(crate) fn with_key<R>(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        f: impl FnOnce(&VerifyingKey) -> R,
    ) -> Result<R, Miss> {
        self.start();
        let snapshot = self.shared.current.load();
        if snapshot.keys.is_empty() || self.shared.is_stale() {
            return Err(Miss::Unavailable);
        }
        let keys = &snapshot.keys;
        let found = match kid {
            Some(kid) => {
                let mut same_kid = keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                match same_kid.clone().find(|k| k.alg == alg) {
                    Some(key) => Some(key),
                    None if same_kid.next().is_some() => return Err(Miss::WrongAlgorithm),
                    None => None,
                }
            }
            // Without a `kid`: only when exactly one key verifies this algorithm.
            None => {
                let mut of_alg = keys.iter().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(key), None) => Some(key),
                    _ => None,
                }
            }
        };
        found.map(f).ok_or(Miss::UnknownKid)
    }

    /// Whether `key` is among the keys in use (a cached token verified by a key that
    /// left the set must be verified again).
    pub(crate) fn holds(&self, key: KeyId) -> bool {
        !self.shared.is_stale() && self.shared.current.load().keys.iter().any(|k| k.id == key)
    }

    /// Asks for a fetch because a token named an unknown `kid`. `None` when the
    /// cooldown forbids one; otherwise a future that resolves once the fetch that
    /// serves this request has finished (or after the fetch timeout). Requests that
    /// ask while a fetch is pending share it.
    pub(crate) fn refresh_for_unknown_kid(
        &self,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let target = {
            let mut control = self.shared.control.lock().ok()?;
            match control.demand_target {
                // A fetch is already asked for: share it.
                Some(target) => return Some(self.finished_fetch(target)),
                None => {
                    let now = Instant::now();
                    let cooling = control.last_demand.is_some_and(|t| {
                        now.duration_since(t) < self.shared.settings.refresh_cooldown
                    });
                    if cooling {
                        return None;
                    }
                    control.last_demand = Some(now);
                    let target = control.started + 1;
                    control.demand_target = Some(target);
                    control.served_target = target;
                    target
                }
            }
        };
        self.wake.notify_one();
        Some(self.finished_fetch(target))
    }

    /// The fetch that serves the latest unknown-`kid` demand, while it has not
    /// finished: a request that met an unknown `kid` waits for it (bounded by the fetch
    /// timeout) rather than being refused while the new key is on its way. `None` when
    /// no demanded fetch is pending (within the cooldown a bogus `kid` waits for nothing).
    pub(crate) fn pending_demand(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let target = self.shared.control.lock().ok()?.served_target;
        if target == 0 || *self.shared.finished.borrow() >= target {
            return None;
        }
        Some(self.finished_fetch(target))
    }

    fn finished_fetch(&self, target: u64) -> impl Future<Output = ()> + Send + 'static {
        let mut finished = self.shared.finished.subscribe();
        // Slack over the timeout: the fetch itself is bounded by it.
        let bound = self
            .shared
            .settings
            .fetch_timeout
            .saturating_add(Duration::from_millis(100));
        async move {
            let _ = tokio::time::timeout(bound, finished.wait_for(|&n| n >= target)).await;
        }
    }
}

impl Shared {
    /// Whether the keys in use are past the max staleness.
    fn is_stale(&self) -> bool {
        let stale_at = self.stale_at.load(Ordering::Acquire);
        stale_at != u64::MAX && self.millis(Instant::now()) >= stale_at
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// The keys just confirmed stay in use until `max_staleness` from `now`; the
    /// instant, if any, for the fetching task to drop them.
    fn confirmed(&self, now: Instant) -> Option<Instant> {
        let stale_at = now.checked_add(self.settings.max_staleness);
        let millis = stale_at.map_or(u64::MAX, |at| self.millis(at).min(u64::MAX - 1));
        self.stale_at.store(millis, Ordering::Release);
        stale_at
    }

    /// Numbers a new fetch; it serves every request waiting so far.
    fn begin_fetch(&self) -> u64 {
        let Ok(mut control) = self.control.lock() else {
            return 0;
        };
        control.started += 1;
        if control
            .demand_target
            .is_some_and(|target| target <= control.started)
        {
            control.demand_target = None;
        }
        control.started
    }

    /// Puts `keys` in use. A key the set already held keeps its identity, so the
    /// tokens it verified stay cached; a removed key verifies nothing once this
    /// returns (cached tokens are only trusted while their key is held, `holds`), and
    /// its cached tokens are dropped.
    fn replace(&self, mut keys: Vec<VerifyingKey>) {
        let old = self.current.load_full();
        for key in &mut keys {
            if let Some(same) = old.keys.iter().find(|held| held.same_key(key)) {
                key.id = same.id;
            }
        }
        let removed: Vec<KeyId> = old
            .keys
            .iter()
            .map(|held| held.id)
            .filter(|id| !keys.iter().any(|key| key.id == *id))
            .collect();
        self.current.store(Arc::new(Snapshot { keys }));
        if let Some(cache) = &self.cache {
            cache.forget_keys(&removed);
        }
    }

    /// One fetch: discovery when needed, then the set. `jwks_uri` keeps the URL
    /// found by discovery between fetches (forgotten after a failure).
    async fn fetch(
        &self,
        jwks_uri: &mut Option<String>,
        unchanged: Option<&Bytes>,
    ) -> Result<(Option<Vec<VerifyingKey>>, Bytes, Option<Duration>), FetchError> {
        let url = match (&self.source, jwks_uri.as_ref()) {
            (Source::JwksUrl(url), _) => url.clone(),
            (Source::Oidc(_), Some(url)) => url.clone(),
            (Source::Oidc(issuer), None) => {
                let url = self.fetcher.discover(issuer).await?;
                *jwks_uri = Some(url.clone());
                url
            }
        };
        let fetched = self.fetcher.get(&url).await?;
        // The same document as last time: nothing to parse, nothing to invalidate.
        if unchanged == Some(&fetched.body) {
            return Ok((None, fetched.body, fetched.max_age));
        }
        let keys = jwk::parse_set(&fetched.body, self.settings.max_keys)?;
        Ok((Some(keys), fetched.body, fetched.max_age))
    }
}

/// The fetching task of one set: fetches at once, then every max age; after a
/// failure retries with backoff capped at the cooldown; on demand when a request
/// asks; drops the keys when they are older than the max staleness. Ends when the
/// set is dropped.
async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    let mut jwks_uri = None;
    // The document whose keys are in use.
    let mut in_use: Option<Bytes> = None;
    let mut failures: u32 = 0;
    let mut next_fetch = Instant::now();
    let mut stale_at: Option<Instant> = None;
    let mut gone = match shared.upgrade() {
        Some(s) => s.finished.subscribe(),
        None => return,
    };
    loop {
        let wake_at = stale_at.map_or(next_fetch, |s| s.min(next_fetch));
        let demanded = tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => false,
            () = wake.notified() => true,
            _ = gone.wait_for(|&n| n == u64::MAX) => return,
        };
        let Some(set) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        if stale_at.is_some_and(|s| now >= s) {
            // Fail closed: keys that could not be confirmed for too long are dropped.
            #[cfg(feature = "tracing")]
            tracing::warn!(source = %set.source, "remote key set too stale: keys dropped");
            set.replace(Vec::new());
            set.stale_at.store(u64::MAX, Ordering::Release);
            in_use = None;
            stale_at = None;
        }
        if !demanded && now < next_fetch {
            continue;
        }
        let number = set.begin_fetch();
        let settings = set.settings;
        let result = tokio::time::timeout(
            settings.fetch_timeout,
            set.fetch(&mut jwks_uri, in_use.as_ref()),
        )
        .await
        .unwrap_or(Err(FetchError::Timeout));
        let now = Instant::now();
        match result {
            Ok((keys, body, max_age)) => {
                stale_at = set.confirmed(now);
                if let Some(keys) = keys {
                    set.replace(keys);
                    in_use = Some(body);
                }
                failures = 0;
                // `Cache-Control: max-age` within [cooldown, cache max age].
                let floor = settings.refresh_cooldown.min(settings.cache_max_age);
                let every = max_age
                    .unwrap_or(settings.cache_max_age)
                    .clamp(floor, settings.cache_max_age);
                next_fetch = now.checked_add(every).unwrap_or(far_future(now));
            }
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(source = %set.source, error = %_error, "remote key set fetch failed");
                jwks_uri = None;
                failures = failures.saturating_add(1);
                let backoff = FIRST_RETRY
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(settings.refresh_cooldown);
                next_fetch = now.checked_add(backoff).unwrap_or(far_future(now));
            }
        }
        set.finished.send_replace(number);
    }
}

/// A wake-up far enough away to mean "not before something else happens".
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(365 * 24 * 3600))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::EncodingKey;
    use jsonwebtoken::jwk::Jwk;

    use super::*;
    use crate::cache::Entry;
    use crate::claims::TokenPayload;

    const A: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
    const B: &[u8] = include_bytes!("../../tests/keys/attacker_ec_private.pem");

    /// The keys of a JWK Set document publishing these P-256 keys under these `kid`s.
    fn set_of(keys: &[(&str, &[u8])]) -> Vec<VerifyingKey> {
        let keys: Vec<Jwk> = keys
            .iter()
            .map(|(kid, pem)| {
                let key = EncodingKey::from_ec_pem(pem).unwrap();
                let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
        jwk::parse_set(&body, 10).unwrap()
    }

    fn cache_token_of(cache: &VerifiedCache, token: &str, key: KeyId) {
        let payload: TokenPayload =
            serde_json::from_str(r#"{"sub":"a","jti":"j","type":"access","iat":1,"exp":100}"#)
                .unwrap();
        cache.insert(
            token.as_bytes(),
            Arc::new(Entry::new(Arc::new(payload), key)),
        );
    }

    #[test]
    fn a_refetched_set_keeps_its_keys_and_drops_the_tokens_of_removed_ones() {
        crate::keys::install_provider();
        let cache = Arc::new(VerifiedCache::new(16));
        // No runtime here: nothing is fetched, keys are put in use by hand.
        let set = KeySet::new(
            Source::JwksUrl("http://127.0.0.1:1/jwks".into()),
            Settings::default(),
            Some(Arc::clone(&cache)),
        )
        .unwrap();
        let shared = &set.shared;
        shared.replace(set_of(&[("a", A)]));
        let a = shared.current.load().keys[0].id;
        cache_token_of(&cache, "token-of-a", a);

        // The provider publishes its next key beside the current one: the current key
        // keeps its identity, so its tokens stay cached and trusted.
        shared.replace(set_of(&[("a", A), ("next", B)]));
        assert!(set.holds(a));
        assert_eq!(cache.len(), 1);

        // The same `kid` over other material is another key: `a`'s tokens go.
        shared.replace(set_of(&[("a", B)]));
        assert!(!set.holds(a));
        assert_eq!(cache.len(), 0);

        // A key retired from the set: its tokens are dropped at once.
        shared.replace(set_of(&[("a", A)]));
        let a = shared.current.load().keys[0].id;
        cache_token_of(&cache, "token-of-a", a);
        shared.replace(set_of(&[("next", B)]));
        assert!(!set.holds(a));
        assert_eq!(cache.len(), 0);
    }
}
