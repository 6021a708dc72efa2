//! Issuing tokens.

use serde::Serialize;
use serde_json::Map;

use crate::auth::JwtAuth;
use crate::claims::{TokenPayload, TokenType, is_registered};
use crate::error::IssueError;

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An access token and a refresh token issued together. They share one CSRF value
/// and one refresh family, so revoking the family ends both.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenPair {
    /// The compact access token.
    pub access_token: String,
    /// The compact refresh token.
    pub refresh_token: String,
    /// The CSRF value both tokens carry (empty when CSRF protection is off).
    pub csrf: String,
    /// The access token's claims.
    pub access_claims: TokenPayload,
    /// The refresh token's claims.
    pub refresh_claims: TokenPayload,
}

/// The result of an explicit refresh: a new access token and, with rotation, the
/// refresh token that replaces the one presented.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Refreshed {
    /// The new access token.
    pub access_token: String,
    /// Its claims.
    pub access_claims: TokenPayload,
    /// The rotated refresh token (`None` when rotation is off).
    pub refresh_token: Option<String>,
    /// Its claims.
    pub refresh_claims: Option<TokenPayload>,
    /// The CSRF value the new tokens carry.
    pub csrf: String,
}

/// Builds one token (or a pair). Start with [`JwtAuth::access_token`] or
/// [`JwtAuth::refresh_token`].
///
/// ```
/// # let auth = tower_jwt_auth::JwtAuth::builder().hs256([7u8; 32]).build()?;
/// let token = auth
///     .access_token("alice")
///     .fresh(true)
///     .scopes(["read"])
///     .claim("tenant", "t1")
///     .issue()?;
/// let claims = auth.verify(&token, tower_jwt_auth::TokenType::Access)?;
/// assert!(claims.fresh && claims.has_scope("read"));
/// assert_eq!(claims.claim::<String>("tenant").as_deref(), Some("t1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
#[derive(Debug)]
pub struct TokenBuilder<'a> {
    auth: &'a JwtAuth,
    payload: TokenPayload,
    ttl: Option<u64>,
    error: Option<IssueError>,
}

impl<'a> TokenBuilder<'a> {
    pub(crate) fn new(auth: &'a JwtAuth, sub: String, token_type: TokenType) -> Self {
        let now = auth.now();
        let csrf = if auth.csrf_enabled() {
            uuid()
        } else {
            String::new()
        };
        let payload = TokenPayload {
            sub,
            jti: uuid(),
            token_type,
            fresh: false,
            csrf: Some(csrf),
            iat: now,
            nbf: None,
            exp: 0,
            iss: auth.issuer().map(str::to_owned),
            aud: auth.audience().map(<[String]>::to_vec),
            scopes: None,
            family: (token_type == TokenType::Refresh).then(uuid),
            auth_time: Some(now),
            extra: Map::new(),
            tail: Default::default(),
        };
        Self {
            auth,
            payload,
            ttl: None,
            error: None,
        }
    }

    /// An access token with the claims of `refresh` (scopes, custom claims, CSRF,
    /// family): what implicit refresh and explicit refresh mint.
    pub(crate) fn from_refresh(auth: &'a JwtAuth, refresh: &TokenPayload) -> Self {
        let mut b = Self::continuing(auth, refresh);
        b.payload.token_type = TokenType::Access;
        b.payload.family = refresh.family.clone().or_else(|| Some(refresh.jti.clone()));
        b
    }

    /// The same access token's claims with a new `jti`, `iat` and `exp`, and
    /// `fresh: false`; refresh claims are refused ([`IssueError::NotAnAccessToken`]).
    pub(crate) fn reissue(auth: &'a JwtAuth, claims: &TokenPayload) -> Self {
        let mut b = Self::continuing(auth, claims);
        if claims.token_type != TokenType::Access {
            b.error = Some(IssueError::NotAnAccessToken);
        }
        b
    }

    /// A token of the same session as `claims`, issued now.
    fn continuing(auth: &'a JwtAuth, claims: &TokenPayload) -> Self {
        let now = auth.now();
        let mut payload = claims.clone();
        payload.jti = uuid();
        payload.iat = now;
        payload.nbf = None;
        payload.fresh = false;
        payload.auth_time = Some(claims.session_start());
        Self {
            auth,
            payload,
            ttl: None,
            error: None,
        }
    }

