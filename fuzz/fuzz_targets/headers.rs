//! The header and cookie parsers, through `JwtAuth::authenticate` and
//! `authenticate_parts`: arbitrary `Authorization`, `Cookie`, CSRF header values, a
//! query string (WebSocket upgrades) and methods, built from fuzzer bytes in which
//! placeholders stand for real tokens (good, expired, revoked, forged, refresh),
//! their CSRF values and the configured cookie names.
//!
//! Invariants: no panic; a rejection is a client error (400, 401 or 403: the store
//! is in memory, so never 503); only a good access token is accepted, and only if the
//! request carries it; a cookie-authenticated request with an unsafe method is only
//! accepted with exactly one CSRF header holding the token's value; nothing here
//! writes to the store.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Unstructured;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, Request};
use libfuzzer_sys::fuzz_target;
use tower_jwt_auth::{
    CookieNames, JwtAuth, Location, ManualClock, MemoryStore, MultipleCredentials, TokenPayload,
};
use tower_jwt_auth_fuzz::*;

struct Config {
    auth: JwtAuth,
    csrf: bool,
    csrf_header: HeaderName,
    query: bool,
}

struct Setup {
    configs: Vec<Config>,
    store: Arc<MemoryStore>,
    /// Tokens, their CSRF values, and whether a request may authenticate with them.
    bank: Vec<(String, String, bool)>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let store = Arc::new(MemoryStore::default());
        let shared = || store.clone() as Arc<dyn tower_jwt_auth::RevocationStore>;
        let clock = ManualClock::new(NOW + 60);
        let issuing_clock = ManualClock::new(NOW);
        let issuer = hs_builder(&issuing_clock)
            .shared_revocation_store(shared())
            .build()
            .expect("issuer");
        let default = hs_builder(&clock)
            .shared_revocation_store(shared())
            .build()
            .expect("default");
        let authx = hs_builder(&clock)
            .shared_revocation_store(shared())
            .locations([Location::Header, Location::Cookie, Location::Query])
            .multiple_credentials(MultipleCredentials::FirstFound)
            .cookie_names(CookieNames::authx())
            .build()
            .expect("authx");
        let xsrf = HeaderName::from_static("x-xsrf-token");
        let cookie_first = hs_builder(&clock)
            .shared_revocation_store(shared())
            .locations([Location::Cookie, Location::Header])
            .csrf_header(xsrf.clone())
            .build()
            .expect("cookie first");
        let no_csrf = hs_builder(&clock)
            .shared_revocation_store(shared())
            .csrf_protection(false)
            .build()
            .expect("no csrf");

        let good = issuer.token_pair("alice").expect("pair");
        let other = issuer
            .access_token("bob")
            .scopes(["read"])
            .issue_with_claims()
            .expect("bob");
        issuing_clock.set(NOW - ACCESS_TTL - LEEWAY - 10);
        let expired = issuer.token_pair("erin").expect("expired");
        issuing_clock.set(NOW);
        let revoked = issuer.token_pair("carol").expect("revoked");
        block_on(default.revoke(&revoked.access_claims)).expect("revoke");
        let subject = issuer.token_pair("mallory").expect("mallory");
        block_on(default.revoke_subject("mallory")).expect("revoke subject");
        let attacker = JwtAuth::builder()
            .hs256(ATTACKER_SECRET)
            .clock(issuing_clock.clone())
            .build()
            .expect("attacker");
        let forged_key = attacker.token_pair("alice").expect("attacker pair");
        let (h, p, _) = segments(&good.access_token).expect("three segments");
        let resigned = hs256_token(
            &URL_SAFE_NO_PAD.decode(h).expect("b64"),
            &URL_SAFE_NO_PAD.decode(p).expect("b64"),
            ATTACKER_SECRET,
        );
        let csrf_of = |t: &TokenPayload| t.csrf.clone().unwrap_or_default();
        let bank = vec![
            (good.access_token.clone(), good.csrf.clone(), true),
            (other.0.clone(), csrf_of(&other.1), true),
            (good.refresh_token.clone(), good.csrf.clone(), false),
            (expired.access_token.clone(), expired.csrf.clone(), false),
            (revoked.access_token.clone(), revoked.csrf.clone(), false),
            (subject.access_token.clone(), subject.csrf.clone(), false),
            (
                forged_key.access_token.clone(),
                forged_key.csrf.clone(),
                false,
            ),
            (resigned, good.csrf.clone(), false),
            (
                flip_char(&good.access_token, usize::MAX, 7),
                good.csrf.clone(),
                false,
            ),
            (
                swap_payload(&revoked.access_token, &good.access_token),
                good.csrf.clone(),
                false,
            ),
        ];
        let configs = vec![
            Config {
                auth: default,
                csrf: true,
                csrf_header: HeaderName::from_static("x-csrf-token"),
                query: false,
            },
            Config {
                auth: authx,
                csrf: true,
                csrf_header: HeaderName::from_static("x-csrf-token"),
                query: true,
            },
            Config {
                auth: cookie_first,
                csrf: true,
                csrf_header: xsrf,
                query: false,
            },
            Config {
                auth: no_csrf,
                csrf: false,
                csrf_header: HeaderName::from_static("x-csrf-token"),
                query: false,
            },
        ];
        Setup {
            configs,
            store,
            bank,
        }
    })
}

