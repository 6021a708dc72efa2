//! Revocation: a [`RevocationStore`] answers "was this verified token revoked?" and
//! records logouts and refresh-token rotations.
//!
//! The layer asks the store only after the signature and claims were verified, so a
//! forged token never reaches it. A rejected request writes to it in one case only, on
//! purpose: a validly signed refresh token that was already rotated away (reuse, RFC
//! 9700 §4.14.2) revokes its whole family while the request gets 401, because its
//! holder may be a thief racing the owner. Every other rejection (bad signature or
//! claims, wrong type, CSRF, scope, a revoked token) writes nothing. A store error
//! fails closed (503, gRPC `UNAVAILABLE`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::claims::TokenPayload;
use crate::metrics::StoreOp;

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};

/// The answer of a store: ready at once (in-memory) or later (network).
///
/// A ready answer costs no allocation; only a store that does I/O boxes its future.
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T> {
    inner: Inner<T>,
    /// The operation and its start, for a pending answer being timed (feature `metrics`).
    #[cfg(feature = "metrics")]
    timed: Option<(StoreOp, std::time::Instant)>,
}

enum Inner<T> {
    Ready(Option<Result<T, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>),
}

impl<T> StoreFuture<T> {
    fn new(inner: Inner<T>) -> Self {
        Self {
            inner,
            #[cfg(feature = "metrics")]
            timed: None,
        }
    }

    /// An answer that is already known.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self::new(Inner::Ready(Some(result)))
    }

    /// An answer that needs I/O.
    pub fn boxed(future: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Self {
        Self::new(Inner::Pending(Box::pin(future)))
    }

    /// The answer, if it is already known.
    pub(crate) fn try_ready(self) -> Result<Result<T, StoreError>, Self> {
        match self.inner {
            Inner::Ready(Some(r)) => Ok(r),
            inner => Err(Self {
                inner,
                #[cfg(feature = "metrics")]
                timed: self.timed,
            }),
        }
    }

    /// Records this call in the metrics: errors always, latency when it does I/O.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, unused_mut))]
    pub(crate) fn observed(mut self, op: StoreOp) -> Self {
        #[cfg(feature = "metrics")]
        match &self.inner {
            Inner::Ready(Some(Err(_))) => crate::metrics::store_error(op),
            Inner::Ready(_) => {}
            Inner::Pending(_) => self.timed = Some((op, std::time::Instant::now())),
        }
        self
    }
}

// The pending variant is already pinned in its box; the ready one is never pinned.
impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Ready(r) => {
                Poll::Ready(r.take().unwrap_or_else(|| {
                    Err(StoreError::new("store future polled after completion"))
                }))
            }
            Inner::Pending(f) => {
                let result = std::task::ready!(f.as_mut().poll(cx));
                #[cfg(feature = "metrics")]
                if let Some((op, start)) = this.timed.take() {
                    crate::metrics::store_duration(op, start.elapsed());
                    if result.is_err() {
                        crate::metrics::store_error(op);
                    }
                }
                Poll::Ready(result)
            }
        }
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Pending(_) => "StoreFuture::Pending",
        })
    }
}

/// A store that can serve, as reported by [`RevocationStore::health`]; a store that
/// cannot answers a [`StoreError`] instead.
///
/// ```
/// use std::time::Duration;
/// use tower_jwt_auth::StoreHealth;
///
/// // A store answering from a local copy, five seconds behind.
/// let health = StoreHealth::ready().lag(Duration::from_secs(5));
/// assert_eq!(health.lag, Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreHealth {
    /// How far behind the authoritative revocations the answers may be, for a store
    /// that answers from a copy (a mirror); `None` when it answers from the source.
    pub lag: Option<Duration>,
}

impl StoreHealth {
    /// Ready, answering from the source.
    pub fn ready() -> Self {
        Self::default()
    }

    /// Ready, with answers up to `lag` behind.
    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = Some(lag);
        self
    }
}

/// The store could not answer. The layer answers 503 and lets nothing through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(String);

