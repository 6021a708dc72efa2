//! Remote key sets (feature `jwks`): verify tokens from an OpenID Connect issuer or
//! any JWKS URL, with keys that rotate.
//!
//! One component per set: [`set`] holds the keys and the task that fetches them,
//! [`fetch`] the HTTP client, [`jwk`] the rules for which JWKs are acceptable.

mod fetch;
mod jwk;
mod set;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use set::{KeySet, Miss};

use crate::cache::VerifiedCache;
use crate::error::ConfigError;
use crate::verify::Rules;

/// A remote set in use, with the claims rules of its tokens.
pub(crate) struct RemoteIssuer {
    pub(crate) set: KeySet,
    pub(crate) rules: Rules,
}

/// An id for a verified token without `jti` (providers' access tokens often have
/// none): a digest of its signing input (`header.payload`), so revocation has a handle
/// that no other token shares. Never of the signature: an ECDSA signature `(r, s)`
/// rewritten as `(r, n - s)` still verifies, and would carry a new, unrevoked id.
pub(crate) fn token_id(signing_input: &[u8]) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signing_input);
    let mut id = String::from("sha256:");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(digest.as_ref(), &mut id);
    id
}

/// The longest refresh cooldown and cache max age accepted (a week).
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest max staleness accepted (30 days): keys nobody could confirm for longer
/// must stop verifying.
const MAX_STALENESS: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest fetch timeout accepted (a request waits up to it for a new key).
const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a set's keys come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    JwksUrl(String),
    Oidc(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksUrl(url) => f.write_str(url),
            Self::Oidc(issuer) => write!(f, "{issuer} (discovery)"),
        }
    }
}

/// The limits and timings of one set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) refresh_cooldown: Duration,
    pub(crate) cache_max_age: Duration,
    pub(crate) max_staleness: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) max_bytes: usize,
    pub(crate) max_keys: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            refresh_cooldown: Duration::from_secs(30),
            cache_max_age: Duration::from_secs(10 * 60),
            max_staleness: Duration::from_secs(24 * 3600),
            fetch_timeout: Duration::from_secs(5),
            max_bytes: 1024 * 1024,
            max_keys: 100,
        }
    }
}

/// The verification keys of an identity provider, fetched over HTTPS and kept up to
/// date: [`oidc_issuer`](Self::oidc_issuer) (OpenID Connect discovery) or
/// [`jwks_url`](Self::jwks_url). Given to
/// [`JwtAuthBuilder::remote_keys`](crate::JwtAuthBuilder::remote_keys).
///
/// Tokens verified with a set's keys must carry its issuer in `iss`: a set is bound
/// to one issuer ([`oidc_issuer`](Self::oidc_issuer), or [`jwks_url`](Self::jwks_url)
/// with [`issuer`](Self::issuer)), and `build` refuses a set bound to none unless
/// [`any_issuer`](Self::any_issuer) says so.
/// Requests never wait on a fetch for a key already held; a token naming an unknown
/// `kid` triggers a fetch at most once per [cooldown](Self::refresh_cooldown); the
/// keys are refreshed in the background every [max age](Self::cache_max_age) (or the
/// provider's shorter `Cache-Control: max-age`); while no keys are held requests are
/// answered 503, and keys that could not be refreshed for longer than the
/// [max staleness](Self::max_staleness) are dropped (fail closed).
///
/// ```
/// use std::time::Duration;
/// use tower_jwt_auth::RemoteKeySet;
///
/// let keycloak = RemoteKeySet::oidc_issuer("https://sso.example.com/realms/main")
///     .refresh_cooldown(Duration::from_secs(10));
/// let legacy = RemoteKeySet::jwks_url("https://auth.example.com/keys.json")
///     .issuer("https://auth.example.com");
/// # let _ = (keycloak, legacy);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RemoteKeySet {
    pub(crate) source: Source,
    pub(crate) issuer: Option<String>,
    pub(crate) any_issuer: bool,
    pub(crate) audience: Option<Vec<String>>,
    pub(crate) settings: Settings,
}

impl RemoteKeySet {
    /// The keys of an OpenID Connect issuer, found by discovery at
    /// `{issuer}/.well-known/openid-configuration`. The document's `issuer` must equal
    /// `issuer` exactly, and tokens must carry it in `iss`.
    pub fn oidc_issuer(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        Self {
            source: Source::Oidc(issuer.clone()),
            issuer: Some(issuer),
            any_issuer: false,
            audience: None,
            settings: Settings::default(),
        }
    }

    /// The keys published at a JWKS URL. Bind them to their issuer with
    /// [`issuer`](Self::issuer): `build` refuses a set without one (unless
    /// [`any_issuer`](Self::any_issuer)).
    pub fn jwks_url(url: impl Into<String>) -> Self {
        Self {
            source: Source::JwksUrl(url.into()),
            issuer: None,
            any_issuer: false,
            audience: None,
            settings: Settings::default(),
        }
    }