/// Fuzzer bytes with placeholders: `01 i` a token of the bank, `02 i` its CSRF
/// value, `03 i` one of the configured cookie names.
fn expand(u: &mut Unstructured<'_>, s: &Setup, names: &CookieNames) -> Vec<u8> {
    let len = u.int_in_range(0..=96usize).unwrap_or(0);
    let raw = u.bytes(len.min(u.len())).unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len() * 4);
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        match b {
            1..=3 => {
                let i = usize::from(it.next().copied().unwrap_or(0));
                let (token, csrf, _) = &s.bank[i % s.bank.len()];
                match b {
                    1 => out.extend_from_slice(token.as_bytes()),
                    2 => out.extend_from_slice(csrf.as_bytes()),
                    _ => {
                        let all = [
                            &names.access,
                            &names.refresh,
                            &names.csrf_access,
                            &names.csrf_refresh,
                        ];
                        out.extend_from_slice(all[i % all.len()].as_bytes());
                    }
                }
            }
            _ => out.push(b),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let mut u = Unstructured::new(data);
    let Ok(config_index) = u.choose_index(s.configs.len()) else {
        return;
    };
    let config = &s.configs[config_index];
    let names = config.auth.cookie_names().clone();
    let method = method_of(u.arbitrary().unwrap_or(0));
    let mut headers = HeaderMap::new();
    let mut authorization = Vec::new();
    for _ in 0..u.int_in_range(0..=2u8).unwrap_or(0) {
        let v = expand(&mut u, s, &names);
        add_header(&mut headers, "authorization", &v);
        authorization.push(v);
    }
    for _ in 0..u.int_in_range(0..=2u8).unwrap_or(0) {
        let v = expand(&mut u, s, &names);
        add_header(&mut headers, "cookie", &v);
    }
    for _ in 0..u.int_in_range(0..=2u8).unwrap_or(0) {
        let v = expand(&mut u, s, &names);
        if let Ok(v) = http::HeaderValue::from_bytes(&v) {
            headers.append(config.csrf_header.clone(), v);
        }
    }
    if u.arbitrary().unwrap_or(false) {
        add_header(&mut headers, "upgrade", b"websocket");
    }
    let query = expand(&mut u, s, &names);
    let query = String::from_utf8_lossy(&query).into_owned();

    let before = snapshot(&s.store);
    let by_headers = block_on(config.auth.authenticate(&method, &headers));
    let mut req = Request::builder().method(method.clone());
    req = match format!("/ws?{query}").parse::<http::Uri>() {
        Ok(uri) => req.uri(uri),
        Err(_) => req.uri("/ws"),
    };
    let mut req = req.body(()).expect("request");
    *req.headers_mut() = headers.clone();
    let (parts, ()) = req.into_parts();
    let by_parts = block_on(config.auth.authenticate_parts(&parts));
    assert_eq!(
        before,
        snapshot(&s.store),
        "authenticate wrote to the store"
    );

    for (result, query_counts) in [(by_headers, false), (by_parts, config.query)] {
        let claims = match result {
            Err(e) => {
                assert!(is_client_error(e.status()), "{e:?} answers {}", e.status());
                continue;
            }
            Ok(claims) => claims,
        };
        let Some((token, csrf, good)) = s.bank.iter().find(|(t, ..)| {
            peek_claims(t).is_some_and(|c| c.jti == claims.jti)
                && (headers
                    .iter()
                    .any(|(_, v)| v.as_bytes().windows(t.len()).any(|w| w == t.as_bytes()))
                    || (query_counts && parts.uri.query().is_some_and(|q| q.contains(t.as_str()))))
        }) else {
            panic!("accepted claims of no token the request carries: {claims:?}");
        };
        assert!(*good, "accepted a bad token: {token}");
        let bearer = authorization.iter().any(|v| {
            v.len() > 7 && v[..6].eq_ignore_ascii_case(b"bearer") && v.ends_with(token.as_bytes())
        });
        let in_query = query_counts
            && parts
                .uri
                .query()
                .is_some_and(|q| q.contains(token.as_str()));
        if config.csrf && !is_safe(&method) && !bearer && !in_query {
            let sent: Vec<_> = headers.get_all(&config.csrf_header).iter().collect();
            assert!(
                sent.len() == 1 && sent[0].as_bytes() == csrf.as_bytes(),
                "cookie request {method} accepted without the CSRF value: {sent:?}"
            );
        }
    }
});
