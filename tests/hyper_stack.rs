//! The layer on plain hyper and inside a tower-http stack, over real HTTP/1 on
//! loopback with a hyper client.

#[path = "../examples/hyper.rs"]
#[allow(dead_code)]
mod hyper_example;

#[path = "../examples/tower_http.rs"]
#[allow(dead_code)]
mod tower_http_example;

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, CONTENT_ENCODING, COOKIE, ORIGIN, SET_COOKIE,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_http::cors::CorsLayer;
use tower_jwt_auth::{JwtAuth, ManualClock};

use support::client;
use tower_http_example::Settings;

const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";
const ORIGIN_OK: &str = "http://localhost:5173";

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
    async fn start<S, B>(service: S) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<tower_http::BoxError>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<tower_http::BoxError>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            tower_http_example::serve(listener, service)
                .await
                .expect("accept failed");
        });
        Self { addr, task }
    }

    /// One request on a fresh HTTP/1 connection; the whole body is read.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (client::Response, Bytes) {
        let headers: Vec<_> = headers
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.to_string(),
                )
            })
            .collect();
        let res = client::send(self.addr, method, path, &headers, None)
            .await
            .unwrap();
        let body = res.body.clone();
        (res, body)
    }
}

/// Every scenario is bounded in time.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("scenario timed out")
}

fn auth() -> JwtAuth {
    JwtAuth::builder().hs256(SECRET).build().unwrap()
}

fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> &str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("missing header in {headers:?}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn stack_server(auth: &JwtAuth) -> TestServer {
    TestServer::start(tower_http_example::app(auth, &Settings::default())).await
}

