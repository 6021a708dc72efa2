//! [`ResponseFuture`]: the response of an [`AuthService`](crate::AuthService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::SET_COOKIE;
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::auth::JwtAuth;
use crate::revocation::{StoreError, StoreFuture};

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

    fn enter(&self) {}
}

/// An access cookie to append to a successful response (implicit refresh).
pub(crate) struct Refresh {
    pub(crate) cookie: HeaderValue,
    pub(crate) auth: JwtAuth,
}

pub(crate) enum Resumed<F, B> {
    Call(F, Option<Refresh>, Span),
    Reject(Response<B>),
}

type Resume<F, B> = Box<dyn FnOnce(Result<bool, StoreError>) -> Resumed<F, B> + Send>;

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
            check: StoreFuture<bool>,
            resume: Option<Resume<F, B>>,
        },
        Rejected {
            response: Option<Response<B>>,
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

    pub(crate) fn checking(check: StoreFuture<bool>, resume: Resume<F, B>) -> Self {
        Self {
            state: State::Checking {
                check,
                resume: Some(resume),
            },
        }
    }
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
                    let _entered = span.enter();
                    let mut res = ready!(future.poll(cx))?;
                    if let Some(Refresh { cookie, auth }) = refresh.take() {
                        // Only on success or redirect, and never over cookies the
                        // handler set or cleared itself (logout).
                        let status = res.status();
                        let ok = status.is_success() || status.is_redirection();
                        if ok && !auth.inner.cookies.response_sets_access(res.headers()) {
                            res.headers_mut().append(SET_COOKIE, cookie);
                        }
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
