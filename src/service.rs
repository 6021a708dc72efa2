//! [`AuthService`]: the middleware itself.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{Extensions, HeaderValue, Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::auth::{JwtAuth, verdict};
use crate::authenticate::{Accepted, Admitted};
use crate::authenticated::Authenticated;
use crate::claims::TokenPayload;
use crate::error::{AuthError, TokenError};
use crate::future::{Refresh, ResponseFuture, Resumed, Span};
use crate::layer::AuthLayer;
use crate::metrics::{self, Implicit, StoreOp};
use crate::responder::{Protocol, Responder};
use crate::revocation::{StoreError, TokenStatus};
use crate::verify;

/// Authenticates requests before they reach `S`. Made by [`AuthLayer`].
pub struct AuthService<S, C, R> {
    inner: S,
    layer: AuthLayer<C, R>,
}

impl<S, C, R: Clone> AuthService<S, C, R> {
    pub(crate) fn new(inner: S, layer: AuthLayer<C, R>) -> Self {
        Self { inner, layer }
    }
}

impl<S: Clone, C, R: Clone> Clone for AuthService<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for AuthService<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The protocol to answer in, read only when it matters (a rejection, or a cookie that
/// may be re-issued): most requests never look up their content type.
fn protocol_of<B>(req: &Request<B>, http_only: bool) -> Protocol {
    if http_only {
        return Protocol::Http;
    }
    Protocol::of(req.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes))
}

fn reject<B, R: Responder<B>>(responder: &R, error: AuthError, protocol: Protocol) -> Response<B> {
    // The reason only: a rejected token's claims are not trusted, and tokens are never logged.
    #[cfg(feature = "tracing")]
    tracing::info!(reason = %error, status = error.status().as_u16(), "request rejected");
    metrics::rejected(&error);
    let mut res = responder.respond(&error, protocol);
    res.extensions_mut().insert(error);
    res
}

/// Puts [`Authenticated`] into the request extensions: the claims shared rather than
/// copied, a custom claims type `C` (decoded once per cached token), the presented
/// token.
fn insert_claims<C>(
    ext: &mut Extensions,
    auth: Admitted,
    jwt: &JwtAuth,
) -> Result<(Option<Refresh>, Span), AuthError>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let Admitted {
        payload,
        entry,
        presented,
        set_cookie,
        minted,
    } = auth;
    // A re-issued cookie is checked against the store again once the handler has
    // answered (it may have revoked the session): keep the (shared) claims for that.
    let refresh = set_cookie.map(|cookie| Refresh {
        cookie,
        claims: Arc::clone(&payload),
        auth: jwt.clone(),
        source: if minted {
            Implicit::RefreshCookie
        } else {
            Implicit::Window
        },
    });
    #[cfg(feature = "tracing")]
    let span = tracing::info_span!(
        "authenticated",
        sub = %payload.sub,
        jti = %payload.jti,
        location = ?presented.location(),
        refreshed = refresh.is_some(),
    );
    #[cfg(not(feature = "tracing"))]
    let span = Span::none();
    let custom: Option<Arc<dyn Any + Send + Sync>> =
        if TypeId::of::<C>() == TypeId::of::<TokenPayload>() {
            None
        } else {
            let decode = || {
                verify::decode_custom::<C>(presented.as_bytes())
                    .map_err(|_| AuthError::InvalidToken(TokenError::InvalidClaims))
            };
            Some(match &entry {
                Some(entry) => entry.custom(decode)?,
                None => Arc::new(decode()?),
            })
        };
    metrics::accepted(presented.location());
    // One value: each extension costs a box.
    ext.insert(Authenticated::new(payload, custom, presented));
    Ok((refresh, span))
}

impl<S, C, R, ReqB, ResB> Service<Request<ReqB>> for AuthService<S, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    ReqB: Send + 'static,
    ResB: Send + 'static,
    C: DeserializeOwned + Send + Sync + 'static,
    R: Responder<ResB> + Clone + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        self.authenticate(req, true)
    }
}

