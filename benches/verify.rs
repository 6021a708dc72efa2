//! Per-request cost of the layer against bare `jsonwebtoken` and the floor, in one run.
//!
//! `cargo bench --bench verify` prints criterion's figures, then the ratios, then the
//! goals measured interleaved (`cargo bench --bench verify -- interleaved` for those alone).

use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group};
use hmac::{Hmac, Mac};
use http::{HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::Sha256;
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

/// The token every case uses (the figures in the README name it): an HS256 access
/// token issued by the crate, 430 bytes, with a scope and a custom object claim.
fn typical(auth: &JwtAuth) -> tower_jwt_auth::TokenBuilder<'_> {
    auth.access_token("alice@example.com")
        .fresh(true)
        .scopes(["read"])
        .claim(
            "profile",
            serde_json::json!({"org": "acme", "role": "admin"}),
        )
}

fn typical_token(auth: &JwtAuth) -> String {
    typical(auth).issue().unwrap()
}

/// The floor: one HMAC with a prepared key, one base64url decode, one claims parse,
/// with the stack the crate is built on (AWS-LC, the `base64` crate, serde_json).
fn floor(token: &str, key: &aws_lc_rs::hmac::Key) -> TokenPayload {
    let (message, signature) = token.rsplit_once('.').unwrap();
    let payload = message.split_once('.').unwrap().1;
    let mut sig = [0u8; 40];
    let n = URL_SAFE_NO_PAD.decode_slice(signature, &mut sig).unwrap();
    aws_lc_rs::hmac::verify(key, message.as_bytes(), &sig[..n]).unwrap();
    let mut buf = [0u8; 1024];
    let n = URL_SAFE_NO_PAD.decode_slice(payload, &mut buf).unwrap();
    serde_json::from_slice::<TokenPayload>(&buf[..n]).unwrap()
}

/// The same work with the primitives the crate uses (RustCrypto HMAC, SIMD base64,
/// one UTF-8 check): what is left between this and the layer is the layer's own.
fn floor_crate_primitives(token: &str, key: &Hmac<Sha256>) -> TokenPayload {
    let (message, signature) = token.rsplit_once('.').unwrap();
    let payload = message.split_once('.').unwrap().1;
    let b64 = base64_simd::URL_SAFE_NO_PAD;
    let mut sig = [0u8; 40];
    let sig = b64
        .decode(
            signature.as_bytes(),
            base64_simd::Out::from_slice(&mut sig[..]),
        )
        .unwrap();
    key.clone()
        .chain_update(message.as_bytes())
        .verify_slice(sig)
        .unwrap();
    let mut buf = [0u8; 1024];
    let json = b64
        .decode(
            payload.as_bytes(),
            base64_simd::Out::from_slice(&mut buf[..]),
        )
        .unwrap();
    serde_json::from_str::<TokenPayload>(std::str::from_utf8(json).unwrap()).unwrap()
}

/// Runs `per_thread` requests on each of `threads` threads at once; each thread has its
/// own service clone and its own token (distinct clients), or all share `shared`.
fn parallel<S>(svc: &S, headers: &[HeaderValue], threads: usize, per_thread: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<String>, Error = std::convert::Infallible>
        + Clone
        + Send,
    S::Future: Send,
{
    let start = std::sync::Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|scope| {
        for i in 0..threads {
            let mut svc = svc.clone();
            let bytes = headers[i % headers.len()].as_bytes();
            let start = &start;
            scope.spawn(move || {
                // Each thread's own copy, as each connection parses its own headers: a
                // clone of one shared value would make both threads count references on
                // neighbouring memory (false sharing in the benchmark, not the layer).
                let header = HeaderValue::from_bytes(bytes).unwrap();
                start.wait();
                for _ in 0..per_thread {
                    let mut req = Request::new(());
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, header.clone());
                    let res = ready(ready(svc.ready()).unwrap().call(req)).unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(res);
                }
            });
        }
        start.wait();
        std::time::Instant::now()
    });
    elapsed.elapsed()
}

