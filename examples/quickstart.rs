//! The seed's app on axum: login, refresh, a protected route; plus a browser session
//! with cookies, CSRF and implicit refresh, logout with revocation, and the operator's
//! endpoints: `GET /healthz` (readiness) and `GET /metrics` (Prometheus).
//!
//! ```sh
//! cargo run --example quickstart --features axum,metrics
//! ```
//!
//! Settings (AuthX's names): `JWT_SECRET_KEY` (generated when unset),
//! `JWT_ACCESS_TOKEN_EXPIRES`, `JWT_REFRESH_TOKEN_EXPIRES`, `JWT_DECODE_LEEWAY`,
//! `JWT_IMPLICIT_REFRESH_DELTATIME` (seconds), `JWT_COOKIE_SECURE=false` (plain-http
//! local development only), `PORT` (default 8000); with the `redis` feature,
//! `REDIS_CLUSTER_NODES` (comma-separated node URLs, a Redis Cluster) or `REDIS_URL` (one
//! node), and `REVOCATION_MAX_STALENESS_MS` (the mirror's staleness bound, default 1000;
//! 0 checks every request in Redis).

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;
use tower_jwt_auth::{
    AuthError, Authenticated, Claims, JwtAuth, JwtAuthBuilder, Location, TokenType,
};

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize, Default)]
struct Logout {
    refresh_token: Option<String>,
}

fn check_credentials(login: &Login) -> bool {
    // The seed's demo user. A real app checks a password hash here.
    login.username == "test" && login.password == "test"
}

fn bad_credentials() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"detail": "Bad username or password"})),
    )
        .into_response()
}

/// The quickstart's routes, protected by `auth`.
pub fn app(auth: JwtAuth) -> Router {
    let protected = Router::new()
        .route("/protected", get(protected).post(protected))
        .route("/session", get(session_info).delete(end_session))
        .route("/logout", post(logout))
        .route_layer(auth.layer());
    let refresh = Router::new()
        .route("/refresh", post(refresh))
        .route_layer(auth.layer().refresh());
    Router::new()
        .route("/", get(index))
        // The public keys (asymmetric JWT_ALGORITHM), for other services to verify ours.
        .route(
            "/.well-known/jwks.json",
            get(|State(auth): State<JwtAuth>| async move { Json(auth.jwks()) }),
        )
        .route("/login", post(login))
        .route("/session", post(start_session))
        .route("/healthz", get(healthz))
        .route("/metrics", get(scrape))
        .merge(protected)
        .merge(refresh)
        .with_state(auth)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("assets/quickstart.html"))
}

async fn login(State(auth): State<JwtAuth>, Json(login): Json<Login>) -> Response {
    if !check_credentials(&login) {
        return bad_credentials();
    }
    match auth.token_pair(login.username) {
        Ok(pair) => Json(json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
        }))
        .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn refresh(
    State(auth): State<JwtAuth>,
    Extension(authenticated): Extension<Authenticated>,
) -> Result<Response, AuthError> {
    let refreshed = auth.refresh(authenticated.claims()).await?;
    let mut headers = HeaderMap::new();
    if authenticated.location() == Location::Cookie {
        auth.set_refreshed_cookies(&mut headers, &refreshed);
    }
    let mut body = json!({"access_token": refreshed.access_token});
    if let Some(token) = &refreshed.refresh_token {
        body["refresh_token"] = json!(token);
    }
    Ok((headers, Json(body)).into_response())
}

async fn protected() -> Json<&'static str> {
    Json("You have access to this protected resource")
}

async fn start_session(State(auth): State<JwtAuth>, Json(login): Json<Login>) -> Response {
    if !check_credentials(&login) {
        return bad_credentials();
    }
    let Ok(pair) = auth.token_pair(login.username) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut headers = HeaderMap::new();
    auth.set_cookies(&mut headers, &pair);
    let claims = &pair.access_claims;
    let body = json!({"sub": claims.sub, "iat": claims.iat, "exp": claims.exp});
    (headers, Json(body)).into_response()
}

async fn session_info(Claims(claims): Claims) -> Json<serde_json::Value> {
    Json(json!({
        "sub": claims.sub,
        "iat": claims.iat,
        "exp": claims.exp,
        "fresh": claims.fresh,
    }))
}

async fn end_session(
    State(auth): State<JwtAuth>,
    Claims(claims): Claims,
) -> Result<Response, AuthError> {
    // Revoking the access token also revokes its family, so the refresh cookie dies too.
    auth.revoke(&claims).await?;
    let mut headers = HeaderMap::new();
    auth.unset_cookies(&mut headers);
    Ok((headers, StatusCode::NO_CONTENT).into_response())
}

