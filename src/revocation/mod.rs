//! Revocation: a [`RevocationStore`] answers "was this verified token revoked?" and
//! records logouts and refresh-token rotations.
//!
//! The layer asks the store only after the signature and claims were verified, so a
//! forged token never reaches it, and a rejected request never writes to it. A store
//! error fails closed (503, gRPC `UNAVAILABLE`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::claims::TokenPayload;

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

/// The answer of a store: ready at once (in-memory) or later (network).
///
/// A ready answer costs no allocation; only a store that does I/O boxes its future.
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T>(Inner<T>);

enum Inner<T> {
    Ready(Option<Result<T, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>),
}

impl<T> StoreFuture<T> {
    /// An answer that is already known.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self(Inner::Ready(Some(result)))
    }

    /// An answer that needs I/O.
    pub fn boxed(future: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Self {
        Self(Inner::Pending(Box::pin(future)))
    }

    /// The answer, if it is already known.
    pub(crate) fn try_ready(self) -> Result<Result<T, StoreError>, Self> {
        match self.0 {
            Inner::Ready(Some(r)) => Ok(r),
            other => Err(Self(other)),
        }
    }
}

// The pending variant is already pinned in its box; the ready one is never pinned.
impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Ready(r) => {
                Poll::Ready(r.take().unwrap_or_else(|| {
                    Err(StoreError::new("store future polled after completion"))
                }))
            }
            Inner::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Pending(_) => "StoreFuture::Pending",
        })
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

/// A refresh-token rotation to record atomically.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Rotation<'a> {
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
    /// When the family's records may be forgotten (the latest refresh `exp`).
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

/// Where revocations live. See [`MemoryStore`] (the default) and, with the `redis`
/// feature, `RedisStore`.
///
/// Every entry carries an expiry (the token's `exp`), after which the store may drop it.
pub trait RevocationStore: Send + Sync + 'static {
    /// Whether the verified token was revoked: by its `jti`, through its family, or by
    /// its subject's "revoked before" instant.
    fn is_revoked(&self, token: &TokenPayload, now: u64) -> StoreFuture<bool>;

    /// Revokes one token until `until` (its `exp`).
    fn revoke_token(&self, jti: &str, until: u64, now: u64) -> StoreFuture<()>;

    /// Revokes a refresh-token family (and the access tokens minted from it).
    fn revoke_family(&self, family: &str, until: u64, now: u64) -> StoreFuture<()>;

    /// Revokes every token of `sub` issued at or before `before` ("log out
    /// everywhere"), remembered until `until`.
    fn revoke_subject(&self, sub: &str, before: u64, until: u64, now: u64) -> StoreFuture<()>;

    /// Records a refresh-token rotation, detecting reuse (RFC 9700 §4.14.2).
    fn rotate(&self, rotation: Rotation<'_>) -> StoreFuture<RotationOutcome>;
}
