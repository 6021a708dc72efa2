#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod authenticate;
mod authenticated;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
mod axum;
mod builder;
mod cache;
mod claims;
mod clock;
mod cookies;
mod env;
mod error;
mod extract;
mod future;
mod health;
mod issue;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
mod jwks;
mod keys;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod responder;
pub mod revocation;
mod service;
mod verify;

pub use auth::{ImplicitRefresh, JwtAuth, JwtAuthBuilder, MultipleCredentials};
pub use authenticated::Authenticated;
#[cfg(feature = "axum")]
pub use axum::{Claims, MissingAuthLayer};
pub use claims::{TokenPayload, TokenType};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cookies::{CookieNames, CookieSameSite};
pub use error::{AuthError, ConfigError, InvalidRequest, IssueError, TokenError};
pub use extract::{Location, PresentedToken};
pub use future::ResponseFuture;
pub use health::{ComponentHealth, Health};
pub use issue::{Refreshed, TokenBuilder, TokenPair};
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwks")]
pub use jwks::RemoteKeySet;
pub use keys::Key;
pub use layer::AuthLayer;
pub use responder::{BearerResponder, JsonResponder, Protocol, Responder};
pub use revocation::{MemoryStore, RevocationStore, StoreHealth};
pub use service::AuthService;