impl StoreError {
    /// An error with a message that must not contain tokens or secrets.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "revocation store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A revocation to record: one token and, when it belongs to a refresh family, the
/// whole family.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Revocation<'a> {
    /// The subject of the token (stores may group a subject's entries together).
    pub sub: &'a str,
    /// The `jti` of the token.
    pub jti: &'a str,
    /// Its refresh family, revoked with it.
    pub family: Option<&'a str>,
    /// The last instant the token could still verify (`exp` plus the leeway).
    pub until: u64,
    /// The last instant any token of the family could still verify.
    pub family_until: u64,
    /// Now, in seconds since the epoch.
    pub now: u64,
}

/// A refresh-token rotation to record atomically.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Rotation<'a> {
    /// The subject of the family.
    pub sub: &'a str,
    /// The family both tokens belong to.
    pub family: &'a str,
    /// The `jti` of the refresh token presented.
    pub presented: &'a str,
    /// The `jti` of the refresh token that replaces it.
    pub next: &'a str,
    /// Now, in seconds since the epoch.
    pub now: u64,
    /// How long the presented token stays usable after this rotation (0: not at all).
    pub grace: u64,
    /// When the family's records may be forgotten (the latest refresh `exp` plus the
    /// leeway).
    pub until: u64,
}

/// What a rotation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationOutcome {
    /// The presented token was current (or within its grace window); `next` is now current.
    Rotated,
    /// The presented token had already been rotated: the family is now revoked.
    Reused,
    /// The family had been revoked before.
    Revoked,
}

/// The standing of a verified token, as [`RevocationStore::check`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenStatus {
    /// Neither the token, its family nor its subject was revoked (and a refresh token
    /// is the current member of its family, or the preceding one within its grace
    /// window).
    Active,
    /// The token, its family or its subject was revoked.
    Revoked,
    /// A refresh token that was rotated away was presented: its family is now revoked.
    Reused,
}

/// The family a refresh token belongs to: its `fam` claim, or, for a refresh token
/// issued without one (AuthX's), its own `jti`, which starts the family on the first
/// rotation.
pub(crate) fn family_of(token: &TokenPayload) -> &str {
    token.family.as_deref().unwrap_or(token.jti.as_str())
}

/// Where revocations live. See [`MemoryStore`] (the default) and, with the `redis`
/// feature, `RedisStore`.
///
/// Every entry carries an expiry (the last instant what it concerns could verify),
/// after which the store may drop it.
pub trait RevocationStore: Send + Sync + 'static {
    /// The standing of a verified token: revoked by its `jti`, through its family, or
    /// by its subject's "revoked before" instant.
    ///
    /// For a refresh token the store also checks its family's rotation state: a token
    /// that was rotated away (and is not the immediately preceding one within its
    /// grace window) is reuse (RFC 9700 §4.14.2), so the store revokes the family and
    /// answers [`TokenStatus::Reused`], on every path that accepts a refresh token.
    fn check(&self, token: &TokenPayload, now: u64) -> StoreFuture<TokenStatus>;

    /// Revokes a token, and its family when it has one, until the given instants.
    fn revoke(&self, revocation: Revocation<'_>) -> StoreFuture<()>;

    /// Revokes every token of `sub` issued at or before `before` ("log out
    /// everywhere"), remembered until `until`. Keeps the latest `before` and `until`
    /// when called again (instances with skewed clocks never un-revoke).
    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()>;

    /// Records a refresh-token rotation, detecting reuse (RFC 9700 §4.14.2).
    fn rotate(&self, rotation: Rotation<'_>) -> StoreFuture<RotationOutcome>;

    /// Whether the store can serve now, for a readiness probe
    /// ([`JwtAuth::health`](crate::JwtAuth::health)): a [`StoreHealth`] (with the
    /// lag of a store that answers from a copy), or the error a request would meet.
    /// Bound it by the store's own timeout. The default answers ready at once, for
    /// stores without I/O.
    fn health(&self) -> StoreFuture<StoreHealth> {
        StoreFuture::ready(Ok(StoreHealth::ready()))
    }
}