impl<S, C, R> AuthService<S, C, R> {
    /// The whole of `call`. With `may_wait`, a bearer token naming a `kid` that a
    /// remote set is fetching right now waits for that fetch and is authenticated
    /// again (once), instead of being refused while its key is on its way.
    fn authenticate<ReqB, ResB>(
        &mut self,
        mut req: Request<ReqB>,
        may_wait: bool,
    ) -> ResponseFuture<S::Future, ResB>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send,
        ReqB: Send + 'static,
        ResB: Send + 'static,
        C: DeserializeOwned + Send + Sync + 'static,
        R: Responder<ResB> + Clone + Send + 'static,
    {
        let http_only = self.layer.requirement.http_only;
        let auth = &self.layer.auth;
        let accepted = match auth.accept(
            req.method(),
            req.headers(),
            req.uri().query(),
            &self.layer.requirement,
            || protocol_of(&req, http_only).is_grpc(),
        ) {
            Ok(Some(accepted)) => accepted,
            Ok(None) => {
                metrics::anonymous();
                return ResponseFuture::inner(self.inner.call(req), None, Span::none());
            }
            Err(e) => {
                #[cfg(feature = "jwks")]
                if may_wait
                    && e == AuthError::InvalidToken(TokenError::UnsupportedAlgorithm)
                    && let Some(wait) = auth.inner.keys.all().pending_fetches()
                {
                    let mut retry = self.take_ready();
                    return ResponseFuture::waiting_for_keys(
                        wait,
                        Box::new(move || retry.authenticate(req, false)),
                    );
                }
                #[cfg(not(feature = "jwks"))]
                let _ = may_wait;
                let protocol = protocol_of(&req, http_only);
                return ResponseFuture::rejected(reject(&self.layer.responder, e, protocol));
            }
        };
        let Some(store) = &auth.inner.store else {
            return proceed::<S, C, R, ReqB, ResB>(
                &mut self.inner,
                &self.layer,
                req,
                accepted,
                Ok(TokenStatus::Active),
            );
        };
        match store
            .check(&accepted.payload, accepted.now)
            .observed(StoreOp::Check)
            .try_ready()
        {
            Ok(answer) => {
                proceed::<S, C, R, ReqB, ResB>(&mut self.inner, &self.layer, req, accepted, answer)
            }
            Err(pending) => {
                let Self { mut inner, layer } = self.take_ready();
                let resume = move |answer: Result<TokenStatus, StoreError>| {
                    let auth = &layer.auth;
                    match finish::<C>(auth, req.extensions_mut(), accepted, answer) {
                        Ok((refresh, span)) => Resumed::Call(inner.call(req), refresh, span),
                        Err(e) => {
                            let protocol = protocol_of(&req, layer.requirement.http_only);
                            Resumed::Reject(reject(&layer.responder, e, protocol))
                        }
                    }
                };
                ResponseFuture::checking(pending, Box::new(resume))
            }
        }
    }
}

impl<S: Clone, C, R: Clone> AuthService<S, C, R> {
    /// The service that was polled ready, for a call made later (the store or a key
    /// fetch needs I/O first), with a clone left in its place: tower's usual pattern.
    fn take_ready(&mut self) -> Self {
        let clone = self.inner.clone();
        Self {
            inner: std::mem::replace(&mut self.inner, clone),
            layer: self.layer.clone(),
        }
    }
}

fn finish<C>(
    auth: &JwtAuth,
    ext: &mut Extensions,
    accepted: Accepted,
    answer: Result<TokenStatus, StoreError>,
) -> Result<(Option<Refresh>, Span), AuthError>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    verdict(answer)?;
    let authenticated = auth.complete(accepted)?;
    insert_claims::<C>(ext, authenticated, auth)
}

fn proceed<S, C, R, ReqB, ResB>(
    inner: &mut S,
    layer: &AuthLayer<C, R>,
    mut req: Request<ReqB>,
    accepted: Accepted,
    answer: Result<TokenStatus, StoreError>,
) -> ResponseFuture<S::Future, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: DeserializeOwned + Send + Sync + 'static,
    R: Responder<ResB>,
{
    match finish::<C>(&layer.auth, req.extensions_mut(), accepted, answer) {
        Ok((refresh, span)) => ResponseFuture::inner(inner.call(req), refresh, span),
        Err(e) => {
            let protocol = protocol_of(&req, layer.requirement.http_only);
            ResponseFuture::rejected(reject(&layer.responder, e, protocol))
        }
    }
}
