//! Authenticating one request: find the token, verify it, check type, CSRF,
//! freshness and scopes, and plan any implicit refresh. The layer runs [`JwtAuth::accept`],
//! asks the revocation store, then [`JwtAuth::complete`].

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method};
use subtle::ConstantTimeEq;

use crate::auth::{JwtAuth, MultipleCredentials};
use crate::cache::Entry;
use crate::claims::{TokenPayload, TokenType};
use crate::error::{AuthError, InvalidRequest, TokenError};
use crate::extract::{self, Location, PresentedToken};
use crate::issue::TokenBuilder;
use crate::verify::Checked;

/// What a route requires of the request (set on [`AuthLayer`]).
#[derive(Clone, Debug)]
pub(crate) struct Requirement {
    pub(crate) token_type: TokenType,
    pub(crate) optional: bool,
    pub(crate) fresh: bool,
    pub(crate) scopes: Arc<[String]>,
    /// Answer plain HTTP whatever the content type (see `AuthLayer::http_only`).
    pub(crate) http_only: bool,
}

impl Default for Requirement {
    fn default() -> Self {
        Self {
            token_type: TokenType::Access,
            optional: false,
            fresh: false,
            scopes: Arc::from(Vec::new()),
            http_only: false,
        }
    }
}

/// How a request was authenticated, before the revocation check.
pub(crate) struct Accepted {
    /// The claims to check against the revocation store (the refresh token's, when
    /// falling back to the refresh cookie).
    pub(crate) payload: Arc<TokenPayload>,
    /// The token's cache entry, when it has one.
    pub(crate) entry: Option<Arc<Entry>>,
    pub(crate) presented: PresentedToken,
    pub(crate) plan: Plan,
    /// When the token was checked: reused for the store, one clock read per request.
    pub(crate) now: u64,
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
pub(crate) struct Admitted {
    pub(crate) payload: Arc<TokenPayload>,
    pub(crate) entry: Option<Arc<Entry>>,
    pub(crate) presented: PresentedToken,
    /// `Set-Cookie` values to append to a successful response.
    pub(crate) set_cookie: Option<HeaderValue>,
    /// Whether the access token was minted from the refresh cookie (else re-issued in
    /// the window, when `set_cookie` is set).
    pub(crate) minted: bool,
}

impl JwtAuth {
    /// Authenticates a request's headers without the layer (for WebSocket upgrades or
    /// custom code): the same checks as an [`AuthLayer`](crate::AuthLayer) requiring an access token,
    /// including CSRF and revocation. Implicit refresh does not apply.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<TokenPayload, AuthError> {
        let requirement = Requirement::default();
        let accept = || self.accept(method, headers, None, &requirement, || true);
        let accepted = self
            .after_key_fetch(accept(), accept)
            .await?
            .ok_or(AuthError::MissingCredentials)?;
        self.check_revocation(&accepted.payload).await?;
        drop(accepted.entry);
        Ok(Arc::unwrap_or_clone(accepted.payload))
    }

    /// Like [`authenticate`](Self::authenticate), from a request's parts, so that a
    /// token in the query string of a WebSocket upgrade counts when
    /// [`Location::Query`] is configured.
    pub async fn authenticate_parts(&self, parts: &Parts) -> Result<TokenPayload, AuthError> {
        let requirement = Requirement::default();
        let accept = || {
            self.accept(
                &parts.method,
                &parts.headers,
                parts.uri.query(),
                &requirement,
                || true,
            )
        };
        let accepted = self
            .after_key_fetch(accept(), accept)
            .await?
            .ok_or(AuthError::MissingCredentials)?;
        self.check_revocation(&accepted.payload).await?;
        drop(accepted.entry);
        Ok(Arc::unwrap_or_clone(accepted.payload))
    }

    /// `first`, or when it refused a token whose `kid` a remote set is fetching right
    /// now, `again()` once that fetch has finished (bounded by the fetch timeout): a
    /// token signed with a key the provider just rotated in is not refused while the
    /// key is on its way.
    pub(crate) async fn after_key_fetch<T>(
        &self,
        first: Result<T, AuthError>,
        again: impl FnOnce() -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        #[cfg(feature = "jwks")]
        if matches!(
            first,
            Err(AuthError::InvalidToken(TokenError::UnsupportedAlgorithm))
        ) && let Some(wait) = self.inner.keys.all().pending_fetches()
        {
            wait.await;
            return again();
        }
        #[cfg(not(feature = "jwks"))]
        drop(again);
        first
    }

