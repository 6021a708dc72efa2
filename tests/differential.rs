//! The fast verification path against `jsonwebtoken::decode` with the equivalent
//! `Validation`: over generated and mutated tokens, both accept exactly the same set.
//!
//! Rules this crate adds on purpose (documented in the README) are applied to the
//! reference: the `type` claim must be `access`, `iat` may not be in the future, a
//! `crit`/`zip`/`enc` header is refused, and a `kid` must name a configured key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proptest::prelude::*;
use sha2::Sha256;
use tower_jwt_auth::{AuthError, JwtAuth, TokenError, TokenPayload, TokenType};

const SECRET: &[u8] = b"differential testing secret, 32+ bytes";
const LEEWAY: u64 = 5;

const HEADERS: &[&str] = &[
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"typ":"JWT","alg":"HS256"}"#,
    r#"{"alg":"HS256"}"#,
    r#"{"alg":"HS384","typ":"JWT"}"#,
    r#"{"alg":"none","typ":"JWT"}"#,
    r#"{"alg":"hs256"}"#,
    r#"{"alg":"HS256 "}"#,
    r#"{"alg":["HS256"]}"#,
    r#"{"alg":null}"#,
    r#"{"typ":"JWT"}"#,
    r#"{"alg":"HS256","kid":"k1"}"#,
    r#"{"alg":"HS256","crit":["exp"]}"#,
    r#"{"alg":"HS256","jku":"https://attacker.example/jwks"}"#,
    r#"{"alg":"HS256","x5u":"https://attacker.example/x"}"#,
    r#"{"alg":"RS256"}"#,
    r#"{"alg":"HS256","alg":"none"}"#,
    r#"["HS256"]"#,
    r#"{"alg":"HS256","typ":"at+jwt","cty":"JWT"}"#,
];

#[derive(Debug, Clone)]
struct Claims {
    sub: Option<&'static str>,
    jti: bool,
    ty: Option<&'static str>,
    exp: Option<String>,
    nbf: Option<String>,
    iat: Option<String>,
    extra: Option<&'static str>,
}

