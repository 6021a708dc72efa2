//! What the layer hands to the inner service: one value in the request extensions.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::claims::TokenPayload;
use crate::extract::{Location, PresentedToken};

/// An authenticated request's verified claims and the token they came from, put in the
/// request extensions by [`AuthLayer`](crate::AuthLayer).
///
/// It is one value, so authenticating a request adds one entry to the extensions. The
/// claims are shared with the layer's verified-token cache (an [`Arc`]): reading or
/// cloning them never copies them. With the `axum` feature, the
/// [`Claims`](crate::Claims) extractor reads them from here.
///
/// ```
/// use http::Request;
/// use tower_jwt_auth::{Authenticated, Location};
///
/// fn subject(req: &Request<()>) -> Option<&str> {
///     let authenticated = req.extensions().get::<Authenticated>()?;
///     if authenticated.location() == Location::Cookie {
///         // A browser session: a refresh handler would set cookies on its answer.
///     }
///     Some(&authenticated.claims().sub)
/// }
/// # assert_eq!(subject(&Request::new(())), None);
/// ```
#[derive(Clone)]
pub struct Authenticated {
    claims: Arc<TokenPayload>,
    /// The claims as decoded by [`AuthLayer::claims`](crate::AuthLayer::claims), when
    /// the layer was asked for a custom type.
    custom: Option<Arc<dyn Any + Send + Sync>>,
    token: PresentedToken,
}

impl Authenticated {
    pub(crate) fn new(
        claims: Arc<TokenPayload>,
        custom: Option<Arc<dyn Any + Send + Sync>>,
        token: PresentedToken,
    ) -> Self {
        Self {
            claims,
            custom,
            token,
        }
    }

    /// The verified claims (an access token's, or a refresh token's on a route that
    /// requires one; implicit refresh hands over the newly minted access token's).
    pub fn claims(&self) -> &Arc<TokenPayload> {
        &self.claims
    }

    /// The claims as `C`: the custom type the layer decodes with
    /// [`AuthLayer::claims`](crate::AuthLayer::claims), or [`TokenPayload`]. `None`
    /// for any other type.
    ///
    /// ```
    /// use tower_jwt_auth::Authenticated;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Tenant {
    ///     tenant: String,
    /// }
    ///
    /// // Some behind `auth.layer().claims::<Tenant>()`, None behind `auth.layer()`.
    /// fn tenant(authenticated: &Authenticated) -> Option<String> {
    ///     authenticated.claims_as::<Tenant>().map(|t| t.tenant.clone())
    /// }
    /// # let _ = tenant;
    /// ```
    pub fn claims_as<C: Send + Sync + 'static>(&self) -> Option<Arc<C>> {
        if let Some(custom) = &self.custom
            && let Ok(claims) = Arc::clone(custom).downcast::<C>()
        {
            return Some(claims);
        }
        let claims: Arc<dyn Any + Send + Sync> = self.claims.clone();
        claims.downcast::<C>().ok()
    }

    /// The token as the request presented it: where it came from and its raw form.
    pub fn token(&self) -> &PresentedToken {
        &self.token
    }

    /// Where the token came from (shorthand for `token().location()`).
    pub fn location(&self) -> Location {
        self.token.location()
    }
}

impl fmt::Debug for Authenticated {
    // The raw token stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated")
            .field("claims", &self.claims)
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}
