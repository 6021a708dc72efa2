//! An axum hello world, with (`AUTH=1`) or without the layer: the end-to-end load
//! comparison of `scripts/load.sh`. Prints a valid bearer token (the benchmarks' token:
//! 431 bytes, a scope and a custom object claim), then serves on `PORT`.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tower_jwt_auth::JwtAuth;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let auth = JwtAuth::builder()
        .hs256(b"load test secret, not for production use")
        .access_ttl(Duration::from_secs(3600))
        .build()?;
    let token = auth
        .access_token("alice@example.com")
        .fresh(true)
        .scopes(["read"])
        .claim(
            "profile",
            serde_json::json!({"org": "acme", "role": "admin"}),
        )
        .issue()?;
    let mut app = Router::new().route("/", get(|| async { "Hello, world!" }));
    if std::env::var("AUTH").as_deref() == Ok("1") {
        app = app.route_layer(auth.layer());
    }
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("token: {token}");
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