fn time(now: u64) -> impl Strategy<Value = String> {
    let offsets = prop::sample::select(vec![-86_400i64, -3600, -60, -30, 30, 60, 3600, 86_400]);
    prop_oneof![
        offsets
            .clone()
            .prop_map(move |o| (now as i64 + o).to_string()),
        offsets.prop_map(move |o| format!("{}.75", now as i64 + o)),
        Just("\"1800000000\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1e400".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("[1]".to_owned()),
    ]
}

fn claims(now: u64) -> impl Strategy<Value = Claims> {
    (
        prop::option::weighted(0.9, prop::sample::select(vec!["alice", "bob"])),
        prop::bool::weighted(0.9),
        prop::option::weighted(
            0.9,
            prop::sample::select(vec!["access", "access", "refresh", "id", ""]),
        ),
        prop::option::weighted(0.9, time(now)),
        prop::option::weighted(0.3, time(now)),
        prop::option::weighted(0.8, time(now)),
        prop::option::weighted(
            0.3,
            prop::sample::select(vec![
                r#""tenant":"t1""#,
                r#""type":"refresh""#,
                r#""exp":1"#,
                r#""x":1,"x":2"#,
                r#""nested":{"a":[1,{"b":null}]}"#,
                r#""sub":1"#,
            ]),
        ),
    )
        .prop_map(|(sub, jti, ty, exp, nbf, iat, extra)| Claims {
            sub,
            jti,
            ty,
            exp,
            nbf,
            iat,
            extra,
        })
}

fn json(c: &Claims) -> String {
    let mut parts = Vec::new();
    if let Some(s) = c.sub {
        parts.push(format!(r#""sub":"{s}""#));
    }
    if c.jti {
        parts.push(r#""jti":"0b7c8a1e-0d6e-4c8e-9c1a-2f3b4d5e6f70""#.to_owned());
    }
    if let Some(t) = c.ty {
        parts.push(format!(r#""type":"{t}""#));
    }
    for (name, v) in [("exp", &c.exp), ("nbf", &c.nbf), ("iat", &c.iat)] {
        if let Some(v) = v {
            parts.push(format!(r#""{name}":{v}"#));
        }
    }
    if let Some(e) = c.extra {
        parts.push(e.to_owned());
    }
    format!("{{{}}}", parts.join(","))
}

fn sign(input: &str, secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    FlipByte(usize),
    Truncate(usize),
    AppendPadding,
    StandardAlphabet,
    ExtraSegment,
    WrongSecret,
    EmptySignature,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => Just(Mutation::None),
        1 => any::<usize>().prop_map(Mutation::FlipByte),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => Just(Mutation::AppendPadding),
        1 => Just(Mutation::StandardAlphabet),
        1 => Just(Mutation::ExtraSegment),
        1 => Just(Mutation::WrongSecret),
        1 => Just(Mutation::EmptySignature),
    ]
}

fn token(header: &str, claims: &Claims, m: &Mutation) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(json(claims))
    );
    let secret: &[u8] = if matches!(m, Mutation::WrongSecret) {
        b"another secret of at least 32 bytes!!"
    } else {
        SECRET
    };
    let mut t = format!("{input}.{}", sign(&input, secret));
    match m {
        Mutation::FlipByte(i) => {
            let mut bytes = t.into_bytes();
            let i = i % bytes.len();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            t = String::from_utf8(bytes).unwrap();
        }
        Mutation::Truncate(i) => t.truncate(i % t.len()),
        Mutation::AppendPadding => t.push('='),
        Mutation::StandardAlphabet => t = t.replace('-', "+").replace('_', "/"),
        Mutation::ExtraSegment => t.push_str(".AAAA"),
        Mutation::EmptySignature => t = format!("{input}."),
        Mutation::None | Mutation::WrongSecret => {}
    }
    t
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Class {
    Accept,
    /// Correctly signed and otherwise valid, but expired.
    Expired,
    Reject,
}

fn reference(token: &str, now: u64) -> Class {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = LEEWAY;
    v.validate_nbf = true;
    v.validate_aud = false;
    let key = DecodingKey::from_secret(SECRET);
    let header_refused = |t: &str| {
        jsonwebtoken::decode_header(t)
            .map(|h| h.crit.is_some() || h.kid.is_some() || h.zip.is_some() || h.enc.is_some())
            .unwrap_or(true)
    };
    let extra_rules = |c: &TokenPayload| c.token_type == TokenType::Access && c.iat <= now + LEEWAY;
    match jsonwebtoken::decode::<TokenPayload>(token, &key, &v) {
        Ok(d) if !header_refused(token) && extra_rules(&d.claims) => Class::Accept,
        Ok(_) => Class::Reject,
        Err(e) if *e.kind() == ErrorKind::ExpiredSignature => {
            // Expired by `jsonwebtoken`: does it pass every other rule?
            let mut lenient = v.clone();
            lenient.validate_exp = false;
            match jsonwebtoken::decode::<TokenPayload>(token, &key, &lenient) {
                Ok(d) if !header_refused(token) && extra_rules(&d.claims) => Class::Expired,
                _ => Class::Reject,
            }
        }
        Err(_) => Class::Reject,
    }
}

fn ours(auth: &JwtAuth, token: &str) -> Class {
    match auth.verify(token, TokenType::Access) {
        Ok(_) => Class::Accept,
        Err(AuthError::InvalidToken(TokenError::Expired)) => Class::Expired,
        Err(_) => Class::Reject,
    }
}

fn auth() -> JwtAuth {
    JwtAuth::builder()
        .hs256(SECRET)
        .leeway(std::time::Duration::from_secs(LEEWAY))
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_agrees_with_jsonwebtoken(
        header in prop::sample::select(HEADERS),
        claims in claims(jsonwebtoken::get_current_timestamp()),
        m in mutation(),
    ) {
        let auth = auth();
        let now = jsonwebtoken::get_current_timestamp();
        let t = token(header, &claims, &m);
        prop_assert_eq!(ours(&auth, &t), reference(&t, now), "token {} claims {}", t, json(&claims));
    }
}

#[test]
fn generated_cases_include_acceptances() {
    // Guard against a generator that only ever produces rejections.
    let auth = auth();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: Some("alice"),
        jti: true,
        ty: Some("access"),
        exp: Some(format!("{}.5", now + 60)),
        nbf: None,
        iat: Some(now.to_string()),
        extra: Some(r#""tenant":"t1""#),
    };
    for header in &HEADERS[..3] {
        let t = token(header, &claims, &Mutation::None);
        assert_eq!(ours(&auth, &t), Class::Accept);
        assert_eq!(reference(&t, now), Class::Accept);
    }
}

#[test]
fn issued_tokens_decode_with_jsonwebtoken() {
    // Issuing signs HMAC tokens itself (prepared key, header encoded once): the
    // result must be an ordinary JWS that `jsonwebtoken` reads back identically.
    let auth = auth();
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    let key = DecodingKey::from_secret(SECRET);
    let pair = auth
        .access_token("alice")
        .scopes(["read"])
        .claim(
            "tenant",
            serde_json::json!({"id": 7, "name": "ünïcödé \"quoted\""}),
        )
        .pair()
        .unwrap();
    let reissued = auth.reissue_access(&pair.access_claims).issue().unwrap();
    for (token, claims) in [
        (&pair.access_token, Some(&pair.access_claims)),
        (&pair.refresh_token, Some(&pair.refresh_claims)),
        (&reissued, None),
    ] {
        let decoded = jsonwebtoken::decode::<TokenPayload>(token, &key, &v).unwrap();
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        if let Some(claims) = claims {
            assert_eq!(&decoded.claims, claims);
        }
    }
    let again = jsonwebtoken::decode::<TokenPayload>(&reissued, &key, &v)
        .unwrap()
        .claims;
    let old = &pair.access_claims;
    assert_eq!(
        (&again.sub, &again.scopes, &again.extra, &again.csrf),
        (&old.sub, &old.scopes, &old.extra, &old.csrf)
    );
    assert!(!again.fresh);
    assert_ne!(again.jti, old.jti);
}
