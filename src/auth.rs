//! [`JwtAuth`]: the one configured object that issues and verifies tokens.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName};
use jsonwebtoken::{EncodingKey, Header};

use crate::builder::CsrfMethods;
pub use crate::builder::{ImplicitRefresh, JwtAuthBuilder, MultipleCredentials};
use crate::cache::VerifiedCache;
use crate::claims::{Reissue, TokenPayload, TokenType};
use crate::clock::Clock;
use crate::cookies::{CookieNames, CookieSettings};
use crate::error::{AuthError, IssueError, TokenError};
use crate::extract::Location;
use crate::issue::{Refreshed, TokenBuilder, TokenPair};
use crate::keys::{HmacKey, KeySource};
use crate::layer::AuthLayer;
use crate::metrics::{self, Revoked, StoreOp};
use crate::revocation::{
    Revocation, RevocationStore, Rotation, RotationOutcome, StoreError, TokenStatus, family_of,
};
use crate::verify::{Checked, Rules, Verifier};

pub(crate) struct Signing {
    pub(crate) key: EncodingKey,
    pub(crate) header: Header,
    /// For HMAC: the key prepared once and the header encoded once, so issuing is one
    /// serialization, one base64 pass and one MAC (`jsonwebtoken::encode` rebuilds
    /// both per call). Asymmetric keys sign through `jsonwebtoken`.
    pub(crate) hmac: Option<(HmacKey, String)>,
}