#[tokio::test]
async fn preflight_passes_without_token() {
    bounded(async {
        let server = stack_server(&auth()).await;
        let (res, body) = server
            .send(
                Method::OPTIONS,
                "/report",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (ACCESS_CONTROL_REQUEST_METHOD.as_str(), "GET"),
                    (ACCESS_CONTROL_REQUEST_HEADERS.as_str(), "authorization"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert!(body.is_empty());
        assert_eq!(header(&res.headers, ACCESS_CONTROL_ALLOW_ORIGIN), ORIGIN_OK);
        assert_eq!(
            header(&res.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "true"
        );
        assert!(header(&res.headers, ACCESS_CONTROL_ALLOW_METHODS).contains("GET"));
        assert!(header(&res.headers, ACCESS_CONTROL_ALLOW_HEADERS).contains("authorization"));
        assert!(res.headers.get(WWW_AUTHENTICATE).is_none());
    })
    .await;
}

/// Why CORS goes outside auth: the other way round, the preflight is rejected.
#[tokio::test]
async fn preflight_fails_when_auth_is_outside_cors() {
    bounded(async {
        let auth = auth();
        let wrong = ServiceBuilder::new()
            .layer(auth.layer())
            .layer(
                CorsLayer::new()
                    .allow_origin(http::HeaderValue::from_static(ORIGIN_OK))
                    .allow_methods([Method::GET])
                    .allow_headers([AUTHORIZATION]),
            )
            .service_fn(tower_http_example::handler::<Incoming>);
        let server = TestServer::start(wrong).await;
        let (res, _) = server
            .send(
                Method::OPTIONS,
                "/report",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (ACCESS_CONTROL_REQUEST_METHOD.as_str(), "GET"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert!(res.headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    })
    .await;
}

#[tokio::test]
async fn missing_token_is_401_with_challenge_and_cors_headers() {
    bounded(async {
        let server = stack_server(&auth()).await;
        let (res, body) = server
            .send(
                Method::GET,
                "/report",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (ACCEPT_ENCODING.as_str(), "gzip"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(header(&res.headers, WWW_AUTHENTICATE), "Bearer");
        assert_eq!(header(&res.headers, ACCESS_CONTROL_ALLOW_ORIGIN), ORIGIN_OK);
        assert_eq!(
            header(&res.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "true"
        );
        assert!(body.is_empty());
        assert!(res.headers.get(CONTENT_ENCODING).is_none());
    })
    .await;
}

#[tokio::test]
async fn bad_token_is_401_invalid_token_with_cors_headers() {
    bounded(async {
        let server = stack_server(&auth()).await;
        let other = JwtAuth::builder()
            .hs256(b"another secret, also thirty-two bytes long")
            .build()
            .unwrap();
        let forged = other.access_token("alice").issue().unwrap();
        let (res, _) = server
            .send(
                Method::GET,
                "/report",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (AUTHORIZATION.as_str(), &bearer(&forged)),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert!(
            header(&res.headers, WWW_AUTHENTICATE).starts_with(r#"Bearer error="invalid_token""#)
        );
        assert_eq!(header(&res.headers, ACCESS_CONTROL_ALLOW_ORIGIN), ORIGIN_OK);
    })
    .await;
}

#[tokio::test]
async fn valid_token_is_200_and_compressed() {
    bounded(async {
        let auth = auth();
        let server = stack_server(&auth).await;
        let token = auth.access_token("alice").issue().unwrap();
        let authz = bearer(&token);
        let report = tower_http_example::report("alice");

        // Large body, gzip accepted: compressed.
        let (res, body) = server
            .send(
                Method::GET,
                "/report",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (AUTHORIZATION.as_str(), &authz),
                    (ACCEPT_ENCODING.as_str(), "gzip"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(header(&res.headers, CONTENT_ENCODING), "gzip");
        assert_eq!(header(&res.headers, ACCESS_CONTROL_ALLOW_ORIGIN), ORIGIN_OK);
        assert_eq!(&body[..2], &[0x1f, 0x8b], "not a gzip stream");
        assert!(
            body.len() < report.len() / 4,
            "{} vs {}",
            body.len(),
            report.len()
        );

        // Without Accept-Encoding: identity.
        let (res, body) = server
            .send(Method::GET, "/report", &[(AUTHORIZATION.as_str(), &authz)])
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.headers.get(CONTENT_ENCODING).is_none());
        assert_eq!(body, report.as_bytes());

        // Small body: below the compression threshold.
        let (res, body) = server
            .send(
                Method::GET,
                "/",
                &[
                    (AUTHORIZATION.as_str(), &authz),
                    (ACCEPT_ENCODING.as_str(), "gzip"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.headers.get(CONTENT_ENCODING).is_none());
        assert_eq!(body, "Hello, alice");
    })
    .await;
}

/// Implicit refresh through the whole stack: the re-issued cookie is appended below
/// compression and CORS and reaches the browser.
#[tokio::test]
async fn implicit_refresh_cookie_survives_the_stack() {
    bounded(async {
        let clock = ManualClock::new(1_700_000_000);
        let auth = JwtAuth::builder()
            .hs256(SECRET)
            .clock(clock.clone())
            .build()
            .unwrap();
        let server = stack_server(&auth).await;
        let token = auth.access_token("alice").issue().unwrap();
        clock.advance(6 * 60); // 9 minutes left: inside the 10 minute window
        let cookie = format!("{}={token}", auth.cookie_names().access);
        let (res, body) = server
            .send(
                Method::GET,
                "/report",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (COOKIE.as_str(), &cookie),
                    (ACCEPT_ENCODING.as_str(), "gzip"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(header(&res.headers, CONTENT_ENCODING), "gzip");
        assert!(!body.is_empty());
        let set_cookie: Vec<_> = res.headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(set_cookie.len(), 1, "{:?}", res.headers);
        assert!(
            set_cookie[0]
                .to_str()
                .unwrap()
                .starts_with(&format!("{}=", auth.cookie_names().access))
        );
        assert_eq!(
            header(&res.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "true"
        );
    })
    .await;
}

/// The handler sees the credentials marked sensitive (so traces redact them).
#[tokio::test]
async fn credentials_are_marked_sensitive() {
    bounded(async {
        let auth = auth();
        let probe = tower::service_fn(|req: Request<Incoming>| async move {
            let sensitive = [AUTHORIZATION, COOKIE].iter().all(|name| {
                req.headers()
                    .get(name)
                    .is_some_and(http::HeaderValue::is_sensitive)
            });
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "sensitive={sensitive}"
            )))))
        });
        let server = TestServer::start(tower_http_example::stack(
            &auth,
            &Settings::default(),
            probe,
        ))
        .await;
        let token = auth.access_token("alice").issue().unwrap();
        let (res, body) = server
            .send(
                Method::GET,
                "/",
                &[
                    (AUTHORIZATION.as_str(), &bearer(&token)),
                    (COOKIE.as_str(), "theme=dark"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(body, "sensitive=true");
    })
    .await;
}

#[tokio::test]
async fn slow_handler_times_out_inside_the_stack() {
    bounded(async {
        let auth = auth();
        let slow = tower::service_fn(|_: Request<Incoming>| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let settings = Settings {
            timeout: Duration::from_millis(100),
            ..Settings::default()
        };
        let server = TestServer::start(tower_http_example::stack(&auth, &settings, slow)).await;
        let token = auth.access_token("alice").issue().unwrap();
        let (res, _) = server
            .send(
                Method::GET,
                "/",
                &[
                    (ORIGIN.as_str(), ORIGIN_OK),
                    (AUTHORIZATION.as_str(), &bearer(&token)),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(header(&res.headers, ACCESS_CONTROL_ALLOW_ORIGIN), ORIGIN_OK);
    })
    .await;
}

#[tokio::test]
async fn hyper_example_end_to_end() {
    bounded(async {
        let auth = auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = hyper_example::app(&auth);
        let task = tokio::spawn(async move {
            hyper_example::serve(listener, app)
                .await
                .expect("accept failed");
        });
        let server = TestServer { addr, task };

        let token = auth.access_token("alice").issue().unwrap();
        let (res, body) = server
            .send(
                Method::GET,
                "/",
                &[(AUTHORIZATION.as_str(), &bearer(&token))],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(body, "Hello, alice");

        let (res, body) = server.send(Method::GET, "/", &[]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(header(&res.headers, WWW_AUTHENTICATE), "Bearer");
        assert!(body.is_empty());

        let refresh = auth.refresh_token("alice").issue().unwrap();
        let (res, _) = server
            .send(
                Method::GET,
                "/",
                &[(AUTHORIZATION.as_str(), &bearer(&refresh))],
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert!(header(&res.headers, WWW_AUTHENTICATE).contains(r#"error="invalid_token""#));
    })
    .await;
}
