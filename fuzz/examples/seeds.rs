//! Writes the committed seed corpora (`fuzz/seeds/<target>/`) and `seeds/tokens.txt`
//! (the real tokens the `verify` target knows it signed). Tokens are issued at the
//! fixed instant the targets run at, so they stay valid.
//!
//! ```sh
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_jwt_auth::{Algorithm, JwtAuth, Key, ManualClock};
use tower_jwt_auth_fuzz::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("seed dir");
    fs::write(dir.join(name), bytes).expect("seed file");
}

fn payload_json(token: &str) -> Vec<u8> {
    let (_, p, _) = segments(token).expect("three segments");
    URL_SAFE_NO_PAD.decode(p).expect("base64url")
}

fn header_json(token: &str) -> Vec<u8> {
    let (h, _, _) = segments(token).expect("three segments");
    URL_SAFE_NO_PAD.decode(h).expect("base64url")
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for target in ["verify", "claims", "headers", "service", "session"] {
        let _ = fs::remove_dir_all(root.join(target));
    }
    let clock = ManualClock::new(NOW);
    let hs = hs_builder(&clock).build().expect("hs");
    let asym = asym_builder(&clock).build().expect("asym");
    let es = JwtAuth::builder()
        .signing_key(Key::pem_pair(Algorithm::ES256, EC_PRIVATE, EC_PUBLIC))
        .clock(clock.clone())
        .build()
        .expect("es");
    let ed = JwtAuth::builder()
        .signing_key(Key::pem_pair(Algorithm::EdDSA, ED_PRIVATE, ED_PUBLIC).kid(ED_KID))
        .clock(clock.clone())
        .build()
        .expect("ed");

    let hs_pair = hs
        .access_token("alice")
        .fresh(true)
        .scopes(["read", "write"])
        .claim("tenant", "acme")
        .pair()
        .expect("pair");
    let rs_pair = asym.token_pair("alice").expect("pair");
    let es_token = es.access_token("bob").issue().expect("es");
    let ed_token = ed.refresh_token("carol").issue().expect("ed");
    clock.set(NOW - 3600);
    let expired = hs.token_pair("erin").expect("pair");
    clock.set(NOW);
    // An AuthX-style token: PyJWT's header order, a float `exp`, no family.
    let authx = hs256_token(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        format!(
            r#"{{"sub":"dave","jti":"j1","type":"access","fresh":false,"csrf":"c1","iat":{NOW},"exp":{}.25}}"#,
            NOW + 600
        )
        .as_bytes(),
        SECRET,
    );

    let tokens = [
        (0u8, "hs-access", &hs_pair.access_token),
        (2, "hs-refresh", &hs_pair.refresh_token),
        (0, "hs-expired", &expired.access_token),
        (0, "authx", &authx),
        (1, "rs-access", &rs_pair.access_token),
        (3, "rs-refresh", &rs_pair.refresh_token),
        (1, "es-access", &es_token),
        (3, "ed-refresh", &ed_token),
    ];
    let list: Vec<&str> = tokens.iter().map(|(_, _, t)| t.as_str()).collect();
    fs::write(root.join("tokens.txt"), list.join("\n") + "\n").expect("tokens.txt");

    // verify: raw tokens, then header + payload for the harness to sign.
    let dir = root.join("verify");
    for (control, name, token) in &tokens {
        let mut seed = vec![*control];
        seed.extend_from_slice(token.as_bytes());
        write(&dir, name, &seed);
    }
    let signed = |control: u8, key: u8, header: &[u8], payload: &[u8]| {
        let mut seed = vec![control, key];
        seed.extend_from_slice(header);
        seed.push(0);
        seed.extend_from_slice(payload);
        seed
    };
    let hs_payload = payload_json(&hs_pair.access_token);
    let hs_header = header_json(&hs_pair.access_token);
    let ed_header = br#"{"alg":"EdDSA","kid":"ed-1"}"#;
    write(&dir, "signed-hs", &signed(4, 0, &hs_header, &hs_payload));
    write(
        &dir,
        "signed-hs-attacker",
        &signed(4, 1, &hs_header, &hs_payload),
    );
    write(&dir, "signed-ed", &signed(5, 0, ed_header, &hs_payload));
    write(
        &dir,
        "signed-confusion",
        &signed(5, 2, br#"{"alg":"HS256"}"#, &hs_payload),
    );
    write(
        &dir,
        "signed-hs-kid",
        &signed(
            4,
            0,
            br#"{"alg":"HS256","kid":"old","crit":["exp"]}"#,
            &hs_payload,
        ),
    );

    // claims: real payloads and edge cases.
    let dir = root.join("claims");
    for (_, name, token) in &tokens {
        write(&dir, name, &payload_json(token));
    }
    for (name, json) in [
        (
            "aud-list",
            r#"{"sub":"a","jti":"j","type":"access","iat":1,"exp":2.5,"aud":["x","y"],"nbf":0}"#,
        ),
        (
            "nested",
            r#"{"sub":"a","jti":"j","type":"refresh","iat":1,"exp":2,"fam":"f","x":{"y":[1,2.5e3,null,true]}}"#,
        ),
        (
            "escapes",
            r#"{"sub":"\u00e9\ud83d\ude00","jti":"j\"","type":"access","iat":1e3,"exp":1E3,"auth_time":0}"#,
        ),
    ] {
        write(&dir, name, json.as_bytes());
    }

    // headers: [config, method, n_auth, (len, bytes)*, n_cookie, (len, bytes)*,
    // n_csrf, (len, bytes)*, upgrade, query len, query]; 01 i = token i, 02 i = its
    // CSRF value, 03 i = cookie name i.
    let dir = root.join("headers");
    let value = |bytes: &[u8]| {
        let mut v = vec![bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    };
    let mut seed = vec![0, 0, 1];
    seed.extend(value(b"Bearer \x01\x00"));
    seed.extend([0, 0, 0, 0]);
    write(&dir, "bearer", &seed);
    let mut seed = vec![0, 3, 0, 1];
    seed.extend(value(b"a=b; \x03\x00=\x01\x00; \x03\x01=\x01\x02"));
    seed.push(1);
    seed.extend(value(b"\x02\x00"));
    seed.extend([0, 0]);
    write(&dir, "cookie-post-csrf", &seed);
    let mut seed = vec![1, 0, 0, 0, 0, 1];
    seed.extend(value(b"token=\x01\x01&x=1"));
    write(&dir, "websocket-query", &seed);
    let mut seed = vec![2, 5, 1];
    seed.extend(value(b"bearer  \x01\x04"));
    seed.push(2);
    seed.extend(value(b"\x03\x00=\x01\x01"));
    seed.extend(value(b"\x03\x00=\x01\x00"));
    seed.extend([2]);
    seed.extend(value(b"\x02\x01"));
    seed.extend(value(b"\x02\x01"));
    seed.extend([0, 0]);
    write(&dir, "repeated", &seed);

    // service: [route, handler, method, (present, index, mutation, arg) for the
    // bearer, the access cookie and the refresh cookie, n_csrf, (kind, index)*, grpc].
    // Bank: 0/1 expired access/its refresh, 2/3 near expiry, 4/5 good, 6/7 admin,
    // 8/9 revoked, 10/11 revoked subject, 12/13 rotated away, 14/15 current,
    // 16/17 attacker's.
    let dir = root.join("service");
    let tok = |i: u8| [1u8, i, 0, 0];
    let none = [0u8];
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut s = vec![0, 1, 0];
    s.extend(tok(4));
    s.extend(none);
    s.extend(none);
    s.extend([0, 0]);
    cases.push(("bearer-good", s));
    let mut s = vec![0, 1, 3];
    s.extend(none);
    s.extend(tok(0));
    s.extend(tok(1));
    s.extend([1, 2, 1, 0]);
    cases.push(("expired-cookie-fallback-post", s));
    let mut s = vec![0, 1, 0];
    s.extend(none);
    s.extend(none);
    s.extend(tok(13));
    s.extend([0, 0]);
    cases.push(("rotated-away-cookie", s));
    let mut s = vec![1, 0, 3];
    s.extend(none);
    s.extend(none);
    s.extend(tok(15));
    s.extend([1, 2, 15, 0]);
    cases.push(("refresh-cookie", s));
    let mut s = vec![0, 6, 0];
    s.extend(none);
    s.extend(tok(2));
    s.extend(none);
    s.extend([0, 0]);
    cases.push(("near-expiry-revoke", s));
    let mut s = vec![3, 1, 0];
    s.extend([1, 4, 3, 9]);
    s.extend(none);
    s.extend(none);
    s.extend([0, 1]);
    cases.push(("admin-flipped-grpc", s));
    for (name, bytes) in cases {
        write(&dir, name, &bytes);
    }

    // session: [config, op, args…]*; see the target for the operations.
    let dir = root.join("session");
    let browser = |route: u8, method: u8, csrf: u8| vec![1, route, method, csrf];
    let replay =
        |route: u8, method: u8, place: u8, pick: u8| vec![2, route, method, place, pick, 0, 0];
    let advance = |i: u8| vec![4, i];
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "rotated-away-refresh-cookie",
            vec![
                vec![0],
                browser(5, 3, 2),
                replay(0, 0, 2, 1),
                browser(0, 0, 0),
            ],
        ),
        (
            "implicit-refresh-then-logout",
            vec![
                vec![0],
                browser(0, 0, 0),
                advance(7),
                browser(0, 0, 0),
                browser(0, 3, 2),
                browser(6, 3, 2),
                replay(0, 0, 1, 0),
                browser(0, 0, 0),
            ],
        ),
        (
            "revoke-subject",
            vec![
                vec![0],
                vec![0, 1],
                vec![5, 1],
                replay(0, 0, 0, 2),
                advance(6),
                browser(0, 0, 0),
            ],
        ),
        (
            "grace",
            vec![
                vec![1],
                browser(5, 3, 2),
                replay(5, 3, 2, 1),
                advance(1),
                replay(5, 3, 2, 1),
            ],
        ),
        (
            "max-session",
            vec![
                vec![2],
                advance(9),
                browser(0, 0, 0),
                advance(10),
                browser(0, 0, 0),
                vec![6, 1],
            ],
        ),
        (
            "forged-and-bearer",
            vec![
                vec![0],
                vec![3, 0, 0, 0, 0, 0, 1, 0, 0, 0],
                vec![7, 0],
                vec![6, 1],
            ],
        ),
    ];
    for (name, ops) in cases {
        write(&dir, name, &ops.concat());
    }
    // Finding FZ1 (fixed): an access token minted from a refresh token just before its
    // family was revoked outlived the family's revocation.
    let ops: Vec<Vec<u8>> = vec![
        vec![0],
        advance(11), // refresh_ttl - 30 s: the access cookie expired, the refresh one not
        browser(0, 0, 0), // implicit refresh mints access token M from R0
        browser(8, 3, 2), // the refresh route revokes R0 (and its family)
        advance(3),  // past R0's exp + leeway; M still valid
        vec![0, 0],  // a new login, then its explicit refresh: a write that purges
        browser(5, 3, 2),
        replay(0, 0, 0, 2), // M as a bearer token: must be refused (family revoked)
    ];
    write(&dir, "minted-outlives-family-revocation", &ops.concat());
    println!("seeds written to {}", root.display());
}