/// Runs `work(thread)` `per_thread` times on each of `threads` threads at once.
fn parallel_work(threads: usize, per_thread: u64, work: impl Fn(usize) + Sync) -> Duration {
    let start = std::sync::Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|scope| {
        for i in 0..threads {
            let (start, work) = (&start, &work);
            scope.spawn(move || {
                start.wait();
                for _ in 0..per_thread {
                    work(i);
                }
            });
        }
        start.wait();
        std::time::Instant::now()
    });
    elapsed.elapsed()
}

fn bench(c: &mut Criterion) {
    let plain = auth(ImplicitRefresh::disabled());
    let token = typical_token(&plain);
    println!(
        "the token of every case: {} bytes, HS256, claims {}",
        token.len(),
        {
            let p = token.split('.').nth(1).unwrap();
            String::from_utf8(URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        }
    );
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

    // A repeated token: the verified-token cache answers (the default).
    let mut layered = plain.layer().layer(service_fn(hello));
    g.bench_function("layer_hit", |b| {
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

    // First sight: every request a token never seen before: 512 distinct tokens of the
    // same shape and size cycled through a cache of 16 (few enough tokens to stay in
    // the CPU caches, as one just read from the network does; a cache, and its
    // doorkeeper, small enough that a cycle never turns into hits or admissions).
    let first_sight_auth = JwtAuth::builder()
        .hs256(SECRET)
        .without_revocation()
        .implicit_refresh(ImplicitRefresh::disabled())
        .verified_token_cache(16)
        .build()
        .unwrap();
    let fresh_tokens: Vec<String> = (0..512)
        .map(|_| {
            let t = typical_token(&first_sight_auth);
            assert_eq!(t.len(), token.len(), "every token has the same size");
            t
        })
        .collect();
    let fresh: Vec<HeaderValue> = fresh_tokens
        .iter()
        .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).unwrap())
        .collect();
    let mut first_sight = first_sight_auth.layer().layer(service_fn(hello));
    let mut next = fresh.iter().cycle();
    g.bench_function("layer_first_sight", |b| {
        b.iter(|| {
            let mut req = Request::new(());
            let header = next.next().unwrap().clone();
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, header);
            let svc = &mut first_sight;
            let res = ready(ready(svc.ready()).unwrap().call(req)).unwrap();
            assert_eq!(res.status(), 200);
            res
        })
    });

    // Each new token sent twice in a row: a first sight, then a second one that
    // verifies again and inserts the token in the cache (a token is cached on its
    // second sight). The mean of the two: (first + second) / 2.
    let mut twice = first_sight_auth.layer().layer(service_fn(hello));
    let mut pairs = fresh.iter().flat_map(|h| [h, h]).cycle();
    g.bench_function("layer_first_two_sights", |b| {
        b.iter(|| {
            let mut req = Request::new(());
            let header = pairs.next().unwrap().clone();
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, header);
            let svc = &mut twice;
            let res = ready(ready(svc.ready()).unwrap().call(req)).unwrap();
            assert_eq!(res.status(), 200);
            res
        })
    });

    // The same token with the cache off: the whole verification on every request.
    let uncached_auth = JwtAuth::builder()
        .hs256(SECRET)
        .without_revocation()
        .implicit_refresh(ImplicitRefresh::disabled())
        .verified_token_cache(0)
        .build()
        .unwrap();
    let mut uncached = uncached_auth.layer().layer(service_fn(hello));
    g.bench_function("layer_cache_off", |b| {
        b.iter(|| {
            let mut req = Request::new(());
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer.clone());
            let svc = &mut uncached;
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

    // The floors over the distinct tokens of first sight (the work does not depend on
    // the token; where it sits in memory does).
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let mut next_fresh = fresh_tokens.iter().cycle();
    g.bench_function("floor", |b| {
        b.iter(|| floor(black_box(next_fresh.next().unwrap()), &hmac_key))
    });
    let prepared = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    g.bench_function("floor_crate_primitives", |b| {
        b.iter(|| floor_crate_primitives(black_box(next_fresh.next().unwrap()), &prepared))
    });

    g.bench_function("verify_fn", |b| {
        b.iter(|| plain.verify(black_box(&token), TokenType::Access).unwrap())
    });
    g.finish();

    // The HMAC alone over the token's signing input: AWS-LC sets up and copies a
    // context per call; RustCrypto (what the crate uses) copies prepared states.
    let mut g = c.benchmark_group("hmac");
    g.measurement_time(Duration::from_secs(2));
    let message = token.rsplit_once('.').unwrap().0.as_bytes();
    g.bench_function("aws_lc", |b| {
        b.iter(|| aws_lc_rs::hmac::sign(&hmac_key, black_box(message)))
    });
    g.bench_function("rustcrypto", |b| {
        b.iter(|| prepared.clone().chain_update(black_box(message)).finalize())
    });
    g.finish();

    // Cache hits from 1 and 2 threads at once, each thread a distinct client (its own
    // token), through one layer: the time per request of each thread. Two threads
    // scale perfectly when their time per request equals one thread's.
    let mut g = c.benchmark_group("threads");
    g.measurement_time(Duration::from_secs(3));
    let clients: Vec<HeaderValue> = (0..2)
        .map(|_| HeaderValue::from_str(&format!("Bearer {}", typical_token(&plain))).unwrap())
        .collect();
    let shared = plain.layer().layer(service_fn(hello));
    for threads in [1usize, 2] {
        g.bench_function(format!("hit_{threads}_thread"), |b| {
            b.iter_custom(|iters| parallel(&shared, &clients, threads, iters))
        });
    }
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
    // The bearer case's claims (same size); the re-issue case expires within the window.
    let outside_window = cookie_header(&typical_token(&refreshing));
    let in_window = cookie_header(
        &typical(&refreshing)
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
        // First sight over 256 distinct tokens (the cache off, so each is verified).
        let distinct: Vec<String> = (0..256).map(|_| typical_token(&cached)).collect();
        let mut next = distinct.iter().cycle();
        g.bench_function(format!("{name}_first_sight"), |b| {
            b.iter(|| {
                uncached
                    .verify(black_box(next.next().unwrap()), TokenType::Access)
                    .unwrap()
            })
        });
        g.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| cached.verify(black_box(&token), TokenType::Access).unwrap())
        });
        // The stack it is built on, over the same distinct tokens.
        let public = read(public);
        let decoding = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(&public),
            Algorithm::ES256 => DecodingKey::from_ec_pem(&public),
            _ => DecodingKey::from_ed_pem(&public),
        }
        .unwrap();
        let mut validation = Validation::new(alg);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let mut next = distinct.iter().cycle();
        g.bench_function(format!("{name}_jsonwebtoken_decode"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<TokenPayload>(
                    black_box(next.next().unwrap()),
                    &decoding,
                    &validation,
                )
                .unwrap()
            })
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

