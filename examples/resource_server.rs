//! A resource server that verifies an identity provider's tokens through its remote
//! key set: `cargo run --example resource_server --features jwks`.
//!
//! Environment: `OIDC_ISSUER` (discovery) or `JWKS_URL` (with `JWT_DECODE_ISSUER`, the
//! `iss` its tokens carry); `JWT_DECODE_AUDIENCE`; `JWKS_REFRESH_COOLDOWN`,
//! `JWKS_CACHE_MAX_AGE`, `JWKS_MAX_STALENESS`, `JWKS_FETCH_TIMEOUT` (seconds); `PORT`
//! (default 8001). `GET /protected` answers 200 with the claims as JSON, RFC 6750
//! rejections otherwise, and 503 while no keys are loaded.

use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use tower_jwt_auth::{Authenticated, JwtAuth, RemoteKeySet};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn seconds(name: &str) -> Result<Option<Duration>, String> {
    env(name)
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{name}: a number of seconds"))
        })
        .transpose()
}

fn key_set() -> Result<RemoteKeySet, String> {
    let mut set = match (env("OIDC_ISSUER"), env("JWKS_URL")) {
        (Some(issuer), None) => RemoteKeySet::oidc_issuer(issuer),
        (None, Some(url)) => {
            // A key set is bound to its issuer: without one, any `iss` would pass.
            let issuer = env("JWT_DECODE_ISSUER")
                .ok_or("JWKS_URL needs JWT_DECODE_ISSUER, the issuer of its tokens")?;
            RemoteKeySet::jwks_url(url).issuer(issuer)
        }
        _ => return Err("set exactly one of OIDC_ISSUER and JWKS_URL".into()),
    };
    if let Some(audience) = env("JWT_DECODE_AUDIENCE") {
        set = set.audience(audience.split(',').map(str::trim).map(str::to_owned));
    }
    if let Some(d) = seconds("JWKS_REFRESH_COOLDOWN")? {
        set = set.refresh_cooldown(d);
    }
    if let Some(d) = seconds("JWKS_CACHE_MAX_AGE")? {
        set = set.cache_max_age(d);
    }
    if let Some(d) = seconds("JWKS_MAX_STALENESS")? {
        set = set.max_staleness(d);
    }
    if let Some(d) = seconds("JWKS_FETCH_TIMEOUT")? {
        set = set.fetch_timeout(d);
    }
    Ok(set)
}

async fn protected(Extension(authenticated): Extension<Authenticated>) -> Json<Value> {
    let claims = authenticated.claims();
    Json(json!({
        "sub": claims.sub,
        "iss": claims.iss,
        "aud": claims.aud,
        "scopes": claims.scopes,
        "exp": claims.exp,
        "claims": claims.extra,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The provider's tokens only: no cookies, so no CSRF to configure.
    let auth = JwtAuth::builder()
        .locations([tower_jwt_auth::Location::Header])
        .remote_keys(key_set()?)
        .build()?;
    let app = Router::new()
        .route("/protected", get(protected))
        .route_layer(auth.layer());
    let port: u16 = env("PORT").and_then(|p| p.parse().ok()).unwrap_or(8001);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
