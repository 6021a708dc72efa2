//! Per-request cost of the layer against bare `jsonwebtoken` and the floor, in one run.
//!
//! `cargo bench --bench verify` prints criterion's figures, then the ratios.

use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_jwt_auth::{ImplicitRefresh, JwtAuth, TokenPayload, TokenType};

const SECRET: &[u8] = b"a benchmark secret that is long enough!!";

/// Polls a future that is ready at once (every service here is synchronous).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("benchmark services are synchronous"),
    }
}

fn hello(
    _req: Request<()>,
) -> std::future::Ready<Result<Response<String>, std::convert::Infallible>> {
    std::future::ready(Ok(Response::new(String::new())))
}

fn auth(window: ImplicitRefresh) -> JwtAuth {
    JwtAuth::builder()
        .hs256(SECRET)
        .without_revocation()
        .implicit_refresh(window)
        .build()
        .unwrap()
}

fn typical_token(auth: &JwtAuth) -> String {
    auth.access_token("alice@example.com")
        .fresh(true)
        .scopes(["read", "write"])
        .claim("tenant", "acme")
        .issue()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let plain = auth(ImplicitRefresh::disabled());
    let token = typical_token(&plain);
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();

    let mut g = c.benchmark_group("hs256");
    g.measurement_time(Duration::from_secs(3));

    let mut bare_service = service_fn(hello);
    g.bench_function("no_auth_service", |b| {
        b.iter(|| {
            let mut req = Request::new(());
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer.clone());
            let svc = &mut bare_service;
            ready(ready(svc.ready()).unwrap().call(req)).unwrap()
        })
    });

    let mut layered = plain.layer().layer(service_fn(hello));
    g.bench_function("layer", |b| {
        b.iter(|| {
            let mut req = Request::new(());
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer.clone());
            let svc = &mut layered;
            let res = ready(ready(svc.ready()).unwrap().call(req)).unwrap();
            assert_eq!(res.status(), 200);
            res
        })
    });

    let key = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<TokenPayload>(black_box(&token), &key, &validation).unwrap()
        })
    });

    // The floor: one HMAC with a prepared key, one base64url decode, one claims parse.
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    g.bench_function("floor", |b| {
        b.iter(|| {
            let t = black_box(token.as_str());
            let (message, signature) = t.rsplit_once('.').unwrap();
            let payload = message.split_once('.').unwrap().1;
            let mut sig = [0u8; 40];
            let n = URL_SAFE_NO_PAD.decode_slice(signature, &mut sig).unwrap();
            aws_lc_rs::hmac::verify(&hmac_key, message.as_bytes(), &sig[..n]).unwrap();
            let mut buf = [0u8; 1024];
            let n = URL_SAFE_NO_PAD.decode_slice(payload, &mut buf).unwrap();
            serde_json::from_slice::<TokenPayload>(&buf[..n]).unwrap()
        })
    });

    g.bench_function("verify_fn", |b| {
        b.iter(|| plain.verify(black_box(&token), TokenType::Access).unwrap())
    });
    g.finish();

    // Cookies: the same token in a typical browser Cookie header.
    let refreshing = auth(ImplicitRefresh::window(Duration::from_secs(10 * 60)));
    let names = refreshing.cookie_names().clone();
    let cookie_header = |t: &str| {
        HeaderValue::from_str(&format!(
            "_ga=GA1.1.123; theme=dark; {}={t}; {}=4b6f2a; lang=en",
            names.access, names.csrf_access
        ))
        .unwrap()
    };
    let mut g = c.benchmark_group("cookie");
    g.measurement_time(Duration::from_secs(3));
    let outside_window = cookie_header(
        &refreshing
            .access_token("alice")
            .ttl(Duration::from_secs(3600))
            .issue()
            .unwrap(),
    );
    let in_window = cookie_header(
        &refreshing
            .access_token("alice")
            .ttl(Duration::from_secs(60))
            .issue()
            .unwrap(),
    );
    let mut svc = refreshing.layer().layer(service_fn(hello));
    for (name, header) in [
        ("layer_cookie", &outside_window),
        ("layer_cookie_reissue", &in_window),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut req = Request::new(());
                req.headers_mut()
                    .insert(http::header::COOKIE, header.clone());
                let s = &mut svc;
                let res = ready(ready(s.ready()).unwrap().call(req)).unwrap();
                assert_eq!(res.status(), 200);
                res
            })
        });
    }
    let claims = refreshing
        .verify(&typical_token(&refreshing), TokenType::Access)
        .unwrap();
    g.bench_function("reissue", |b| {
        b.iter(|| {
            refreshing
                .reissue_access(black_box(&claims))
                .issue()
                .unwrap()
        })
    });
    let enc_key = EncodingKey::from_secret(SECRET);
    let header = Header::new(Algorithm::HS256);
    g.bench_function("jsonwebtoken_encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &enc_key).unwrap())
    });
    g.finish();
}

