//! [`AuthLayer`]: what a route requires, applied to a service.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tower_layer::Layer;

use crate::auth::JwtAuth;
use crate::authenticate::Requirement;
use crate::claims::{TokenPayload, TokenType};
use crate::responder::BearerResponder;
use crate::service::AuthService;

/// A [`Layer`] that authenticates requests with a JWT.
///
/// By default it requires a valid, unrevoked **access** token, from the bearer header
/// or the access cookie. Modes:
///
/// - [`refresh`](Self::refresh): a refresh token only (the explicit refresh route);
/// - [`fresh`](Self::fresh): a fresh access token (straight from a login);
/// - [`scopes`](Self::scopes): access tokens granting all of these scopes;
/// - [`optional`](Self::optional): a request without credentials passes without
///   claims, a bad token is still rejected;
/// - [`claims`](Self::claims): the claims type put in the request extensions.
///
/// An authenticated request carries one value in its extensions,
/// [`Authenticated`](crate::Authenticated): the verified claims **shared, not copied**
/// (`Arc<TokenPayload>`, the allocation the verified-token cache keeps, so a repeated
/// token costs no parse and no clone), the custom claims of [`claims`](Self::claims),
/// and the token as presented.
///
/// ```
/// use http::Request;
/// use tower_jwt_auth::Authenticated;
///
/// fn subject<B>(req: &Request<B>) -> Option<&str> {
///     let authenticated = req.extensions().get::<Authenticated>()?;
///     Some(&authenticated.claims().sub)
/// }
/// # let _ = subject::<()>;
/// ```
///
/// ```
/// use tower_jwt_auth::JwtAuth;
///
/// let auth = JwtAuth::builder().hs256([7u8; 32]).build()?;
/// let protected = auth.layer();
/// let refresh = auth.layer().refresh();
/// let admin = auth.layer().fresh().scopes(["admin"]);
/// # let _ = (protected, refresh, admin);
/// # Ok::<(), tower_jwt_auth::ConfigError>(())
/// ```
#[must_use]
pub struct AuthLayer<C = TokenPayload, R = BearerResponder> {
    pub(crate) auth: JwtAuth,
    pub(crate) requirement: Requirement,
    pub(crate) responder: R,
    _claims: PhantomData<fn() -> C>,
}

impl AuthLayer {
    pub(crate) fn new(auth: JwtAuth) -> Self {
        let responder = BearerResponder::with_realm(auth.inner.realm.as_deref());
        Self {
            auth,
            requirement: Requirement::default(),
            responder,
            _claims: PhantomData,
        }
    }
}

impl<C, R> AuthLayer<C, R> {
    /// Accept refresh tokens only (from the bearer header or the refresh cookie,
    /// never the access cookie).
    pub fn refresh(mut self) -> Self {
        self.requirement.token_type = TokenType::Refresh;
        self
    }

    /// Require a fresh access token.
    pub fn fresh(mut self) -> Self {
        self.requirement.fresh = true;
        self
    }

    /// Require every one of `scopes` (403 `insufficient_scope` otherwise).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.requirement.scopes = Arc::from(scopes);
        self
    }

    /// Rejections on this route are always plain HTTP answers (RFC 6750), whatever the
    /// request's `content-type` says. By default a request sent as
    /// `application/grpc…` is answered gRPC-style (HTTP 200 with `grpc-status`), which
    /// is right in front of a tonic service; on a plain HTTP route such an answer
    /// would read as a success to intermediaries that only look at the status line.
    ///
    /// ```
    /// # let auth = tower_jwt_auth::JwtAuth::builder().hs256([7u8; 32]).build()?;
    /// let layer = auth.layer().http_only();
    /// # Ok::<(), tower_jwt_auth::ConfigError>(())
    /// ```
    pub fn http_only(mut self) -> Self {
        self.requirement.http_only = true;
        self
    }

    /// Let requests without credentials through, without claims.
    pub fn optional(mut self) -> Self {
        self.requirement.optional = true;
        self
    }

    /// Decode the claims as `C2` too, read with
    /// [`Authenticated::claims_as`](crate::Authenticated::claims_as) (or the axum
    /// extractor `Claims<C2>`). `C2` is parsed from the verified payload, once per token
    /// the cache keeps; a payload that does not parse as `C2` is rejected (401).
    pub fn claims<C2>(self) -> AuthLayer<C2, R> {
        AuthLayer {
            auth: self.auth,
            requirement: self.requirement,
            responder: self.responder,
            _claims: PhantomData,
        }
    }

    /// Answer rejections with `responder` (for example
    /// [`JsonResponder`](crate::JsonResponder) or a closure).
    pub fn responder<R2>(self, responder: R2) -> AuthLayer<C, R2> {
        AuthLayer {
            auth: self.auth,
            requirement: self.requirement,
            responder,
            _claims: PhantomData,
        }
    }
}

impl<C, R: Clone> Clone for AuthLayer<C, R> {
    fn clone(&self) -> Self {
        Self {
            auth: self.auth.clone(),
            requirement: self.requirement.clone(),
            responder: self.responder.clone(),
            _claims: PhantomData,
        }
    }
}

impl<C, R> fmt::Debug for AuthLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("requirement", &self.requirement)
            .finish_non_exhaustive()
    }
}

impl<S, C, R: Clone> Layer<S> for AuthLayer<C, R> {
    type Service = AuthService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.clone())
    }
}
