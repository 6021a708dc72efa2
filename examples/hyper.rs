//! Plain hyper 1, no framework: a `tower::service_fn` behind the `AuthLayer`, served
//! by hyper's HTTP/1 connection builder through `TowerToHyperService`.
//!
//! ```sh
//! cargo run --example hyper
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/   # 200 Hello, alice
//! curl -i http://127.0.0.1:3000/                                       # 401, WWW-Authenticate: Bearer
//! ```
//!
//! Settings: `JWT_SECRET_KEY` (generated when unset), `PORT` (default 3000).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_jwt_auth::{Authenticated, JwtAuth};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The handler: the layer put the verified claims in the request extensions.
pub async fn hello<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let sub = req
        .extensions()
        .get::<Authenticated>()
        .map_or("stranger", |authenticated| {
            authenticated.claims().sub.as_str()
        });
    Ok(Response::new(Full::new(Bytes::from(format!(
        "Hello, {sub}"
    )))))
}

/// The service: `hello` behind a layer requiring a valid access token.
pub fn app(
    auth: &JwtAuth,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(auth.layer())
        .service_fn(hello::<Incoming>)
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
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => 3000,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr).await?;
    let token = auth.access_token("alice").issue()?;
    println!("listening on http://{addr}");
    println!("try: curl -i -H 'Authorization: Bearer {token}' http://{addr}/");
    serve(listener, app(&auth)).await?;
    Ok(())
}