async fn logout(
    State(auth): State<JwtAuth>,
    Claims(claims): Claims,
    body: Bytes,
) -> Result<Response, AuthError> {
    let logout: Logout = if body.is_empty() {
        Logout::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(l) => l,
            Err(_) => return Ok(StatusCode::BAD_REQUEST.into_response()),
        }
    };
    if let Some(token) = logout.refresh_token {
        let refresh = auth.verify(&token, TokenType::Refresh)?;
        if refresh.sub != claims.sub {
            return Err(tower_jwt_auth::TokenError::InvalidClaims.into());
        }
        auth.revoke(&refresh).await?;
    }
    auth.revoke(&claims).await?;
    Ok(Json(json!({"message": "Logged out"})).into_response())
}

/// Readiness: 200 when the revocation store answers, 503 otherwise, with the details.
async fn healthz(State(auth): State<JwtAuth>) -> Response {
    let health = auth.health().await;
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// The Prometheus text format. Expose it to the scraper only (an internal port or a
/// network policy): it is not authenticated here.
async fn scrape() -> impl IntoResponse {
    let content_type = [("content-type", "text/plain; version=0.0.4; charset=utf-8")];
    (content_type, prometheus().render())
}

/// The process's Prometheus recorder, installed on first use: a recorder is
/// process-wide, while `app` may be built many times (tests).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        // Store latency as a histogram, so quantiles can be aggregated across instances.
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ];
        let builder = PrometheusBuilder::new().set_buckets_for_metric(
            Matcher::Full(tower_jwt_auth::metrics::STORE_DURATION.to_owned()),
            &buckets,
        );
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_ok() {
            tower_jwt_auth::metrics::describe();
        } else {
            eprintln!("a metrics recorder was already installed: /metrics stays empty");
        }
        handle
    })
}

/// Builds the `JwtAuth` from the environment, generating a secret when none is set.
pub async fn auth_from_env() -> Result<JwtAuth, Box<dyn std::error::Error>> {
    let mut builder = JwtAuth::builder().from_env()?;
    // A generated secret only when no key at all is configured (an asymmetric
    // JWT_ALGORITHM brings JWT_PRIVATE_KEY instead).
    if std::env::var_os("JWT_SECRET_KEY").is_none() && std::env::var_os("JWT_PRIVATE_KEY").is_none()
    {
        let secret: String = (0..2)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        eprintln!("JWT_SECRET_KEY is not set: using a random secret (tokens die with the process)");
        builder = builder.hs256(secret);
    }
    builder = revocation_from_env(builder).await?;
    Ok(builder.build()?)
}

/// The revocation store: `REDIS_CLUSTER_NODES` (comma-separated node URLs) for a Redis
/// Cluster, `REDIS_URL` for one node, `REVOCATION_MAX_STALENESS_MS` for the mirror's
/// staleness bound (0: a round trip per check); in memory otherwise.
async fn revocation_from_env(
    builder: JwtAuthBuilder,
) -> Result<JwtAuthBuilder, Box<dyn std::error::Error>> {
    let cluster = std::env::var("REDIS_CLUSTER_NODES").ok();
    let url = std::env::var("REDIS_URL").ok();
    if cluster.is_none() && url.is_none() {
        return Ok(builder);
    }
    #[cfg(feature = "redis")]
    {
        use std::time::Duration;
        let mut store = tower_jwt_auth::revocation::RedisStore::builder();
        if let Ok(ms) = std::env::var("REVOCATION_MAX_STALENESS_MS") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| "REVOCATION_MAX_STALENESS_MS must be a number of milliseconds")?;
            store = store.max_staleness(Duration::from_millis(ms));
        }
        let store = match (cluster, url) {
            (Some(nodes), _) => {
                eprintln!("revocation store: Redis Cluster");
                store
                    .connect_cluster(nodes.split(',').map(str::trim))
                    .await?
            }
            (None, Some(url)) => {
                eprintln!("revocation store: Redis");
                store.connect(&url).await?
            }
            (None, None) => return Ok(builder),
        };
        Ok(builder.revocation_store(store))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (cluster, url);
        eprintln!("REDIS_URL/REDIS_CLUSTER_NODES set but the `redis` feature is off: in memory");
        Ok(builder)
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let auth = auth_from_env().await?;
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => 8000,
    };
    // Histograms are drained on scrape; upkeep bounds their memory between scrapes.
    tokio::spawn(async {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            prometheus().run_upkeep();
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(auth)).await?;
    Ok(())
}
