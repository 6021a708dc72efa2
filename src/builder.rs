//! [`JwtAuthBuilder`]: every setting of a [`JwtAuth`], checked once by `build`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, Method};
use jsonwebtoken::Header;

use crate::auth::{Inner, JwtAuth, Signing};
use crate::cache::VerifiedCache;
use crate::clock::{Clock, SystemClock};
use crate::cookies::{CookieNames, CookieSameSite, CookieSettings};
use crate::error::ConfigError;
use crate::extract::Location;
use crate::keys::{self, Key, KeySource, VerifyingKey};
use crate::revocation::{MemoryStore, RevocationStore};
use crate::verify::Rules;

/// What to do with a request that carries two credentials (a bearer header and an
/// auth cookie).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MultipleCredentials {
    /// 400 `invalid_request` (RFC 6750 §2: one method per request).
    #[default]
    Reject,
    /// Use the first one, in the order of the configured locations.
    FirstFound,
}

/// Which methods of cookie-authenticated requests need the CSRF header.
#[derive(Clone, Debug)]
pub(crate) enum CsrfMethods {
    /// Every method but the safe ones (RFC 9110 §9.2.1) that browsers send cross-site.
    AllButSafe,
    Only(Vec<Method>),
}

impl CsrfMethods {
    pub(crate) fn applies_to(&self, method: &Method) -> bool {
        match self {
            Self::AllButSafe => {
                !(method == Method::GET || method == Method::HEAD || method == Method::OPTIONS)
            }
            Self::Only(methods) => methods.contains(method),
        }
    }
}

/// Implicit refresh of cookie sessions (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImplicitRefresh {
    pub(crate) window: Option<u64>,
    pub(crate) from_refresh_cookie: bool,
}

impl ImplicitRefresh {
    /// Re-issue the access cookie when it expires within `window`, and mint one from
    /// the refresh cookie when the access cookie is expired or missing.
    pub fn window(window: Duration) -> Self {
        Self {
            window: Some(window.as_secs()),
            from_refresh_cookie: true,
        }
    }

    /// No implicit refresh at all.
    pub fn disabled() -> Self {
        Self {
            window: None,
            from_refresh_cookie: false,
        }
    }

    /// Whether an expired or missing access cookie may be replaced from a valid
    /// refresh cookie (on by default).
    pub fn from_refresh_cookie(mut self, enabled: bool) -> Self {
        self.from_refresh_cookie = enabled;
        self
    }
}

impl Default for ImplicitRefresh {
    fn default() -> Self {
        Self::window(Duration::from_secs(10 * 60))
    }
}

/// Builds a [`JwtAuth`]. Every mistake is reported by [`build`](Self::build) as a
/// [`ConfigError`], never as a panic.
#[must_use]
pub struct JwtAuthBuilder {
    signing: Option<Key>,
    verification: Vec<Key>,
    access_ttl: u64,
    refresh_ttl: u64,
    leeway: u64,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
    locations: Vec<Location>,
    multiple: MultipleCredentials,
    cookies: CookieSettings,
    csrf: bool,
    csrf_header: HeaderName,
    csrf_methods: CsrfMethods,
    implicit: ImplicitRefresh,
    rotation: bool,
    grace: u64,
    store: Option<Arc<dyn RevocationStore>>,
    clock: Arc<dyn Clock>,
    realm: Option<String>,
    max_token_len: usize,
    max_cookies: usize,
    cache_capacity: usize,
    max_session: Option<u64>,
    query_parameter: String,
    #[cfg(feature = "jwks")]
    remote: Vec<crate::jwks::RemoteKeySet>,
}