    /// The `iss` that tokens verified with these keys must carry. For
    /// [`oidc_issuer`](Self::oidc_issuer) it is the issuer already, and another value
    /// is refused by `build`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// **Dangerous.** Accepts tokens of any `iss` (or none) verified with these keys,
    /// instead of refusing to build a set bound to no issuer. Only for a key set that
    /// signs for a single issuer you trust entirely: with a provider whose one key set
    /// signs for every tenant, anyone who registers a tenant could mint tokens that
    /// pass for your audience. Ignored when an [`issuer`](Self::issuer) is set.
    pub fn any_issuer(mut self) -> Self {
        self.any_issuer = true;
        self
    }

    /// The audiences accepted in the `aud` of these tokens (one is enough); by
    /// default the builder's [`audience`](crate::JwtAuthBuilder::audience). With no
    /// audience at all, tokens carrying an `aud` are refused (RFC 7519 §4.1.3).
    pub fn audience<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audience = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// The least time between two fetches that tokens with an unknown `kid` trigger
    /// (30 s by default). Background refreshes do not count. It also caps the wait
    /// between retries after a failed fetch. At most a week.
    pub fn refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.settings.refresh_cooldown = cooldown;
        self
    }

    /// How often the keys are refreshed in the background (10 min by default); a
    /// shorter `Cache-Control: max-age` from the provider wins, down to the cooldown.
    /// At most a week.
    pub fn cache_max_age(mut self, max_age: Duration) -> Self {
        self.settings.cache_max_age = max_age;
        self
    }

    /// How long keys keep verifying while every refresh fails (24 h by default);
    /// past it they are dropped and requests answered 503 until a fetch succeeds
    /// (checked on every request, not only by the fetching task). At most 30 days.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.settings.max_staleness = max_staleness;
        self
    }

    /// The bound of one whole fetch, discovery included (5 s by default, at most 60 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.settings.fetch_timeout = timeout;
        self
    }

    /// The largest document accepted, in bytes (1 MiB by default).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.settings.max_bytes = max;
        self
    }

    /// The most keys a set may list (100 by default); a larger set is refused and
    /// the previous keys kept.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.settings.max_keys = max;
        self
    }

    /// Checks the settings and starts fetching (when a Tokio runtime is at hand;
    /// otherwise with the first request).
    pub(crate) fn start(
        self,
        own: &Rules,
        cache: Option<Arc<VerifiedCache>>,
    ) -> Result<RemoteIssuer, ConfigError> {
        let invalid = |why: String| ConfigError::InvalidKeySource(why);
        let url = match &self.source {
            Source::JwksUrl(url) => url.clone(),
            Source::Oidc(issuer) => {
                if self.issuer.as_deref() != Some(issuer.as_str()) {
                    return Err(invalid(format!(
                        "{issuer}: an OpenID Connect issuer is the issuer of its tokens"
                    )));
                }
                issuer.clone()
            }
        };
        fetch::check_url(&url).map_err(|e| invalid(format!("{url}: {e}")))?;
        if self.issuer.is_none() && !self.any_issuer {
            return Err(invalid(format!(
                "{url}: bind the set to its issuer (`issuer`), or opt out with `any_issuer`"
            )));
        }
        let s = &self.settings;
        if s.refresh_cooldown.is_zero() || s.cache_max_age.is_zero() || s.fetch_timeout.is_zero() {
            return Err(invalid(
                "cooldown, max age and fetch timeout must be above zero".into(),
            ));
        }
        let bounds = [
            ("refresh cooldown", s.refresh_cooldown, MAX_INTERVAL),
            ("cache max age", s.cache_max_age, MAX_INTERVAL),
            ("max staleness", s.max_staleness, MAX_STALENESS),
            ("fetch timeout", s.fetch_timeout, MAX_FETCH_TIMEOUT),
        ];
        if let Some((name, _, max)) = bounds.iter().find(|(_, value, max)| value > max) {
            return Err(invalid(format!(
                "the {name} must be at most {} s",
                max.as_secs()
            )));
        }
        if s.max_bytes == 0 || s.max_keys == 0 {
            return Err(invalid(
                "max response size and max keys must be above zero".into(),
            ));
        }
        if self.audience.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::InvalidValue("audiences must not be empty"));
        }
        let rules = Rules {
            leeway: own.leeway,
            issuer: self.issuer,
            audience: self.audience.or_else(|| own.audience.clone()),
            max_token_len: own.max_token_len,
            // A provider's session is the provider's business.
            max_session: None,
        };
        let set = KeySet::new(self.source, self.settings, cache).map_err(invalid)?;
        Ok(RemoteIssuer { set, rules })
    }
}
