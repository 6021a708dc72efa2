//! The verified-token cache never changes a decision: two identically configured
//! `JwtAuth`s, one with the cache and one without, answer every request of a generated
//! sequence identically, while the clock moves around `exp`/`nbf`/`iat` (with and
//! without leeway and a session lifetime), tokens are revoked, and tokens signed by
//! configured keys, an unconfigured key and a wrong secret behind a configured `kid`
//! are presented again and again (a small cache also evicts).
//!
//! Key rotation through the cache (a key leaving a key set at runtime) is tested at
//! unit level in `src/verify.rs`: key sets are static in this crate's public API.

use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Request, Response};
use proptest::prelude::*;
use serde::Deserialize;
use tower::{Layer, Service, service_fn};
use tower_jwt_auth::{
    Algorithm, AuthError, Authenticated, ImplicitRefresh, JwtAuth, Key, ManualClock, MemoryStore,
    TokenPayload, TokenType,
};

const NOW: u64 = 1_800_000_000;

fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the in-memory store answers at once"),
    }
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name),
    )
    .unwrap()
}

/// Signing keys: 0–2 are configured on the verifiers, 3 is a wrong secret behind the
/// configured `kid` "k2", 4 is unknown and has no `kid`.
fn signing_keys() -> Vec<Key> {
    vec![
        Key::hs256([1u8; 32]).kid("k1"),
        Key::hs256([2u8; 32]).kid("k2"),
        Key::pem_pair(
            Algorithm::ES256,
            pem("ec_private.pem"),
            pem("ec_public.pem"),
        )
        .kid("e1"),
        Key::hs256([3u8; 32]).kid("k2"),
        Key::hs256([4u8; 32]),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Config {
    leeway: u64,
    max_session: Option<u64>,
    capacity: usize,
}

fn verifier(config: Config, capacity: usize, clock: &ManualClock) -> JwtAuth {
    let keys = signing_keys();
    let mut b = JwtAuth::builder()
        .signing_key(keys[0].clone())
        .verification_key(keys[1].clone())
        .verification_key(Key::public_pem(Algorithm::ES256, pem("ec_public.pem")).kid("e1"))
        .leeway(Duration::from_secs(config.leeway))
        .implicit_refresh(ImplicitRefresh::disabled())
        .revocation_store(MemoryStore::new(10_000))
        .verified_token_cache(capacity)
        .clock(clock.clone());
    if let Some(max) = config.max_session {
        b = b.max_session_lifetime(Duration::from_secs(max));
    }
    b.build().unwrap()
}

#[derive(Clone, Debug)]
struct Spec {
    key: usize,
    refresh: bool,
    issued: i64,
    ttl: u64,
    nbf: Option<i64>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::sample::select(vec![0usize, 0, 1, 2, 3, 4]),
        prop::bool::weighted(0.2),
        prop::sample::select(vec![-700i64, -60, -10, -5, 0, 3, 6, 30]),
        prop::sample::select(vec![1u64, 5, 10, 60, 600]),
        prop::option::weighted(0.3, prop::sample::select(vec![-10i64, 0, 4, 5, 6, 12])),
    )
        .prop_map(|(key, refresh, issued, ttl, nbf)| Spec {
            key,
            refresh,
            issued,
            ttl,
            nbf,
        })
}

#[derive(Clone, Debug)]
enum Action {
    Present(usize),
    Advance(u64),
    Set(i64),
    Revoke(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0usize..6).prop_map(Action::Present),
        2 => prop::sample::select(vec![1u64, 2, 4, 5, 6, 10]).prop_map(Action::Advance),
        1 => prop::sample::select(vec![-20i64, -6, -5, 0, 5, 6, 11, 16, 40, 700])
            .prop_map(Action::Set),
        1 => (0usize..6).prop_map(Action::Revoke),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop::sample::select(vec![0u64, 5]),
        prop::option::weighted(0.3, Just(30u64)),
        prop::sample::select(vec![2usize, 1_000]),
    )
        .prop_map(|(leeway, max_session, capacity)| Config {
            leeway,
            max_session,
            capacity,
        })
}

fn at(offset: i64) -> u64 {
    NOW.checked_add_signed(offset).unwrap()
}

fn issue(spec: &Spec, clock: &ManualClock) -> (String, TokenPayload) {
    clock.set(at(spec.issued));
    let issuer = JwtAuth::builder()
        .signing_key(signing_keys().swap_remove(spec.key))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut b = if spec.refresh {
        issuer.refresh_token("alice")
    } else {
        issuer.access_token("alice")
    };
    b = b
        .ttl(Duration::from_secs(spec.ttl))
        .scopes(["read"])
        .claim("profile", serde_json::json!({"name": "Alice", "team": 7}));
    if let Some(nbf) = spec.nbf {
        b = b.not_before(UNIX_EPOCH + Duration::from_secs(at(spec.issued + nbf)));
    }
    b.issue_with_claims().unwrap()
}