    /// Marks an access token as fresh (straight from a login).
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.payload.fresh = fresh;
        self
    }

    /// Grants scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.payload.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a custom top-level claim.
    ///
    /// Registered names (`sub`, `jti`, `type`, `fresh`, `csrf`, `iat`, `nbf`, `exp`,
    /// `iss`, `aud`, `scopes`, `fam`, `auth_time`) are set by the builder or by their
    /// own methods ([`not_before`](Self::not_before), [`scopes`](Self::scopes), …):
    /// passing one here makes [`issue`](Self::issue) fail with
    /// [`IssueError::RegisteredClaim`] rather than silently drop it.
    ///
    /// ```
    /// # let auth = tower_jwt_auth::JwtAuth::builder().hs256([7u8; 32]).build()?;
    /// use tower_jwt_auth::IssueError;
    ///
    /// let refused = auth.access_token("alice").claim("nbf", 1_800_000_000).issue();
    /// assert!(matches!(refused, Err(IssueError::RegisteredClaim(name)) if name == "nbf"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn claim(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let name = name.into();
        if is_registered(&name) {
            self.error.get_or_insert(IssueError::RegisteredClaim(name));
            return self;
        }
        match serde_json::to_value(value) {
            Ok(v) => {
                self.payload.extra.insert(name, v);
            }
            Err(e) => {
                self.error.get_or_insert(IssueError::Encode(e.into()));
            }
        }
        self
    }

    /// Sets the `nbf` (not before) claim: the token is refused before `at` (minus the
    /// configured leeway).
    ///
    /// ```
    /// # let auth = tower_jwt_auth::JwtAuth::builder().hs256([7u8; 32]).build()?;
    /// use std::time::{Duration, SystemTime};
    /// use tower_jwt_auth::{AuthError, TokenError, TokenType};
    ///
    /// let later = SystemTime::now() + Duration::from_secs(60);
    /// let token = auth.access_token("alice").not_before(later).issue()?;
    /// let early = auth.verify(&token, TokenType::Access);
    /// assert!(matches!(early, Err(AuthError::InvalidToken(TokenError::NotYetValid))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn not_before(mut self, at: std::time::SystemTime) -> Self {
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.payload.nbf = Some(secs);
        self
    }

    /// Overrides the lifetime configured for this kind of token.
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = Some(ttl.as_secs());
        self
    }

    fn finish(mut self) -> Result<(&'a JwtAuth, TokenPayload), IssueError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let ttl = self.ttl.unwrap_or(match self.payload.token_type {
            TokenType::Access => self.auth.inner.access_ttl,
            TokenType::Refresh => self.auth.inner.refresh_ttl,
        });
        self.payload.exp = self
            .auth
            .expiry(self.payload.iat, ttl, self.payload.session_start());
        if self.payload.token_type == TokenType::Refresh {
            self.payload.fresh = false;
        }
        Ok((self.auth, self.payload))
    }

    /// Signs the token.
    pub fn issue(self) -> Result<String, IssueError> {
        self.issue_with_claims().map(|(token, _)| token)
    }

    /// Signs the token and returns it with its claims.
    pub fn issue_with_claims(self) -> Result<(String, TokenPayload), IssueError> {
        let (auth, payload) = self.finish()?;
        let token = auth.sign(&payload)?;
        Ok((token, payload))
    }

    /// Issues this access token and a refresh token with the same subject, scopes and
    /// custom claims, one shared CSRF value and a new refresh family.
    pub fn pair(self) -> Result<TokenPair, IssueError> {
        let family = uuid();
        self.pair_with_family(family)
    }

    fn pair_with_family(mut self, family: String) -> Result<TokenPair, IssueError> {
        self.payload.token_type = TokenType::Access;
        self.payload.family = Some(family.clone());
        let mut refresh = self.payload.clone();
        refresh.token_type = TokenType::Refresh;
        refresh.jti = uuid();
        refresh.fresh = false;
        let refresh_builder = TokenBuilder {
            auth: self.auth,
            payload: refresh,
            ttl: None,
            error: None,
        };
        let (access_token, access_claims) = self.issue_with_claims()?;
        let (refresh_token, refresh_claims) = refresh_builder.issue_with_claims()?;
        Ok(TokenPair {
            csrf: access_claims.csrf.clone().unwrap_or_default(),
            access_token,
            refresh_token,
            access_claims,
            refresh_claims,
        })
    }

    /// For an explicit refresh: a new access token and, when rotating, a new refresh
    /// token in the same family.
    pub(crate) fn refreshed(self, rotate: bool) -> Result<Refreshed, IssueError> {
        let family = self.payload.family.clone().unwrap_or_else(uuid);
        if rotate {
            let pair = self.pair_with_family(family)?;
            Ok(Refreshed {
                access_token: pair.access_token,
                access_claims: pair.access_claims,
                refresh_token: Some(pair.refresh_token),
                refresh_claims: Some(pair.refresh_claims),
                csrf: pair.csrf,
            })
        } else {
            let (access_token, access_claims) = self.issue_with_claims()?;
            Ok(Refreshed {
                csrf: access_claims.csrf.clone().unwrap_or_default(),
                access_token,
                access_claims,
                refresh_token: None,
                refresh_claims: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_names_are_refused_by_claim() {
        let auth = JwtAuth::builder().hs256([7u8; 32]).build().unwrap();
        for name in [
            "sub",
            "jti",
            "type",
            "fresh",
            "csrf",
            "iat",
            "nbf",
            "exp",
            "iss",
            "aud",
            "scopes",
            "fam",
            "auth_time",
        ] {
            let r = auth.access_token("a").claim(name, 1).issue();
            assert!(
                matches!(&r, Err(IssueError::RegisteredClaim(n)) if n == name),
                "{name}: {r:?}"
            );
        }
        assert!(auth.access_token("a").claim("nbf2", 1).issue().is_ok());
    }

    #[test]
    fn not_before_is_signed() {
        let auth = JwtAuth::builder().hs256([7u8; 32]).build().unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let (_, claims) = auth
            .access_token("a")
            .not_before(at)
            .issue_with_claims()
            .unwrap();
        assert_eq!(claims.nbf, Some(1_700_000_000));
    }
}
