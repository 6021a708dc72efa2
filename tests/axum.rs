//! axum extractors and verifying without the layer.
#![cfg(feature = "axum")]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use serde::Deserialize;
use tower::ServiceExt;
use tower_jwt_auth::{AuthError, Claims, JwtAuth, TokenPayload};

#[derive(Clone, Deserialize)]
struct Tenant {
    sub: String,
    tenant: String,
}

fn auth() -> JwtAuth {
    JwtAuth::builder().hs256([9u8; 32]).build().unwrap()
}

async fn get_text(app: Router, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::builder().uri("/");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn claims_extractor_with_default_and_custom_types() {
    let auth = auth();
    let token = auth
        .access_token("alice")
        .claim("tenant", "t1")
        .issue()
        .unwrap();

    let app = Router::new()
        .route("/", get(|c: Claims| async move { c.sub.clone() }))
        .route_layer(auth.layer());
    assert_eq!(
        get_text(app, Some(&token)).await,
        (StatusCode::OK, "alice".into())
    );

    let app = Router::new()
        .route(
            "/",
            get(
                |Claims(t): Claims<Tenant>, Claims(p): Claims<TokenPayload>| async move {
                    format!("{}@{} {}", t.sub, t.tenant, p.jti.len())
                },
            ),
        )
        .route_layer(auth.layer().claims::<Tenant>());
    assert_eq!(
        get_text(app, Some(&token)).await,
        (StatusCode::OK, "alice@t1 36".into())
    );
}

#[tokio::test]
async fn missing_layer_is_a_500_naming_it_and_optional_is_none() {
    let app = Router::new().route("/", get(|c: Claims| async move { c.sub.clone() }));
    let (status, body) = get_text(app, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("AuthLayer"), "{body}");

    let auth = auth();
    let app =
        Router::new()
            .route(
                "/",
                get(|c: Option<Claims>| async move {
                    c.map_or("anonymous".to_owned(), |c| c.sub.clone())
                }),
            )
            .route_layer(auth.layer().optional());
    assert_eq!(
        get_text(app.clone(), None).await,
        (StatusCode::OK, "anonymous".into())
    );
    let token = auth.access_token("bob").issue().unwrap();
    assert_eq!(
        get_text(app, Some(&token)).await,
        (StatusCode::OK, "bob".into())
    );
}

#[tokio::test]
async fn authenticate_without_the_layer() {
    let auth = auth();
    let token = auth.access_token("carol").issue().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let claims = auth.authenticate(&Method::GET, &headers).await.unwrap();
    assert_eq!(claims.sub, "carol");
    auth.revoke(&claims).await.unwrap();
    assert!(matches!(
        auth.authenticate(&Method::GET, &headers).await,
        Err(AuthError::InvalidToken(_))
    ));
    assert_eq!(
        auth.authenticate(&Method::GET, &HeaderMap::new()).await,
        Err(AuthError::MissingCredentials)
    );
}
