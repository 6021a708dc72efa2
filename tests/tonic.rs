//! The layer in front of a real tonic server, called by a real tonic client over
//! loopback: rejections must arrive as gRPC statuses, not transport errors.

#[path = "../examples/tonic.rs"]
#[allow(dead_code)]
mod tonic_example;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Status};
use tower::ServiceExt;
use tower_jwt_auth::revocation::{
    Revocation, Rotation, RotationOutcome, StoreError, StoreFuture, TokenStatus,
};
use tower_jwt_auth::{AuthLayer, JwtAuth, ManualClock, RevocationStore, TokenPayload};

use tonic_example::{HelloReply, HelloRequest, call_say_hello, server_router};

const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";
const T0: u64 = 1_700_000_000;
const ACCESS_COOKIE: &str = "__Host-access_token";

/// A server on an ephemeral loopback port, stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(layer: AuthLayer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            server_router(layer)
                .serve_with_incoming(incoming)
                .await
                .expect("server failed");
        });
        Self { addr, task }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the test server")
    }

    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, Status> {
        call_say_hello(self.channel().await, request).await
    }
}

/// Every scenario is bounded in time.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("scenario timed out")
}

fn auth_with(clock: &ManualClock) -> JwtAuth {
    JwtAuth::builder()
        .hs256(SECRET)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn hello() -> Request<HelloRequest> {
    Request::new(HelloRequest {
        name: "ignored".into(),
    })
}

fn with_bearer(token: &str) -> Request<HelloRequest> {
    let mut req = hello();
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn with_cookie(token: &str, csrf: Option<&str>) -> Request<HelloRequest> {
    let mut req = hello();
    req.metadata_mut().insert(
        "cookie",
        format!("{ACCESS_COOKIE}={token}").parse().unwrap(),
    );
    if let Some(csrf) = csrf {
        req.metadata_mut()
            .insert("x-csrf-token", csrf.parse().unwrap());
    }
    req
}

#[track_caller]
fn assert_status(result: Result<tonic::Response<HelloReply>, Status>, code: Code) -> Status {
    match result {
        Ok(r) => panic!("expected {code:?}, got OK: {:?}", r.get_ref()),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            assert!(
                !status.message().is_empty(),
                "empty grpc-message: {status:?}"
            );
            status
        }
    }
}

#[track_caller]
fn assert_hello(
    result: Result<tonic::Response<HelloReply>, Status>,
    sub: &str,
) -> tonic::Response<HelloReply> {
    let response = result.unwrap_or_else(|s| panic!("expected OK, got {s:?}"));
    assert_eq!(response.get_ref().message, format!("Hello, {sub}"));
    response
}

#[tokio::test]
async fn valid_bearer_token_reaches_the_handler() {
    bounded(async {
        let clock = ManualClock::new(T0);
        let auth = auth_with(&clock);
        let server = TestServer::start(auth.layer()).await;
        let token = auth.access_token("alice").issue().unwrap();
        assert_hello(server.say_hello(with_bearer(&token)).await, "alice");
    })
    .await;
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    bounded(async {
        let auth = auth_with(&ManualClock::new(T0));
        let server = TestServer::start(auth.layer()).await;
        let status = assert_status(server.say_hello(hello()).await, Code::Unauthenticated);
        assert_eq!(status.message(), "Authentication required");
        // Another scheme counts as no credentials (RFC 6750 §3.1).
        let mut basic = hello();
        basic
            .metadata_mut()
            .insert("authorization", "Basic YWxpY2U6c2VjcmV0".parse().unwrap());
        assert_status(server.say_hello(basic).await, Code::Unauthenticated);
    })
    .await;
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    bounded(async {
        let clock = ManualClock::new(T0);
        let auth = auth_with(&clock);
        let server = TestServer::start(auth.layer()).await;
        let token = auth
            .access_token("alice")
            .ttl(Duration::from_secs(60))
            .issue()
            .unwrap();
        // Still valid within the 5 s leeway.
        clock.advance(60 + 5);
        assert_hello(server.say_hello(with_bearer(&token)).await, "alice");
        clock.advance(1);
        let status = assert_status(
            server.say_hello(with_bearer(&token)).await,
            Code::Unauthenticated,
        );
        assert!(status.message().contains("expired"), "{status:?}");
    })
    .await;
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    bounded(async {
        let clock = ManualClock::new(T0);
        let auth = auth_with(&clock);
        let server = TestServer::start(auth.layer()).await;
        // A refresh token is not an access token.
        let refresh = auth.refresh_token("alice").issue().unwrap();
        let status = assert_status(
            server.say_hello(with_bearer(&refresh)).await,
            Code::Unauthenticated,
        );
        assert!(status.message().contains("wrong type"), "{status:?}");
        // Signed with another key.
        let other = JwtAuth::builder()
            .hs256(b"another secret, also thirty-two bytes long")
            .clock(clock.clone())
            .build()
            .unwrap();
        let forged = other.access_token("alice").issue().unwrap();
        assert_status(
            server.say_hello(with_bearer(&forged)).await,
            Code::Unauthenticated,
        );
        // Revoked.
        let (token, claims) = auth.access_token("alice").issue_with_claims().unwrap();
        assert_hello(server.say_hello(with_bearer(&token)).await, "alice");
        auth.revoke(&claims).await.unwrap();
        assert_status(
            server.say_hello(with_bearer(&token)).await,
            Code::Unauthenticated,
        );
    })
    .await;
}

#[tokio::test]
async fn malformed_authorization_is_invalid_argument() {
    bounded(async {
        let auth = auth_with(&ManualClock::new(T0));
        let server = TestServer::start(auth.layer()).await;
        let mut req = hello();
        req.metadata_mut()
            .insert("authorization", "Bearer a b".parse().unwrap());
        assert_status(server.say_hello(req).await, Code::InvalidArgument);
    })
    .await;
}

#[tokio::test]
async fn missing_scope_is_permission_denied() {
    bounded(async {
        let auth = auth_with(&ManualClock::new(T0));
        let server = TestServer::start(auth.layer().scopes(["admin"])).await;
        let reader = auth.access_token("alice").scopes(["read"]).issue().unwrap();
        let status = assert_status(
            server.say_hello(with_bearer(&reader)).await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("scope"), "{status:?}");
        let admin = auth.access_token("root").scopes(["admin"]).issue().unwrap();
        assert_hello(server.say_hello(with_bearer(&admin)).await, "root");
    })
    .await;
}

/// A revocation store that is down.
struct DownStore;

impl RevocationStore for DownStore {
    fn check(&self, _: &TokenPayload, _: u64) -> StoreFuture<TokenStatus> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn revoke(&self, _: Revocation<'_>) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn revoke_subject(&self, _: &str, _: u64, _: u64, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn rotate(&self, _: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
}

/// The same store, answering only after I/O (the layer's pending path).
struct SlowDownStore;

impl RevocationStore for SlowDownStore {
    fn check(&self, _: &TokenPayload, _: u64) -> StoreFuture<TokenStatus> {
        StoreFuture::boxed(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err(StoreError::new("down"))
        })
    }
    fn revoke(&self, _: Revocation<'_>) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn revoke_subject(&self, _: &str, _: u64, _: u64, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn rotate(&self, _: Rotation<'_>) -> StoreFuture<RotationOutcome> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
}

#[tokio::test]
async fn store_down_is_unavailable() {
    bounded(async {
        for auth in [
            JwtAuth::builder()
                .hs256(SECRET)
                .revocation_store(DownStore)
                .build()
                .unwrap(),
            JwtAuth::builder()
                .hs256(SECRET)
                .revocation_store(SlowDownStore)
                .build()
                .unwrap(),
        ] {
            let server = TestServer::start(auth.layer()).await;
            let token = auth.access_token("alice").issue().unwrap();
            let status = assert_status(
                server.say_hello(with_bearer(&token)).await,
                Code::Unavailable,
            );
            assert!(status.message().contains("unavailable"), "{status:?}");
            // Without a token the store is never asked.
            assert_status(server.say_hello(hello()).await, Code::Unauthenticated);
        }
    })
    .await;
}

/// A raw HTTP/2 request through the same channel, to compare a plain HTTP request
/// with a gRPC one carrying the same cookie.
async fn raw_post(
    server: &TestServer,
    content_type: &str,
    cookie: &str,
    csrf: &str,
) -> http::Response<tonic::body::Body> {
    let request = http::Request::post(format!(
        "http://{}{}",
        server.addr,
        tonic_example::SAY_HELLO
    ))
    .header("content-type", content_type)
    .header("te", "trailers")
    .header("cookie", cookie)
    .header("x-csrf-token", csrf)
    .body(tonic::body::Body::empty())
    .unwrap();
    server
        .channel()
        .await
        .oneshot(request)
        .await
        .expect("transport")
}

#[tokio::test]
async fn implicit_refresh_never_applies_to_grpc() {
    bounded(async {
        let clock = ManualClock::new(T0);
        let auth = auth_with(&clock);
        let server = TestServer::start(auth.layer()).await;
        // 15 min TTL, 10 min window: 6 minutes later the cookie is inside the window.
        let (token, claims) = auth.access_token("alice").issue_with_claims().unwrap();
        let csrf = claims.csrf.clone().unwrap();
        clock.advance(6 * 60);

        let response = assert_hello(
            server.say_hello(with_cookie(&token, Some(&csrf))).await,
            "alice",
        );
        assert!(
            response.metadata().get("set-cookie").is_none(),
            "a gRPC response must not re-issue cookies: {:?}",
            response.metadata()
        );

        // Control: the same cookie on a plain HTTP request through the same layer is
        // re-issued, so the assertion above is not vacuous.
        let cookie = format!("{ACCESS_COOKIE}={token}");
        let http_response = raw_post(&server, "application/json", &cookie, &csrf).await;
        let set_cookie: Vec<_> = http_response
            .headers()
            .get_all("set-cookie")
            .iter()
            .collect();
        assert_eq!(set_cookie.len(), 1, "{:?}", http_response.headers());
        assert!(set_cookie[0].to_str().unwrap().starts_with(ACCESS_COOKIE));

        // And the raw gRPC request with that cookie: no Set-Cookie either.
        let grpc_response = raw_post(&server, "application/grpc+proto", &cookie, &csrf).await;
        assert!(grpc_response.headers().get("set-cookie").is_none());
    })
    .await;
}

#[tokio::test]
async fn refresh_cookie_fallback_never_applies_to_grpc() {
    bounded(async {
        let clock = ManualClock::new(T0);
        let auth = auth_with(&clock);
        let server = TestServer::start(auth.layer()).await;
        let pair = auth.token_pair("alice").unwrap();
        clock.advance(16 * 60);
        let mut req = hello();
        req.metadata_mut().insert(
            "cookie",
            format!(
                "{ACCESS_COOKIE}={}; __Host-refresh_token={}",
                pair.access_token, pair.refresh_token
            )
            .parse()
            .unwrap(),
        );
        req.metadata_mut()
            .insert("x-csrf-token", pair.csrf.parse().unwrap());
        assert_status(server.say_hello(req).await, Code::Unauthenticated);
    })
    .await;
}

/// gRPC calls are POSTs. Observed behaviour: a cookie-authenticated gRPC call is
/// subject to the CSRF double-submit check like any cookie-authenticated POST, and
/// fails with PERMISSION_DENIED without the `x-csrf-token` metadata. Bearer
/// metadata (what native gRPC clients send) never needs it.
#[tokio::test]
async fn csrf_applies_to_cookie_authenticated_grpc() {
    bounded(async {
        let clock = ManualClock::new(T0);
        let auth = auth_with(&clock);
        let server = TestServer::start(auth.layer()).await;
        let (token, claims) = auth.access_token("alice").issue_with_claims().unwrap();
        let csrf = claims.csrf.unwrap();

        let status = assert_status(
            server.say_hello(with_cookie(&token, None)).await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("CSRF"), "{status:?}");
        assert_status(
            server.say_hello(with_cookie(&token, Some("wrong"))).await,
            Code::PermissionDenied,
        );
        assert_hello(
            server.say_hello(with_cookie(&token, Some(&csrf))).await,
            "alice",
        );
        // Bearer: no CSRF check.
        assert_hello(server.say_hello(with_bearer(&token)).await, "alice");
    })
    .await;
}
