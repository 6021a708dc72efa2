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

/// A handler returning `AuthError` with `?` answers exactly as the layer does for the
/// same error: status, `WWW-Authenticate`, empty body, the error in the extensions.
#[tokio::test]
async fn auth_error_answers_like_the_layer() {
    use tower_jwt_auth::{InvalidRequest, TokenError};

    async fn answer(app: Router, headers: &[(&str, &str)]) -> http::Response<Body> {
        let mut req = Request::builder().uri("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }
    async fn parts(
        res: http::Response<Body>,
    ) -> (StatusCode, Option<String>, Option<AuthError>, usize) {
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let error = res.extensions().get::<AuthError>().cloned();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, www, error, body.len())
    }

    let auth = auth();
    let expired = JwtAuth::builder()
        .hs256([9u8; 32])
        .clock(tower_jwt_auth::ManualClock::new(1))
        .build()
        .unwrap()
        .access_token("x")
        .issue()
        .unwrap();
    let cases: [(AuthError, Vec<(&str, String)>); 4] = [
        (AuthError::MissingCredentials, vec![]),
        (
            TokenError::Expired.into(),
            vec![("authorization", format!("Bearer {expired}"))],
        ),
        (
            InvalidRequest::MalformedAuthorization.into(),
            vec![("authorization", "Bearer a b".into())],
        ),
        (
            AuthError::InsufficientScope,
            vec![(
                "authorization",
                format!("Bearer {}", auth.access_token("x").issue().unwrap()),
            )],
        ),
    ];
    for (error, headers) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let layered = Router::new()
            .route("/", get(|| async { "unreachable" }))
            .route_layer(auth.layer().scopes(["admin"]));
        let from_layer = parts(answer(layered, &headers).await).await;
        let e = error.clone();
        let handler = Router::new().route(
            "/",
            get(move || {
                let e = e.clone();
                async move {
                    let result: Result<(), AuthError> = Err(e);
                    result?;
                    Ok::<_, AuthError>("unreachable")
                }
            }),
        );
        let from_handler = parts(answer(handler, &[]).await).await;
        assert_eq!(from_layer.2.as_ref(), Some(&error), "the layer's reason");
        assert_eq!(from_handler, from_layer, "{error:?}");
    }
}
