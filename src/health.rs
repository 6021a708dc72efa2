//! Readiness: whether what the layer depends on can serve now ([`JwtAuth::health`]).

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::auth::JwtAuth;
use crate::metrics::{self, StoreOp};
use crate::revocation::{StoreError, StoreHealth};

/// What [`JwtAuth::health`] found: ready when every component can serve.
///
/// Serializes to a small JSON object for a readiness endpoint, for example
/// `{"ready":true,"revocation_store":{"ready":true}}`. Fields may be added (key sets
/// will be).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Whether every component can serve: requests will not be refused with 503.
    pub ready: bool,
    /// The revocation store; `None` when revocation is disabled
    /// ([`without_revocation`](crate::JwtAuthBuilder::without_revocation)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_store: Option<ComponentHealth>,
}

impl Health {
    /// Whether every component can serve.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

/// The state of one component (the revocation store, and later each key set).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ComponentHealth {
    /// Whether it can serve now.
    pub ready: bool,
    /// How far behind its source it may be (a mirror); serialized as `lag_seconds`.
    #[serde(
        rename = "lag_seconds",
        serialize_with = "seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub lag: Option<Duration>,
    /// Why it cannot serve: the store's error message, which never holds tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ComponentHealth {
    fn from_store(answer: Result<StoreHealth, StoreError>) -> Self {
        match answer {
            Ok(health) => Self {
                ready: true,
                lag: health.lag,
                error: None,
            },
            Err(e) => Self {
                ready: false,
                lag: None,
                error: Some(e.to_string()),
            },
        }
    }
}

fn seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl JwtAuth {
    /// Whether the layer can serve now, for a readiness probe: asks the revocation
    /// store (for Redis, a `PING` bounded by the store's timeout). Never fails; a
    /// component that cannot serve is reported as such.
    ///
    /// ```
    /// use tower_jwt_auth::JwtAuth;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let auth = JwtAuth::builder().hs256([7u8; 32]).build()?;
    /// let health = auth.health().await;
    /// assert!(health.ready);
    /// assert_eq!(
    ///     serde_json::to_string(&health)?,
    ///     r#"{"ready":true,"revocation_store":{"ready":true}}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn health(&self) -> Health {
        let revocation_store = match &self.inner.store {
            None => None,
            Some(store) => {
                let answer = store.health().observed(StoreOp::Health).await;
                let component = ComponentHealth::from_store(answer);
                metrics::store_ready(component.ready);
                if let Some(lag) = component.lag {
                    metrics::store_lag(lag);
                }
                Some(component)
            }
        };
        Health {
            ready: revocation_store.as_ref().is_none_or(|s| s.ready),
            revocation_store,
        }
    }
}