/// A custom claims type, to run the cache's per-entry custom claims too.
#[derive(Debug, Deserialize, PartialEq)]
struct Profile {
    sub: String,
    profile: serde_json::Value,
}

type Answer = (u16, Option<String>);

/// What every public path answers for `token` now.
#[derive(Debug, PartialEq)]
struct Decisions {
    verify_access: Result<TokenPayload, AuthError>,
    verify_refresh: Result<TokenPayload, AuthError>,
    authenticate: Result<TokenPayload, AuthError>,
    layer: Answer,
}

fn decide(auth: &JwtAuth, token: &str) -> Decisions {
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, bearer.clone());
    let mut svc =
        auth.layer()
            .claims::<Profile>()
            .layer(service_fn(|req: Request<()>| async move {
                let authenticated = req.extensions().get::<Authenticated>().unwrap();
                let p = authenticated.claims_as::<Profile>().unwrap();
                let t = authenticated.claims();
                let seen = format!("{p:?} {t:?}");
                Ok::<_, std::convert::Infallible>(Response::new(Some(seen)))
            }));
    let mut req = Request::new(());
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, bearer);
    let res = ready(svc.call(req)).unwrap();
    Decisions {
        verify_access: auth.verify(token, TokenType::Access),
        verify_refresh: auth.verify(token, TokenType::Refresh),
        authenticate: ready(auth.authenticate(&Method::GET, &headers)),
        layer: (res.status().as_u16(), res.into_body()),
    }
}

fn run(config: Config, specs: &[Spec], actions: &[Action]) -> usize {
    let issuing = ManualClock::new(NOW);
    let tokens: Vec<(String, TokenPayload)> = specs.iter().map(|s| issue(s, &issuing)).collect();
    let clock = ManualClock::new(NOW);
    let cached = verifier(config, config.capacity, &clock);
    let uncached = verifier(config, 0, &clock);
    let mut accepted = 0;
    for action in actions {
        match action {
            Action::Present(i) => {
                let (token, _) = &tokens[i % tokens.len()];
                // Twice with the cache: a miss (or a hit), then surely a hit.
                let first = decide(&cached, token);
                let again = decide(&cached, token);
                let reference = decide(&uncached, token);
                assert_eq!(first, reference, "{action:?} at {}", clock_now(&clock));
                assert_eq!(again, reference, "{action:?} again");
                accepted += usize::from(reference.layer.0 == 200);
            }
            Action::Advance(d) => clock.advance(*d),
            Action::Set(o) => clock.set(at(*o)),
            Action::Revoke(i) => {
                let (_, claims) = &tokens[i % tokens.len()];
                ready(cached.revoke(claims)).unwrap();
                ready(uncached.revoke(claims)).unwrap();
            }
        }
    }
    accepted
}

fn clock_now(clock: &ManualClock) -> i64 {
    use tower_jwt_auth::Clock;
    clock.now() as i64 - NOW as i64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_cache_never_changes_a_decision(
        config in config(),
        specs in prop::collection::vec(spec(), 1..6),
        actions in prop::collection::vec(action(), 1..40),
    ) {
        run(config, &specs, &actions);
    }
}

/// The generator reaches acceptances, expiry within and past the leeway, a token that
/// is not yet valid, and revocation: the property above is not vacuous.
#[test]
fn the_sequences_cover_hits_boundaries_and_revocation() {
    let config = Config {
        leeway: 5,
        max_session: None,
        capacity: 1_000,
    };
    let specs = [
        Spec {
            key: 0,
            refresh: false,
            issued: 0,
            ttl: 10,
            nbf: None,
        },
        Spec {
            key: 2,
            refresh: false,
            issued: 0,
            ttl: 10,
            nbf: Some(6),
        },
        Spec {
            key: 3,
            refresh: false,
            issued: 0,
            ttl: 600,
            nbf: None,
        },
    ];
    use Action::*;
    let actions = [
        Present(0),
        Present(0),
        Present(1),
        Present(2), // 0 valid, 1 early, 2 forged
        Advance(1),
        Present(1), // nbf within the leeway
        Set(15),
        Present(0),
        Present(1), // exp + leeway: still valid
        Advance(1),
        Present(0), // one second past: expired
        Set(0),
        Present(0),
        Revoke(0),
        Present(0), // revoked after a hit
    ];
    assert_eq!(run(config, &specs, &actions), 6);
}