impl Default for JwtAuthBuilder {
    fn default() -> Self {
        Self {
            signing: None,
            verification: Vec::new(),
            access_ttl: 15 * 60,
            refresh_ttl: 20 * 24 * 3600,
            leeway: 5,
            issuer: None,
            audience: None,
            locations: vec![Location::Header, Location::Cookie],
            multiple: MultipleCredentials::Reject,
            cookies: CookieSettings::default(),
            csrf: true,
            csrf_header: HeaderName::from_static("x-csrf-token"),
            csrf_methods: CsrfMethods::AllButSafe,
            implicit: ImplicitRefresh::default(),
            rotation: true,
            grace: 0,
            store: Some(Arc::new(MemoryStore::default())),
            clock: Arc::new(SystemClock),
            realm: None,
            max_token_len: 8 * 1024,
            max_cookies: 256,
            cache_capacity: 10_000,
            max_session: None,
            query_parameter: "token".into(),
            #[cfg(feature = "jwks")]
            remote: Vec::new(),
        }
    }
}

impl JwtAuthBuilder {
    /// Signs and verifies with HS256 and `secret` (at least 32 bytes).
    pub fn hs256(self, secret: impl AsRef<[u8]>) -> Self {
        self.signing_key(Key::hs256(secret))
    }

    /// The key that signs new tokens (its `kid`, if any, goes in the header). It also
    /// verifies.
    pub fn signing_key(mut self, key: Key) -> Self {
        self.signing = Some(key);
        self
    }

    /// An additional key that verifies tokens only (for example the previous key
    /// during a rotation, selected by `kid`).
    pub fn verification_key(mut self, key: Key) -> Self {
        self.verification.push(key);
        self
    }

