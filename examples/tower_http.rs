//! The `AuthLayer` inside a production-style tower-http stack, on plain hyper.
//!
//! Recommended order, outermost first (requests go down this list, responses up):
//!
//! 1. `SetSensitiveRequestHeadersLayer` (Authorization, Cookie): marks the credentials
//!    before any other layer can log them.
//! 2. `TraceLayer`: sees every request, including preflights and rejections, with the
//!    credentials already redacted.
//! 3. `SetSensitiveResponseHeadersLayer` (Set-Cookie): inside the trace layer, so the
//!    cookies the auth layer or a login handler set are redacted before they are logged.
//! 4. `CorsLayer`: outside auth, so a CORS preflight (`OPTIONS`, which never carries
//!    credentials) is answered without a token, and 401/403 answers still carry the
//!    CORS headers the browser needs to let the page read them.
//! 5. `TimeoutLayer`: bounds everything below, including a slow revocation store.
//! 6. `CompressionLayer`: compresses handler bodies; rejections have empty bodies.
//! 7. `AuthLayer`: innermost, right before the handler, so everything it rejects has
//!    already been traced, given CORS headers and bounded, and the handler always finds
//!    the verified claims in the request extensions.
//!
//! ```sh
//! cargo run --example tower_http
//! curl -i --compressed -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/report
//! curl -i -X OPTIONS -H 'Origin: http://localhost:5173' \
//!     -H 'Access-Control-Request-Method: GET' http://127.0.0.1:3000/report
//! ```
//!
//! Settings: `JWT_SECRET_KEY` (generated when unset), `PORT` (default 3000),
//! `CORS_ORIGIN` (default `http://localhost:5173`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_http::BoxError;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};
use tower_jwt_auth::{Authenticated, JwtAuth};

/// Stack settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The one browser origin allowed to call the API with credentials.
    pub cors_origin: HeaderValue,
    /// Requests taking longer are answered 408.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cors_origin: HeaderValue::from_static("http://localhost:5173"),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The handler: `/report` answers a body large enough to be compressed, any other
/// path a short greeting.
pub async fn handler<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let sub = req
        .extensions()
        .get::<Authenticated>()
        .map_or("stranger", |authenticated| {
            authenticated.claims().sub.as_str()
        });
    let body = if req.uri().path() == "/report" {
        report(sub)
    } else {
        format!("Hello, {sub}")
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(res)
}

/// The body of `/report`.
pub fn report(sub: &str) -> String {
    (0..200)
        .map(|i| format!("line {i}: report for {sub}\n"))
        .collect()
}

/// `inner` behind the recommended stack (see the module docs for the order).
pub fn stack<S>(
    auth: &JwtAuth,
    settings: &Settings,
    inner: S,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static
where
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let cors = CorsLayer::new()
        .allow_origin(settings.cors_origin.clone())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            HeaderName::from_static("x-csrf-token"),
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600));
    ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            COOKIE,
        ]))
        .layer(
            TraceLayer::new_for_http().make_span_with(DefaultMakeSpan::new().include_headers(true)),
        )
        .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE]))
        .layer(cors)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.timeout,
        ))
        .layer(CompressionLayer::new())
        .layer(auth.layer())
        .service(inner)
}

/// The example's service: [`handler`] behind the stack.
pub fn app(
    auth: &JwtAuth,
    settings: &Settings,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    stack(auth, settings, tower::service_fn(handler::<Incoming>))
}

/// Accepts HTTP/1 connections on `listener` and serves each with `service`.
pub async fn serve<S, B>(listener: TcpListener, service: S) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .init();
    let secret = match std::env::var("JWT_SECRET_KEY") {
        Ok(s) => s,
        Err(_) => {
            eprintln!(
                "JWT_SECRET_KEY is not set: using a random secret (tokens die with the process)"
            );
            (0..2)
                .map(|_| uuid::Uuid::new_v4().simple().to_string())
                .collect()
        }
    };
    let auth = JwtAuth::builder().hs256(secret).build()?;
    let mut settings = Settings::default();
    if let Ok(origin) = std::env::var("CORS_ORIGIN") {
        settings.cors_origin = origin.parse()?;
    }
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => 3000,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr).await?;
    let token = auth.access_token("alice").issue()?;
    println!("listening on http://{addr}");
    println!("try: curl -i --compressed -H 'Authorization: Bearer {token}' http://{addr}/report");
    serve(listener, app(&auth, &settings)).await?;
    Ok(())
}
