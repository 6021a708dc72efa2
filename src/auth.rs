//! [`JwtAuth`]: the one configured object that issues and verifies tokens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jsonwebtoken::{EncodingKey, Header};
use subtle::ConstantTimeEq;

use crate::cache::VerifiedCache;
use crate::claims::{Reissue, TokenPayload, TokenType};
use crate::clock::{Clock, SystemClock};
use crate::cookies::{CookieNames, CookieSameSite, CookieSettings};
use crate::error::{AuthError, ConfigError, InvalidRequest, IssueError, TokenError};
use crate::extract::{self, Location, PresentedToken};
use crate::issue::{Refreshed, TokenBuilder, TokenPair};
use crate::keys::{self, HmacKey, Key, VerifyingKey};
use crate::layer::AuthLayer;
use crate::revocation::{MemoryStore, RevocationStore, Rotation, RotationOutcome};
use crate::verify::{Checked, Rules, Verifier};

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

/// Implicit refresh of cookie sessions (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImplicitRefresh {
    window: Option<u64>,
    from_refresh_cookie: bool,
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
    csrf_methods: Vec<Method>,
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
            csrf_methods: vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE],
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

    /// Writes `aud` into issued tokens and requires it on every token.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(vec![audience.into()]);
        self
    }

    /// Where tokens are looked for, in order (default: header, then cookie).
    pub fn locations(mut self, locations: impl IntoIterator<Item = Location>) -> Self {
        self.locations = locations.into_iter().collect();
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

    /// The methods that need the CSRF header (default POST, PUT, PATCH, DELETE).
    pub fn csrf_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.csrf_methods = methods.into_iter().collect();
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

    /// How many verified asymmetric tokens (RS*, PS*, ES*, EdDSA) to remember, so a
    /// token seen before skips its 20–60 µs signature check (default 10 000; 0 turns
    /// the cache off). Claims, type, scopes and revocation are still checked on every
    /// request. HMAC keys never use the cache: their check is cheaper than a lookup.
    pub fn verified_token_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
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
        if verifying.is_empty() {
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
        Ok(JwtAuth {
            inner: Arc::new(Inner {
                cache: (self.cache_capacity > 0 && verifying.iter().any(|k| k.is_asymmetric()))
                    .then(|| VerifiedCache::new(self.cache_capacity)),
                known_headers: crate::verify::known_headers(&verifying),
                keys: verifying,
                signing,
                rules: Rules {
                    leeway: self.leeway,
                    issuer: self.issuer,
                    audience: self.audience,
                    max_token_len: self.max_token_len,
                    max_session: self.max_session,
                },
                access_ttl: self.access_ttl,
                refresh_ttl: self.refresh_ttl,
                header: self.locations.contains(&Location::Header),
                cookie: self.locations.contains(&Location::Cookie),
                header_first: self.locations.first() == Some(&Location::Header),
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

pub(crate) struct Signing {
    key: EncodingKey,
    header: Header,
    /// For HMAC: the key prepared once and the header encoded once, so issuing is one
    /// serialization, one base64 pass and one MAC (`jsonwebtoken::encode` rebuilds
    /// both per call). Asymmetric keys sign through `jsonwebtoken`.
    hmac: Option<(HmacKey, String)>,
}

pub(crate) struct Inner {
    keys: Vec<VerifyingKey>,
    known_headers: Vec<(Vec<u8>, usize)>,
    cache: Option<VerifiedCache>,
    signing: Option<Signing>,
    pub(crate) rules: Rules,
    pub(crate) access_ttl: u64,
    pub(crate) refresh_ttl: u64,
    header: bool,
    cookie: bool,
    header_first: bool,
    multiple: MultipleCredentials,
    pub(crate) cookies: CookieSettings,
    csrf: bool,
    csrf_header: HeaderName,
    csrf_methods: Vec<Method>,
    implicit: ImplicitRefresh,
    rotation: bool,
    grace: u64,
    pub(crate) store: Option<Arc<dyn RevocationStore>>,
    clock: Arc<dyn Clock>,
    pub(crate) realm: Option<String>,
    max_cookies: usize,
}

/// Issues and verifies tokens; hands out [`AuthLayer`]s. Cheap to clone (an `Arc`).
///
/// ```
/// use std::time::Duration;
/// use tower_jwt_auth::{JwtAuth, TokenType};
///
/// let auth = JwtAuth::builder()
///     .hs256(b"a secret of at least thirty-two bytes")
///     .access_ttl(Duration::from_secs(15 * 60))
///     .build()?;
///
/// let pair = auth.token_pair("alice")?;
/// let claims = auth.verify(&pair.access_token, TokenType::Access)?;
/// assert_eq!(claims.sub, "alice");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtAuth {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.inner.keys.len())
            .field("access_ttl", &self.inner.access_ttl)
            .field("refresh_ttl", &self.inner.refresh_ttl)
            .finish_non_exhaustive()
    }
}

/// What a route requires of the request (set on [`AuthLayer`]).
#[derive(Clone, Debug)]
pub(crate) struct Requirement {
    pub(crate) token_type: TokenType,
    pub(crate) optional: bool,
    pub(crate) fresh: bool,
    pub(crate) scopes: Arc<[String]>,
}

impl Default for Requirement {
    fn default() -> Self {
        Self {
            token_type: TokenType::Access,
            optional: false,
            fresh: false,
            scopes: Arc::from(Vec::new()),
        }
    }
}

/// How a request was authenticated, before the revocation check.
pub(crate) struct Accepted {
    /// The claims to check against the revocation store (the refresh token's, when
    /// falling back to the refresh cookie).
    pub(crate) payload: TokenPayload,
    pub(crate) presented: PresentedToken,
    pub(crate) plan: Plan,
}

pub(crate) enum Plan {
    /// Nothing to re-issue.
    Keep,
    /// The access cookie expires within the window: re-issue it on the response.
    Reissue,
    /// The access cookie is expired or missing: mint one from the refresh cookie.
    FromRefresh,
}

/// A request authenticated and checked against the store.
pub(crate) struct Authenticated {
    pub(crate) payload: TokenPayload,
    pub(crate) presented: PresentedToken,
    /// `Set-Cookie` values to append to a successful response.
    pub(crate) set_cookie: Option<HeaderValue>,
}

impl JwtAuth {
    /// Starts a configuration.
    pub fn builder() -> JwtAuthBuilder {
        JwtAuthBuilder::default()
    }

    /// A layer that requires a valid access token (see [`AuthLayer`] for the modes).
    pub fn layer(&self) -> AuthLayer {
        AuthLayer::new(self.clone())
    }

    /// Now, by the configured clock.
    pub fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// Starts an access token for `sub`.
    pub fn access_token(&self, sub: impl Into<String>) -> TokenBuilder<'_> {
        TokenBuilder::new(self, sub.into(), TokenType::Access)
    }

    /// Starts a refresh token for `sub` (a new family).
    pub fn refresh_token(&self, sub: impl Into<String>) -> TokenBuilder<'_> {
        TokenBuilder::new(self, sub.into(), TokenType::Refresh)
    }

    /// A new access token with the claims of `claims` (new `jti`, `iat`, `exp`;
    /// `fresh: false`; same CSRF value): what implicit refresh sets on a response.
    pub fn reissue_access(&self, claims: &TokenPayload) -> TokenBuilder<'_> {
        TokenBuilder::reissue(self, claims)
    }

    /// A fresh access token and a refresh token for `sub`, sharing one CSRF value and
    /// one refresh family. For scopes or custom claims use
    /// `auth.access_token(sub)…pair()`.
    pub fn token_pair(&self, sub: impl Into<String>) -> Result<TokenPair, IssueError> {
        self.access_token(sub).fresh(true).pair()
    }

    pub(crate) fn sign(&self, payload: &impl serde::Serialize) -> Result<String, IssueError> {
        let signing = self
            .inner
            .signing
            .as_ref()
            .ok_or(IssueError::NoSigningKey)?;
        let Some((key, header)) = &signing.hmac else {
            return jsonwebtoken::encode(&signing.header, payload, &signing.key)
                .map_err(IssueError::Encode);
        };
        let json = serde_json::to_vec(payload).map_err(|e| IssueError::Encode(e.into()))?;
        let mut token = String::with_capacity(header.len() + json.len() * 4 / 3 + 92);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let tag = key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        Ok(token)
    }

    /// The access token implicit refresh sets: the claims of `claims` with a new
    /// `jti`, `iat` and `exp` and `fresh: false`, signed without copying the claims.
    pub fn reissue_token(&self, claims: &TokenPayload) -> Result<String, IssueError> {
        let iat = self.now();
        let jti = uuid::Uuid::new_v4().to_string();
        self.sign(&Reissue {
            base: claims,
            jti: &jti,
            iat,
            nbf: None,
            exp: iat.saturating_add(self.inner.access_ttl),
            fresh: false,
        })
    }

    pub(crate) fn issuer(&self) -> Option<&str> {
        self.inner.rules.issuer.as_deref()
    }

    pub(crate) fn audience(&self) -> Option<&[String]> {
        self.inner.rules.audience.as_deref()
    }

    fn verifier(&self) -> Verifier<'_> {
        Verifier {
            keys: &self.inner.keys,
            known_headers: &self.inner.known_headers,
            rules: &self.inner.rules,
            cache: self.inner.cache.as_ref(),
        }
    }

    /// Verifies a token's signature, claims and type, without the revocation check.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<TokenPayload, AuthError> {
        match self.verifier().verify(token.as_bytes(), self.now())? {
            Checked::Valid(p) if p.token_type == expected => Ok(p),
            Checked::Expired(p) if p.token_type == expected => Err(TokenError::Expired.into()),
            Checked::Valid(_) | Checked::Expired(_) => Err(TokenError::WrongType.into()),
        }
    }

    /// Verifies a token like [`verify`](Self::verify), then asks the revocation store.
    pub async fn verify_unrevoked(
        &self,
        token: &str,
        expected: TokenType,
    ) -> Result<TokenPayload, AuthError> {
        let payload = self.verify(token, expected)?;
        self.check_revocation(&payload).await?;
        Ok(payload)
    }

    pub(crate) async fn check_revocation(&self, payload: &TokenPayload) -> Result<(), AuthError> {
        match &self.inner.store {
            None => Ok(()),
            Some(store) => match store.is_revoked(payload, self.now()).await {
                Ok(false) => Ok(()),
                Ok(true) => Err(TokenError::Revoked.into()),
                Err(_) => Err(AuthError::StoreUnavailable),
            },
        }
    }

    /// Appends `Set-Cookie` headers for a token pair: both token cookies (`HttpOnly`)
    /// and their CSRF cookies (readable by scripts). Never replaces other cookies.
    pub fn set_cookies(&self, headers: &mut HeaderMap, pair: &TokenPair) {
        let c = &self.inner.cookies;
        let csrf = self.inner.csrf.then_some(pair.csrf.as_str());
        c.append_access(headers, &pair.access_token, csrf);
        c.append_refresh(headers, &pair.refresh_token, csrf);
    }

    /// Appends `Set-Cookie` for an access token and its CSRF cookie.
    pub fn set_access_cookie(&self, headers: &mut HeaderMap, token: &str, csrf: Option<&str>) {
        let csrf = csrf.filter(|_| self.inner.csrf);
        self.inner.cookies.append_access(headers, token, csrf);
    }

    /// Appends `Set-Cookie` for a refresh token and its CSRF cookie.
    pub fn set_refresh_cookie(&self, headers: &mut HeaderMap, token: &str, csrf: Option<&str>) {
        let csrf = csrf.filter(|_| self.inner.csrf);
        self.inner.cookies.append_refresh(headers, token, csrf);
    }

    /// Appends removals of the four cookies (same name, path and domain, `Max-Age=0`).
    pub fn unset_cookies(&self, headers: &mut HeaderMap) {
        self.inner.cookies.append_removals(headers);
    }

    /// The configured cookie names.
    pub fn cookie_names(&self) -> &CookieNames {
        &self.inner.cookies.names
    }

    /// Revokes a verified token until it expires; for a token of a refresh family
    /// (refresh tokens and the access tokens paired with them) the whole family.
    pub async fn revoke(&self, token: &TokenPayload) -> Result<(), AuthError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let now = self.now();
        store
            .revoke_token(&token.jti, token.exp, now)
            .await
            .map_err(|_| AuthError::StoreUnavailable)?;
        if let Some(family) = &token.family {
            let until = token
                .iat
                .saturating_add(self.inner.refresh_ttl)
                .max(token.exp);
            store
                .revoke_family(family, until, now)
                .await
                .map_err(|_| AuthError::StoreUnavailable)?;
        }
        Ok(())
    }

    /// Revokes every token `sub` holds now ("log out everywhere").
    pub async fn revoke_subject(&self, sub: &str) -> Result<(), AuthError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let now = self.now();
        let until = now
            .saturating_add(self.inner.refresh_ttl.max(self.inner.access_ttl))
            .saturating_add(self.inner.rules.leeway);
        store
            .revoke_subject(sub, now, until, now)
            .await
            .map_err(|_| AuthError::StoreUnavailable)
    }

    /// Explicit refresh: from the verified claims of a refresh token, a new access
    /// token and (with rotation, the default) a new refresh token of the same family.
    /// Presenting an already rotated refresh token revokes its family (RFC 9700
    /// §4.14.2) and fails with `Reused`.
    pub async fn refresh(&self, refresh: &TokenPayload) -> Result<Refreshed, AuthError> {
        if refresh.token_type != TokenType::Refresh {
            return Err(TokenError::WrongType.into());
        }
        let rotate = self.inner.rotation && self.inner.store.is_some();
        let refreshed = TokenBuilder::from_refresh(self, refresh)
            .refreshed(rotate)
            .map_err(|_| AuthError::InvalidToken(TokenError::InvalidClaims))?;
        let (Some(store), Some(next)) = (&self.inner.store, &refreshed.refresh_claims) else {
            return Ok(refreshed);
        };
        let family = refresh.family.as_deref().unwrap_or(refresh.jti.as_str());
        let outcome = store
            .rotate(Rotation {
                family,
                presented: &refresh.jti,
                next: &next.jti,
                now: self.now(),
                grace: self.inner.grace,
                until: next.exp,
            })
            .await
            .map_err(|_| AuthError::StoreUnavailable)?;
        match outcome {
            RotationOutcome::Rotated => Ok(refreshed),
            RotationOutcome::Reused => Err(TokenError::Reused.into()),
            _ => Err(TokenError::Revoked.into()),
        }
    }

    /// Appends the cookies of an explicit refresh: the access cookie, and the refresh
    /// cookie when it was rotated.
    pub fn set_refreshed_cookies(&self, headers: &mut HeaderMap, refreshed: &Refreshed) {
        let csrf = self.inner.csrf.then_some(refreshed.csrf.as_str());
        self.inner
            .cookies
            .append_access(headers, &refreshed.access_token, csrf);
        if let Some(token) = &refreshed.refresh_token {
            self.inner.cookies.append_refresh(headers, token, csrf);
        }
    }

    /// Authenticates a request's headers without the layer (for WebSocket upgrades or
    /// custom code): the same checks as an [`AuthLayer`] requiring an access token,
    /// including CSRF and revocation. Implicit refresh does not apply.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<TokenPayload, AuthError> {
        let requirement = Requirement::default();
        let accepted = self
            .accept(method, headers, &requirement, true)?
            .ok_or(AuthError::MissingCredentials)?;
        self.check_revocation(&accepted.payload).await?;
        Ok(accepted.payload)
    }

    /// The synchronous part of authenticating a request: find the token, verify it,
    /// check type, CSRF, freshness and scopes, and plan any implicit refresh.
    /// `Ok(None)`: no credentials on an optional route.
    pub(crate) fn accept(
        &self,
        method: &Method,
        headers: &HeaderMap,
        req: &Requirement,
        no_refresh: bool,
    ) -> Result<Option<Accepted>, AuthError> {
        let inner = &*self.inner;
        let bearer = if inner.header {
            extract::bearer(headers)?
        } else {
            None
        };
        let found = if inner.cookie {
            extract::cookies(
                headers,
                &inner.cookies.names.access,
                &inner.cookies.names.refresh,
                inner.max_cookies,
            )?
        } else {
            extract::FoundCookies::default()
        };
        let refresh_route = req.token_type == TokenType::Refresh;
        let (cookie_token, refresh_cookie) = if refresh_route {
            (found.refresh, None)
        } else {
            (found.access, found.refresh)
        };
        let fallback_allowed = !refresh_route
            && !no_refresh
            && inner.implicit.from_refresh_cookie
            && inner.signing.is_some();
        let presented = match (bearer, cookie_token) {
            (Some(b), Some(c)) => match inner.multiple {
                MultipleCredentials::Reject => {
                    return Err(InvalidRequest::MultipleCredentials.into());
                }
                MultipleCredentials::FirstFound => {
                    if inner.header_first {
                        b
                    } else {
                        c
                    }
                }
            },
            (Some(b), None) => b,
            (None, Some(c)) => c,
            (None, None) => {
                return match refresh_cookie.filter(|_| fallback_allowed) {
                    Some(r) => self.fall_back(method, headers, req, r).map(Some),
                    None if req.optional => Ok(None),
                    None => Err(AuthError::MissingCredentials),
                };
            }
        };
        let from_cookie = presented.location() == Location::Cookie;
        let now = self.now();
        let checked = self
            .verifier()
            .verify(presented.as_bytes(), now)
            .map_err(|e| {
                if presented.location() == Location::Header
                    && !extract::is_b64token(presented.as_bytes())
                {
                    AuthError::from(InvalidRequest::MalformedAuthorization)
                } else {
                    AuthError::from(e)
                }
            })?;
        let payload = match checked {
            Checked::Valid(p) => p,
            // Only a genuine, expired access cookie may fall back (never a forged one).
            Checked::Expired(p) => {
                if p.token_type != req.token_type {
                    return Err(TokenError::WrongType.into());
                }
                return match refresh_cookie.filter(|_| from_cookie && fallback_allowed) {
                    Some(r) => self.fall_back(method, headers, req, r).map(Some),
                    None => Err(TokenError::Expired.into()),
                };
            }
        };
        if payload.token_type != req.token_type {
            return Err(TokenError::WrongType.into());
        }
        if from_cookie {
            self.check_csrf(method, headers, &payload)?;
        }
        check_grants(req, &payload)?;
        let in_window = inner
            .implicit
            .window
            .is_some_and(|w| payload.exp.saturating_sub(now) <= w);
        let plan = if from_cookie && !refresh_route && !no_refresh && in_window {
            Plan::Reissue
        } else {
            Plan::Keep
        };
        Ok(Some(Accepted {
            payload,
            presented,
            plan,
        }))
    }

    fn fall_back(
        &self,
        method: &Method,
        headers: &HeaderMap,
        req: &Requirement,
        refresh: PresentedToken,
    ) -> Result<Accepted, AuthError> {
        let payload = self.verify(refresh.as_str(), TokenType::Refresh)?;
        self.check_csrf(method, headers, &payload)?;
        // The minted access token is not fresh and carries the refresh token's scopes.
        if req.fresh {
            return Err(AuthError::NotFresh);
        }
        check_grants(req, &payload)?;
        Ok(Accepted {
            payload,
            presented: refresh,
            plan: Plan::FromRefresh,
        })
    }

    fn check_csrf(
        &self,
        method: &Method,
        headers: &HeaderMap,
        payload: &TokenPayload,
    ) -> Result<(), AuthError> {
        let inner = &*self.inner;
        if !inner.csrf || !inner.csrf_methods.contains(method) {
            return Ok(());
        }
        let expected = payload.csrf.as_deref().unwrap_or_default().as_bytes();
        let sent = extract::single_header(headers, &inner.csrf_header).unwrap_or_default();
        // Constant time; an empty expected value never matches.
        if expected.is_empty() || !bool::from(expected.ct_eq(sent)) {
            return Err(AuthError::CsrfFailed);
        }
        Ok(())
    }

    /// After the revocation check: mint whatever the plan needs.
    pub(crate) fn complete(&self, accepted: Accepted) -> Result<Authenticated, AuthError> {
        let Accepted {
            payload,
            presented,
            plan,
        } = accepted;
        match plan {
            Plan::Keep => Ok(Authenticated {
                payload,
                presented,
                set_cookie: None,
            }),
            Plan::Reissue => {
                // Re-issuing is best effort: the request is valid either way.
                let set_cookie = self
                    .reissue_token(&payload)
                    .ok()
                    .and_then(|token| self.inner.cookies.access_header(&token));
                Ok(Authenticated {
                    payload,
                    presented,
                    set_cookie,
                })
            }
            Plan::FromRefresh => {
                let (token, claims) = TokenBuilder::from_refresh(self, &payload)
                    .issue_with_claims()
                    .map_err(|_| AuthError::InvalidToken(TokenError::Expired))?;
                let presented = PresentedToken::minted(&token)
                    .ok_or(AuthError::InvalidToken(TokenError::Expired))?;
                let set_cookie = self.inner.cookies.access_header(&token);
                Ok(Authenticated {
                    payload: claims,
                    presented,
                    set_cookie,
                })
            }
        }
    }
}

impl JwtAuth {
    pub(crate) fn csrf_enabled(&self) -> bool {
        self.inner.csrf
    }
}

fn check_grants(req: &Requirement, payload: &TokenPayload) -> Result<(), AuthError> {
    if req.fresh && !payload.fresh {
        return Err(AuthError::NotFresh);
    }
    if !req.scopes.iter().all(|s| payload.has_scope(s)) {
        return Err(AuthError::InsufficientScope);
    }
    Ok(())
}