/// Where criterion writes its estimates (its own rule: `CRITERION_HOME`, else the
/// cargo target directory).
fn criterion_home() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        std::path::PathBuf::from,
    );
    target.join("criterion")
}

/// Mean time of a benchmark, from criterion's estimates written by this run (an
/// older estimate on disk is not this run's and is ignored).
fn mean_ns(id: &str, since: std::time::SystemTime) -> Option<f64> {
    let path = criterion_home().join(id).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report(since: std::time::SystemTime) {
    // (label, numerator, denominator)
    let pairs: [(&str, &str, &str); 24] = [
        (
            "hs256 layer, repeated token / floor",
            "hs256/layer_hit",
            "hs256/floor",
        ),
        (
            "hs256 layer, first sight / floor",
            "hs256/layer_first_sight",
            "hs256/floor",
        ),
        (
            "hs256 layer, first two sights (mean) / floor",
            "hs256/layer_first_two_sights",
            "hs256/floor",
        ),
        (
            "hs256 layer, cache off / floor",
            "hs256/layer_cache_off",
            "hs256/floor",
        ),
        (
            "hs256 layer, repeated / jsonwebtoken::decode",
            "hs256/layer_hit",
            "hs256/jsonwebtoken_decode",
        ),
        (
            "hs256 layer, first sight / jsonwebtoken::decode",
            "hs256/layer_first_sight",
            "hs256/jsonwebtoken_decode",
        ),
        (
            "hs256 verify_fn (repeated) / floor",
            "hs256/verify_fn",
            "hs256/floor",
        ),
        (
            "hs256 layer, repeated / no-auth service",
            "hs256/layer_hit",
            "hs256/no_auth_service",
        ),
        (
            "2 threads / 1 thread, time per request",
            "threads/hit_2_thread",
            "threads/hit_1_thread",
        ),
        (
            "cookie layer / bearer layer (repeated)",
            "cookie/layer_cookie",
            "hs256/layer_hit",
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
            "rs256 first sight / jsonwebtoken::decode",
            "asymmetric/rs256_first_sight",
            "asymmetric/rs256_jsonwebtoken_decode",
        ),
        (
            "es256 cached / first sight",
            "asymmetric/es256_cached",
            "asymmetric/es256_first_sight",
        ),
        (
            "es256 first sight / jsonwebtoken::decode",
            "asymmetric/es256_first_sight",
            "asymmetric/es256_jsonwebtoken_decode",
        ),
        (
            "eddsa cached / first sight",
            "asymmetric/eddsa_cached",
            "asymmetric/eddsa_first_sight",
        ),
        (
            "eddsa first sight / jsonwebtoken::decode",
            "asymmetric/eddsa_first_sight",
            "asymmetric/eddsa_jsonwebtoken_decode",
        ),
        (
            "hs256 layer, first sight / floor, crate's primitives",
            "hs256/layer_first_sight",
            "hs256/floor_crate_primitives",
        ),
        (
            "hmac: RustCrypto, prepared / AWS-LC",
            "hmac/rustcrypto",
            "hmac/aws_lc",
        ),
        (
            "hs256 floor / jsonwebtoken::decode",
            "hs256/floor",
            "hs256/jsonwebtoken_decode",
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
    // The goals are judged by the interleaved measurement below: criterion's groups run
    // seconds apart, and the load of a shared machine drifts in between.
    println!("\nratios (criterion means of this run; goals are judged interleaved, below):");
    for (label, a, b) in pairs {
        match (mean_ns(a, since), mean_ns(b, since)) {
            (Some(x), Some(y)) => {
                let ratio = x / y;
                println!("  {label:<48} {ratio:>6.2}x  ({x:.0} ns / {y:.0} ns)")
            }
            _ => println!("  {label:<48} (not measured in this run)"),
        }
    }
    if let (Some(one), Some(two)) = (
        mean_ns("threads/hit_1_thread", since),
        mean_ns("threads/hit_2_thread", since),
    ) {
        let scaling = 2.0 * one / two;
        println!("  2-thread scaling of cache hits: {scaling:.2}x");
    }
}

/// The goals again, measured interleaved: in each of `ROUNDS` rounds every case runs a
/// batch of `BATCH` requests, in an order that rotates between rounds, and the round's
/// ratio is taken against the floor timed in that same round. The median over rounds
/// is robust to the load of a shared machine drifting between criterion's groups,
/// which run seconds apart.
fn interleaved() {
    const ROUNDS: usize = 101;
    const BATCH: u32 = 2_000;
    let plain = auth(ImplicitRefresh::disabled());
    let token = typical_token(&plain);
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let prepared = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    let first_sight_auth = JwtAuth::builder()
        .hs256(SECRET)
        .without_revocation()
        .implicit_refresh(ImplicitRefresh::disabled())
        .verified_token_cache(16)
        .build()
        .unwrap();
    let fresh: Vec<HeaderValue> = (0..512)
        .map(|_| {
            HeaderValue::from_str(&format!("Bearer {}", typical_token(&first_sight_auth))).unwrap()
        })
        .collect();
    let mut hit = plain.layer().layer(service_fn(hello));
    let mut first = first_sight_auth.layer().layer(service_fn(hello));
    let mut next = fresh.iter().cycle();
    // Where first sight's time goes: the verification alone, and the layer without the
    // cache, over the same kind of distinct tokens.
    let uncached = JwtAuth::builder()
        .hs256(SECRET)
        .without_revocation()
        .implicit_refresh(ImplicitRefresh::disabled())
        .verified_token_cache(0)
        .build()
        .unwrap();
    let distinct: Vec<String> = (0..512).map(|_| typical_token(&uncached)).collect();
    let distinct_headers: Vec<HeaderValue> = distinct
        .iter()
        .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).unwrap())
        .collect();
    let mut next_token = distinct.iter().cycle();
    let mut next_header = distinct_headers.iter().cycle();
    // The floors go through distinct tokens too, so every case reads its token from
    // the same kind of memory (a token just read from the network, not one hot in L1).
    let mut next_floor_token = distinct.iter().cycle();
    let mut uncached_layer = uncached.layer().layer(service_fn(hello));
    let key = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let mut time = |case: usize| {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            match case {
                0 => {
                    let t = next_floor_token.next().unwrap();
                    black_box(floor(black_box(t), &hmac_key));
                }
                5 => {
                    let t = next_floor_token.next().unwrap();
                    black_box(floor_crate_primitives(black_box(t), &prepared));
                }
                6 => {
                    let t = next_floor_token.next().unwrap();
                    let decoded = jsonwebtoken::decode::<TokenPayload>(t, &key, &validation);
                    black_box(decoded.unwrap());
                }
                3 => {
                    let t = next_token.next().unwrap();
                    black_box(uncached.verify(t, TokenType::Access).unwrap());
                }
                4 => {
                    let mut req = Request::new(());
                    let header = next_header.next().unwrap().clone();
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, header);
                    let res = ready(ready(uncached_layer.ready()).unwrap().call(req)).unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(res);
                }
                1 => {
                    let mut req = Request::new(());
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, bearer.clone());
                    let res = ready(ready(hit.ready()).unwrap().call(req)).unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(res);
                }
                _ => {
                    let mut req = Request::new(());
                    let header = next.next().unwrap().clone();
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, header);
                    let res = ready(ready(first.ready()).unwrap().call(req)).unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(res);
                }
            }
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
    };
    let (mut hits, mut firsts, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    let (mut verifies, mut layers_off) = (Vec::new(), Vec::new());
    let (mut own_floors, mut firsts_own) = (Vec::new(), Vec::new());
    const CASES: usize = 7;
    let mut times: [Vec<f64>; CASES] = Default::default();
    for round in 0..ROUNDS {
        let mut ns = [0.0; CASES];
        for i in 0..CASES {
            let case = (round + i) % CASES;
            ns[case] = time(case);
        }
        for (all, t) in times.iter_mut().zip(ns) {
            all.push(t);
        }
        floors.push(ns[0]);
        hits.push(ns[1] / ns[0]);
        firsts.push(ns[2] / ns[0]);
        verifies.push(ns[3] / ns[0]);
        layers_off.push(ns[4] / ns[0]);
        own_floors.push(ns[5] / ns[0]);
        firsts_own.push(ns[2] / ns[5]);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let verdict = |ratio: f64, goal: f64| if ratio <= goal { "met" } else { "NOT met" };
    let (hit, first, floor_ns) = (median(&mut hits), median(&mut firsts), median(&mut floors));
    println!(
        "\ninterleaved ({ROUNDS} rounds of {BATCH} requests per case; median of the per-round ratios; floor median {floor_ns:.0} ns):"
    );
    let names = [
        "floor (AWS-LC HMAC, base64, serde_json)",
        "layer, repeated token",
        "layer, first sight",
        "JwtAuth::verify, cache off",
        "layer, cache off",
        "floor with the crate's primitives",
        "jsonwebtoken::decode",
    ];
    println!("  median time per request of each case:");
    for (name, all) in names.iter().zip(times.iter_mut()) {
        println!("    {name:<42} {:>6.0} ns", median(all));
    }
    println!(
        "  hs256 layer, repeated token / floor   {hit:.2}x (quartiles {:.2}-{:.2})  goal <= 0.50: {}",
        hits[ROUNDS / 4],
        hits[3 * ROUNDS / 4],
        verdict(hit, 0.5)
    );
    println!(
        "  hs256 layer, first sight / floor      {first:.2}x (quartiles {:.2}-{:.2})  goal <= 1.30: {}",
        firsts[ROUNDS / 4],
        firsts[3 * ROUNDS / 4],
        verdict(first, 1.3)
    );
    println!(
        "  where first sight goes: JwtAuth::verify, cache off / floor {:.2}x; layer, cache off / floor {:.2}x",
        median(&mut verifies),
        median(&mut layers_off)
    );
    println!(
        "  floor with the crate's primitives / floor {:.2}x; layer, first sight / that floor {:.2}x",
        median(&mut own_floors),
        median(&mut firsts_own)
    );

    // Two threads hitting the cache at once (each its own client's token) against one,
    // alternating which goes first: throughput of two over one, per round. The floor on
    // one and two threads is the control: what the machine gives a second thread of
    // work that shares nothing, at that moment.
    const THREAD_ROUNDS: usize = 31;
    const PER_THREAD: u64 = 20_000;
    let clients: Vec<HeaderValue> = (0..2)
        .map(|_| HeaderValue::from_str(&format!("Bearer {}", typical_token(&plain))).unwrap())
        .collect();
    let shared = plain.layer().layer(service_fn(hello));
    let floor_work = |thread: usize| {
        black_box(floor(black_box(&distinct[thread]), &hmac_key));
    };
    let (mut scalings, mut controls) = (Vec::new(), Vec::new());
    for round in 0..THREAD_ROUNDS {
        let pair = |f: &dyn Fn(usize) -> Duration| {
            let (one, two) = if round % 2 == 0 {
                let one = f(1);
                (one, f(2))
            } else {
                let two = f(2);
                (f(1), two)
            };
            2.0 * one.as_secs_f64() / two.as_secs_f64()
        };
        scalings.push(pair(&|n| parallel(&shared, &clients, n, PER_THREAD)));
        controls.push(pair(&|n| parallel_work(n, PER_THREAD / 4, floor_work)));
    }
    let (scaling, control) = (median(&mut scalings), median(&mut controls));
    println!(
        "  cache hits, 2 threads / 1 thread      {scaling:.2}x throughput (quartiles {:.2}-{:.2}, {THREAD_ROUNDS} rounds)  goal >= 1.80: {}",
        scalings[THREAD_ROUNDS / 4],
        scalings[3 * THREAD_ROUNDS / 4],
        if scaling >= 1.8 { "met" } else { "NOT met" }
    );
    println!(
        "  control: the floor, 2 threads / 1     {control:.2}x throughput (quartiles {:.2}-{:.2})",
        controls[THREAD_ROUNDS / 4],
        controls[3 * THREAD_ROUNDS / 4],
    );
}

fn main() {
    let since = std::time::SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    report(since);
    // With no filter, or `-- interleaved` for these alone (criterion then matches none
    // of its own); not when criterion lists or filters to other benchmarks.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() || args == ["interleaved"] {
        interleaved();
    }
}