pub(crate) struct Inner {
    /// Every verification key: static ones and identity providers' sets.
    pub(crate) keys: KeySource,
    /// Shared with the remote key sets, which drop the entries of keys they remove.
    pub(crate) cache: Option<Arc<VerifiedCache>>,
    pub(crate) signing: Option<Signing>,
    pub(crate) rules: Rules,
    pub(crate) access_ttl: u64,
    pub(crate) refresh_ttl: u64,
    /// Where tokens are looked for, in order (at most one of each).
    pub(crate) locations: Vec<Location>,
    pub(crate) query_parameter: String,
    pub(crate) multiple: MultipleCredentials,
    pub(crate) cookies: CookieSettings,
    pub(crate) csrf: bool,
    pub(crate) csrf_header: HeaderName,
    pub(crate) csrf_methods: CsrfMethods,
    pub(crate) implicit: ImplicitRefresh,
    pub(crate) rotation: bool,
    pub(crate) grace: u64,
    pub(crate) store: Option<Arc<dyn RevocationStore>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) realm: Option<String>,
    pub(crate) max_cookies: usize,
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
            .field("keys", &self.inner.keys.static_count())
            .field("access_ttl", &self.inner.access_ttl)
            .field("refresh_ttl", &self.inner.refresh_ttl)
            .finish_non_exhaustive()
    }
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

    /// A new access token with the claims of an access token (new `jti`, `iat`,
    /// `exp`, never past the session's [end](crate::JwtAuthBuilder::max_session_lifetime);
    /// `fresh: false`; same CSRF value): what implicit refresh sets on a response.
    /// The claims of a refresh token are refused ([`IssueError::NotAnAccessToken`]):
    /// they mint access tokens through [`refresh`](Self::refresh) only.
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

    /// What [`reissue_access(claims).issue()`](Self::reissue_access) signs, without
    /// copying the claims: the implicit refresh of the layer.
    pub(crate) fn reissue_signed(&self, claims: &TokenPayload) -> Result<String, IssueError> {
        if claims.token_type != TokenType::Access {
            return Err(IssueError::NotAnAccessToken);
        }
        let iat = self.now();
        let jti = uuid::Uuid::new_v4().to_string();
        // The session started no later than the token it continues.
        let session_start = claims.session_start();
        self.sign(&Reissue {
            base: claims,
            auth_time: Some(session_start),
            jti: &jti,
            iat,
            nbf: None,
            exp: self.expiry(iat, self.inner.access_ttl, session_start),
            fresh: false,
        })
    }

    /// When a token issued at `iat`, living `ttl` seconds, expires: never past the end
    /// of its session (started at `session_start`).
    pub(crate) fn expiry(&self, iat: u64, ttl: u64, session_start: u64) -> u64 {
        let exp = iat.saturating_add(ttl);
        match self.inner.rules.max_session {
            Some(max) => exp.min(session_start.saturating_add(max)),
            None => exp,
        }
    }

    pub(crate) fn issuer(&self) -> Option<&str> {
        self.inner.rules.issuer.as_deref()
    }

    pub(crate) fn audience(&self) -> Option<&[String]> {
        self.inner.rules.audience.as_deref()
    }

    pub(crate) fn verifier(&self) -> Verifier<'_> {
        Verifier {
            keys: self.inner.keys.all(),
            rules: &self.inner.rules,
            cache: self.inner.cache.as_deref(),
        }
    }

    /// The verifier of this crate's own tokens only (static keys): cookies, implicit
    /// refresh and rotation are for them, never for an identity provider's tokens.
    pub(crate) fn own_verifier(&self) -> Verifier<'_> {
        Verifier {
            keys: self.inner.keys.own(),
            ..self.verifier()
        }
    }

    /// The JWK Set of the configured asymmetric verification keys, to publish (for
    /// example at `/.well-known/jwks.json`) so that other services verify this one's
    /// tokens without a shared secret: public parts only, each with its `kid` (the
    /// RFC 7638 thumbprint when the key has none), `alg` and `use: "sig"`. HMAC keys
    /// are never included.
    ///
    /// A token carries the `kid` of its signing key only when the key was given one
    /// ([`Key::kid`](crate::Key::kid)); give it one so verifiers can pick the key.
    ///
    /// ```
    /// use tower_jwt_auth::{Algorithm, JwtAuth, Key};
    ///
    /// let private = std::fs::read("tests/keys/ec_private.pem")?;
    /// let public = std::fs::read("tests/keys/ec_public.pem")?;
    /// let auth = JwtAuth::builder()
    ///     .signing_key(Key::pem_pair(Algorithm::ES256, private, public).kid("2026-11"))
    ///     .build()?;
    /// let jwks = serde_json::to_value(auth.jwks())?;
    /// assert_eq!(jwks["keys"][0]["kid"], "2026-11");
    /// assert_eq!(jwks["keys"][0]["use"], "sig");
    /// assert!(jwks["keys"][0].get("d").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.inner.keys.jwk_set()
    }

    /// Verifies a token's signature, claims and type, without the revocation check.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<TokenPayload, AuthError> {
        match self.verifier().verify(token.as_bytes(), self.now())? {
            // Owned claims: copied out of the cache on a hit (the layer shares them instead).
            Checked::Valid(v) if v.payload.token_type == expected => {
                drop(v.entry);
                Ok(Arc::unwrap_or_clone(v.payload))
            }
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
        let verify = || self.verify(token, expected);
        let payload = self.after_key_fetch(verify(), verify).await?;
        self.check_revocation(&payload).await?;
        Ok(payload)
    }

    pub(crate) async fn check_revocation(&self, payload: &TokenPayload) -> Result<(), AuthError> {
        match &self.inner.store {
            None => Ok(()),
            Some(store) => verdict(
                store
                    .check(payload, self.now())
                    .observed(StoreOp::Check)
                    .await,
            ),
        }
    }

    /// The last instant a token expiring at `exp` still verifies: revocations are kept
    /// at least until then.
    pub(crate) fn verifiable_until(&self, exp: u64) -> u64 {
        exp.saturating_add(self.inner.rules.leeway)
    }

    /// The last instant a token of a family whose refresh tokens expire by
    /// `refresh_exp` still verifies: the last refresh token verifies until its `exp`
    /// plus leeway, and may mint an access token at that instant, which verifies
    /// until its own `exp` plus leeway.
    pub(crate) fn family_verifiable_until(&self, refresh_exp: u64) -> u64 {
        self.verifiable_until(
            self.verifiable_until(refresh_exp)
                .saturating_add(self.inner.access_ttl),
        )
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

    /// Revokes a verified token until it can no longer verify; for a token of a
    /// refresh family (refresh tokens and the access tokens paired with them) the
    /// whole family.
    pub async fn revoke(&self, token: &TokenPayload) -> Result<(), AuthError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let family_until = self.family_verifiable_until(
            token
                .iat
                .saturating_add(self.inner.refresh_ttl)
                .max(token.exp),
        );
        store
            .revoke(Revocation {
                sub: &token.sub,
                jti: &token.jti,
                family: token.family.as_deref(),
                until: self.verifiable_until(token.exp),
                family_until,
                now: self.now(),
            })
            .observed(StoreOp::Revoke)
            .await
            .map_err(|_| AuthError::StoreUnavailable)?;
        metrics::revoked(Revoked::Token);
        if token.family.is_some() {
            metrics::revoked(Revoked::Family);
        }
        Ok(())
    }

    /// Revokes every token `sub` holds now ("log out everywhere").
    pub async fn revoke_subject(&self, sub: &str) -> Result<(), AuthError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let now = self.now();
        let until = self.verifiable_until(
            now.saturating_add(self.inner.refresh_ttl.max(self.inner.access_ttl)),
        );
        store
            .revoke_subject(sub, now, until, now)
            .observed(StoreOp::RevokeSubject)
            .await
            .map_err(|_| AuthError::StoreUnavailable)?;
        metrics::revoked(Revoked::Subject);
        Ok(())
    }

    /// Explicit refresh: from the verified claims of a refresh token, a new access
    /// token and (with rotation, the default) a new refresh token of the same family.
    /// Presenting an already rotated refresh token revokes its family (RFC 9700
    /// §4.14.2) and fails with `Reused`.
    pub async fn refresh(&self, refresh: &TokenPayload) -> Result<Refreshed, AuthError> {
        let result = self.rotate(refresh).await;
        metrics::explicit_refresh(&result);
        result
    }

    async fn rotate(&self, refresh: &TokenPayload) -> Result<Refreshed, AuthError> {
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
        let outcome = store
            .rotate(Rotation {
                sub: &refresh.sub,
                family: family_of(refresh),
                presented: &refresh.jti,
                next: &next.jti,
                now: self.now(),
                grace: self.inner.grace,
                // So that a family revocation (kept at least this long) covers every
                // access token minted from `next`.
                until: self.family_verifiable_until(next.exp),
            })
            .observed(StoreOp::Rotate)
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
}

impl JwtAuth {
    pub(crate) fn csrf_enabled(&self) -> bool {
        self.inner.csrf
    }
}

/// What the layer and the async APIs answer for the store's word on a token.
pub(crate) fn verdict(status: Result<TokenStatus, StoreError>) -> Result<(), AuthError> {
    match status {
        Ok(TokenStatus::Active) => Ok(()),
        Ok(TokenStatus::Reused) => Err(TokenError::Reused.into()),
        Ok(_) => Err(TokenError::Revoked.into()),
        Err(_e) => {
            #[cfg(feature = "tracing")]
            tracing::warn!(error = %_e, "revocation store unavailable; failing closed");
            Err(AuthError::StoreUnavailable)
        }
    }
}
