//! A gRPC service on tonic, protected by the `AuthLayer`, without `protoc`: the
//! messages are hand-written prost structs and the service is what `tonic-build`
//! would generate, written out by hand.
//!
//! ```sh
//! cargo run --example tonic
//! # in another shell, with the token printed at startup and the proto below:
//! grpcurl -plaintext -import-path . -proto hello.proto \
//!     -H "authorization: Bearer $TOKEN" -d '{"name":"you"}' \
//!     127.0.0.1:50051 helloworld.Greeter/SayHello
//! ```
//!
//! ```proto
//! syntax = "proto3";
//! package helloworld;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! Settings: `JWT_SECRET_KEY` (generated when unset), `PORT` (default 50051).
//!
//! Rejections are gRPC statuses in a trailers-only response (HTTP 200):
//! `UNAUTHENTICATED` (no, bad, expired, revoked or refresh token),
//! `PERMISSION_DENIED` (missing scope, not fresh, CSRF), `UNAVAILABLE` (revocation
//! store down), `INVALID_ARGUMENT` (malformed `authorization` metadata). Implicit
//! refresh never applies to gRPC requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, GrpcMethod, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};
use tower::layer::util::{Identity, Stack};
use tower_jwt_auth::{AuthLayer, Authenticated, JwtAuth};

/// `message HelloRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet (the token's subject when empty).
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `message HelloReply { string message = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The gRPC service name (`package.Service`).
pub const SERVICE: &str = "helloworld.Greeter";
/// The path of the unary `SayHello` method.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// The handler: the layer has verified the token and put its claims in the request
/// extensions (tonic copies the HTTP extensions into `tonic::Request`).
pub async fn say_hello(request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
    let Some(authenticated) = request.extensions().get::<Authenticated>() else {
        // Only reachable if the service is mounted without the layer.
        return Err(Status::unauthenticated("no verified token"));
    };
    let message = format!("Hello, {}", authenticated.claims().sub);
    Ok(Response::new(HelloReply { message }))
}

/// The server side of `helloworld.Greeter`, as `tonic-build` generates it: a
/// `Service<http::Request<B>>` routing by path to `tonic::server::Grpc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GreeterServer;

struct SayHelloSvc;

impl UnaryService<HelloRequest> for SayHelloSvc {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        Box::pin(say_hello(request))
    }
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            SAY_HELLO => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<HelloReply, HelloRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(SayHelloSvc, req).await)
            }),
            _ => Box::pin(async move {
                let (parts, ()) = Status::unimplemented("").into_http::<()>().into_parts();
                Ok(http::Response::from_parts(
                    parts,
                    tonic::body::Body::default(),
                ))
            }),
        }
    }
}

impl NamedService for GreeterServer {
    const NAME: &'static str = SERVICE;
}

/// The tonic router: every call goes through `layer` before reaching the service.
/// Use `auth.layer()` for any valid access token, `auth.layer().scopes([..])` to
/// require scopes.
pub fn server_router(layer: AuthLayer) -> Router<Stack<AuthLayer, Identity>> {
    tonic::transport::Server::builder()
        .layer(layer)
        .add_service(GreeterServer)
}

/// A hand-written client call of `SayHello` (what `tonic-build` generates for the
/// client), over any channel, e.g. a `tonic::transport::Channel`.
pub async fn call_say_hello<T>(
    channel: T,
    request: Request<HelloRequest>,
) -> Result<Response<HelloReply>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("service was not ready: {}", e.into())))?;
    let codec = tonic_prost::ProstCodec::<HelloRequest, HelloReply>::default();
    let path = http::uri::PathAndQuery::from_static(SAY_HELLO);
    let mut request = request;
    request
        .extensions_mut()
        .insert(GrpcMethod::new(SERVICE, "SayHello"));
    grpc.unary(request, path, codec).await
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
        Err(_) => 50051,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let token = auth.access_token("alice").issue()?;
    println!("gRPC server on http://{addr} ({SERVICE})");
    println!(
        "try: grpcurl -plaintext -proto hello.proto -H 'authorization: Bearer {token}' -d '{{\"name\":\"you\"}}' {addr} helloworld.Greeter/SayHello"
    );
    server_router(auth.layer()).serve(addr).await?;
    Ok(())
}