fn asymmetric(c: &mut Criterion) {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let read = |name: &str| std::fs::read(keys.join(name)).unwrap();
    let mut g = c.benchmark_group("asymmetric");
    g.measurement_time(Duration::from_secs(2));
    for (name, alg, private, public) in [
        (
            "rs256",
            Algorithm::RS256,
            "rsa_private.pem",
            "rsa_public.pem",
        ),
        ("es256", Algorithm::ES256, "ec_private.pem", "ec_public.pem"),
        (
            "eddsa",
            Algorithm::EdDSA,
            "ed25519_private.pem",
            "ed25519_public.pem",
        ),
    ] {
        let key = tower_jwt_auth::Key::pem_pair(alg, read(private), read(public));
        let build = |cache: usize| {
            JwtAuth::builder()
                .signing_key(key.clone())
                .without_revocation()
                .verified_token_cache(cache)
                .build()
                .unwrap()
        };
        let (uncached, cached) = (build(0), build(10_000));
        let token = typical_token(&cached);
        g.bench_function(format!("{name}_first_sight"), |b| {
            b.iter(|| {
                uncached
                    .verify(black_box(&token), TokenType::Access)
                    .unwrap()
            })
        });
        g.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| cached.verify(black_box(&token), TokenType::Access).unwrap())
        });
    }
    g.finish();
}

/// The layer with the `metrics` feature: without a recorder (the facade's no-op), and
/// with a Prometheus recorder installed for the benchmark's thread; an accepted and a
/// rejected request each, and one counter alone.
#[cfg(feature = "metrics")]
fn recorder(c: &mut Criterion) {
    let plain = auth(ImplicitRefresh::disabled());
    let bearer = HeaderValue::from_str(&format!("Bearer {}", typical_token(&plain))).unwrap();
    let mut svc = plain.layer().layer(service_fn(hello));
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let mut g = c.benchmark_group("metrics");
    g.measurement_time(Duration::from_secs(3));
    for (name, installed) in [("no_recorder", false), ("prometheus", true)] {
        let mut run = || {
            for (case, header) in [("accepted", Some(&bearer)), ("rejected", None)] {
                g.bench_function(format!("{case}_{name}"), |b| {
                    b.iter(|| {
                        let mut req = Request::new(());
                        if let Some(h) = header {
                            req.headers_mut()
                                .insert(http::header::AUTHORIZATION, h.clone());
                        }
                        let s = &mut svc;
                        ready(ready(s.ready()).unwrap().call(req)).unwrap()
                    })
                });
            }
        };
        if installed {
            metrics::with_local_recorder(&prometheus, run);
        } else {
            run();
        }
    }
    // One counter with static labels alone: the floor of what a recorder adds.
    let one = || metrics::counter!("bench_total", "outcome" => "accepted").increment(1);
    g.bench_function("one_counter_no_recorder", |b| b.iter(one));
    metrics::with_local_recorder(&prometheus, || {
        g.bench_function("one_counter_prometheus", |b| b.iter(one));
    });
    g.finish();
    // The recorder saw the requests (not a no-op by mistake).
    assert!(
        prometheus
            .handle()
            .render()
            .contains("tower_jwt_auth_requests_total")
    );
}

#[cfg(not(feature = "metrics"))]
fn recorder(_: &mut Criterion) {}

criterion_group!(benches, bench, asymmetric, recorder);

/// Mean time of a benchmark, from criterion's own estimates of this run.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = Path::new(&target)
        .join("criterion")
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report() {
    let pairs = [
        ("hs256 layer / floor", "hs256/layer", "hs256/floor"),
        (
            "hs256 layer / jsonwebtoken::decode",
            "hs256/layer",
            "hs256/jsonwebtoken_decode",
        ),
        ("hs256 verify_fn / floor", "hs256/verify_fn", "hs256/floor"),
        (
            "hs256 verify_fn / jsonwebtoken::decode",
            "hs256/verify_fn",
            "hs256/jsonwebtoken_decode",
        ),
        (
            "hs256 layer / no-auth service",
            "hs256/layer",
            "hs256/no_auth_service",
        ),
        (
            "cookie layer / bearer layer",
            "cookie/layer_cookie",
            "hs256/layer",
        ),
        (
            "cookie layer with re-issue / without",
            "cookie/layer_cookie_reissue",
            "cookie/layer_cookie",
        ),
        (
            "reissue / jsonwebtoken::encode",
            "cookie/reissue",
            "cookie/jsonwebtoken_encode",
        ),
        (
            "rs256 cached / first sight",
            "asymmetric/rs256_cached",
            "asymmetric/rs256_first_sight",
        ),
        (
            "es256 cached / first sight",
            "asymmetric/es256_cached",
            "asymmetric/es256_first_sight",
        ),
        (
            "eddsa cached / first sight",
            "asymmetric/eddsa_cached",
            "asymmetric/eddsa_first_sight",
        ),
        (
            "accepted, Prometheus recorder / no recorder",
            "metrics/accepted_prometheus",
            "metrics/accepted_no_recorder",
        ),
        (
            "rejected, Prometheus recorder / no recorder",
            "metrics/rejected_prometheus",
            "metrics/rejected_no_recorder",
        ),
        (
            "one counter, Prometheus recorder / none",
            "metrics/one_counter_prometheus",
            "metrics/one_counter_no_recorder",
        ),
    ];
    println!("\nratios (means of this run):");
    for (label, a, b) in pairs {
        match (mean_ns(a), mean_ns(b)) {
            (Some(x), Some(y)) => {
                println!("  {label:<44} {:>6.2}x  ({x:.0} ns / {y:.0} ns)", x / y)
            }
            _ => println!("  {label:<44} (not measured in this run)"),
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