    /// Lifetime of access tokens (default 15 minutes).
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl.as_secs();
        self
    }

    /// Lifetime of refresh tokens (default 20 days).
    pub fn refresh_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl.as_secs();
        self
    }

    /// Tolerated clock skew for `exp`, `nbf` and `iat` (default 5 seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// Writes `iss` into issued tokens and requires it on every token.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Writes `aud` into issued tokens and requires it on every token. Without an
    /// audience, tokens that carry an `aud` are refused (RFC 7519 §4.1.3).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(vec![audience.into()]);
        self
    }

    /// Accepts tokens whose `aud` names any of `audiences` (issued tokens carry them
    /// all), for a service known under several names.
    ///
    /// ```
    /// let auth = tower_jwt_auth::JwtAuth::builder()
    ///     .hs256([7u8; 32])
    ///     .audiences(["api", "https://api.example.com"])
    ///     .build()?;
    /// # Ok::<(), tower_jwt_auth::ConfigError>(())
    /// ```
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audience = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Where tokens are looked for, in order (default: header, then cookie). Add
    /// [`Location::Query`] for WebSocket upgrades from clients that cannot set headers.
    pub fn locations(mut self, locations: impl IntoIterator<Item = Location>) -> Self {
        self.locations = Vec::new();
        for location in locations {
            if !self.locations.contains(&location) {
                self.locations.push(location);
            }
        }
        self
    }

    /// The query parameter read by [`Location::Query`] (default `token`, AuthX's).
    pub fn query_parameter(mut self, name: impl Into<String>) -> Self {
        self.query_parameter = name.into();
        self
    }

    /// What to do when a request carries a bearer header and an auth cookie.
    pub fn multiple_credentials(mut self, policy: MultipleCredentials) -> Self {
        self.multiple = policy;
        self
    }

    /// Cookie names (default `__Host-` prefixed; [`CookieNames::authx`] for AuthX's).
    pub fn cookie_names(mut self, names: CookieNames) -> Self {
        self.cookies.names = names;
        self
    }

    /// Cookie `Path` (default `/`; `__Host-` names require `/`).
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookies.path = path.into();
        self
    }

    /// Cookie `Domain` (default none; `__Host-` names forbid it).
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookies.domain = Some(domain.into());
        self
    }

    /// Cookie `SameSite` (default `Lax`).
    pub fn cookie_same_site(mut self, same_site: CookieSameSite) -> Self {
        self.cookies.same_site = same_site;
        self
    }

    /// Cookie `Max-Age` (default: none, a browser-session cookie).
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.cookies.max_age = Some(max_age.as_secs());
        self
    }

    /// **Development only.** Drops the `Secure` attribute so cookies work over plain
    /// `http://`, and with it the `__Host-`/`__Secure-` prefixes of the cookie names
    /// (browsers refuse prefixed cookies without `Secure`). Never enable it in
    /// production: tokens would travel in clear text.
    pub fn insecure_cookies_for_local_development(mut self) -> Self {
        self.cookies.secure = false;
        let n = &mut self.cookies.names;
        for name in [
            &mut n.access,
            &mut n.refresh,
            &mut n.csrf_access,
            &mut n.csrf_refresh,
        ] {
            for prefix in ["__Host-", "__Secure-"] {
                if let Some(rest) = name.strip_prefix(prefix) {
                    *name = rest.to_owned();
                }
            }
        }
        self
    }

    pub(crate) fn cookie_names_ref(&self) -> &CookieNames {
        &self.cookies.names
    }

    /// Turns CSRF double-submit protection of cookie-authenticated unsafe requests
    /// on or off (default on).
    pub fn csrf_protection(mut self, enabled: bool) -> Self {
        self.csrf = enabled;
        self
    }

    /// The request header holding the CSRF value (default `X-CSRF-TOKEN`).
    pub fn csrf_header(mut self, name: HeaderName) -> Self {
        self.csrf_header = name;
        self
    }

    /// Only these methods need the CSRF header. The default, every method except
    /// `GET`, `HEAD` and `OPTIONS` (compared exactly, so `get` or `PROPPATCH` need it),
    /// is the safe choice: a handler that ignores the method (a `service_fn`, axum's
    /// `any`) is protected whatever method a page makes the browser send.
    pub fn csrf_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.csrf_methods = CsrfMethods::Only(methods.into_iter().collect());
        self
    }

    /// Implicit refresh of cookie sessions (default: a 10 minute window, with
    /// fallback to the refresh cookie).
    pub fn implicit_refresh(mut self, policy: ImplicitRefresh) -> Self {
        self.implicit = policy;
        self
    }

    /// Whether explicit refreshes rotate the refresh token (default on, RFC 9700 §4.14).
    pub fn refresh_rotation(mut self, enabled: bool) -> Self {
        self.rotation = enabled;
        self
    }

    /// How long the refresh token just rotated away stays usable, for concurrent
    /// refreshes by the same client (default zero: reuse is caught at once).
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.grace = grace.as_secs();
        self
    }

    /// The revocation store (default: an in-memory [`MemoryStore`]).
    pub fn revocation_store(mut self, store: impl RevocationStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A revocation store shared with other code.
    pub fn shared_revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// No revocation checks at all: logout only clears cookies, tokens stay valid
    /// until they expire, and refresh-token reuse is not detected.
    pub fn without_revocation(mut self) -> Self {
        self.store = None;
        self
    }

    /// The time source (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The `realm` attribute of `WWW-Authenticate` challenges.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Longest accepted token, checked before any decoding (default 8 KiB).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// The absolute lifetime of a session, counted from the login (`auth_time`):
    /// refreshing (explicitly or implicitly) never extends it, and every token of the
    /// session is refused after it (RFC 9700 §4.14.2). Default: none, so a session
    /// that keeps refreshing lives on; inactivity longer than the refresh TTL ends it.
    pub fn max_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_session = Some(lifetime.as_secs());
        self
    }

    /// How many verified tokens to remember (default 10 000; 0 turns the cache off).
    ///
    /// A token seen before skips its signature check (the MAC, or 30–90 µs for
    /// RSA/ECDSA), its base64 decoding and its JSON parse: the cache is keyed by the
    /// token's exact bytes and hands out the claims it parsed the first time (shared,
    /// see [`AuthLayer`](crate::AuthLayer)). Only tokens whose claims were valid are
    /// stored, and only from their second sight (a doorkeeper of token hashes), so a
    /// token presented once costs no copy or allocation; on every hit the registered claims (`exp`, `nbf`, `iat`, `iss`, `aud`,
    /// the session lifetime) are checked again with the same leeway, and type, CSRF,
    /// scopes and revocation are checked on every request as without the cache. The
    /// cache is bounded by its number of entries (S3-FIFO eviction) and sharded, so
    /// it scales across cores; each entry costs the token's bytes plus its claims.
    pub fn verified_token_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Verifies tokens of an identity provider with its remote key set, beside the
    /// configured keys (which are tried first). Call once per issuer; a token is only
    /// verified with the keys of the set bound to its `iss`. See [`RemoteKeySet`](crate::RemoteKeySet).
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn remote_keys(mut self, set: crate::jwks::RemoteKeySet) -> Self {
        self.remote.push(set);
        self
    }

    /// Checks the configuration and prepares the keys.
    pub fn build(self) -> Result<JwtAuth, ConfigError> {
        keys::install_provider();
        let mut verifying: Vec<VerifyingKey> = Vec::new();
        let signing = match &self.signing {
            Some(key) => {
                if !key.can_sign() {
                    return Err(ConfigError::InvalidKey(
                        "the signing key has no private part".into(),
                    ));
                }
                verifying.push(key.prepare()?);
                let mut header = Header::new(key.alg);
                header.kid = key.kid.clone();
                let encoded_header = serde_json::to_vec(&header)
                    .map(|json| URL_SAFE_NO_PAD.encode(json))
                    .map_err(|e| ConfigError::InvalidKey(e.to_string()))?;
                Some(Signing {
                    key: key.encoding_key()?,
                    header,
                    hmac: key.hmac_signer().map(|k| (k, encoded_header)),
                })
            }
            None => None,
        };
        for key in &self.verification {
            let prepared = key.prepare()?;
            let clash = verifying
                .iter()
                .any(|k| k.kid == prepared.kid && (k.kid.is_some() || k.alg == prepared.alg));
            if clash {
                return Err(ConfigError::AmbiguousKeys);
            }
            verifying.push(prepared);
        }
        #[cfg(feature = "jwks")]
        let no_remote = self.remote.is_empty();
        #[cfg(not(feature = "jwks"))]
        let no_remote = true;
        if verifying.is_empty() && no_remote {
            return Err(ConfigError::NoKey);
        }
        if self.access_ttl == 0 || self.refresh_ttl == 0 {
            return Err(ConfigError::InvalidValue(
                "token lifetimes must be at least one second",
            ));
        }
        if self.locations.is_empty() {
            return Err(ConfigError::InvalidValue(
                "at least one token location is required",
            ));
        }
        if self.audience.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::InvalidValue("audiences must not be empty"));
        }
        if self.max_token_len == 0 {
            return Err(ConfigError::InvalidValue("max_token_len must be positive"));
        }
        self.cookies.validate()?;
        let mut cookies = self.cookies;
        cookies.prepare();
        if let Some(realm) = &self.realm
            && realm
                .bytes()
                .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
        {
            return Err(ConfigError::InvalidValue(
                "realm must be printable ASCII without quotes",
            ));
        }
        let rules = Rules {
            leeway: self.leeway,
            issuer: self.issuer,
            audience: self.audience,
            max_token_len: self.max_token_len,
            max_session: self.max_session,
        };
        let cache =
            (self.cache_capacity > 0).then(|| Arc::new(VerifiedCache::new(self.cache_capacity)));
        let keys = KeySource::new(verifying);
        #[cfg(feature = "jwks")]
        let keys = keys.with_remote(
            self.remote
                .into_iter()
                .map(|set| set.start(&rules, cache.clone()))
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(JwtAuth {
            inner: Arc::new(Inner {
                keys,
                cache,
                signing,
                rules,
                access_ttl: self.access_ttl,
                refresh_ttl: self.refresh_ttl,
                locations: self.locations,
                query_parameter: self.query_parameter,
                multiple: self.multiple,
                cookies,
                csrf: self.csrf,
                csrf_header: self.csrf_header,
                csrf_methods: self.csrf_methods,
                implicit: self.implicit,
                rotation: self.rotation,
                grace: self.grace,
                store: self.store,
                clock: self.clock,
                realm: self.realm,
                max_cookies: self.max_cookies,
            }),
        })
    }
}
