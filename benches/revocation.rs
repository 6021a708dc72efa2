//! The revocation check on the request path, in one run: no store, `MemoryStore`, the
//! Redis store's local mirror, and a round trip per check (`max_staleness(0)`), each
//! holding 10 000 revoked tokens, each checking the same token. Then the whole layer
//! with the memory store and with the mirror.
//!
//! `cargo bench --all-features --bench revocation` (Redis cases need `redis-server`).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};

use tower_jwt_auth::revocation::{RevocationStore, TokenStatus};
use tower_jwt_auth::{ImplicitRefresh, JwtAuth, MemoryStore, TokenPayload, TokenType};

#[cfg(feature = "redis")]
#[path = "../tests/support/redis.rs"]
mod redis_server;

const SECRET: &[u8] = b"a benchmark secret that is long enough!!";
const REVOKED: usize = 10_000;

fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("only ready futures are polled here"),
    }
}

fn hello(
    _req: Request<()>,
) -> std::future::Ready<Result<Response<String>, std::convert::Infallible>> {
    std::future::ready(Ok(Response::new(String::new())))
}

fn auth_with(store: Option<Arc<dyn RevocationStore>>) -> JwtAuth {
    let b = JwtAuth::builder()
        .hs256(SECRET)
        .implicit_refresh(ImplicitRefresh::disabled());
    match store {
        Some(store) => b.shared_revocation_store(store),
        None => b.without_revocation(),
    }
    .build()
    .unwrap()
}

/// The token every case checks (issued once, by a store-less instance).
fn token() -> String {
    auth_with(None)
        .access_token("alice@example.com")
        .fresh(true)
        .scopes(["read", "write"])
        .claim("tenant", "acme")
        .issue()
        .unwrap()
}

async fn fill(store: Arc<dyn RevocationStore>) {
    let auth = auth_with(Some(store));
    for i in 0..REVOKED {
        let (_, victim) = auth
            .access_token(format!("user{i}"))
            .issue_with_claims()
            .unwrap();
        auth.revoke(&victim).await.unwrap();
    }
}

fn revocation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let token = token();
    let claims: TokenPayload = auth_with(None).verify(&token, TokenType::Access).unwrap();
    let now = claims.iat;
    let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();

    let memory: Arc<dyn RevocationStore> = Arc::new(MemoryStore::default());
    rt.block_on(fill(memory.clone()));
    let mut stores: Vec<(&str, Arc<dyn RevocationStore>)> = vec![("memory", memory)];

    #[cfg(feature = "redis")]
    let _server = rt.block_on(redis_server::RedisServer::start());
    #[cfg(feature = "redis")]
    if let Some(server) = &_server {
        use tower_jwt_auth::revocation::RedisStore;
        let mirror: Arc<dyn RevocationStore> =
            Arc::new(rt.block_on(RedisStore::connect(&server.url())).unwrap());
        rt.block_on(fill(mirror.clone()));
        let strict: Arc<dyn RevocationStore> = Arc::new(
            rt.block_on(
                RedisStore::builder()
                    .max_staleness(Duration::ZERO)
                    .connect(&server.url()),
            )
            .unwrap(),
        );
        stores.push(("redis_mirror", mirror));
        stores.push(("redis_round_trip", strict));
    }

    // Store futures that do I/O start their timers when first polled.
    let _runtime = rt.enter();
    let mut g = c.benchmark_group("revocation_check");
    g.measurement_time(Duration::from_secs(3));
    for (name, store) in &stores {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut check = store.check(&claims, now);
                // A ready answer is taken at once; only I/O goes through the runtime.
                let mut cx = Context::from_waker(Waker::noop());
                let status = match std::pin::Pin::new(&mut check).poll(&mut cx) {
                    Poll::Ready(status) => status,
                    Poll::Pending => rt.block_on(check),
                };
                assert!(matches!(status, Ok(TokenStatus::Active)));
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("revocation_layer");
    g.measurement_time(Duration::from_secs(3));
    let mut layers = vec![("no_store", auth_with(None))];
    for (name, store) in &stores {
        if *name != "redis_round_trip" {
            layers.push((name, auth_with(Some(store.clone()))));
        }
    }
    for (name, auth) in &layers {
        let mut svc = auth.layer().layer(service_fn(hello));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut req = Request::new(());
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, header.clone());
                let s = &mut svc;
                // Memory and mirror checks answer at once: no runtime needed.
                let res = ready(ready(s.ready()).unwrap().call(req)).unwrap();
                assert_eq!(res.status(), 200);
                res
            })
        });
    }
    g.finish();
}

criterion_group!(benches, revocation);

fn mean_ns(id: &str) -> Option<f64> {
    let path = std::path::Path::new("target/criterion")
        .join(id)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nratios (means of this run):");
    for (label, a, b) in [
        (
            "check: redis mirror / memory",
            "revocation_check/redis_mirror",
            "revocation_check/memory",
        ),
        (
            "check: redis round trip / memory",
            "revocation_check/redis_round_trip",
            "revocation_check/memory",
        ),
        (
            "layer: redis mirror / memory",
            "revocation_layer/redis_mirror",
            "revocation_layer/memory",
        ),
        (
            "layer: redis mirror / no store",
            "revocation_layer/redis_mirror",
            "revocation_layer/no_store",
        ),
    ] {
        match (mean_ns(a), mean_ns(b)) {
            (Some(x), Some(y)) => {
                println!("  {label:<36} {:>7.2}x  ({x:.0} ns / {y:.0} ns)", x / y)
            }
            _ => println!("  {label:<36} (not measured in this run)"),
        }
    }
}
