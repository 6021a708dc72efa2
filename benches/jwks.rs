//! Verification through a remote key set vs a static key of the same algorithm (the
//! verified-token cache off for both, so each iteration checks a signature), and the
//! remote case while a background fetch hangs on a slow provider.
//!
//! `cargo bench --all-features --bench jwks`

use std::time::Duration;

use criterion::{Criterion, criterion_group};
use tower_jwt_auth::{Algorithm, JwtAuth, Key, RemoteKeySet, TokenType};

#[path = "../tests/support/provider.rs"]
#[allow(dead_code)]
mod provider;

use provider::{Mode, Provider, SigningKey, claims, set};

const ISS: &str = "https://idp.example.com";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let key = SigningKey::new(alg, "k");
        let (public, name) = match alg {
            Algorithm::ES256 => (pem("ec_public.pem"), "ES256"),
            _ => (pem("rsa_public.pem"), "RS256"),
        };
        // Claims both paths accept (the static path wants this crate's `type` and `jti`).
        let mut claims_both = claims(ISS, "alice");
        claims_both["type"] = "access".into();
        claims_both["jti"] = "0b5f2f4e-1f7a-4c1e-9a55-3d2b8a0c7e11".into();
        let token = key.sign(&claims_both);
        let fixed = JwtAuth::builder()
            .verification_key(Key::public_pem(alg, public).kid("k"))
            .issuer(ISS)
            .verified_token_cache(0)
            .build()
            .unwrap();
        let provider = runtime.block_on(Provider::start(&set(&[&key])));
        let remote = JwtAuth::builder()
            .remote_keys(
                RemoteKeySet::jwks_url(provider.jwks_url())
                    .issuer(ISS)
                    .refresh_cooldown(Duration::from_millis(10))
                    .fetch_timeout(Duration::from_secs(60)),
            )
            .verified_token_cache(0)
            .build()
            .unwrap();
        runtime.block_on(provider.wait_fetches(1));
        assert!(remote.verify(&token, TokenType::Access).is_ok());
        let mut group = c.benchmark_group(format!("jwks/{name}"));
        group.bench_function("static key", |b| {
            b.iter(|| fixed.verify(&token, TokenType::Access).unwrap())
        });
        group.bench_function("remote set", |b| {
            b.iter(|| remote.verify(&token, TokenType::Access).unwrap())
        });
        // A fetch hangs on the provider for the whole measurement.
        provider.set_mode(Mode::Slow(Duration::from_secs(60)));
        let unknown = SigningKey::new(alg, "unknown").sign(&claims(ISS, "x"));
        assert!(remote.verify(&unknown, TokenType::Access).is_err());
        runtime.block_on(async {
            while provider.in_flight() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        group.bench_function("remote set, fetch in flight", |b| {
            b.iter(|| remote.verify(&token, TokenType::Access).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
