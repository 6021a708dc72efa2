//! [`ResponseFuture`]: the response of an [`AuthService`](crate::AuthService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::SET_COOKIE;
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::auth::JwtAuth;
use crate::claims::TokenPayload;
use crate::metrics::{self, Implicit, StoreOp};
use crate::revocation::{StoreError, StoreFuture, TokenStatus};

/// The span of an authenticated request (a zero-sized stand-in without `tracing`).
#[cfg(feature = "tracing")]
pub(crate) type Span = tracing::Span;

#[cfg(not(feature = "tracing"))]
#[derive(Default)]
pub(crate) struct Span;

#[cfg(not(feature = "tracing"))]
impl Span {
    pub(crate) fn none() -> Self {
        Self
    }

    /// A guard like `tracing`'s, dropped at the end of the poll.
    fn enter(&self) -> Entered {
        Entered
    }
}

#[cfg(not(feature = "tracing"))]
struct Entered;

/// An access cookie to append to a successful response (implicit refresh).
pub(crate) struct Refresh {
    pub(crate) cookie: HeaderValue,
    /// The claims the request was authenticated with, checked again after the handler.
    pub(crate) claims: Arc<TokenPayload>,
    pub(crate) auth: JwtAuth,
    /// What the cookie was minted from (for the metrics).
    pub(crate) source: Implicit,
}

pub(crate) enum Resumed<F, B> {
    Call(F, Option<Refresh>, Span),
    Reject(Response<B>),
}

type Resume<F, B> = Box<dyn FnOnce(Result<TokenStatus, StoreError>) -> Resumed<F, B> + Send>;

/// A fetch of remote keys that a request with an unknown `kid` waits for (bounded by
/// the fetch timeout).
pub(crate) type KeyWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Authenticates the request again, once the keys it waited for are in.
type Retry<F, B> = Box<dyn FnOnce() -> ResponseFuture<F, B> + Send>;

pin_project! {
    /// The response future of [`AuthService`](crate::AuthService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner {
            #[pin]
            future: F,
            refresh: Option<Refresh>,
            span: Span,
        },
        Checking {
            check: StoreFuture<TokenStatus>,
            resume: Option<Resume<F, B>>,
        },
        Rejected {
            response: Option<Response<B>>,
        },
        // A remote set is fetching the keys of a new `kid` this request named.
        WaitingForKeys {
            wait: KeyWait,
            retry: Option<Retry<F, B>>,
        },
        // The handler answered; the re-issued cookie waits for the store's word.
        Rechecking {
            check: StoreFuture<TokenStatus>,
            response: Option<Response<B>>,
            cookie: Option<(HeaderValue, Implicit)>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F, refresh: Option<Refresh>, span: Span) -> Self {
        Self {
            state: State::Inner {
                future,
                refresh,
                span,
            },
        }
    }

    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn waiting_for_keys(wait: KeyWait, retry: Retry<F, B>) -> Self {
        Self {
            state: State::WaitingForKeys {
                wait,
                retry: Some(retry),
            },
        }
    }

    pub(crate) fn checking(check: StoreFuture<TokenStatus>, resume: Resume<F, B>) -> Self {
        Self {
            state: State::Checking {
                check,
                resume: Some(resume),
            },
        }
    }
}

/// Sets the re-issued access cookie on the response, and counts it.
fn append<B>(res: &mut Response<B>, cookie: HeaderValue, source: Implicit) {
    res.headers_mut().append(SET_COOKIE, cookie);
    metrics::implicit_refresh(source);
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Inner {
                    future,
                    refresh,
                    span,
                } => {
                    let mut res = {
                        let _entered = span.enter();
                        ready!(future.poll(cx))?
                    };
                    let Some(refresh) = refresh.take() else {
                        return Poll::Ready(Ok(res));
                    };
                    // Only on success or redirect, and never over cookies the handler
                    // set or cleared itself (logout).
                    let status = res.status();
                    let ok = status.is_success() || status.is_redirection();
                    if !ok
                        || refresh
                            .auth
                            .inner
                            .cookies
                            .response_sets_access(res.headers())
                    {
                        return Poll::Ready(Ok(res));
                    }
                    // The handler may have revoked the session: a re-issued cookie
                    // must not outlive that.
                    let Some(store) = &refresh.auth.inner.store else {
                        append(&mut res, refresh.cookie, refresh.source);
                        return Poll::Ready(Ok(res));
                    };
                    let check = store
                        .check(&refresh.claims, refresh.auth.now())
                        .observed(StoreOp::Check);
                    match check.try_ready() {
                        Ok(status) => {
                            if matches!(status, Ok(TokenStatus::Active)) {
                                append(&mut res, refresh.cookie, refresh.source);
                            }
                            return Poll::Ready(Ok(res));
                        }
                        Err(pending) => this.state.set(State::Rechecking {
                            check: pending,
                            response: Some(res),
                            cookie: Some((refresh.cookie, refresh.source)),
                        }),
                    }
                }
                StateProj::Rechecking {
                    check,
                    response,
                    cookie,
                } => {
                    let status = ready!(Pin::new(check).poll(cx));
                    let Some(mut res) = response.take() else {
                        return Poll::Pending;
                    };
                    if let (Ok(TokenStatus::Active), Some((cookie, source))) =
                        (status, cookie.take())
                    {
                        append(&mut res, cookie, source);
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Checking { check, resume } => {
                    let answer = ready!(Pin::new(check).poll(cx));
                    let Some(resume) = resume.take() else {
                        // Unreachable: the state is replaced right below.
                        return Poll::Pending;
                    };
                    let next = match resume(answer) {
                        Resumed::Call(future, refresh, span) => State::Inner {
                            future,
                            refresh,
                            span,
                        },
                        Resumed::Reject(response) => State::Rejected {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::WaitingForKeys { wait, retry } => {
                    ready!(wait.as_mut().poll(cx));
                    let Some(retry) = retry.take() else {
                        // Unreachable: the state is replaced right below.
                        return Poll::Pending;
                    };
                    this.state.set(retry().state);
                }
                StateProj::Rejected { response } => {
                    return match response.take() {
                        Some(r) => Poll::Ready(Ok(r)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
