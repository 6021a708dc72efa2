//! axum extractors for the verified claims, and `AuthError` as a response (feature `axum`).

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::authenticated::Authenticated;
use crate::claims::TokenPayload;
use crate::error::AuthError;
use crate::responder::{BearerResponder, Protocol, Responder};

/// The verified claims of the request, as put there by [`AuthLayer`](crate::AuthLayer).
///
/// Use `Option<Claims>` on routes with [`AuthLayer::optional`](crate::AuthLayer::optional).
/// A required `Claims` on a route without the layer answers 500 and names the missing
/// layer, as axum's `Extension` does: that is a bug in the router, not a client error.
///
/// The claims are shared with the layer and its cache (an `Arc`, read from the
/// request's [`Authenticated`]): extracting them never copies them. `Claims`
/// dereferences to `C`.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_jwt_auth::{Claims, JwtAuth};
///
/// async fn me(claims: Claims) -> String {
///     claims.sub.clone()
/// }
///
/// let auth = JwtAuth::builder().hs256([7u8; 32]).build()?;
/// let app: Router = Router::new().route("/me", get(me)).route_layer(auth.layer());
/// # Ok::<(), tower_jwt_auth::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct Claims<C = TokenPayload>(pub Arc<C>);

impl<C> Clone for Claims<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<C> Deref for Claims<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

/// The rejection of [`Claims`] when the layer did not run for the route.
#[derive(Debug)]
pub struct MissingAuthLayer {
    claims_type: &'static str,
}

impl fmt::Display for MissingAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Missing request extension: claims of type `{}` were not found. \
             Is `AuthLayer` (with `.claims::<{}>()` for a custom type) applied to this route?",
            self.claims_type, self.claims_type
        )
    }
}

impl std::error::Error for MissingAuthLayer {}

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S, C> FromRequestParts<S> for Claims<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = MissingAuthLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        claims_in(parts).ok_or(MissingAuthLayer {
            claims_type: std::any::type_name::<C>(),
        })
    }
}

impl<S, C> OptionalFromRequestParts<S> for Claims<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(claims_in(parts))
    }
}

fn claims_in<C: Send + Sync + 'static>(parts: &Parts) -> Option<Claims<C>> {
    parts
        .extensions
        .get::<Authenticated>()
        .and_then(Authenticated::claims_as::<C>)
        .map(Claims)
}

/// The layer's answer to the same error: its status and RFC 6750 `WWW-Authenticate`
/// challenge (from [`BearerResponder`]), an empty body, and the error in the response
/// extensions. So handlers calling [`JwtAuth::refresh`](crate::JwtAuth::refresh),
/// [`revoke`](crate::JwtAuth::revoke) or [`verify`](crate::JwtAuth::verify) can use `?`.
///
/// The challenge carries no `realm` (the error does not know the configuration).
///
/// ```
/// use axum::extract::State;
/// use axum::http::StatusCode;
/// use tower_jwt_auth::{AuthError, Claims, JwtAuth};
///
/// async fn logout(
///     State(auth): State<JwtAuth>,
///     Claims(claims): Claims,
/// ) -> Result<StatusCode, AuthError> {
///     auth.revoke(&claims).await?;
///     Ok(StatusCode::NO_CONTENT)
/// }
/// # let _ = axum::routing::post(logout).with_state::<()>(JwtAuth::builder().hs256([7u8; 32]).build()?);
/// # Ok::<(), tower_jwt_auth::ConfigError>(())
/// ```
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut res: Response = BearerResponder::default().respond(&self, Protocol::Http);
        res.extensions_mut().insert(self);
        res
    }
}