    /// The synchronous part of authenticating a request: find the token, verify it,
    /// check type, CSRF, freshness and scopes, and plan any implicit refresh.
    /// `Ok(None)`: no credentials on an optional route. `no_refresh` (gRPC answers
    /// never set cookies) is only asked when a cookie could be set.
    pub(crate) fn accept(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
        req: &Requirement,
        no_refresh: impl Fn() -> bool,
    ) -> Result<Option<Accepted>, AuthError> {
        let inner = &*self.inner;
        let refresh_route = req.token_type == TokenType::Refresh;
        let mut refresh_cookie = None;
        // One candidate per configured location, in the configured order.
        let mut candidates: [Option<PresentedToken>; 3] = [None, None, None];
        for (slot, location) in candidates.iter_mut().zip(&inner.locations) {
            *slot = match location {
                Location::Header => extract::bearer(headers)?,
                Location::Cookie => {
                    let found = extract::cookies(
                        headers,
                        &inner.cookies.names.access,
                        &inner.cookies.names.refresh,
                        inner.max_cookies,
                    )?;
                    if refresh_route {
                        found.refresh
                    } else {
                        refresh_cookie = found.refresh;
                        found.access
                    }
                }
                Location::Query => match query {
                    Some(q) if extract::is_websocket_upgrade(headers) => {
                        extract::query(q, &inner.query_parameter)?
                    }
                    _ => None,
                },
            };
        }
        let fallback_allowed = || {
            !refresh_route
                && inner.implicit.from_refresh_cookie
                && inner.signing.is_some()
                && !no_refresh()
        };
        let mut found = candidates.into_iter().flatten();
        let first = found.next();
        if first.is_some()
            && found.next().is_some()
            && inner.multiple == MultipleCredentials::Reject
        {
            return Err(InvalidRequest::MultipleCredentials.into());
        }
        let presented = match first {
            Some(token) => token,
            None => {
                return match refresh_cookie.filter(|_| fallback_allowed()) {
                    Some(r) => self.fall_back(method, headers, req, r).map(Some),
                    None if req.optional => Ok(None),
                    None => Err(AuthError::MissingCredentials),
                };
            }
        };
        let from_cookie = presented.location() == Location::Cookie;
        let now = self.now();
        // A cookie carries this crate's own tokens only (it may be re-issued).
        let verifier = if from_cookie {
            self.own_verifier()
        } else {
            self.verifier()
        };
        let checked = verifier.verify(presented.as_bytes(), now).map_err(|e| {
            if presented.location() == Location::Header
                && !extract::is_b64token(presented.as_bytes())
            {
                AuthError::from(InvalidRequest::MalformedAuthorization)
            } else {
                AuthError::from(e)
            }
        })?;
        let (payload, entry) = match checked {
            Checked::Valid(v) => (v.payload, v.entry),
            // Only a genuine, expired access cookie may fall back (never a forged one).
            Checked::Expired(p) => {
                if p.token_type != req.token_type {
                    return Err(TokenError::WrongType.into());
                }
                return match refresh_cookie.filter(|_| from_cookie && fallback_allowed()) {
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
        let plan = if from_cookie && !refresh_route && in_window && !no_refresh() {
            Plan::Reissue
        } else {
            Plan::Keep
        };
        Ok(Some(Accepted {
            payload,
            entry,
            presented,
            plan,
            now,
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
            payload: Arc::new(payload),
            entry: None,
            presented: refresh,
            plan: Plan::FromRefresh,
            now: self.now(),
        })
    }

    fn check_csrf(
        &self,
        method: &Method,
        headers: &HeaderMap,
        payload: &TokenPayload,
    ) -> Result<(), AuthError> {
        let inner = &*self.inner;
        if !inner.csrf || !inner.csrf_methods.applies_to(method) {
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
    pub(crate) fn complete(&self, accepted: Accepted) -> Result<Admitted, AuthError> {
        let Accepted {
            payload,
            entry,
            presented,
            plan,
            ..
        } = accepted;
        match plan {
            Plan::Keep => Ok(Admitted {
                payload,
                entry,
                presented,
                set_cookie: None,
                minted: false,
            }),
            Plan::Reissue => {
                // Re-issuing is best effort: the request is valid either way.
                let set_cookie = self
                    .reissue_signed(&payload)
                    .ok()
                    .and_then(|token| self.inner.cookies.access_header(&token));
                Ok(Admitted {
                    payload,
                    entry,
                    presented,
                    set_cookie,
                    minted: false,
                })
            }
            Plan::FromRefresh => {
                let (token, claims) = TokenBuilder::from_refresh(self, &payload)
                    .issue_with_claims()
                    .map_err(|_| AuthError::InvalidToken(TokenError::Expired))?;
                let presented = PresentedToken::minted(&token)
                    .ok_or(AuthError::InvalidToken(TokenError::Expired))?;
                let set_cookie = self.inner.cookies.access_header(&token);
                Ok(Admitted {
                    payload: Arc::new(claims),
                    entry: None,
                    presented,
                    set_cookie,
                    minted: true,
                })
            }
        }
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
