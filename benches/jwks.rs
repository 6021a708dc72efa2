//! Verification through a remote key set vs a static key of the same algorithm (the
//! verified-token cache off for both, so each iteration checks a signature), and
//! through a remote set while a background fetch hangs on a slow provider.
//!
//! Criterion times each case in turn, seconds apart; the same cases are then timed
//! interleaved (rounds in which every case verifies a batch, in a rotating order),
//! which is what the ratios are judged by on a shared machine.
//!
//! `cargo bench --features jwks --bench jwks`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower_jwt_auth::{Algorithm, JwtAuth, Key, RemoteKeySet, TokenType};

#[path = "../tests/support/provider.rs"]
#[allow(dead_code)]
mod provider;

use provider::{Mode, Provider, SigningKey, claims, set};

const ISS: &str = "https://idp.example.com";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// One algorithm's cases: the same token verified by a static key, by an idle remote
/// set, and by a remote set whose provider holds a fetch for the whole run.
struct Cases {
    name: &'static str,
    token: String,
    fixed: JwtAuth,
    remote: JwtAuth,
    busy: JwtAuth,
    // The providers live as long as the sets that fetch from them.
    _providers: (Provider, Provider),
}

const CASE_NAMES: [&str; 3] = ["static key", "remote set", "remote set, fetch in flight"];

impl Cases {
    fn new(runtime: &tokio::runtime::Runtime, alg: Algorithm) -> Self {
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
        let remote_set = |provider: &Provider| {
            let auth = JwtAuth::builder()
                .remote_keys(
                    RemoteKeySet::jwks_url(provider.jwks_url())
                        .issuer(ISS)
                        .refresh_cooldown(Duration::from_millis(10))
                        .fetch_timeout(Duration::from_secs(600)),
                )
                .verified_token_cache(0)
                .build()
                .unwrap();
            runtime.block_on(provider.wait_fetches(1));
            assert!(auth.verify(&token, TokenType::Access).is_ok());
            auth
        };
        let idle = runtime.block_on(Provider::start(&set(&[&key])));
        let remote = remote_set(&idle);
        let slow = runtime.block_on(Provider::start(&set(&[&key])));
        let busy = remote_set(&slow);
        // A token naming an unknown key starts a fetch that hangs on the provider.
        slow.set_mode(Mode::Slow(Duration::from_secs(600)));
        let unknown = SigningKey::new(alg, "unknown").sign(&claims(ISS, "x"));
        assert!(busy.verify(&unknown, TokenType::Access).is_err());
        runtime.block_on(async {
            while slow.in_flight() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self {
            name,
            token,
            fixed,
            remote,
            busy,
            _providers: (idle, slow),
        }
    }

    fn auth(&self, case: usize) -> &JwtAuth {
        match case {
            0 => &self.fixed,
            1 => &self.remote,
            _ => &self.busy,
        }
    }
}

fn criterion_cases(c: &mut Criterion, all: &[Cases]) {
    for cases in all {
        let mut group = c.benchmark_group(format!("jwks/{}", cases.name));
        for (case, name) in CASE_NAMES.iter().enumerate() {
            let auth = cases.auth(case);
            group.bench_function(*name, |b| {
                b.iter(|| auth.verify(&cases.token, TokenType::Access).unwrap())
            });
        }
        group.finish();
    }
}

/// Every case verifies `BATCH` times per round, in an order that rotates between
/// rounds; ratios are taken against the static key of the same round.
fn interleaved(all: &[Cases]) {
    const ROUNDS: usize = 101;
    const BATCH: u32 = 100;
    println!("\ninterleaved ({ROUNDS} rounds of {BATCH} verifications per case; medians):");
    for cases in all {
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut ratios: [Vec<f64>; 3] = Default::default();
        for round in 0..ROUNDS {
            let mut ns = [0.0; 3];
            for i in 0..3 {
                let case = (round + i) % 3;
                let auth = cases.auth(case);
                let start = Instant::now();
                for _ in 0..BATCH {
                    black_box(auth.verify(black_box(&cases.token), TokenType::Access)).unwrap();
                }
                ns[case] = start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH);
            }
            for case in 0..3 {
                times[case].push(ns[case]);
                ratios[case].push(ns[case] / ns[0]);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for case in 0..3 {
            let time = median(&mut times[case]) / 1000.0;
            let ratio = median(&mut ratios[case]);
            let (q1, q3) = (ratios[case][ROUNDS / 4], ratios[case][3 * ROUNDS / 4]);
            println!(
                "  {} {:<29} {time:>7.2} µs  / static key {ratio:.2}x (quartiles {q1:.2}-{q3:.2})",
                cases.name, CASE_NAMES[case]
            );
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let all = [
        Cases::new(&runtime, Algorithm::ES256),
        Cases::new(&runtime, Algorithm::RS256),
    ];
    let mut criterion = Criterion::default().configure_from_args();
    criterion_cases(&mut criterion, &all);
    criterion.final_summary();
    // With no filter, or `-- interleaved` for these alone.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() || args == ["interleaved"] {
        interleaved(&all);
    }
}
