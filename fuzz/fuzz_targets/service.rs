//! The whole `AuthService` in front of a recording `service_fn`, with a bank of real
//! tokens issued for each run: valid, about to expire, expired, revoked (logout),
//! of a revoked subject, rotated away, current after a rotation, not fresh, scoped,
//! signed by an attacker. The fuzzer picks the route (access, refresh, fresh,
//! scoped, optional), the handler's behaviour, the method, which token goes in the
//! bearer header, the access cookie and the refresh cookie (each possibly mutated:
//! a character flipped, another payload, truncated, re-signed by an attacker), the
//! CSRF headers and a gRPC content type.
//!
//! Invariants:
//! - the handler only runs with a token that is good for the route (right type, not
//!   expired, revoked, rotated away, forged; fresh or scoped when required), or with
//!   an access token the layer minted from a good refresh cookie of the same family;
//!   without claims only on the optional route and without credentials;
//! - a cookie-authenticated request with an unsafe method reaches the handler only
//!   with exactly one CSRF header holding the token's value;
//! - `Set-Cookie` only when the handler ran and answered 2xx/3xx, and never a
//!   re-issued cookie after the handler revoked the session;
//! - a rejection is a client error (or gRPC's trailers-only 200), sets no cookie and
//!   leaves the store untouched, except reuse of a rotated-away refresh token, which
//!   revokes its family and is only reported for such a token.

#![no_main]

use std::sync::Arc;

use arbitrary::Unstructured;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tower_jwt_auth::{
    AuthLayer, JwtAuth, Location, ManualClock, MemoryStore, TokenPair, TokenPayload, TokenType,
};
use tower_jwt_auth_fuzz::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Protected,
    Refresh,
    Fresh,
    Admin,
    Optional,
}

struct Tok {
    token: String,
    claims: TokenPayload,
    /// Not expired, revoked, rotated away or forged (by construction).
    sound: bool,
}

struct World {
    auth: JwtAuth,
    store: Arc<MemoryStore>,
    bank: Vec<Tok>,
    /// The refresh token that was rotated away (reuse may only be reported for it).
    rotated_away: String,
}

fn world() -> World {
    let clock = ManualClock::new(NOW);
    let store = Arc::new(MemoryStore::default());
    let auth = hs_builder(&clock)
        .shared_revocation_store(store.clone())
        .build()
        .expect("config");
    let mut bank = Vec::new();
    let push_pair =
        |bank: &mut Vec<Tok>, pair: &TokenPair, access_sound: bool, refresh_sound: bool| {
            bank.push(Tok {
                token: pair.access_token.clone(),
                claims: pair.access_claims.clone(),
                sound: access_sound,
            });
            bank.push(Tok {
                token: pair.refresh_token.clone(),
                claims: pair.refresh_claims.clone(),
                sound: refresh_sound,
            });
        };
    // Expired access token (its refresh token is still good).
    clock.set(NOW - ACCESS_TTL - LEEWAY - 100);
    let expired = auth.token_pair("erin").expect("pair");
    push_pair(&mut bank, &expired, false, true);
    // Within the implicit refresh window (2 minutes left).
    clock.set(NOW - ACCESS_TTL + 120);
    let near = auth.token_pair("nina").expect("pair");
    push_pair(&mut bank, &near, true, true);
    clock.set(NOW);
    let good = auth
        .access_token("alice")
        .fresh(true)
        .scopes(["read"])
        .pair()
        .expect("pair");
    push_pair(&mut bank, &good, true, true);
    let admin = auth
        .access_token("root")
        .fresh(true)
        .scopes(["admin"])
        .pair()
        .expect("pair");
    push_pair(&mut bank, &admin, true, true);
    let revoked = auth.token_pair("carol").expect("pair");
    block_on(auth.revoke(&revoked.access_claims)).expect("revoke");
    push_pair(&mut bank, &revoked, false, false);
    let mallory = auth.token_pair("mallory").expect("pair");
    block_on(auth.revoke_subject("mallory")).expect("revoke subject");
    push_pair(&mut bank, &mallory, false, false);
    let rotated = auth.token_pair("yves").expect("pair");
    let refreshed = block_on(auth.refresh(&rotated.refresh_claims)).expect("rotation");
    // The first access token of a rotated family stays valid; its refresh token does not.
    push_pair(&mut bank, &rotated, true, false);
    let current = refreshed.refresh_token.clone().expect("rotated");
    bank.push(Tok {
        claims: refreshed.access_claims.clone(),
        token: refreshed.access_token.clone(),
        sound: true,
    });
    bank.push(Tok {
        claims: refreshed.refresh_claims.clone().expect("rotated"),
        token: current,
        sound: true,
    });
    let attacker = JwtAuth::builder()
        .hs256(ATTACKER_SECRET)
        .clock(clock.clone())
        .build()
        .expect("attacker");
    let forged = attacker.token_pair("alice").expect("pair");
    push_pair(&mut bank, &forged, false, false);
    World {
        auth,
        store,
        bank,
        rotated_away: rotated.refresh_token,
    }
}

/// A token of the bank, possibly mutated; `Some(i)` when it is bank token `i` as issued.
fn pick(u: &mut Unstructured<'_>, w: &World) -> Option<(String, Option<usize>)> {
    if !u.arbitrary::<bool>().unwrap_or(false) {
        return None;
    }
    let i = u.choose_index(w.bank.len()).unwrap_or(0);
    let token = &w.bank[i].token;
    let mutation: u8 = u.arbitrary().unwrap_or(0);
    let arg: u8 = u.arbitrary().unwrap_or(0);
    let mutated = match mutation % 8 {
        0..=2 => return Some((token.clone(), Some(i))),
        3 => flip_char(token, usize::from(arg) * 7 + usize::from(mutation), arg),
        4 => swap_payload(token, &w.bank[usize::from(arg) % w.bank.len()].token),
        5 => token[..token.len().saturating_sub(usize::from(arg % 8) + 1)].to_owned(),
        6 => {
            let (h, p, _) = segments(token)?;
            hs256_token(
                &URL_SAFE_NO_PAD.decode(h).ok()?,
                &URL_SAFE_NO_PAD.decode(p).ok()?,
                ATTACKER_SECRET,
            )
        }
        _ => format!("{token}{}", char::from(b'A' + arg % 26)),
    };
    // A mutation that lands on a real token (another payload that is its own) is it.
    let same = w.bank.iter().position(|t| t.token == mutated);
    Some((mutated, same))
}

fn good_for(t: &Tok, route: Route) -> bool {
    let ty = if route == Route::Refresh {
        TokenType::Refresh
    } else {
        TokenType::Access
    };
    t.sound
        && t.claims.token_type == ty
        && (route != Route::Fresh || t.claims.fresh)
        && (route != Route::Admin || t.claims.has_scope("admin"))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let w = world();
    let route = match u.int_in_range(0..=4u8).unwrap_or(0) {
        0 => Route::Protected,
        1 => Route::Refresh,
        2 => Route::Fresh,
        3 => Route::Admin,
        _ => Route::Optional,
    };
    let layer: AuthLayer = match route {
        Route::Protected => w.auth.layer(),
        Route::Refresh => w.auth.layer().refresh(),
        Route::Fresh => w.auth.layer().fresh(),
        Route::Admin => w.auth.layer().scopes(["admin"]),
        Route::Optional => w.auth.layer().optional(),
    };
    let handler = match u.int_in_range(0..=7u8).unwrap_or(0) {
        0 if route == Route::Refresh => Handler::Refresh,
        0 | 1 => Handler::Status(200),
        2 => Handler::Status(204),
        3 => Handler::Status(302),
        4 => Handler::Status(404),
        5 => Handler::Status(500),
        6 => Handler::RevokeOnly,
        _ => Handler::Logout,
    };
    let method = method_of(u.arbitrary().unwrap_or(0));
    let bearer = pick(&mut u, &w);
    let access_cookie = pick(&mut u, &w);
    let refresh_cookie = pick(&mut u, &w);
    let names = w.auth.cookie_names().clone();
    let mut headers = HeaderMap::new();
    if let Some((t, _)) = &bearer {
        add_header(
            &mut headers,
            "authorization",
            format!("Bearer {t}").as_bytes(),
        );
    }
    let mut pairs = Vec::new();
    if let Some((t, _)) = &access_cookie {
        pairs.push((names.access.as_str(), t.as_str()));
    }
    if let Some((t, _)) = &refresh_cookie {
        pairs.push((names.refresh.as_str(), t.as_str()));
    }
    if !pairs.is_empty() {
        add_cookie(&mut headers, &pairs);
    }
    let mut csrf_sent = Vec::new();
    for _ in 0..u.int_in_range(0..=2u8).unwrap_or(0) {
        let v = match u.int_in_range(0..=3u8).unwrap_or(0) {
            0 => String::new(),
            1 => "not-the-csrf-value".to_owned(),
            _ => {
                let i = u.choose_index(w.bank.len()).unwrap_or(0);
                w.bank[i].claims.csrf.clone().unwrap_or_default()
            }
        };
        if let Ok(hv) = HeaderValue::from_str(&v) {
            headers.append("x-csrf-token", hv);
            csrf_sent.push(v);
        }
    }
    let grpc = u.arbitrary::<bool>().unwrap_or(false);
    if grpc {
        add_header(&mut headers, "content-type", b"application/grpc");
    }

    let mut req = Request::builder()
        .method(method.clone())
        .uri("/r")
        .body(String::new())
        .expect("request");
    *req.headers_mut() = headers;
    let before = snapshot(&w.store);
    let (res, seen) = send(&w.auth, &layer, handler, req);
    let after = snapshot(&w.store);
    let cookies = set_cookies(&res);
    let status = res.status();

    let carried = |t: &str| {
        [&bearer, &access_cookie, &refresh_cookie]
            .iter()
            .any(|c| c.as_ref().is_some_and(|(s, i)| i.is_some() && s == t))
    };

    if !seen.ran {
        if grpc {
            assert!(
                status.as_u16() == 200 && res.headers().contains_key("grpc-status"),
                "gRPC rejection {status}"
            );
        } else {
            assert!(is_client_error(status), "rejection answers {status}");
        }
        assert!(cookies.is_empty(), "Set-Cookie on a rejection: {cookies:?}");
        if is_reuse(&res) {
            assert!(
                carried(&w.rotated_away),
                "reuse reported without the rotated-away token"
            );
        } else {
            assert_eq!(before, after, "a rejected request wrote to the store");
        }
        return;
    }

    // The handler ran: with what?
    match (&seen.claims, &seen.presented) {
        (None, _) => {
            assert_eq!(route, Route::Optional, "handler ran without claims");
            assert!(
                // gRPC requests never fall back to the refresh cookie.
                bearer.is_none() && access_cookie.is_none() && (grpc || refresh_cookie.is_none()),
                "credentials were sent but the handler ran without claims: {bearer:?} {access_cookie:?} {refresh_cookie:?}"
            );
        }
        (Some(claims), Some((location, presented))) => {
            match w.bank.iter().find(|t| t.token == *presented) {
                Some(t) => {
                    assert!(
                        carried(presented),
                        "the handler saw a token not sent as issued"
                    );
                    assert!(
                        good_for(t, route),
                        "{route:?} accepted a bad token: {claims:?}"
                    );
                    assert_eq!(claims, &t.claims, "the handler got other claims");
                }
                None => {
                    // Minted from the refresh cookie.
                    assert!(
                        matches!(route, Route::Protected | Route::Admin | Route::Optional),
                        "{route:?} ran with a token we never issued"
                    );
                    let r = refresh_cookie
                        .as_ref()
                        .and_then(|(_, i)| *i)
                        .map(|i| &w.bank[i])
                        .expect("a token we never issued reached the handler (forged?)");
                    assert!(
                        good_for(r, Route::Refresh),
                        "minted from a bad refresh cookie: {:?}",
                        r.claims
                    );
                    assert!(route != Route::Admin || r.claims.has_scope("admin"));
                    assert_eq!(claims.family, r.claims.family, "minted into another family");
                    assert_eq!(claims.sub, r.claims.sub);
                    assert_eq!(claims.token_type, TokenType::Access);
                    assert!(!claims.fresh, "a minted token is fresh");
                }
            }
            if *location == Location::Cookie && !is_safe(&method) {
                let want = claims.csrf.clone().unwrap_or_default();
                assert!(
                    csrf_sent.len() == 1 && csrf_sent[0] == want && !want.is_empty(),
                    "cookie {method} without the CSRF value reached the handler"
                );
            }
        }
        (Some(_), None) => panic!("claims without a presented token"),
    }

    let ok = status.is_success() || status.is_redirection();
    if !cookies.is_empty() {
        assert!(ok, "Set-Cookie on a {status} answer: {cookies:?}");
        if handler == Handler::RevokeOnly {
            assert!(
                !seen.revoked,
                "a cookie re-issued after the handler revoked the session: {cookies:?}"
            );
        }
    }
    if let Handler::Status(code) = handler {
        assert_eq!(status.as_u16(), code, "the handler's status was changed");
        assert_eq!(before, after, "a read-only request wrote to the store");
    }
});
