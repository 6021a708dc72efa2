//! The attack catalogue of `SECURITY.md`, sections 1, 2, 4, 5, 6, 10 and 11, for tokens
//! carried in the `Authorization: Bearer` header.
//!
//! Each test is named after its row (`s1_14_…` is row 1.14). Every rejection is checked
//! for its status, its exact RFC 6750 `WWW-Authenticate` challenge, the `AuthError` the
//! layer put in the response extensions, that the inner service was **not** called (I1),
//! that no `Set-Cookie` was minted (I4) and that the challenge does not echo the token
//! (I7). Positive controls (`control_…` and the accepted cases inside the row tests)
//! make sure the suite cannot pass vacuously.
//!
//! Cookie transport, CSRF, implicit refresh and revocation are covered elsewhere.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::EncodingKey;
use serde_json::{Map, Value, json};
use tower::{ServiceExt, service_fn};
use tower_jwt_auth::{
    Algorithm, AuthError, AuthLayer, Authenticated, ConfigError, InvalidRequest, JwtAuth,
    JwtAuthBuilder, Key, Location, ManualClock, TokenError, TokenPayload, TokenType,
};
use tower_layer::Layer;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Fixed time of every test (a ManualClock); AuthX's float `exp` below is in its future.
const NOW: u64 = 1_795_000_000;
/// 40 bytes: a valid HS256 secret.
const SECRET: &[u8] = b"tower-jwt-auth security suite secret 40b";
/// 64 bytes: a valid HS512 secret.
const SECRET64: &[u8] = b"tower-jwt-auth security suite secret for HS512, sixty-four bytes";
const HDR: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const RSA_PUBLIC_PKCS1: &[u8] = include_bytes!("keys/rsa_public_pkcs1.pem");
const RSA_PUBLIC_DER: &[u8] = include_bytes!("keys/rsa_public.der");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");
const EC_PUBLIC_SSH: &[u8] = include_bytes!("keys/ec_public.ssh");
const ATTACKER_RSA_PRIVATE: &[u8] = include_bytes!("keys/attacker_rsa_private.pem");
const ATTACKER_JWK: &str = include_str!("keys/attacker_jwk.json");

/// A configured `JwtAuth` on a manual clock standing at [`NOW`].
struct Fx {
    auth: JwtAuth,
    clock: ManualClock,
}

impl Fx {
    /// HS256 with [`SECRET`], defaults otherwise.
    fn new() -> Self {
        Self::with(|b| b.hs256(SECRET))
    }

    /// A builder already holding the clock; `f` adds the keys and options.
    fn with(f: impl FnOnce(JwtAuthBuilder) -> JwtAuthBuilder) -> Self {
        let clock = ManualClock::new(NOW);
        let auth = f(JwtAuth::builder().clock(clock.clone())).build().unwrap();
        Self { auth, clock }
    }

    fn access(&self) -> String {
        self.auth.access_token("alice").issue().unwrap()
    }

    fn refresh(&self) -> String {
        self.auth.refresh_token("alice").issue().unwrap()
    }

    /// `Authorization: Bearer <token>` against the access route.
    async fn bearer(&self, token: &str) -> Outcome {
        self.send(&self.auth.layer(), &[format!("Bearer {token}").as_bytes()])
            .await
    }

    /// `Authorization: Bearer <token>` against the refresh route.
    async fn bearer_refresh(&self, token: &str) -> Outcome {
        self.send(
            &self.auth.layer().refresh(),
            &[format!("Bearer {token}").as_bytes()],
        )
        .await
    }

    /// Raw `Authorization` field values (zero, one or several) against `layer`.
    async fn send(&self, layer: &AuthLayer, authorization: &[&[u8]]) -> Outcome {
        call(layer, request("/protected", authorization)).await
    }
}

fn request(uri: &str, authorization: &[&[u8]]) -> Request<String> {
    let mut req = Request::builder().uri(uri).body(String::new()).unwrap();
    for v in authorization {
        req.headers_mut()
            .append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
    }
    req
}

/// What came back, and what the inner service saw.
#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    www: Option<String>,
    headers: HeaderMap,
    body: String,
    error: Option<AuthError>,
    calls: usize,
    claims: Option<TokenPayload>,
    presented: Option<(Location, String)>,
    /// The whole `Authorization` values sent, to check the answer does not echo them.
    sent: Vec<Vec<u8>>,
    elapsed: Duration,
}

type Seen = Option<(Option<TokenPayload>, Option<(Location, String)>)>;

/// Runs one request through `layer` in front of a recording inner service.
async fn call(layer: &AuthLayer, req: Request<String>) -> Outcome {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Seen>> = Arc::new(Mutex::new(None));
    let inner = {
        let (calls, seen) = (calls.clone(), seen.clone());
        service_fn(move |req: Request<String>| {
            let (calls, seen) = (calls.clone(), seen.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let authenticated = req.extensions().get::<Authenticated>();
                let claims = authenticated.map(|a| TokenPayload::clone(a.claims()));
                let presented =
                    authenticated.map(|a| (a.location(), a.token().as_str().to_owned()));
                *seen.lock().unwrap() = Some((claims, presented));
                Ok::<_, Infallible>(Response::new(String::from("inner")))
            }
        })
    };
    let sent = req
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let svc = Layer::layer(layer, inner);
    let start = Instant::now();
    let res = svc.oneshot(req).await.unwrap();
    let elapsed = start.elapsed();
    let (claims, presented) = seen.lock().unwrap().take().unwrap_or((None, None));
    Outcome {
        status: res.status(),
        www: res
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned()),
        headers: res.headers().clone(),
        error: res.extensions().get::<AuthError>().cloned(),
        body: res.into_body(),
        calls: calls.load(Ordering::SeqCst),
        claims,
        presented,
        sent,
        elapsed,
    }
}

// ---------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------

/// Accepted: 200, the inner service ran once and saw the claims.
#[track_caller]
fn assert_passed(o: &Outcome) -> TokenPayload {
    assert_eq!(o.status, StatusCode::OK, "expected acceptance: {o:?}");
    assert_eq!(o.calls, 1, "inner service must run exactly once");
    assert_eq!(o.body, "inner");
    assert!(o.www.is_none());
    o.claims
        .clone()
        .expect("TokenPayload missing from the request extensions")
}

/// I1, I4, I7: the layer answered by itself, minted nothing, echoed nothing.
#[track_caller]
fn assert_not_called(o: &Outcome) {
    assert_eq!(o.calls, 0, "inner service was called on a rejection: {o:?}");
    assert!(
        o.headers.get(SET_COOKIE).is_none(),
        "a rejection set a cookie"
    );
    assert!(
        o.body.is_empty(),
        "rejection body must be empty: {:?}",
        o.body
    );
    let www = o.www.as_deref().unwrap_or_default();
    for value in &o.sent {
        let text = String::from_utf8_lossy(value);
        for part in text.split(['.', ' ']).filter(|p| p.len() >= 12) {
            assert!(!www.contains(part), "challenge echoes the token: {www}");
        }
    }
    assert!(!www.contains(std::str::from_utf8(SECRET).unwrap()));
}

/// 401 with `Bearer error="invalid_token", error_description="…"`.
#[track_caller]
fn assert_invalid_token(o: &Outcome) -> TokenError {
    assert_eq!(o.status, StatusCode::UNAUTHORIZED, "expected 401: {o:?}");
    let Some(AuthError::InvalidToken(e)) = o.error.clone() else {
        panic!("expected AuthError::InvalidToken, got {o:?}");
    };
    assert_eq!(
        o.www.as_deref(),
        Some(
            format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                e.description()
            )
            .as_str()
        ),
    );
    assert_not_called(o);
    e
}

/// 401 invalid_token for exactly this reason.
#[track_caller]
fn assert_token_error(o: &Outcome, expected: TokenError) {
    let got = assert_invalid_token(o);
    assert_eq!(got, expected, "{o:?}");
}

/// 401 `Bearer`, no error attribute (no credentials, or another scheme).
#[track_caller]
fn assert_bare(o: &Outcome) {
    assert_eq!(o.status, StatusCode::UNAUTHORIZED, "expected 401: {o:?}");
    assert_eq!(o.www.as_deref(), Some("Bearer"), "{o:?}");
    assert_eq!(o.error, Some(AuthError::MissingCredentials));
    assert_not_called(o);
}

/// 400 `Bearer error="invalid_request", error_description="…"`.
#[track_caller]
fn assert_invalid_request(o: &Outcome) -> InvalidRequest {
    assert_eq!(o.status, StatusCode::BAD_REQUEST, "expected 400: {o:?}");
    let Some(AuthError::InvalidRequest(r)) = o.error.clone() else {
        panic!("expected AuthError::InvalidRequest, got {o:?}");
    };
    let description = AuthError::InvalidRequest(r).description();
    assert_eq!(
        o.www.as_deref(),
        Some(
            format!(r#"Bearer error="invalid_request", error_description="{description}""#)
                .as_str()
        ),
    );
    assert_not_called(o);
    r
}

/// Rejected by the layer: 400 invalid_request, 401 invalid_token or 401 bare.
#[track_caller]
fn assert_rejected(o: &Outcome) {
    match o.status {
        StatusCode::BAD_REQUEST => {
            assert_invalid_request(o);
        }
        StatusCode::UNAUTHORIZED if o.error == Some(AuthError::MissingCredentials) => {
            assert_bare(o)
        }
        StatusCode::UNAUTHORIZED => {
            assert_invalid_token(o);
        }
        _ => panic!("expected 400 or 401: {o:?}"),
    }
}

/// 401 invalid_token, or (tolerated) 400 invalid_request.
#[track_caller]
fn assert_401_or_400(o: &Outcome) {
    match o.status {
        StatusCode::BAD_REQUEST => {
            assert_invalid_request(o);
        }
        _ => {
            assert_invalid_token(o);
        }
    }
}

/// "robust": any non-5xx answer; an acceptance must reach the inner service with claims,
/// a rejection must be a proper one.
#[track_caller]
fn assert_robust(o: &Outcome) -> Option<TokenPayload> {
    assert!(!o.status.is_server_error(), "5xx: {o:?}");
    if o.status == StatusCode::OK {
        Some(assert_passed(o))
    } else {
        assert_rejected(o);
        None
    }
}

#[track_caller]
fn assert_fast(o: &Outcome) {
    // A liveness check, not a benchmark: debug builds on a shared machine.
    assert!(o.elapsed < Duration::from_secs(1), "took {:?}", o.elapsed);
}

// ---------------------------------------------------------------------------------------
// Hand-made tokens
// ---------------------------------------------------------------------------------------

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn hmac(alg: Algorithm, key: &[u8], input: &[u8]) -> Vec<u8> {
    match alg {
        Algorithm::HS384 => {
            let mut m = Hmac::<sha2::Sha384>::new_from_slice(key).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::HS512 => {
            let mut m = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// `signing_input` + "." + HMAC(alg, key) over it: signs any text, well-formed or not.
fn sign_input(alg: Algorithm, key: &[u8], signing_input: &str) -> String {
    format!(
        "{signing_input}.{}",
        b64(hmac(alg, key, signing_input.as_bytes()))
    )
}

/// A compact JWS of raw header and payload bytes, HMAC-signed.
fn forge_bytes(alg: Algorithm, key: &[u8], header: &[u8], payload: &[u8]) -> String {
    sign_input(alg, key, &format!("{}.{}", b64(header), b64(payload)))
}

/// HS256 with `key` over JSON texts (raw strings can hold duplicate keys).
fn forge(key: &[u8], header: &str, payload: &str) -> String {
    forge_bytes(Algorithm::HS256, key, header.as_bytes(), payload.as_bytes())
}

/// Validly signed with the layer's secret.
fn signed(header: &str, payload: &str) -> String {
    forge(SECRET, header, payload)
}

/// An asymmetric signature (RS*/PS*/ES*) with a PEM private key.
fn sign_asym(alg: Algorithm, private_pem: &[u8], header: &str, payload: &str) -> String {
    // Building a JwtAuth installs the crate's crypto provider for `jsonwebtoken`.
    let _ = JwtAuth::builder().hs256(SECRET).build().unwrap();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(private_pem).unwrap(),
    };
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{sig}")
}

/// The standard claims of an access token at [`NOW`], as a JSON map.
fn base_claims() -> Map<String, Value> {
    let Value::Object(m) = json!({
        "sub": "alice",
        "jti": uuid::Uuid::new_v4().to_string(),
        "type": "access",
        "fresh": false,
        "csrf": "",
        "iat": NOW,
        "exp": NOW + 900,
    }) else {
        unreachable!()
    };
    m
}

/// The standard claims, edited.
fn claims_with(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut m = base_claims();
    edit(&mut m);
    Value::Object(m).to_string()
}

fn good_claims() -> String {
    claims_with(|_| {})
}

/// A hand-made genuine access token.
fn good_token() -> String {
    signed(HDR, &good_claims())
}

fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let h = it.next().unwrap().to_owned();
    let p = it.next().unwrap().to_owned();
    let s = it.next().unwrap().to_owned();
    assert!(it.next().is_none());
    (h, p, s)
}

fn header_json(token: &str) -> Value {
    serde_json::from_slice(&unb64(&parts(token).0)).unwrap()
}

fn payload_json(token: &str) -> Value {
    serde_json::from_slice(&unb64(&parts(token).1)).unwrap()
}

/// `header` and `payload` JSON values re-encoded, keeping the signature of `token`.
fn with_original_signature(token: &str, header: &Value, payload: &Value) -> String {
    let sig = parts(token).2;
    format!(
        "{}.{}.{sig}",
        b64(header.to_string()),
        b64(payload.to_string())
    )
}

/// An RS256-verifying layer's fixture (key pair in tests/keys).
fn rsa_fx() -> Fx {
    Fx::with(|b| b.signing_key(Key::pem_pair(Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC)))
}

/// A verification-only RS256 fixture: the public key, nothing else.
fn rsa_public_only_fx() -> Fx {
    Fx::with(|b| b.verification_key(Key::public_pem(Algorithm::RS256, RSA_PUBLIC)))
}

fn ec_fx() -> Fx {
    Fx::with(|b| b.signing_key(Key::pem_pair(Algorithm::ES256, EC_PRIVATE, EC_PUBLIC)))
}

/// Every encoding of a public key the builder takes verifies the same token, on every
/// asymmetric algorithm; a key prepared for one algorithm verifies no other's token.
#[tokio::test]
async fn asymmetric_keys_verify_in_every_encoding_they_are_given() {
    let claims = good_claims();
    let cases: [(Algorithm, &[u8], &[u8]); 5] = [
        (Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC),
        (Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC_PKCS1),
        (Algorithm::PS256, RSA_PRIVATE, RSA_PUBLIC),
        (Algorithm::ES256, EC_PRIVATE, EC_PUBLIC),
        (
            Algorithm::EdDSA,
            include_bytes!("keys/ed25519_private.pem"),
            include_bytes!("keys/ed25519_public.pem"),
        ),
    ];
    for (alg, private, public) in cases {
        let fx = Fx::with(|b| b.verification_key(Key::public_pem(alg, public)));
        let header = format!(r#"{{"typ":"JWT","alg":"{alg:?}"}}"#);
        let token = sign_asym(alg, private, &header, &claims);
        assert_passed(&fx.bearer(&token).await);
        let (h, p, sig) = parts(&token);
        let mut tampered = unb64(&sig);
        tampered[0] ^= 1;
        assert_invalid_token(&fx.bearer(&format!("{h}.{p}.{}", b64(&tampered))).await);
    }
    // RS256 and PS256 share a key type, not a signature scheme.
    let fx = Fx::with(|b| b.verification_key(Key::public_pem(Algorithm::PS256, RSA_PUBLIC)));
    let rs256 = sign_asym(
        Algorithm::RS256,
        RSA_PRIVATE,
        r#"{"typ":"JWT","alg":"PS256"}"#,
        &claims,
    );
    assert_invalid_token(&fx.bearer(&rs256).await);
}

/// RSA keys under 2048 bits are refused (RFC 7518 §3.3): such a key is a build error,
/// never a key that verifies.
#[test]
fn rsa_keys_under_2048_bits_are_refused() {
    let built = JwtAuth::builder()
        .verification_key(Key::public_pem(
            Algorithm::RS256,
            include_bytes!("keys/rsa1024_public.pem"),
        ))
        .build();
    assert!(
        matches!(built, Err(ConfigError::InvalidKey(_))),
        "a 1024-bit RSA key was accepted"
    );
}

/// The halves of two different key pairs are a build error: such a pair would sign
/// tokens that nothing verifies, and `jwks()` would publish a key verifying none of them.
#[test]
fn a_signing_key_whose_halves_belong_to_different_pairs_is_refused() {
    let mismatched = [
        Key::pem_pair(Algorithm::RS256, ATTACKER_RSA_PRIVATE, RSA_PUBLIC),
        Key::pem_pair(
            Algorithm::ES256,
            include_bytes!("keys/attacker_ec_private.pem"),
            EC_PUBLIC,
        ),
    ];
    for key in mismatched {
        let built = JwtAuth::builder().signing_key(key).build();
        assert!(
            matches!(&built, Err(ConfigError::InvalidKey(m)) if m.contains("pair")),
            "a mismatched pair was accepted: {:?}",
            built.err()
        );
    }
    // Positive control: the matching halves build.
    let matching = Key::pem_pair(Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC);
    assert!(JwtAuth::builder().signing_key(matching).build().is_ok());
}

const NONE_SPELLINGS: [&str; 6] = ["none", "None", "NONE", "nOnE", "none ", ""];

// ---------------------------------------------------------------------------------------
// Positive controls
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn control_issued_access_token_reaches_inner_service_with_claims() {
    let fx = Fx::new();
    let token = fx.access();
    let o = fx.bearer(&token).await;
    let claims = assert_passed(&o);
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.token_type, TokenType::Access);
    assert_eq!(o.presented, Some((Location::Header, token.clone())));
    assert_eq!(claims.jti, payload_json(&token)["jti"]);
    assert_fast(&o);
}

#[tokio::test]
async fn control_handcrafted_token_accepted_and_jti_kept() {
    // The crafting helpers of this file make tokens the layer accepts, so the
    // rejections below are caused by the one thing each test changes.
    let fx = Fx::new();
    let payload = claims_with(|m| {
        m.insert("jti".into(), json!("kept-jti-0001"));
    });
    let claims = assert_passed(&fx.bearer(&signed(HDR, &payload)).await);
    assert_eq!(claims.jti, "kept-jti-0001");
    assert_eq!(claims.exp, NOW + 900);
}

#[tokio::test]
async fn control_authx_wire_format_accepted() {
    // AuthX 1.7: header {"alg":"HS256","typ":"JWT"}, float iat/exp, csrf "", fresh false,
    // custom claims at top level.
    let fx = Fx::new();
    let payload = r#"{"fresh":false,"iat":1794999000.123456,"jti":"5f0c7b56-7d4b-4c55-9b53-7cbd1f5c2a11","type":"access","sub":"alice","csrf":"","exp":1795627160.299861,"role":"admin","tenant":{"id":7,"name":"acme"},"flags":[1,2]}"#;
    let o = fx.bearer(&signed(HDR, payload)).await;
    let claims = assert_passed(&o);
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.jti, "5f0c7b56-7d4b-4c55-9b53-7cbd1f5c2a11");
    assert_eq!(claims.exp, 1_795_627_160);
    assert_eq!(claims.iat, 1_794_999_000);
    assert!(!claims.fresh);
    assert_eq!(claims.csrf.as_deref(), Some(""));
    assert_eq!(claims.claim::<String>("role").as_deref(), Some("admin"));
    assert_eq!(claims.extra["tenant"]["id"], 7);
    assert_eq!(claims.extra["flags"], json!([1, 2]));
}

#[tokio::test]
async fn control_jsonwebtoken_encoded_token_accepted() {
    let fx = Fx::new();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    let claims: Value = serde_json::from_str(&good_claims()).unwrap();
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert_passed(&fx.bearer(&token).await);
}

#[tokio::test]
async fn control_asymmetric_fixtures_accept_genuine_tokens() {
    let payload = good_claims();
    let rs = sign_asym(
        Algorithm::RS256,
        RSA_PRIVATE,
        r#"{"alg":"RS256"}"#,
        &payload,
    );
    assert_passed(&rsa_fx().bearer(&rs).await);
    assert_passed(&rsa_public_only_fx().bearer(&rs).await);
    let es = sign_asym(Algorithm::ES256, EC_PRIVATE, r#"{"alg":"ES256"}"#, &payload);
    assert_passed(&ec_fx().bearer(&es).await);
    let fx = rsa_fx();
    assert_passed(&fx.bearer(&fx.access()).await);
}

// ---------------------------------------------------------------------------------------
// 1. RFC 8725
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s1_1_alg_switch_hs384_with_same_secret() {
    let fx = Fx::new();
    let t = forge_bytes(
        Algorithm::HS384,
        SECRET,
        br#"{"alg":"HS384","typ":"JWT"}"#,
        good_claims().as_bytes(),
    );
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
}

#[tokio::test]
async fn s1_1_alg_switch_hs512_with_same_secret() {
    let fx = Fx::new();
    let t = forge_bytes(
        Algorithm::HS512,
        SECRET,
        br#"{"alg":"HS512","typ":"JWT"}"#,
        good_claims().as_bytes(),
    );
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
}

#[tokio::test]
async fn s1_1_asymmetric_algs_against_hmac_key() {
    let fx = Fx::new();
    let payload = good_claims();
    for (alg, name, pem) in [
        (Algorithm::RS256, "RS256", ATTACKER_RSA_PRIVATE),
        (Algorithm::PS256, "PS256", ATTACKER_RSA_PRIVATE),
        (Algorithm::ES256, "ES256", EC_PRIVATE),
    ] {
        let header = format!(r#"{{"alg":"{name}","typ":"JWT"}}"#);
        let t = sign_asym(alg, pem, &header, &payload);
        assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
        // The same header with an HMAC over it by the layer's own secret.
        let t = signed(&header, &payload);
        assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
    }
}

#[tokio::test]
async fn s1_1_alg_missing_null_array_lowercase_trailing_space() {
    let fx = Fx::new();
    for header in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":null,"typ":"JWT"}"#,
        r#"{"alg":["HS256"],"typ":"JWT"}"#,
        r#"{"alg":"hs256","typ":"JWT"}"#,
        r#"{"alg":"HS256 ","typ":"JWT"}"#,
        r#"{"alg":" HS256","typ":"JWT"}"#,
        r#"{"alg":"","typ":"JWT"}"#,
        r#"{"alg":256,"typ":"JWT"}"#,
        r#"{"alg":{"name":"HS256"},"typ":"JWT"}"#,
    ] {
        let o = fx.bearer(&signed(header, &good_claims())).await;
        assert_token_error(&o, TokenError::Malformed);
    }
}

#[tokio::test]
async fn s1_1_each_key_bound_to_one_algorithm() {
    // Two HMAC keys with kids: HS256 "a" and HS512 "b". A key is never used with the
    // other algorithm, even when the token names its kid.
    let fx = Fx::with(|b| {
        b.signing_key(Key::hs256(SECRET).kid("a"))
            .verification_key(Key::hmac(Algorithm::HS512, SECRET64).kid("b"))
    });
    let p = good_claims();
    let t = forge_bytes(
        Algorithm::HS512,
        SECRET,
        br#"{"alg":"HS512","kid":"a"}"#,
        p.as_bytes(),
    );
    assert_invalid_token(&fx.bearer(&t).await);
    let t = forge_bytes(
        Algorithm::HS256,
        SECRET64,
        br#"{"alg":"HS256","kid":"b"}"#,
        p.as_bytes(),
    );
    assert_invalid_token(&fx.bearer(&t).await);
    // Controls: each key with its own algorithm.
    let t = forge_bytes(
        Algorithm::HS512,
        SECRET64,
        br#"{"alg":"HS512","kid":"b"}"#,
        p.as_bytes(),
    );
    assert_passed(&fx.bearer(&t).await);
    let t = forge_bytes(
        Algorithm::HS256,
        SECRET,
        br#"{"alg":"HS256","kid":"a"}"#,
        p.as_bytes(),
    );
    assert_passed(&fx.bearer(&t).await);
}

/// jwt_tool `-X a` and variants: every spelling of none, signature empty, absent, or kept.
async fn alg_none_battery(fx: &Fx) {
    let genuine = fx.access();
    let (_, p, sig) = parts(&genuine);
    for spelling in NONE_SPELLINGS {
        let h = b64(format!(r#"{{"alg":"{spelling}","typ":"JWT"}}"#));
        for token in [
            format!("{h}.{p}."),
            format!("{h}.{p}"),
            format!("{h}.{p}.{sig}"),
            sign_input(Algorithm::HS256, SECRET, &format!("{h}.{p}")),
        ] {
            assert_401_or_400(&fx.bearer(&token).await);
        }
    }
    let h = b64(r#"{"typ":"JWT"}"#);
    assert_invalid_token(&fx.bearer(&format!("{h}.{p}.")).await);
    // The genuine token is untouched by the attempts (I3).
    assert_passed(&fx.bearer(&genuine).await);
}

#[tokio::test]
async fn s1_2_alg_none_all_spellings_with_and_without_signature() {
    alg_none_battery(&Fx::new()).await;
    alg_none_battery(&rsa_fx()).await;
}

#[tokio::test]
async fn s1_3_tampered_truncated_flipped_empty_and_lifted_signatures() {
    let fx = Fx::new();
    let genuine = fx.access();
    let (h, p, s) = parts(&genuine);

    // Tampered payload, original signature.
    let mut payload = payload_json(&genuine);
    payload["sub"] = json!("admin");
    let t = with_original_signature(&genuine, &header_json(&genuine), &payload);
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);

    // Tampered header, original signature.
    let t = format!("{}.{p}.{s}", b64(r#"{"alg":"HS256","typ":"JWT","x":1}"#));
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);

    // Truncated signatures (sig[:-4] as jwt_tool, and shorter).
    for cut in [1, 2, 4, 10, 42] {
        let t = format!("{h}.{p}.{}", &s[..s.len() - cut]);
        assert_invalid_token(&fx.bearer(&t).await);
    }

    // Every single bit flipped, one at a time, re-encoded canonically.
    let raw = unb64(&s);
    for i in 0..raw.len() * 8 {
        let mut flipped = raw.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        let t = format!("{h}.{p}.{}", b64(&flipped));
        assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    }

    // Empty signature.
    assert_invalid_token(&fx.bearer(&format!("{h}.{p}.")).await);

    // Signature lifted from another genuine token.
    let other = fx.access();
    let t = format!("{h}.{p}.{}", parts(&other).2);
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);

    // Extra signature bytes appended.
    let mut longer = raw.clone();
    longer.push(0);
    let t = format!("{h}.{p}.{}", b64(&longer));
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);

    assert_passed(&fx.bearer(&genuine).await);
}

#[test]
fn s1_4_weak_secrets_refused_at_build() {
    let weak = |key: Key| JwtAuth::builder().signing_key(key).build().err();
    for (alg, name, min) in [
        (Algorithm::HS256, "HS256", 32),
        (Algorithm::HS384, "HS384", 48),
        (Algorithm::HS512, "HS512", 64),
    ] {
        for len in [0, 1, 6, min / 2, min - 1] {
            assert_eq!(
                weak(Key::hmac(alg, vec![b'k'; len])),
                Some(ConfigError::WeakSecret {
                    algorithm: name,
                    min_len: min,
                    len
                }),
                "{name} with {len} bytes"
            );
        }
        assert_eq!(weak(Key::hmac(alg, vec![b'k'; min])), None);
    }
    // The `hs256` shortcut, the empty secret and "secret".
    let weak: [&[u8]; 3] = [b"", b"secret", &SECRET[..31]];
    for secret in weak {
        assert_eq!(
            JwtAuth::builder().hs256(secret).build().err(),
            Some(ConfigError::WeakSecret {
                algorithm: "HS256",
                min_len: 32,
                len: secret.len()
            })
        );
    }
    // A weak *verification* key is refused too.
    let err = JwtAuth::builder()
        .hs256(SECRET)
        .verification_key(Key::hmac(Algorithm::HS512, SECRET).kid("old"))
        .build()
        .err();
    assert!(
        matches!(
            err,
            Some(ConfigError::WeakSecret {
                algorithm: "HS512",
                min_len: 64,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn s1_4_tokens_signed_with_weak_secrets_rejected() {
    let fx = Fx::new();
    let p = good_claims();
    for key in [
        &b""[..],
        b"secret",
        &SECRET[..16],
        &SECRET[..SECRET.len() - 1],
    ] {
        let o = fx.bearer(&forge(key, HDR, &p)).await;
        assert_token_error(&o, TokenError::InvalidSignature);
    }
    // Secret with a byte appended.
    let mut longer = SECRET.to_vec();
    longer.push(b'!');
    assert_token_error(
        &fx.bearer(&forge(&longer, HDR, &p)).await,
        TokenError::InvalidSignature,
    );
    assert_passed(&fx.bearer(&forge(SECRET, HDR, &p)).await);
}

#[tokio::test]
async fn s1_5_non_utf8_bom_trailing_garbage_non_object_nan() {
    let fx = Fx::new();
    let p = good_claims();
    let hs = |h: &[u8], p: &[u8]| forge_bytes(Algorithm::HS256, SECRET, h, p);

    // Non-UTF-8 bytes in the payload, validly signed: an invalid byte, an overlong "/",
    // a UTF-8-encoded surrogate (the header: s1_5_non_utf8_in_ignored_header_member).
    let alice = p.find("alice").unwrap();
    let bad_sequences: [&[u8]; 3] = [&[0xff], &[0xc0, 0xaf], &[0xed, 0xa0, 0x80]];
    for bad in bad_sequences {
        let mut bytes = p.clone().into_bytes();
        bytes.splice(alice..alice + 1, bad.iter().copied());
        assert_invalid_token(&fx.bearer(&hs(HDR.as_bytes(), &bytes)).await);
    }
    // A lone surrogate escape: robust.
    let t = hs(HDR.as_bytes(), p.replacen("alice", "\\ud800", 1).as_bytes());
    assert_robust(&fx.bearer(&t).await);

    // A BOM is robust.
    let t = hs(HDR.as_bytes(), format!("\u{feff}{p}").as_bytes());
    assert_robust(&fx.bearer(&t).await);
    let t = hs(format!("\u{feff}{HDR}").as_bytes(), p.as_bytes());
    assert_robust(&fx.bearer(&t).await);

    // Trailing garbage, non-objects, NaN.
    for payload in [
        format!("{p}x"),
        format!("{p}{p}"),
        format!("{p},"),
        "[1,2]".to_owned(),
        "\"alice\"".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        String::new(),
        p.replacen(&format!("\"exp\":{}", NOW + 900), "\"exp\":NaN", 1),
        p.replacen(&format!("\"exp\":{}", NOW + 900), "\"exp\":Infinity", 1),
    ] {
        let t = hs(HDR.as_bytes(), payload.as_bytes());
        assert_invalid_token(&fx.bearer(&t).await);
    }
    for header in [
        format!("{HDR}x"),
        format!("{HDR}{HDR}"),
        "\"HS256\"".to_owned(),
        "null".to_owned(),
        "42".to_owned(),
    ] {
        let t = hs(header.as_bytes(), p.as_bytes());
        assert_invalid_token(&fx.bearer(&t).await);
    }
    assert_passed(&fx.bearer(&hs(HDR.as_bytes(), p.as_bytes())).await);
}

/// RFC 7515 §4 / RFC 7519 §7.2: the JOSE header is a JSON *object*. A JSON array whose
/// elements line up with the fields the layer reads must not be taken for one.
#[tokio::test]
async fn s1_5_header_must_be_a_json_object() {
    let fx = Fx::new();
    let p = good_claims();
    for header in [
        r#"["HS256"]"#,
        r#"["HS256",null]"#,
        r#"["HS256",null,null,null,null]"#,
        r#"["HS256","JWT"]"#,
    ] {
        let o = fx.bearer(&signed(header, &p)).await;
        assert_token_error(&o, TokenError::Malformed);
    }
    // Payload arrays are refused already (control for the payload side).
    let o = fx
        .bearer(&signed(
            HDR,
            r#"["alice","j","access",false,"",1795000000,null,1795000900]"#,
        ))
        .await;
    assert_invalid_token(&o);
}

/// RFC 8725 §3.7: non-UTF-8 JSON MUST be rejected, including in header members the
/// layer does not use (`typ`, `cty`, `x5t`, extensions), not only in those it reads.
#[tokio::test]
async fn s1_5_non_utf8_in_ignored_header_member() {
    let fx = Fx::new();
    let p = good_claims();
    let headers: [&[u8]; 4] = [
        b"{\"alg\":\"HS256\",\"typ\":\"\xff\xfe\"}",
        b"{\"alg\":\"HS256\",\"cty\":\"JWT\xc0\xaf\"}",
        b"{\"alg\":\"HS256\",\"x-ext\":[\"\xed\xa0\x80\"]}",
        b"{\"alg\":\"HS256\",\"\xff\":1}",
    ];
    for header in headers {
        let t = forge_bytes(Algorithm::HS256, SECRET, header, p.as_bytes());
        assert_invalid_token(&fx.bearer(&t).await);
    }
    // The same members in valid UTF-8 are accepted (control).
    let t = signed(r#"{"alg":"HS256","typ":"\u00ff","cty":"JWT"}"#, &p);
    assert_passed(&fx.bearer(&t).await);
}

#[tokio::test]
async fn s1_6_issuer_changed_or_missing_and_sub_tampered() {
    let fx = Fx::with(|b| b.hs256(SECRET).issuer("https://issuer.example"));
    let genuine = fx.access();
    assert_eq!(payload_json(&genuine)["iss"], "https://issuer.example");
    assert_passed(&fx.bearer(&genuine).await);

    for iss in [
        json!("https://evil.example"),
        json!("https://issuer.example/"),
        json!("HTTPS://ISSUER.EXAMPLE"),
        json!(""),
        json!(["https://issuer.example"]),
        json!(null),
        json!(1),
    ] {
        let p = claims_with(|m| {
            m.insert("iss".into(), iss.clone());
        });
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    // Missing iss, validly signed.
    let o = fx.bearer(&signed(HDR, &good_claims())).await;
    assert_token_error(&o, TokenError::InvalidIssuer);
    // Control: the right issuer, hand-made.
    let p = claims_with(|m| {
        m.insert("iss".into(), json!("https://issuer.example"));
    });
    assert_passed(&fx.bearer(&signed(HDR, &p)).await);

    // sub tampered, original signature.
    let mut payload = payload_json(&genuine);
    payload["sub"] = json!("bob");
    let t = with_original_signature(&genuine, &header_json(&genuine), &payload);
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
}

#[tokio::test]
async fn s1_7_audience_other_empty_missing_wrong_type() {
    let fx = Fx::with(|b| b.hs256(SECRET).audience("api"));
    assert_passed(&fx.bearer(&fx.access()).await);
    for aud in [
        Some(json!("billing")),
        Some(json!(["billing"])),
        Some(json!([])),
        Some(json!("")),
        Some(json!([""])),
        Some(json!("API")),
        Some(json!(null)),
        Some(json!(1)),
        Some(json!([1])),
        Some(json!({"aud":"api"})),
        None,
    ] {
        let p = claims_with(|m| {
            if let Some(aud) = aud.clone() {
                m.insert("aud".into(), aud);
            }
        });
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    let o = fx
        .bearer(&signed(
            HDR,
            &claims_with(|m| {
                m.insert("aud".into(), json!([]));
            }),
        ))
        .await;
    assert_token_error(&o, TokenError::InvalidAudience);
    // Controls: a string and an array that contains it.
    for aud in [json!("api"), json!(["billing", "api"])] {
        let p = claims_with(|m| {
            m.insert("aud".into(), aud.clone());
        });
        assert_passed(&fx.bearer(&signed(HDR, &p)).await);
    }
}

/// The kid battery of jwt_tool's playbook and RFC 8725 §3.10, each signed as the attack
/// expects (empty key, "1", the layer's secret), against a layer without and with kids.
async fn kid_battery(fx: &Fx) {
    let p = good_claims();
    let kids: [(&str, &[u8]); 15] = [
        ("", b""),
        ("../../../../../../dev/null", b""),
        ("../../dev/null", b""),
        ("/dev/null", b""),
        ("/invalid_path", b""),
        ("|sleep 3", b""),
        ("; sleep 3 #", b""),
        ("$(sleep 3)", b""),
        ("`sleep 3`", b""),
        ("x' UNION SELECT '1';--", b"1"),
        ("' OR '1'='1", b""),
        ("../../../../../../etc/passwd", b""),
        ("/proc/self/environ", b""),
        ("http://127.0.0.1:1/key", b""),
        ("key\u{0}", b""),
    ];
    for (kid, key) in kids {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string();
        for k in [key, SECRET] {
            let o = fx.bearer(&forge(k, &header, &p)).await;
            assert_invalid_token(&o);
            assert_fast(&o);
        }
    }
    // A kid that is not a string (`null` reads as "no kid", as in `jsonwebtoken`).
    let header = json!({"alg": "HS256", "kid": null}).to_string();
    assert_robust(&fx.bearer(&signed(&header, &p)).await);
    for kid in [json!(1), json!(["a"]), json!({"k": "a"})] {
        let header = json!({"alg": "HS256", "kid": kid}).to_string();
        let o = fx.bearer(&signed(&header, &p)).await;
        assert_invalid_token(&o);
    }
}

#[tokio::test]
async fn s1_8_kid_injection_battery() {
    kid_battery(&Fx::new()).await;
    // With kid-selected keys, an unknown kid is refused even with the right secret.
    let fx = Fx::with(|b| b.signing_key(Key::hs256(SECRET).kid("2026-11")));
    kid_battery(&fx).await;
    let p = good_claims();
    let o = fx
        .bearer(&signed(r#"{"alg":"HS256","kid":"2026-10"}"#, &p))
        .await;
    assert_token_error(&o, TokenError::UnsupportedAlgorithm);
    assert_passed(
        &fx.bearer(&signed(r#"{"alg":"HS256","kid":"2026-11"}"#, &p))
            .await,
    );
    assert_passed(&fx.bearer(&fx.access()).await);
}

#[tokio::test]
async fn s1_8_kid_unknown_on_unkeyed_layer() {
    // A genuine signature with a kid the configuration does not know.
    let fx = Fx::new();
    let o = fx
        .bearer(&signed(
            r#"{"alg":"HS256","typ":"JWT","kid":"unknown"}"#,
            &good_claims(),
        ))
        .await;
    assert_token_error(&o, TokenError::UnsupportedAlgorithm);
}

/// A loopback listener that records whether anyone connected to it.
struct Canary {
    listener: tokio::net::TcpListener,
    url: String,
}

impl Canary {
    async fn new() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        Self { listener, url }
    }

    /// Nobody connected within a short wait.
    async fn assert_untouched(&self) {
        let accepted =
            tokio::time::timeout(Duration::from_millis(200), self.listener.accept()).await;
        assert!(accepted.is_err(), "the layer fetched a URL from the token");
    }
}

/// Header URL/key parameters (`jku`, `x5u`, `jwk`, `x5c`) signed with the attacker's RSA
/// key; none is fetched or trusted.
async fn header_key_injection(fx: &Fx, canary: &Canary) {
    let p = good_claims();
    let jwk: Value = serde_json::from_str(ATTACKER_JWK).unwrap();
    let headers = [
        json!({"alg": "RS256", "typ": "JWT", "jku": canary.url, "kid": "jwt_tool"}),
        json!({"alg": "RS256", "typ": "JWT", "x5u": canary.url}),
        json!({"alg": "RS256", "typ": "JWT", "jwk": jwk, "kid": "jwt_tool"}),
        json!({"alg": "RS256", "typ": "JWT", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        json!({"alg": "RS256", "jku": canary.url, "x5u": canary.url, "jwk": jwk}),
    ];
    for header in headers {
        let t = sign_asym(
            Algorithm::RS256,
            ATTACKER_RSA_PRIVATE,
            &header.to_string(),
            &p,
        );
        let o = fx.bearer(&t).await;
        assert_invalid_token(&o);
        assert_fast(&o);
    }
    canary.assert_untouched().await;
}

#[tokio::test]
async fn s1_8_jku_x5u_jwk_x5c_never_fetched_or_trusted() {
    let canary = Canary::new().await;
    header_key_injection(&Fx::new(), &canary).await;
    header_key_injection(&rsa_fx(), &canary).await;
    header_key_injection(&rsa_public_only_fx(), &canary).await;
    // The same parameters on a genuinely signed token are ignored, never fetched.
    let fx = Fx::new();
    let header = json!({"alg": "HS256", "jku": canary.url, "x5u": canary.url}).to_string();
    assert_robust(&fx.bearer(&signed(&header, &good_claims())).await);
    canary.assert_untouched().await;
}

#[tokio::test]
async fn s1_9_refresh_as_access_and_access_as_refresh() {
    let fx = Fx::new();
    let o = fx.bearer(&fx.refresh()).await;
    assert_eq!(o.status, StatusCode::UNAUTHORIZED);
    assert_token_error(&o, TokenError::WrongType);
    let o = fx.bearer_refresh(&fx.access()).await;
    assert_token_error(&o, TokenError::WrongType);
    // Controls.
    assert_passed(&fx.bearer(&fx.access()).await);
    let claims = assert_passed(&fx.bearer_refresh(&fx.refresh()).await);
    assert_eq!(claims.token_type, TokenType::Refresh);
}

#[tokio::test]
async fn s1_10_type_removed_unknown_or_duplicated() {
    let fx = Fx::new();
    let variants = [
        claims_with(|m| {
            m.remove("type");
        }),
        claims_with(|m| {
            m.insert("type".into(), json!("id"));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!("Access"));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!("access "));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!(""));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!(null));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!(["access"]));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!(["access", "refresh"]));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!(0));
        }),
        format!(
            r#"{{"sub":"alice","jti":"j","type":"access","type":"refresh","iat":{NOW},"exp":{}}}"#,
            NOW + 900
        ),
        format!(
            r#"{{"sub":"alice","jti":"j","type":"refresh","type":"access","iat":{NOW},"exp":{}}}"#,
            NOW + 900
        ),
    ];
    for p in &variants {
        let t = signed(HDR, p);
        assert_invalid_token(&fx.bearer(&t).await);
        assert_invalid_token(&fx.bearer_refresh(&t).await);
    }
}

/// What the layer hands a handler prints its claims, never the token: a handler that
/// logs `{:?}` of it leaks no credential.
#[tokio::test]
async fn s1_11_token_never_printed_by_what_the_handler_gets() {
    let fx = Fx::new();
    let token = fx.access();
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let printed = printed.clone();
        service_fn(move |req: Request<String>| {
            let authenticated = req.extensions().get::<Authenticated>().cloned();
            let printed = printed.clone();
            async move {
                let a = authenticated.expect("the layer puts `Authenticated` in the extensions");
                let mut printed = printed.lock().unwrap();
                printed.push(format!("{a:?}"));
                printed.push(format!("{:?}", a.token()));
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    };
    let svc = Layer::layer(&fx.auth.layer(), inner);
    let res = svc
        .oneshot(request("/", &[format!("Bearer {token}").as_bytes()]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let printed = printed.lock().unwrap();
    assert_eq!(printed.len(), 2);
    for p in printed.iter() {
        assert!(p.contains("Header"), "the location is shown: {p}");
        assert!(!p.contains(&signature), "a token printed: {p}");
    }
    assert!(
        printed[0].contains("alice"),
        "the claims are shown: {}",
        printed[0]
    );
}

#[test]
fn s1_11_secret_never_printed() {
    let auth = JwtAuth::builder().hs256(SECRET).build().unwrap();
    let secret = std::str::from_utf8(SECRET).unwrap();
    assert!(!format!("{auth:?}").contains(secret));
    assert!(!format!("{:?}", Key::hs256(SECRET)).contains(secret));
    assert!(!format!("{:?}", auth.layer()).contains(secret));
    let weak = b"weak-secret";
    let err = JwtAuth::builder().hs256(weak).build().unwrap_err();
    assert!(!err.to_string().contains("weak-secret"));
    assert!(!format!("{err:?}").contains("weak-secret"));
    let pem = Key::pem_pair(Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC);
    assert!(!format!("{pem:?}").contains("PRIVATE"));
}

#[tokio::test]
async fn s1_11_secret_never_in_responses() {
    // assert_not_called checks every rejection below for the secret and the token.
    let fx = Fx::new();
    assert_invalid_token(&fx.bearer(&forge(b"secret", HDR, &good_claims())).await);
    assert_invalid_token(&fx.bearer(&fx.refresh()).await);
    assert_bare(&fx.send(&fx.auth.layer(), &[]).await);
}

#[tokio::test]
async fn s1_12_duplicate_json_members() {
    let fx = Fx::new();
    let (valid, expired) = (NOW + 900, NOW - 3600);
    let body = r#""sub":"alice","jti":"j","type":"access","iat":"#;

    // Duplicate exp: first valid, last expired.
    let p = format!(r#"{{{body}{NOW},"exp":{valid},"exp":{expired}}}"#);
    assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    // The other order: rejecting or last-wins, never first-wins.
    let p = format!(r#"{{{body}{NOW},"exp":{expired},"exp":{valid}}}"#);
    if let Some(claims) = assert_robust(&fx.bearer(&signed(HDR, &p)).await) {
        assert_eq!(claims.exp, valid, "first-wins parsing");
    }

    // Duplicate alg: HS256 then none, and none then HS256.
    for h in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"HS512"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
    ] {
        assert_invalid_token(&fx.bearer(&signed(h, &good_claims())).await);
    }

    // Duplicate kid, crit, sub, iat, nbf, custom claim.
    let keyed = Fx::with(|b| b.signing_key(Key::hs256(SECRET).kid("k1")));
    for h in [
        r#"{"alg":"HS256","kid":"k1","kid":"evil"}"#,
        r#"{"alg":"HS256","kid":"evil","kid":"k1"}"#,
    ] {
        assert_invalid_token(&keyed.bearer(&signed(h, &good_claims())).await);
    }
    for extra in [
        r#""sub":"mallory","#,
        r#""iat":1,"#,
        r#""nbf":1,"nbf":1,"#,
        r#""role":"user","role":"admin","#,
        r#""jti":"other","#,
    ] {
        let p = format!(r#"{{{extra}{body}{NOW},"exp":{valid}}}"#);
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }

    // Duplicate type key: first access, last refresh, on the access route.
    let p = format!(r#"{{{body}{NOW},"exp":{valid},"type":"refresh"}}"#);
    assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    // On the refresh route, never first-wins ("access" would be refused anyway).
    if let Some(claims) = assert_robust(&fx.bearer_refresh(&signed(HDR, &p)).await) {
        assert_eq!(claims.token_type, TokenType::Refresh);
    }
}

#[tokio::test]
async fn s1_13_cross_jwt_substitution() {
    let fx = Fx::with(|b| b.hs256(SECRET).audience("api"));
    // An ID token (OIDC) signed with the same key.
    let p = claims_with(|m| {
        m.insert("type".into(), json!("id"));
        m.insert("aud".into(), json!("api"));
    });
    assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    let p = claims_with(|m| {
        m.remove("type");
        m.insert("aud".into(), json!("api"));
        m.insert("nonce".into(), json!("n"));
    });
    assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    // A token minted for another service's audience, same key.
    let other = Fx::with(|b| b.hs256(SECRET).audience("billing"));
    let o = fx.bearer(&other.access()).await;
    assert_token_error(&o, TokenError::InvalidAudience);
    // Another service's token signed with its own key.
    let other = Fx::with(|b| b.hs256(SECRET64).audience("api"));
    let o = fx.bearer(&other.access()).await;
    assert_token_error(&o, TokenError::InvalidSignature);
    // A refresh token.
    assert_token_error(&fx.bearer(&fx.refresh()).await, TokenError::WrongType);
    assert_passed(&fx.bearer(&fx.access()).await);
}

#[tokio::test]
async fn s1_14_crit_header_rejected() {
    let fx = Fx::new();
    let p = good_claims();
    for h in [
        r#"{"alg":"HS256","typ":"JWT","crit":["x-ext"],"x-ext":true}"#,
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"HS256","crit":"x-ext","x-ext":true}"#,
        r#"{"alg":"HS256","crit":[]}"#,
    ] {
        let o = fx.bearer(&signed(h, &p)).await;
        assert_token_error(&o, TokenError::UnsupportedHeader);
    }
    // The same extension without crit is simply ignored.
    assert_passed(
        &fx.bearer(&signed(r#"{"alg":"HS256","typ":"JWT","x-ext":true}"#, &p))
            .await,
    );
}

/// Review findings: header members RFC 7515 does not allow are refused, not tolerated
/// (an `alg` object, a `null` `crit`, repeated members, a non-string `kid`).
#[tokio::test]
async fn review_header_quirks_are_refused() {
    let fx = Fx::new();
    let p = good_claims();
    for h in [
        r#"{"alg":{"HS256":null},"typ":"JWT"}"#,
        r#"{"alg":["HS256"],"typ":"JWT"}"#,
        r#"{"alg":"HS256","kid":null}"#,
        r#"{"alg":"HS256","kid":7}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#,
        r#"{"alg":"HS256","x":1,"x":2}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
    ] {
        let o = fx.bearer(&signed(h, &p)).await;
        assert_invalid_token(&o);
        assert_not_called(&o);
    }
    for h in [
        r#"{"alg":"HS256","crit":null}"#,
        r#"{"alg":"HS256","zip":null}"#,
        r#"{"alg":"HS256","enc":null}"#,
    ] {
        let o = fx.bearer(&signed(h, &p)).await;
        assert_token_error(&o, TokenError::UnsupportedHeader);
    }
    // Unknown members, once each, are still ignored.
    assert_passed(
        &fx.bearer(&signed(
            r#"{"typ":"JWT","x":null,"alg":"HS256","y":[1]}"#,
            &p,
        ))
        .await,
    );
}

/// Review F7 (RFC 7519 §4.1.3): with no audience configured, a token that names an
/// audience was meant for someone else and is refused.
#[tokio::test]
async fn review_audience_is_refused_when_none_is_configured() {
    let fx = Fx::new();
    for aud in [json!("billing"), json!(["billing", "api"]), json!([])] {
        let t = signed(
            HDR,
            &claims_with(|m| {
                m.insert("aud".into(), aud.clone());
            }),
        );
        let o = fx.bearer(&t).await;
        assert_token_error(&o, TokenError::InvalidAudience);
    }
    // A service that accepts several audiences says so.
    let fx = Fx::with(|b| b.hs256(SECRET).audiences(["api", "billing"]));
    let t = signed(
        HDR,
        &claims_with(|m| {
            m.insert("aud".into(), json!("billing"));
        }),
    );
    assert_passed(&fx.bearer(&t).await);
    let t = signed(
        HDR,
        &claims_with(|m| {
            m.insert("aud".into(), json!("other"));
        }),
    );
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidAudience);
}

/// A payload text whose base64url form contains `-` or `_`, so that the `+/` alphabet
/// gives a different string.
fn payload_with_url_chars() -> String {
    (0..64)
        .map(|n| {
            claims_with(|m| {
                m.insert(
                    "pad".into(),
                    json!("?>~".repeat(n % 7 + 1) + &"x".repeat(n)),
                );
            })
        })
        .find(|p| {
            let e = b64(p);
            e.contains('-') || e.contains('_')
        })
        .unwrap()
}

#[tokio::test]
async fn s1_15_strict_base64url() {
    let fx = Fx::new();
    let h = b64(HDR);

    // Padding on the payload and on the header, validly signed over the padded text.
    let p = (0..3)
        .map(|n| {
            claims_with(|m| {
                m.insert("pad".into(), json!("x".repeat(n)));
            })
        })
        .find(|p| p.len() % 3 != 0)
        .unwrap();
    let padded = URL_SAFE.encode(&p);
    assert!(padded.ends_with('='));
    let o = fx
        .bearer(&sign_input(
            Algorithm::HS256,
            SECRET,
            &format!("{h}.{padded}"),
        ))
        .await;
    assert_401_or_400(&o);
    let hdr = r#"{"alg":"HS256","typ":"JWT" }"#;
    let padded_h = URL_SAFE.encode(hdr);
    assert!(padded_h.ends_with('='));
    let o = fx
        .bearer(&sign_input(
            Algorithm::HS256,
            SECRET,
            &format!("{padded_h}.{}", b64(good_claims())),
        ))
        .await;
    assert_401_or_400(&o);

    // Padding on the signature of a genuine token.
    let genuine = fx.access();
    let o = fx.bearer(&format!("{genuine}=")).await;
    assert_401_or_400(&o);

    // Non-canonical last character of the signature: same bytes to a lenient decoder.
    let (gh, gp, gs) = parts(&genuine);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *gs.as_bytes().last().unwrap();
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    for bit in [1, 2] {
        let mut s = gs.clone().into_bytes();
        *s.last_mut().unwrap() = alphabet[idx ^ bit];
        let t = format!("{gh}.{gp}.{}", String::from_utf8(s).unwrap());
        assert_invalid_token(&fx.bearer(&t).await);
    }

    // The `+/` alphabet: payload re-encoded and validly signed; signature re-encoded.
    let p = payload_with_url_chars();
    let std_p = STANDARD_NO_PAD.encode(&p);
    assert_ne!(std_p, b64(&p));
    let o = fx
        .bearer(&sign_input(
            Algorithm::HS256,
            SECRET,
            &format!("{h}.{std_p}"),
        ))
        .await;
    assert_invalid_token(&o);
    let url_token = sign_input(Algorithm::HS256, SECRET, &format!("{h}.{}", b64(&p)));
    assert_passed(&fx.bearer(&url_token).await);
    let t = (0..200)
        .map(|_| good_token())
        .find(|t| {
            let s = parts(t).2;
            s.contains('-') || s.contains('_')
        })
        .unwrap();
    let (th, tp, ts) = parts(&t);
    let t = format!(
        "{th}.{tp}.{}",
        STANDARD_NO_PAD.encode(URL_SAFE_NO_PAD.decode(&ts).unwrap())
    );
    assert_invalid_token(&fx.bearer(&t).await);

    // Whitespace and percent-encoded dots.
    for t in [
        format!("{gh}.{gp} .{gs}"),
        format!("{gh}.{gp}.{gs} x"),
        format!("{gh}%2E{gp}%2E{gs}"),
        format!("{gh}.{gp}%2e{gs}"),
        format!("{gh}.\t{gp}.{gs}"),
    ] {
        assert_401_or_400(&fx.bearer(&t).await);
    }
    assert_passed(&fx.bearer(&genuine).await);
}

// ---------------------------------------------------------------------------------------
// 2. RFC 6750
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s2_1_bearer_syntax_errors() {
    let fx = Fx::new();
    let t = fx.access();
    let layer = fx.auth.layer();
    for v in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer   ".to_owned(),
        format!("Bearer\t{t}"),
        format!("Bearer {t} x"),
        format!("Bearer {t} {t}"),
        format!("Bearer {t},{t}"),
        format!("Bearer {t}, Bearer {t}"),
        format!("Bearer {t};"),
        format!("Bearer \"{t}\""),
    ] {
        let o = fx.send(&layer, &[v.as_bytes()]).await;
        assert_invalid_request(&o);
    }
    // Empty header: 400 or 401 (tolerated).
    assert_rejected(&fx.send(&layer, &[&b""[..]]).await);
    assert_passed(&fx.send(&layer, &[format!("Bearer {t}").as_bytes()]).await);
    // Once the token is in the verified-token cache, junk after it is still a 400.
    assert_passed(&fx.send(&layer, &[format!("Bearer {t}").as_bytes()]).await);
    for v in [format!("Bearer {t} x"), format!("Bearer {t} ")] {
        assert_invalid_request(&fx.send(&layer, &[v.as_bytes()]).await);
    }
}

#[tokio::test]
async fn s2_2_scheme_case_insensitive() {
    let fx = Fx::new();
    let t = fx.access();
    let forged = forge(b"secret", HDR, &good_claims());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let layer = fx.auth.layer();
        assert_robust(&fx.send(&layer, &[format!("{scheme} {t}").as_bytes()]).await);
        let o = fx
            .send(&layer, &[format!("{scheme} {forged}").as_bytes()])
            .await;
        assert_token_error(&o, TokenError::InvalidSignature);
    }
}

#[tokio::test]
async fn s2_3_multiple_spaces() {
    let fx = Fx::new();
    let t = fx.access();
    let forged = forge(b"secret", HDR, &good_claims());
    let layer = fx.auth.layer();
    for spaces in [2, 3, 10] {
        let sp = " ".repeat(spaces);
        assert_robust(
            &fx.send(&layer, &[format!("Bearer{sp}{t}").as_bytes()])
                .await,
        );
        let o = fx
            .send(&layer, &[format!("Bearer{sp}{forged}").as_bytes()])
            .await;
        assert_token_error(&o, TokenError::InvalidSignature);
    }
}

#[tokio::test]
async fn s2_4_repeated_authorization_header() {
    let fx = Fx::new();
    let layer = fx.auth.layer();
    let valid = format!("Bearer {}", fx.access());
    let forged = format!("Bearer {}", forge(b"secret", HDR, &good_claims()));
    let basic: &[u8] = b"Basic dXNlcjpwYXNz";
    let pairs: [[&[u8]; 2]; 6] = [
        [valid.as_bytes(), forged.as_bytes()],
        [forged.as_bytes(), valid.as_bytes()],
        [valid.as_bytes(), valid.as_bytes()],
        [valid.as_bytes(), basic],
        [basic, valid.as_bytes()],
        [valid.as_bytes(), b""],
    ];
    for pair in pairs {
        let o = fx.send(&layer, &pair).await;
        assert_eq!(
            assert_invalid_request(&o),
            InvalidRequest::RepeatedAuthorization
        );
    }
    let o = fx
        .send(
            &layer,
            &[valid.as_bytes(), valid.as_bytes(), valid.as_bytes()],
        )
        .await;
    assert_invalid_request(&o);
}

#[tokio::test]
async fn s2_5_query_parameter_is_not_a_transport() {
    let fx = Fx::new();
    let access = fx.access();
    let o = call(
        &fx.auth.layer(),
        request(&format!("/protected?access_token={access}"), &[]),
    )
    .await;
    assert_bare(&o);
    let refresh = fx.refresh();
    let mut req = request(&format!("/refresh?refresh_token={refresh}"), &[]);
    *req.method_mut() = http::Method::POST;
    assert_bare(&call(&fx.auth.layer().refresh(), req).await);
}

#[tokio::test]
async fn s2_6_form_body_is_not_a_transport() {
    let fx = Fx::new();
    let mut req = request("/protected", &[]);
    *req.method_mut() = http::Method::POST;
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    *req.body_mut() = format!("access_token={}", fx.access());
    assert_bare(&call(&fx.auth.layer(), req).await);
}

/// Not an `http_body::Body` at all: the layer can only pass it along.
#[derive(Clone, Debug)]
struct NotABody;

#[tokio::test]
async fn s2_6_layer_never_reads_the_body() {
    // The service is generic over any request body type, so it cannot buffer a body to
    // look for a token (nor read one on the refresh route, 10.13).
    let fx = Fx::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let inner = service_fn(move |_req: Request<NotABody>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    for layer in [fx.auth.layer(), fx.auth.layer().refresh()] {
        let svc = Layer::layer(&layer, inner.clone());
        let res = svc
            .oneshot(Request::post("/refresh").body(NotABody).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let svc = Layer::layer(&fx.auth.layer().refresh(), inner);
    let req = Request::post("/refresh")
        .header(AUTHORIZATION, format!("Bearer {}", fx.refresh()))
        .body(NotABody)
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn s2_7_other_schemes() {
    let fx = Fx::new();
    let t = fx.access();
    let layer = fx.auth.layer();
    for v in [
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Token {t}"),
        format!("JWT {t}"),
        format!("Digest {t}"),
        format!("Bearerx {t}"),
        "Negotiate abc".to_owned(),
    ] {
        assert_bare(&fx.send(&layer, &[v.as_bytes()]).await);
    }
    // A bare token without a scheme: 400 (401 tolerated).
    let o = fx.send(&layer, &[t.as_bytes()]).await;
    assert_rejected(&o);
}

#[tokio::test]
async fn s2_8_challenges_missing_vs_invalid() {
    let fx = Fx::new();
    let layer = fx.auth.layer();
    assert_bare(&fx.send(&layer, &[]).await);
    assert_invalid_token(&fx.bearer(&forge(b"secret", HDR, &good_claims())).await);
    // With a realm: it comes first, and there is still no error code without credentials.
    let fx = Fx::with(|b| b.hs256(SECRET).realm("api"));
    let o = fx.send(&fx.auth.layer(), &[]).await;
    assert_eq!(o.status, StatusCode::UNAUTHORIZED);
    assert_eq!(o.www.as_deref(), Some(r#"Bearer realm="api""#));
    assert_not_called(&o);
    let o = fx.bearer(&fx.refresh()).await;
    assert_eq!(o.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        o.www.as_deref(),
        Some(&*format!(
            r#"Bearer realm="api", error="invalid_token", error_description="{}""#,
            TokenError::WrongType.description()
        ))
    );
    assert_not_called(&o);
}

#[tokio::test]
async fn s2_9_error_codes_map_to_statuses() {
    let fx = Fx::new();
    // invalid_request → 400.
    let v = format!("Bearer {} x", fx.access());
    assert_invalid_request(&fx.send(&fx.auth.layer(), &[v.as_bytes()]).await);
    // invalid_token → 401 (expired, malformed, bad signature).
    let t = fx.access();
    fx.clock.advance(3600);
    assert_token_error(&fx.bearer(&t).await, TokenError::Expired);
    assert_token_error(&fx.bearer("a.b.c").await, TokenError::Malformed);
    // insufficient_scope → 403.
    let token = fx
        .auth
        .access_token("alice")
        .scopes(["read"])
        .issue()
        .unwrap();
    let o = fx
        .send(
            &fx.auth.layer().scopes(["admin"]),
            &[format!("Bearer {token}").as_bytes()],
        )
        .await;
    assert_eq!(o.status, StatusCode::FORBIDDEN);
    assert_eq!(
        o.www.as_deref(),
        Some(&*format!(
            r#"Bearer error="insufficient_scope", error_description="{}""#,
            AuthError::InsufficientScope.description()
        ))
    );
    assert_not_called(&o);
    let o = fx
        .send(
            &fx.auth.layer().scopes(["read"]),
            &[format!("Bearer {token}").as_bytes()],
        )
        .await;
    assert_passed(&o);
}

#[tokio::test]
async fn s2_10_non_utf8_header_bytes() {
    let fx = Fx::new();
    let layer = fx.auth.layer();
    let t = fx.access();
    let mut with_ff = format!("Bearer {t}").into_bytes();
    with_ff.push(0xff);
    let mut inside = format!("Bearer {t}").into_bytes();
    inside[20] = 0xff;
    for v in [
        b"Bearer \xff\xfe\xfd".to_vec(),
        with_ff,
        inside,
        b"Bearer \x80".to_vec(),
        format!("Bearer {t}\u{e9}").into_bytes(),
    ] {
        let o = fx.send(&layer, &[v.as_slice()]).await;
        assert_invalid_request(&o);
    }
    // NUL and other CTLs cannot even be put in a HeaderValue (hyper answers 400 on the
    // wire; see s11_15).
    for ctl in [0u8, 1, 0x1f, 0x7f, b'\n', b'\r'] {
        let mut v = format!("Bearer {t}").into_bytes();
        v.push(ctl);
        assert!(HeaderValue::from_bytes(&v).is_err());
    }
}

#[tokio::test]
async fn s2_13_short_lived_tokens_by_default() {
    let fx = Fx::new();
    let pair = fx.auth.token_pair("alice").unwrap();
    let a = &pair.access_claims;
    assert!(a.exp - a.iat <= 15 * 60, "access TTL {}", a.exp - a.iat);
    let r = &pair.refresh_claims;
    assert!(
        r.exp - r.iat <= 30 * 24 * 3600,
        "refresh TTL {}",
        r.exp - r.iat
    );
    // Still valid just before its exp, rejected after.
    fx.clock.advance(a.exp - a.iat);
    assert_passed(&fx.bearer(&pair.access_token).await);
    fx.clock.advance(60);
    assert_token_error(&fx.bearer(&pair.access_token).await, TokenError::Expired);
}

// ---------------------------------------------------------------------------------------
// 4. jwt_tool
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s4_1_jwt_tool_alg_none() {
    let fx = Fx::new();
    let genuine = fx.access();
    let p = parts(&genuine).1;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let mut h = header_json(&genuine);
        h["alg"] = json!(alg);
        let t = format!("{}.{p}.", b64(h.to_string()));
        let o = fx.bearer(&t).await;
        assert_invalid_token(&o);
    }
}

#[tokio::test]
async fn s4_2_jwt_tool_null_signature() {
    let fx = Fx::new();
    let genuine = fx.access();
    let (h, p, _) = parts(&genuine);
    assert_invalid_token(&fx.bearer(&format!("{h}.{p}.")).await);
    assert_401_or_400(&fx.bearer(&format!("{h}.{p}")).await);
}

#[tokio::test]
async fn s4_3_jwt_tool_blank_password() {
    let fx = Fx::new();
    let genuine = fx.access();
    let (h, p, _) = parts(&genuine);
    let t = sign_input(Algorithm::HS256, b"", &format!("{h}.{p}"));
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
}

#[tokio::test]
async fn s4_4_key_confusion_rsa_public_pem_as_hmac_secret() {
    // RS256 layer; HS256 token whose HMAC key is the public PEM file text as read.
    let payload = good_claims();
    for fx in [rsa_public_only_fx(), rsa_fx()] {
        let t = forge(RSA_PUBLIC, r#"{"alg":"HS256","typ":"JWT"}"#, &payload);
        let o = fx.bearer(&t).await;
        assert_token_error(&o, TokenError::UnsupportedAlgorithm);
    }
    // EC: the same with the P-256 public key.
    let t = forge(EC_PUBLIC, HDR, &payload);
    assert_token_error(&ec_fx().bearer(&t).await, TokenError::UnsupportedAlgorithm);
    // Mixed configuration (an HMAC key and an RSA key): the public key is not the secret.
    let fx = Fx::with(|b| {
        b.hs256(SECRET)
            .verification_key(Key::public_pem(Algorithm::RS256, RSA_PUBLIC))
    });
    let t = forge(RSA_PUBLIC, HDR, &payload);
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    let rs = sign_asym(
        Algorithm::RS256,
        RSA_PRIVATE,
        r#"{"alg":"RS256"}"#,
        &payload,
    );
    assert_passed(&fx.bearer(&rs).await);
}

#[tokio::test]
async fn s4_5_jwt_tool_inject_inline_jwk() {
    let jwk: Value = serde_json::from_str(ATTACKER_JWK).unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "jwt_tool", "jwk": jwk}).to_string();
    let t = sign_asym(
        Algorithm::RS256,
        ATTACKER_RSA_PRIVATE,
        &header,
        &good_claims(),
    );
    assert_token_error(
        &Fx::new().bearer(&t).await,
        TokenError::UnsupportedAlgorithm,
    );
    assert_invalid_token(&rsa_public_only_fx().bearer(&t).await);
    // Without the kid (the layer's key has none): the signature is the attacker's.
    let header = json!({"alg": "RS256", "typ": "JWT", "jwk": jwk}).to_string();
    let t = sign_asym(
        Algorithm::RS256,
        ATTACKER_RSA_PRIVATE,
        &header,
        &good_claims(),
    );
    assert_token_error(
        &rsa_public_only_fx().bearer(&t).await,
        TokenError::InvalidSignature,
    );
}

#[tokio::test]
async fn s4_6_jwt_tool_spoof_jwks_not_fetched() {
    let canary = Canary::new().await;
    for fx in [Fx::new(), rsa_public_only_fx()] {
        let header = json!({"alg": "RS256", "typ": "JWT", "jku": canary.url}).to_string();
        let t = sign_asym(
            Algorithm::RS256,
            ATTACKER_RSA_PRIVATE,
            &header,
            &good_claims(),
        );
        let o = fx.bearer(&t).await;
        assert_invalid_token(&o);
        assert_fast(&o);
    }
    canary.assert_untouched().await;
}

#[tokio::test]
async fn s4_7_kid_injection_playbook() {
    // The exact jwt_tool playbook: empty key for the path probes and the RCE probe,
    // "1" for the SQL probe; answered fast (liveness, no sleep executed).
    let fx = Fx::new();
    let p = good_claims();
    let playbook: [(&str, &[u8]); 7] = [
        ("", b""),
        ("../../../../../../dev/null", b""),
        ("/dev/null", b""),
        ("/invalid_path", b""),
        ("|sleep 10", b""),
        ("|sleep 3", b""),
        ("x' UNION SELECT '1';--", b"1"),
    ];
    for (kid, key) in playbook {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string();
        let o = fx.bearer(&forge(key, &header, &p)).await;
        assert_invalid_token(&o);
        assert_fast(&o);
    }
}

#[tokio::test]
async fn s4_8_x5u_not_fetched() {
    let canary = Canary::new().await;
    let fx = Fx::new();
    let genuine = fx.access();
    // -M cc style: x5u injected, original signature kept.
    let mut h = header_json(&genuine);
    h["x5u"] = json!(canary.url);
    let t = with_original_signature(&genuine, &h, &payload_json(&genuine));
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    // And RS256-signed by the attacker.
    let header = json!({"alg": "RS256", "x5u": canary.url}).to_string();
    let t = sign_asym(
        Algorithm::RS256,
        ATTACKER_RSA_PRIVATE,
        &header,
        &good_claims(),
    );
    assert_invalid_token(&rsa_public_only_fx().bearer(&t).await);
    canary.assert_untouched().await;
}

#[tokio::test]
async fn s4_9_psychic_signature_es256() {
    let payload = good_claims();
    let h = b64(r#"{"alg":"ES256","typ":"JWT"}"#);
    let p = b64(&payload);
    let fx = ec_fx();
    for sig in [
        b64([0u8; 64]),
        "MAYCAQACAQA".to_owned(),
        b64([0u8; 8]),
        String::new(),
    ] {
        let t = format!("{h}.{p}.{sig}");
        assert_invalid_token(&fx.bearer(&t).await);
        assert_invalid_token(&Fx::new().bearer(&t).await);
    }
    // r = 1, s = 1 (another degenerate signature).
    let mut ones = [0u8; 64];
    ones[31] = 1;
    ones[63] = 1;
    assert_token_error(
        &fx.bearer(&format!("{h}.{p}.{}", b64(ones))).await,
        TokenError::InvalidSignature,
    );
}

#[tokio::test]
async fn s4_10_playbook_scan() {
    let fx = Fx::new();
    let genuine = fx.access();
    let (h, p, s) = parts(&genuine);
    // Broken signature, then the original again.
    assert_invalid_token(&fx.bearer(&format!("{h}.{p}.{}", &s[..s.len() - 4])).await);
    assert_passed(&fx.bearer(&genuine).await);
    // Claim processing order: each claim replaced by a marker, original signature.
    let payload = payload_json(&genuine);
    for key in payload.as_object().unwrap().keys() {
        let mut edited = payload.clone();
        edited[key] = json!("jwt_tool_marker");
        let t = with_original_signature(&genuine, &header_json(&genuine), &edited);
        assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    }
    // Crack / alternative accepted secret: common secrets.
    for secret in [
        "",
        "secret",
        "password",
        "123456",
        "your-256-bit-secret",
        "changeme",
        "jwt",
        "key",
        "admin",
        "test",
        "qwerty",
        "secretkey",
        "jwt_secret",
        "s3cr3t",
        "supersecret",
        "Secret",
        "SECRET",
        "default",
        "private",
        "tower-jwt-auth",
    ] {
        let t = sign_input(Algorithm::HS256, secret.as_bytes(), &format!("{h}.{p}"));
        assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    }
    // Blank password, null signature, alg none.
    assert_invalid_token(
        &fx.bearer(&sign_input(Algorithm::HS256, b"", &format!("{h}.{p}")))
            .await,
    );
    assert_invalid_token(&fx.bearer(&format!("{h}.{p}.")).await);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = format!("{}.{p}.", b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)));
        assert_invalid_token(&fx.bearer(&t).await);
    }
    // Injected JWKS and kid battery are s4_5 / s4_7. The original stays valid (I3).
    assert_passed(&fx.bearer(&genuine).await);
}

#[tokio::test]
async fn s4_11_prescan_original_survives() {
    let fx = Fx::new();
    let genuine = fx.access();
    let (h, p, s) = parts(&genuine);
    assert_passed(&fx.bearer(&genuine).await);
    assert_bare(&fx.send(&fx.auth.layer(), &[]).await);
    assert_invalid_token(&fx.bearer(&format!("{h}.{p}.{}", &s[..s.len() - 4])).await);
    // Same jti, forged: must not revoke the genuine token (I3).
    let mut payload = payload_json(&genuine);
    payload["sub"] = json!("mallory");
    let forged = with_original_signature(&genuine, &header_json(&genuine), &payload);
    assert_invalid_token(&fx.bearer(&forged).await);
    let claims = assert_passed(&fx.bearer(&genuine).await);
    assert_eq!(claims.sub, "alice");
}

const FORCED: [&str; 5] = ["null", "true", "false", "\"jwt_tool\"", "0"];

#[tokio::test]
async fn s4_12_forced_errors() {
    let fx = Fx::new();
    let genuine = fx.access();
    let header = header_json(&genuine);
    let payload = payload_json(&genuine);
    for value in FORCED {
        let v: Value = serde_json::from_str(value).unwrap();
        // Each header claim in turn, original signature.
        for key in header.as_object().unwrap().keys() {
            let mut h = header.clone();
            h[key] = v.clone();
            let t = with_original_signature(&genuine, &h, &payload);
            assert_invalid_token(&fx.bearer(&t).await);
        }
        // Each payload claim in turn, original signature, then validly re-signed.
        for key in payload.as_object().unwrap().keys() {
            let mut p = payload.clone();
            p[key] = v.clone();
            let t = with_original_signature(&genuine, &header, &p);
            assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
            let resigned = signed(HDR, &p.to_string());
            let o = fx.bearer(&resigned).await;
            // A type error in a claim is never a 5xx.
            assert_robust(&o);
            let must_fail = match key.as_str() {
                "type" | "exp" => true,
                "sub" | "jti" | "csrf" => value != "\"jwt_tool\"",
                "iat" => value != "0",
                "fresh" => !matches!(value, "true" | "false"),
                _ => false,
            };
            if must_fail {
                assert_invalid_token(&o);
            }
        }
    }
}

#[tokio::test]
async fn s4_13_common_claims_injection() {
    let canary = Canary::new().await;
    let fx = Fx::new();
    let genuine = fx.access();
    let header = header_json(&genuine);
    let payload = payload_json(&genuine);
    let mut values: Vec<Value> = FORCED
        .iter()
        .map(|v| serde_json::from_str(v).unwrap())
        .collect();
    values.push(json!(canary.url));
    for v in &values {
        for name in ["typ", "jku", "kid", "x5u", "x5t"] {
            let mut h = header.clone();
            h[name] = v.clone();
            let t = with_original_signature(&genuine, &h, &payload);
            assert_invalid_token(&fx.bearer(&t).await);
        }
        for name in [
            "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "name", "email", "role", "roles",
            "groups", "admin", "scope", "scopes", "cnf", "sub_jwk", "type", "fresh", "csrf",
        ] {
            let mut p = payload.clone();
            p[name] = v.clone();
            let t = with_original_signature(&genuine, &header, &p);
            assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
        }
    }
    canary.assert_untouched().await;
    assert_passed(&fx.bearer(&genuine).await);
}

// ---------------------------------------------------------------------------------------
// 5. Historic CVEs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s5_1_rs_hs_confusion_public_key_as_hmac_secret() {
    let fx = rsa_public_only_fx();
    let payload = good_claims();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let name = format!("{alg:?}");
        let header = format!(r#"{{"alg":"{name}","typ":"JWT"}}"#);
        let t = forge_bytes(alg, RSA_PUBLIC, header.as_bytes(), payload.as_bytes());
        assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
    }
}

#[tokio::test]
async fn s5_2_alg_not_from_token() {
    // HS256 layer: every other algorithm name, signed as well as an attacker can.
    let fx = Fx::new();
    let p = good_claims();
    for name in [
        "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
        "EdDSA",
    ] {
        let header = format!(r#"{{"alg":"{name}"}}"#);
        assert_token_error(
            &fx.bearer(&signed(&header, &p)).await,
            TokenError::UnsupportedAlgorithm,
        );
    }
    for name in [
        "ES512", "Ed25519", "RSA-OAEP", "dir", "A256GCM", "HS1", "HS256K",
    ] {
        let header = format!(r#"{{"alg":"{name}"}}"#);
        assert_token_error(
            &fx.bearer(&signed(&header, &p)).await,
            TokenError::Malformed,
        );
    }
}

#[tokio::test]
async fn s5_3_alg_none_accepted_nowhere() {
    alg_none_battery(&ec_fx()).await;
    alg_none_battery(&Fx::with(|b| b.hs256(SECRET).issuer("i").audience("a"))).await;
}

#[tokio::test]
async fn s5_4_typed_keys_not_format_sniffing() {
    // A PEM where a secret is expected (and the reverse) is a configuration error.
    let build = |key: Key| JwtAuth::builder().verification_key(key).build().err();
    assert!(matches!(
        build(Key::public_pem(Algorithm::HS256, RSA_PUBLIC)),
        Some(ConfigError::InvalidKey(_))
    ));
    assert!(matches!(
        build(Key::hmac(Algorithm::RS256, SECRET64)),
        Some(ConfigError::InvalidKey(_))
    ));
    assert!(matches!(
        build(Key::public_pem(Algorithm::ES256, RSA_PUBLIC)),
        Some(ConfigError::InvalidKey(_))
    ));
    assert!(matches!(
        build(Key::public_pem(Algorithm::RS256, EC_PUBLIC)),
        Some(ConfigError::InvalidKey(_))
    ));
    // PKCS#1 "RSA PUBLIC KEY" text as the HMAC secret.
    let fx = rsa_public_only_fx();
    let t = forge(RSA_PUBLIC_PKCS1, HDR, &good_claims());
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
}

#[tokio::test]
async fn s5_5_openssh_ecdsa_key_as_hmac_secret() {
    let fx = ec_fx();
    let p = good_claims();
    for key in [EC_PUBLIC_SSH, EC_PUBLIC] {
        let t = forge(key, HDR, &p);
        assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
    }
}

#[tokio::test]
async fn s5_6_pem_variants_as_hmac_secret() {
    let text = std::str::from_utf8(RSA_PUBLIC).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let variants: Vec<Vec<u8>> = vec![
        RSA_PUBLIC.to_vec(),
        format!(" {text}").into_bytes(),
        format!("\n\n{text}").into_bytes(),
        format!("\t{text}").into_bytes(),
        text.trim_end().as_bytes().to_vec(),
        text.replace('\n', "\r\n").into_bytes(),
        stripped.clone().into_bytes(),
        RSA_PUBLIC_DER.to_vec(),
        RSA_PUBLIC_PKCS1.to_vec(),
    ];
    let p = good_claims();
    for fx in [rsa_public_only_fx(), rsa_fx()] {
        for key in &variants {
            let t = forge(key, HDR, &p);
            assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
        }
    }
}

#[tokio::test]
async fn s5_7_public_jwk_as_hmac_secret() {
    let fx = rsa_public_only_fx();
    let jwk = ATTACKER_JWK.trim();
    let t = forge(jwk.as_bytes(), HDR, &good_claims());
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
    let fx = Fx::new();
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
}

#[test]
fn s5_8_empty_or_absent_secret_is_a_startup_error() {
    assert_eq!(JwtAuth::builder().build().err(), Some(ConfigError::NoKey));
    assert!(matches!(
        JwtAuth::builder().hs256(b"").build().err(),
        Some(ConfigError::WeakSecret { len: 0, .. })
    ));
    assert!(matches!(
        JwtAuth::builder()
            .signing_key(Key::hmac(Algorithm::HS512, b""))
            .build()
            .err(),
        Some(ConfigError::WeakSecret { len: 0, .. })
    ));
}

#[tokio::test]
async fn s5_9_no_default_algorithm() {
    assert_eq!(JwtAuth::builder().build().err(), Some(ConfigError::NoKey));
    // An RS256-only layer accepts nothing else, whatever the token says.
    let fx = rsa_public_only_fx();
    let p = good_claims();
    for header in [HDR, r#"{"alg":"ES256"}"#, r#"{"alg":"PS256"}"#] {
        assert_token_error(
            &fx.bearer(&signed(header, &p)).await,
            TokenError::UnsupportedAlgorithm,
        );
    }
    // RS384 with the right RSA key is another algorithm: refused.
    let t = sign_asym(Algorithm::RS384, RSA_PRIVATE, r#"{"alg":"RS384"}"#, &p);
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
}

#[tokio::test]
async fn s5_10_embedded_keys_ignored_for_selection() {
    let canary = Canary::new().await;
    header_key_injection(&rsa_fx(), &canary).await;
}

#[tokio::test]
async fn s5_11_empty_shared_secret() {
    let fx = Fx::new();
    let t = forge(b"", HDR, &good_claims());
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    assert!(JwtAuth::builder().hs256("").build().is_err());
}

#[tokio::test]
async fn s5_12_null_signature() {
    for fx in [Fx::new(), rsa_fx(), ec_fx()] {
        let genuine = fx.access();
        let (h, p, _) = parts(&genuine);
        assert_invalid_token(&fx.bearer(&format!("{h}.{p}.")).await);
        assert_passed(&fx.bearer(&genuine).await);
    }
}

#[tokio::test]
async fn s5_13_psychic_signature_rejected() {
    let fx = ec_fx();
    let h = b64(r#"{"alg":"ES256"}"#);
    let p = b64(good_claims());
    for sig in [b64([0u8; 64]), "MAYCAQACAQA".to_owned()] {
        assert_invalid_token(&fx.bearer(&format!("{h}.{p}.{sig}")).await);
    }
    assert_passed(&fx.bearer(&fx.access()).await);
}

#[tokio::test]
async fn s5_14_audience_type_confusion() {
    let fx = Fx::with(|b| b.hs256(SECRET).audience("api"));
    for aud in [
        json!([]),
        json!([null]),
        json!([1]),
        json!({}),
        json!(true),
        json!(null),
    ] {
        let p = claims_with(|m| {
            m.insert("aud".into(), aud.clone());
        });
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    let p = claims_with(|m| {
        m.insert("aud".into(), json!(["api"]));
    });
    assert_passed(&fx.bearer(&signed(HDR, &p)).await);
}

#[tokio::test]
async fn s5_15_signature_errors_beat_claim_errors() {
    let fx = Fx::new();
    let expired = claims_with(|m| {
        m.insert("exp".into(), json!(NOW - 3600));
    });
    // Expired and badly signed: the answer is about the signature, never "expired".
    let t = forge(b"secret", HDR, &expired);
    assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    // Expired and alg none / unsupported alg.
    let t = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&expired));
    assert_token_error(&fx.bearer(&t).await, TokenError::Malformed);
    let t = forge_bytes(
        Algorithm::HS512,
        SECRET,
        br#"{"alg":"HS512"}"#,
        expired.as_bytes(),
    );
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedAlgorithm);
    // Every claim error, badly signed: still the signature.
    for p in [
        claims_with(|m| {
            m.insert("nbf".into(), json!(NOW + 3600));
        }),
        claims_with(|m| {
            m.insert("iat".into(), json!(NOW + 3600));
        }),
        claims_with(|m| {
            m.insert("type".into(), json!("refresh"));
        }),
        claims_with(|m| {
            m.insert("exp".into(), json!("never"));
        }),
    ] {
        let t = forge(b"secret", HDR, &p);
        assert_token_error(&fx.bearer(&t).await, TokenError::InvalidSignature);
    }
    // Control: validly signed and expired is "expired".
    assert_token_error(
        &fx.bearer(&signed(HDR, &expired)).await,
        TokenError::Expired,
    );
}

#[tokio::test]
async fn s5_16_many_dots_bounded() {
    let fx = Fx::new();
    let o = fx.bearer(&".".repeat(40_000)).await;
    assert_invalid_token(&o);
    assert_fast(&o);
    // With the length cap raised, the split itself stays bounded.
    let fx = Fx::with(|b| b.hs256(SECRET).max_token_len(4 << 20));
    for t in [
        ".".repeat(1 << 20),
        "a.".repeat(500_000),
        format!("{}{}", good_token(), ".".repeat(100_000)),
    ] {
        let o = fx.bearer(&t).await;
        assert_invalid_token(&o);
        assert_fast(&o);
    }
}

#[tokio::test]
async fn s5_17_jwe_and_zip_rejected() {
    let fx = Fx::new();
    let jwe_header = b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM","zip":"DEF"}"#);
    let t = format!("{jwe_header}.a2V5.aXY.Y2lwaGVy.dGFn");
    assert_invalid_token(&fx.bearer(&t).await);
    // A JWS carrying zip or enc, validly signed: unsupported header.
    for h in [
        r#"{"alg":"HS256","zip":"DEF"}"#,
        r#"{"alg":"HS256","enc":"A256GCM"}"#,
        r#"{"alg":"HS256","zip":null,"enc":"A128GCM"}"#,
    ] {
        assert_token_error(
            &fx.bearer(&signed(h, &good_claims())).await,
            TokenError::UnsupportedHeader,
        );
    }
}

#[tokio::test]
async fn s5_18_crit_not_understood() {
    let fx = Fx::new();
    let t = signed(
        r#"{"alg":"HS256","crit":["x-ext"],"x-ext":true}"#,
        &good_claims(),
    );
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedHeader);
}

const WRONG_TYPES: [&str; 10] = [
    "\"1900000000\"",
    "\"\"",
    "null",
    "true",
    "false",
    "[1900000000]",
    "[]",
    "{}",
    "{\"$numberLong\":\"1900000000\"}",
    "\"NaN\"",
];

#[tokio::test]
async fn s5_19_numeric_claims_of_the_wrong_type() {
    let fx = Fx::new();
    for claim in ["exp", "nbf", "iat"] {
        for value in WRONG_TYPES {
            let v: Value = serde_json::from_str(value).unwrap();
            let p = claims_with(|m| {
                m.insert(claim.into(), v);
            });
            let o = fx.bearer(&signed(HDR, &p)).await;
            assert_token_error(&o, TokenError::InvalidClaims);
        }
    }
}

#[tokio::test]
async fn s5_20_exp_extremes_never_panic() {
    let fx = Fx::new();
    for exp in ["0", "1", "-1", "-1.5", "-9223372036854775808"] {
        let p = claims_with(|m| {
            m.insert("exp".into(), serde_json::from_str(exp).unwrap());
        });
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    for exp in [
        "18446744073709551615",
        "18446744073709551616",
        "1e30",
        "1e400",
        "1.7976931348623157e308",
        "18446744073709551615.0",
        "9223372036854775807",
    ] {
        let p = good_claims().replacen(
            &format!("\"exp\":{}", NOW + 900),
            &format!("\"exp\":{exp}"),
            1,
        );
        assert!(p.contains(exp));
        assert_robust(&fx.bearer(&signed(HDR, &p)).await);
    }
    // Clock extremes.
    let t = fx.access();
    fx.clock.set(u64::MAX);
    assert_token_error(&fx.bearer(&t).await, TokenError::Expired);
    let late = fx.auth.access_token("alice").issue().unwrap();
    assert_robust(&fx.bearer(&late).await);
    fx.clock.set(0);
    assert_token_error(&fx.bearer(&t).await, TokenError::IssuedInFuture);
}

// ---------------------------------------------------------------------------------------
// 6. Token type confusion (bearer)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s6_1_refresh_token_on_protected_route() {
    let fx = Fx::new();
    let pair = fx.auth.token_pair("alice").unwrap();
    assert_token_error(&fx.bearer(&pair.refresh_token).await, TokenError::WrongType);
    // Also through fresh / scoped / optional access layers.
    for layer in [
        fx.auth.layer().fresh(),
        fx.auth.layer().optional(),
        fx.auth.layer().scopes(Vec::<String>::new()),
    ] {
        let o = fx
            .send(
                &layer,
                &[format!("Bearer {}", pair.refresh_token).as_bytes()],
            )
            .await;
        assert_token_error(&o, TokenError::WrongType);
    }
    assert_passed(&fx.bearer(&pair.access_token).await);
}

#[tokio::test]
async fn s6_2_access_token_on_refresh_route() {
    let fx = Fx::new();
    let pair = fx.auth.token_pair("alice").unwrap();
    let o = fx.bearer_refresh(&pair.access_token).await;
    assert_token_error(&o, TokenError::WrongType);
    assert!(o.headers.get(SET_COOKIE).is_none(), "no token issued");
    // Hand-made access token with a family claim: still not a refresh token.
    let p = claims_with(|m| {
        m.insert("fam".into(), json!("f"));
    });
    assert_token_error(
        &fx.bearer_refresh(&signed(HDR, &p)).await,
        TokenError::WrongType,
    );
    assert_passed(&fx.bearer_refresh(&pair.refresh_token).await);
}

#[tokio::test]
async fn s6_4_type_removed_or_unknown() {
    let fx = Fx::new();
    for ty in [
        None,
        Some("id"),
        Some("refresh_token"),
        Some("ACCESS"),
        Some("both"),
    ] {
        let p = claims_with(|m| match ty {
            None => {
                m.remove("type");
            }
            Some(t) => {
                m.insert("type".into(), json!(t));
            }
        });
        let t = signed(HDR, &p);
        assert_token_error(&fx.bearer(&t).await, TokenError::InvalidClaims);
        assert_token_error(&fx.bearer_refresh(&t).await, TokenError::InvalidClaims);
    }
}

#[tokio::test]
async fn s6_5_duplicate_type_key() {
    let fx = Fx::new();
    let p = format!(
        r#"{{"sub":"alice","jti":"j","type":"access","iat":{NOW},"exp":{},"type":"refresh"}}"#,
        NOW + 900
    );
    let t = signed(HDR, &p);
    assert_invalid_token(&fx.bearer(&t).await);
    if let Some(claims) = assert_robust(&fx.bearer_refresh(&t).await) {
        assert_eq!(claims.token_type, TokenType::Refresh, "first-wins parsing");
    }
    let p = format!(
        r#"{{"sub":"alice","jti":"j","type":"refresh","iat":{NOW},"exp":{},"type":"access"}}"#,
        NOW + 900
    );
    let t = signed(HDR, &p);
    assert_invalid_token(&fx.bearer_refresh(&t).await);
    if let Some(claims) = assert_robust(&fx.bearer(&t).await) {
        assert_eq!(claims.token_type, TokenType::Access, "first-wins parsing");
    }
}

#[tokio::test]
async fn s6_6_refresh_signature_glued_onto_access() {
    let fx = Fx::new();
    let pair = fx.auth.token_pair("alice").unwrap();
    let (ah, ap, as_) = parts(&pair.access_token);
    let (rh, rp, rs) = parts(&pair.refresh_token);
    let glued = format!("{ah}.{ap}.{rs}");
    assert_token_error(&fx.bearer(&glued).await, TokenError::InvalidSignature);
    assert_token_error(
        &fx.bearer_refresh(&glued).await,
        TokenError::InvalidSignature,
    );
    let glued = format!("{rh}.{rp}.{as_}");
    assert_token_error(&fx.bearer(&glued).await, TokenError::InvalidSignature);
    assert_token_error(
        &fx.bearer_refresh(&glued).await,
        TokenError::InvalidSignature,
    );
    // Access header + refresh payload with the access signature.
    let glued = format!("{ah}.{rp}.{as_}");
    assert_token_error(
        &fx.bearer_refresh(&glued).await,
        TokenError::InvalidSignature,
    );
}

#[tokio::test]
async fn s6_7_kinds_are_distinct() {
    let fx = Fx::new();
    let pair = fx.auth.token_pair("alice").unwrap();
    let a = payload_json(&pair.access_token);
    let r = payload_json(&pair.refresh_token);
    assert_eq!(a["type"], "access");
    assert_eq!(r["type"], "refresh");
    assert!(r["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(r["fam"].as_str().is_some_and(|f| !f.is_empty()));
    assert_ne!(a["jti"], r["jti"]);
    // The refresh route accepts only refresh tokens; the access route only access tokens.
    assert_passed(&fx.bearer_refresh(&pair.refresh_token).await);
    assert_invalid_token(&fx.bearer_refresh(&pair.access_token).await);
    assert_passed(&fx.bearer(&pair.access_token).await);
    assert_invalid_token(&fx.bearer(&pair.refresh_token).await);
}

// ---------------------------------------------------------------------------------------
// 10. DoS inputs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s10_1_48kb_junk_too_long() {
    let fx = Fx::new();
    let junk = format!(
        "eyJ{}.eyJ{}.{}",
        "A".repeat(24_000),
        "B".repeat(24_000),
        "C".repeat(1_000)
    );
    let o = fx.bearer(&junk).await;
    assert_token_error(&o, TokenError::TooLong);
    assert_fast(&o);
    // The cap is configurable and checked before decoding.
    let fx = Fx::with(|b| b.hs256(SECRET).max_token_len(64));
    let o = fx.bearer(&fx.access()).await;
    assert_token_error(&o, TokenError::TooLong);
}

#[tokio::test]
async fn s10_2_one_megabyte_header_value() {
    let fx = Fx::new();
    let o = fx.bearer(&"A".repeat(1 << 20)).await;
    assert_token_error(&o, TokenError::TooLong);
    assert_fast(&o);
    let o = fx
        .send(
            &fx.auth.layer(),
            &[format!("Bearer {}", "a.".repeat(1 << 19)).as_bytes()],
        )
        .await;
    assert_invalid_token(&o);
    // Over a real hyper server: see s10_2_s10_9_s2_11_s11_15_over_hyper.
}

#[tokio::test]
async fn s10_3_forty_thousand_dots() {
    let fx = Fx::new();
    let o = fx.bearer(&".".repeat(40_000)).await;
    assert_invalid_token(&o);
    assert_fast(&o);
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn s10_4_deeply_nested_header_forged() {
    let p = b64(good_claims());
    for fx in [
        Fx::new(),
        Fx::with(|b| b.hs256(SECRET).max_token_len(1 << 20)),
    ] {
        for depth in [20_000, 1_000, 300, 129, 128] {
            for header in [
                format!(r#"{{"alg":"HS256","x":{}}}"#, nested(depth)),
                nested(depth),
                format!(
                    r#"{{"alg":"HS256","x":{}"a"{}}}"#,
                    r#"{"a":"#.repeat(depth),
                    "}".repeat(depth)
                ),
            ] {
                let t = format!("{}.{p}.{}", b64(&header), b64([0u8; 32]));
                let o = fx.bearer(&t).await;
                assert_invalid_token(&o);
                assert_fast(&o);
            }
        }
    }
}

#[tokio::test]
async fn s10_5_deeply_nested_payload_forged() {
    let fx = Fx::with(|b| b.hs256(SECRET).max_token_len(1 << 20));
    let p = claims_with(|m| {
        m.insert("x".into(), json!(null));
    })
    .replace("\"x\":null", &format!("\"x\":{}", nested(20_000)));
    let t = forge(b"not the secret", HDR, &p);
    let o = fx.bearer(&t).await;
    // The signature check comes first: the payload is never parsed.
    assert_token_error(&o, TokenError::InvalidSignature);
    assert_fast(&o);
    assert_token_error(&Fx::new().bearer(&t).await, TokenError::TooLong);
}

#[tokio::test]
async fn s10_6_deeply_nested_payload_validly_signed() {
    for (fx, depth) in [
        (Fx::with(|b| b.hs256(SECRET).max_token_len(1 << 20)), 20_000),
        (Fx::new(), 2_000),
        (Fx::new(), 200),
    ] {
        for nest in [
            nested(depth),
            format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)),
        ] {
            let p = claims_with(|m| {
                m.insert("x".into(), json!(null));
            })
            .replace("\"x\":null", &format!("\"x\":{nest}"));
            let o = fx.bearer(&signed(HDR, &p)).await;
            assert_invalid_token(&o);
            assert_fast(&o);
        }
    }
}

#[tokio::test]
async fn s10_7_huge_numbers_in_exp() {
    let fx = Fx::new();
    let base = good_claims();
    let exp_field = format!("\"exp\":{}", NOW + 900);
    for exp in [
        "1e30",
        "18446744073709551615",
        "18446744073709551616",
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "1795627160.299861",
    ] {
        let p = base.replacen(&exp_field, &format!("\"exp\":{exp}"), 1);
        let o = fx.bearer(&signed(HDR, &p)).await;
        assert_robust(&o);
        assert_fast(&o);
    }
    for exp in ["-1", "-0.5", "-1e30", "1e-400", "0.4"] {
        let p = base.replacen(&exp_field, &format!("\"exp\":{exp}"), 1);
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    // Huge iat / nbf are in the future: refused, no overflow.
    for claim in ["iat", "nbf"] {
        let p = claims_with(|m| {
            m.insert(claim.into(), json!(u64::MAX));
        });
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    // exp = u64::MAX with the clock at u64::MAX - 1 and the leeway added: no overflow.
    let p = claims_with(|m| {
        m.insert("exp".into(), json!(u64::MAX));
        m.insert("iat".into(), json!(u64::MAX - 1));
    });
    fx.clock.set(u64::MAX - 1);
    assert_robust(&fx.bearer(&signed(HDR, &p)).await);
}

#[tokio::test]
async fn s10_8_many_cookies_with_bearer() {
    let fx = Fx::new();
    let many = (0..1000)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ");
    for token in [fx.access(), forge(b"secret", HDR, &good_claims())] {
        let mut req = request("/protected", &[format!("Bearer {token}").as_bytes()]);
        req.headers_mut()
            .insert(COOKIE, HeaderValue::from_str(&many).unwrap());
        let o = call(&fx.auth.layer(), req).await;
        assert_rejected(&o);
        assert_fast(&o);
    }
}

#[tokio::test]
async fn s10_9_many_headers() {
    let fx = Fx::new();
    let forged = forge(b"secret", HDR, &good_claims());
    for (token, ok) in [(fx.access(), true), (forged, false)] {
        let mut req = request("/protected", &[format!("Bearer {token}").as_bytes()]);
        for i in 0..150 {
            req.headers_mut().append(
                HeaderName::from_bytes(format!("x-junk-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("junk"),
            );
        }
        let o = call(&fx.auth.layer(), req).await;
        if ok {
            assert_robust(&o);
        } else {
            assert_token_error(&o, TokenError::InvalidSignature);
        }
    }
}

#[tokio::test]
async fn s10_10_large_validly_signed_payloads() {
    let big_string = claims_with(|m| {
        m.insert("blob".into(), json!("x".repeat(30 * 1024)));
    });
    let many_claims = claims_with(|m| {
        for i in 0..3000 {
            m.insert(format!("c{i}"), json!(i));
        }
    });
    let default = Fx::new();
    let roomy = Fx::with(|b| b.hs256(SECRET).max_token_len(1 << 20));
    for p in [&big_string, &many_claims] {
        let t = signed(HDR, p);
        let o = default.bearer(&t).await;
        assert_robust(&o);
        assert_fast(&o);
        let o = roomy.bearer(&t).await;
        assert_robust(&o);
        assert_fast(&o);
    }
    // Payload sizes around the layer's internal buffer sizes: all genuine, all accepted.
    for n in 1700..2100 {
        let p = claims_with(|m| {
            m.insert("pad".into(), json!("y".repeat(n)));
        });
        assert_passed(&default.bearer(&signed(HDR, &p)).await);
    }
    // Headers around the header size bound: accepted below, refused above, no panic.
    for n in 700..800 {
        let h = json!({"alg": "HS256", "typ": "JWT", "pad": "z".repeat(n)}).to_string();
        let o = default.bearer(&signed(&h, &good_claims())).await;
        if b64(&h).len() <= 1024 {
            assert_passed(&o);
        } else {
            assert_invalid_token(&o);
        }
    }
}

#[tokio::test]
async fn s10_11_no_outbound_io_from_token_data() {
    let canary = Canary::new().await;
    let fx = Fx::new();
    let p = good_claims();
    let host = canary
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/jwks.json");
    for header in [
        json!({"alg": "HS256", "kid": canary.url}),
        json!({"alg": "HS256", "kid": host}),
        json!({"alg": "HS256", "jku": canary.url}),
        json!({"alg": "HS256", "x5u": canary.url}),
        json!({"alg": "HS256", "url": canary.url}),
    ] {
        let o = fx.bearer(&forge(b"", &header.to_string(), &p)).await;
        assert_invalid_token(&o);
        assert_fast(&o);
    }
    let p = claims_with(|m| {
        m.insert("iss".into(), json!(canary.url));
        m.insert("jku".into(), json!(canary.url));
    });
    assert_robust(&fx.bearer(&signed(HDR, &p)).await);
    canary.assert_untouched().await;
}

#[tokio::test]
async fn s10_12_jwe_and_compressed_rejected() {
    let fx = Fx::new();
    let h = b64(r#"{"alg":"dir","enc":"A128CBC-HS256","zip":"DEF"}"#);
    for t in [
        format!("{h}..aXY.Y2lwaGVy.dGFn"),
        format!("{h}.a2V5.aXY.Y2lwaGVy.dGFn"),
    ] {
        assert_invalid_token(&fx.bearer(&t).await);
    }
    let t = signed(r#"{"alg":"HS256","zip":"DEF"}"#, &good_claims());
    assert_token_error(&fx.bearer(&t).await, TokenError::UnsupportedHeader);
}

#[tokio::test]
async fn s10_14_liveness_after_hostile_inputs() {
    let fx = Fx::with(|b| b.hs256(SECRET).max_token_len(1 << 20));
    let genuine = fx.access();
    // One service instance for everything (clones share state as in a server).
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let inner = service_fn(move |req: Request<String>| {
        c.fetch_add(1, Ordering::SeqCst);
        let ok = req.extensions().get::<Authenticated>().is_some();
        async move { Ok::<_, Infallible>(Response::new(ok.to_string())) }
    });
    let svc = Layer::layer(&fx.auth.layer(), inner);
    let hostile: Vec<Vec<u8>> = vec![
        format!("Bearer {}", ".".repeat(40_000)).into_bytes(),
        format!("Bearer {}", "A".repeat(48 * 1024)).into_bytes(),
        format!(
            "Bearer {}.{}.{}",
            b64(nested(20_000)),
            b64(good_claims()),
            b64([0u8; 32])
        )
        .into_bytes(),
        format!(
            "Bearer {}",
            signed(HDR, &format!(r#"{{"x":{}}}"#, nested(20_000)))
        )
        .into_bytes(),
        b"Bearer \xff\xfe".to_vec(),
        format!("Bearer {}.", b64(r#"{"alg":"none"}"#)).into_bytes(),
        b"Bearer".to_vec(),
        format!("bearer\t{genuine}").into_bytes(),
    ];
    for v in &hostile {
        let res = svc
            .clone()
            .oneshot(request("/protected", &[v.as_slice()]))
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{:?}", res.status());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let res = svc
        .clone()
        .oneshot(request(
            "/protected",
            &[format!("Bearer {genuine}").as_bytes()],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body(), "true");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// A real hyper server on loopback, for what only the wire can carry (10.2, 10.9, 2.11,
// 11.15) and for liveness after each (10.14).
// ---------------------------------------------------------------------------------------

async fn serve(auth: &JwtAuth) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new()
        .route(
            "/protected",
            axum::routing::get(move || {
                c.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        )
        .route_layer(auth.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, calls, task)
}

/// Sends raw bytes on a new connection; the status code, or `None` if the server closed
/// the connection without one.
async fn raw(addr: SocketAddr, request: Vec<u8>) -> Option<u16> {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&request);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        line.strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
    })
    .await
    .unwrap()
}

fn get_with(authorization: &[u8], extra: &str) -> Vec<u8> {
    let mut r = b"GET /protected?a=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    r.extend_from_slice(extra.as_bytes());
    r.extend_from_slice(b"Authorization: ");
    r.extend_from_slice(authorization);
    r.extend_from_slice(b"\r\n\r\n");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_2_s10_9_s2_11_s11_15_over_hyper() {
    let fx = Fx::new();
    let (addr, calls, task) = serve(&fx.auth).await;
    let genuine = format!("Bearer {}", fx.access());
    let forged = format!("Bearer {}", forge(b"secret", HDR, &good_claims()));
    let alive = |expected: usize| {
        let calls = calls.clone();
        let genuine = genuine.clone();
        async move {
            assert_eq!(raw(addr, get_with(genuine.as_bytes(), "")).await, Some(200));
            assert_eq!(calls.load(Ordering::SeqCst), expected);
        }
    };
    alive(1).await;

    // 10.2: a 1 MB Authorization header.
    let huge = format!("Bearer {}", "A".repeat(1 << 20));
    let status = raw(addr, get_with(huge.as_bytes(), "")).await;
    assert!(
        matches!(status, None | Some(400 | 401 | 413 | 431)),
        "{status:?}"
    );
    alive(2).await;

    // 10.9: 150 header fields.
    let junk: String = (0..150).map(|i| format!("X-Junk-{i}: v\r\n")).collect();
    let status = raw(addr, get_with(forged.as_bytes(), &junk)).await;
    assert!(matches!(status, None | Some(400 | 401 | 431)), "{status:?}");
    alive(3).await;

    // 2.11: obs-fold before a genuine token: robust.
    let folded = format!("Bearer\r\n {}", &genuine["Bearer ".len()..]);
    let status = raw(addr, get_with(folded.as_bytes(), "")).await;
    assert!(status.is_none_or(|s| s < 500), "{status:?}");
    let after_fold = calls.load(Ordering::SeqCst);
    alive(after_fold + 1).await;

    // 11.15: NUL and CTL bytes in the field value.
    for ctl in [0u8, 1, 0x1f, 0x7f] {
        let mut v = genuine.clone().into_bytes();
        v.push(ctl);
        let status = raw(addr, get_with(&v, "")).await;
        assert!(
            matches!(status, None | Some(400 | 401)),
            "{ctl}: {status:?}"
        );
        let mut v = forged.clone().into_bytes();
        v.insert(20, ctl);
        let status = raw(addr, get_with(&v, "")).await;
        assert!(
            matches!(status, None | Some(400 | 401)),
            "{ctl}: {status:?}"
        );
    }
    // 0xff (obs-text) reaches the layer: 400.
    let mut v = genuine.clone().into_bytes();
    v.push(0xff);
    assert_eq!(raw(addr, get_with(&v, "")).await, Some(400));
    alive(after_fold + 2).await;
    task.abort();
}

// ---------------------------------------------------------------------------------------
// 11. Malformed input
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn s11_1_bad_base64_characters_whitespace_percent_dots() {
    let fx = Fx::new();
    let (h, p, s) = parts(&fx.access());
    for t in [
        format!("{h}!.{p}.{s}"),
        format!("{h}.{p}*.{s}"),
        format!("{h}.{p}.{s}!"),
        format!("{h}.{p}.{s}~"),
        format!("~{h}.{p}.{s}"),
        format!("{h}.{p}.{s}$"),
        format!("{h}. {p}.{s}"),
        format!("{h}%2E{p}%2E{s}"),
        format!("{h}.{p}.{s}%3D"),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}=.{s}"),
        format!("{h}=.{p}.{s}"),
    ] {
        assert_401_or_400(&fx.bearer(&t).await);
    }
}

#[tokio::test]
async fn s11_2_wrong_segment_counts() {
    let fx = Fx::new();
    let genuine = fx.access();
    let (h, p, s) = parts(&genuine);
    for t in [
        h.clone(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.x.y"),
        format!("{h}..{s}"),
        format!(".{p}.{s}"),
        format!("{h}.{p}.{s}.{p}.{s}"),
        "..".to_owned(),
        ".".to_owned(),
        "...".to_owned(),
        "....".to_owned(),
        "a".to_owned(),
    ] {
        assert_401_or_400(&fx.bearer(&t).await);
    }
    assert_passed(&fx.bearer(&genuine).await);
}

#[tokio::test]
async fn s11_3_non_utf8_field_and_decoded_parts() {
    let fx = Fx::new();
    let t = fx.access();
    let mut v = format!("Bearer {t}").into_bytes();
    v.push(0xff);
    let o = fx.send(&fx.auth.layer(), &[v.as_slice()]).await;
    assert_eq!(
        assert_invalid_request(&o),
        InvalidRequest::MalformedAuthorization
    );
    let v = HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd\xfc").unwrap();
    let o = fx.send(&fx.auth.layer(), &[v.as_bytes()]).await;
    assert_invalid_request(&o);
    // Inside the decoded JOSE header and payload, validly signed.
    let p = good_claims();
    let t = forge_bytes(
        Algorithm::HS256,
        SECRET,
        b"{\"alg\":\"HS256\",\"kid\":\"\xff\"}",
        p.as_bytes(),
    );
    assert_token_error(&fx.bearer(&t).await, TokenError::Malformed);
    let mut bad = p.into_bytes();
    let at = bad.windows(5).position(|w| w == b"alice").unwrap();
    bad[at] = 0xfe;
    let t = forge_bytes(Algorithm::HS256, SECRET, HDR.as_bytes(), &bad);
    assert_invalid_token(&fx.bearer(&t).await);
}

#[tokio::test]
async fn s11_4_duplicate_authorization() {
    let fx = Fx::new();
    let v = format!("Bearer {}", fx.access());
    let o = fx
        .send(&fx.auth.layer(), &[v.as_bytes(), v.as_bytes()])
        .await;
    assert_eq!(
        assert_invalid_request(&o),
        InvalidRequest::RepeatedAuthorization
    );
    let o = fx
        .send(&fx.auth.layer().refresh(), &[v.as_bytes(), v.as_bytes()])
        .await;
    assert_invalid_request(&o);
    let o = fx
        .send(&fx.auth.layer().optional(), &[v.as_bytes(), v.as_bytes()])
        .await;
    assert_invalid_request(&o);
}

#[tokio::test]
async fn s11_5_lower_case_bearer() {
    let fx = Fx::new();
    let layer = fx.auth.layer();
    let t = fx.access();
    if let Some(claims) = assert_robust(&fx.send(&layer, &[format!("bearer {t}").as_bytes()]).await)
    {
        assert_eq!(claims.sub, "alice");
    }
    let forged = forge(b"secret", HDR, &good_claims());
    let o = fx
        .send(&layer, &[format!("bearer {forged}").as_bytes()])
        .await;
    assert_token_error(&o, TokenError::InvalidSignature);
}

#[tokio::test]
async fn s11_6_spaces_tab_trailing_junk() {
    let fx = Fx::new();
    let layer = fx.auth.layer();
    let t = fx.access();
    assert_robust(&fx.send(&layer, &[format!("Bearer  {t}").as_bytes()]).await);
    let o = fx.send(&layer, &[format!("Bearer\t{t}").as_bytes()]).await;
    assert_eq!(
        assert_invalid_request(&o),
        InvalidRequest::MalformedAuthorization
    );
    let o = fx.send(&layer, &[format!("Bearer \t{t}").as_bytes()]).await;
    assert_invalid_request(&o);
    for junk in [" x", " .", "\tx", " Bearer", ",", "!", "\""] {
        let o = fx
            .send(&layer, &[format!("Bearer {t}{junk}").as_bytes()])
            .await;
        assert_invalid_request(&o);
    }
}

#[tokio::test]
async fn s11_7_duplicate_keys_exp_alg_type() {
    let fx = Fx::new();
    let body = format!(r#""sub":"alice","jti":"j","iat":{NOW}"#);
    for p in [
        format!(
            r#"{{{body},"type":"access","exp":{},"exp":{}}}"#,
            NOW + 900,
            NOW - 3600
        ),
        format!(
            r#"{{{body},"type":"access","type":"refresh","exp":{}}}"#,
            NOW + 900
        ),
    ] {
        assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    }
    let p = good_claims();
    for h in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
    ] {
        assert_invalid_token(&fx.bearer(&signed(h, &p)).await);
    }
}

#[tokio::test]
async fn s11_8_exp_as_string_null_bool_array() {
    let fx = Fx::new();
    for exp in [
        json!((NOW + 900).to_string()),
        json!(null),
        json!(true),
        json!(false),
        json!([NOW + 900]),
        json!({"exp": NOW + 900}),
    ] {
        let p = claims_with(|m| {
            m.insert("exp".into(), exp.clone());
        });
        assert_token_error(
            &fx.bearer(&signed(HDR, &p)).await,
            TokenError::InvalidClaims,
        );
    }
}

#[tokio::test]
async fn s11_9_exp_as_float() {
    let fx = Fx::new();
    let p = claims_with(|m| {
        m.insert("exp".into(), json!((NOW + 900) as f64 + 0.299861));
    });
    let claims = assert_passed(&fx.bearer(&signed(HDR, &p)).await);
    assert_eq!(claims.exp, NOW + 900);
    let p = claims_with(|m| {
        m.insert("exp".into(), json!((NOW - 3600) as f64 + 0.5));
    });
    assert_token_error(&fx.bearer(&signed(HDR, &p)).await, TokenError::Expired);
}

#[tokio::test]
async fn s11_10_nbf_in_the_future() {
    let fx = Fx::new();
    for nbf in [
        json!(NOW + 3600),
        json!((NOW + 3600) as f64 + 0.5),
        json!(NOW + 61),
    ] {
        let p = claims_with(|m| {
            m.insert("nbf".into(), nbf.clone());
        });
        assert_token_error(&fx.bearer(&signed(HDR, &p)).await, TokenError::NotYetValid);
    }
    let p = claims_with(|m| {
        m.insert("nbf".into(), json!((NOW + 3600).to_string()));
    });
    assert_token_error(
        &fx.bearer(&signed(HDR, &p)).await,
        TokenError::InvalidClaims,
    );
    // Controls: nbf now, in the past, and within the leeway.
    for nbf in [NOW, NOW - 3600, NOW + 2] {
        let p = claims_with(|m| {
            m.insert("nbf".into(), json!(nbf));
        });
        assert_passed(&fx.bearer(&signed(HDR, &p)).await);
    }
}

#[tokio::test]
async fn s11_11_iat_in_the_future() {
    let fx = Fx::new();
    for iat in [
        json!(NOW + 3600),
        json!(NOW + 61),
        json!((NOW + 600) as f64 + 0.1),
    ] {
        let p = claims_with(|m| {
            m.insert("iat".into(), iat.clone());
        });
        assert_token_error(
            &fx.bearer(&signed(HDR, &p)).await,
            TokenError::IssuedInFuture,
        );
    }
    // A token issued by this layer "tomorrow" (clock moved back).
    fx.clock.advance(86_400);
    let tomorrow = fx.access();
    fx.clock.set(NOW);
    assert_token_error(&fx.bearer(&tomorrow).await, TokenError::IssuedInFuture);
    // Control: within the leeway.
    let p = claims_with(|m| {
        m.insert("iat".into(), json!(NOW + 2));
    });
    assert_passed(&fx.bearer(&signed(HDR, &p)).await);
}

#[tokio::test]
async fn s11_12_missing_exp() {
    let fx = Fx::new();
    let p = claims_with(|m| {
        m.remove("exp");
    });
    assert_token_error(
        &fx.bearer(&signed(HDR, &p)).await,
        TokenError::InvalidClaims,
    );
    assert_token_error(
        &fx.bearer_refresh(&signed(
            HDR,
            &claims_with(|m| {
                m.remove("exp");
                m.insert("type".into(), json!("refresh"));
            }),
        ))
        .await,
        TokenError::InvalidClaims,
    );
}

#[tokio::test]
async fn s11_13_expired_exp_zero_negative() {
    let fx = Fx::new();
    for exp in [json!(NOW - 3600), json!(0), json!(NOW - 61)] {
        let p = claims_with(|m| {
            m.insert("exp".into(), exp.clone());
        });
        assert_token_error(&fx.bearer(&signed(HDR, &p)).await, TokenError::Expired);
    }
    let p = claims_with(|m| {
        m.insert("exp".into(), json!(-1));
    });
    assert_invalid_token(&fx.bearer(&signed(HDR, &p)).await);
    // Leeway: a few seconds past exp still passes (≤ 60 s by default).
    let p = claims_with(|m| {
        m.insert("exp".into(), json!(NOW - 2));
    });
    assert_passed(&fx.bearer(&signed(HDR, &p)).await);
    // An issued token, once its lifetime has passed.
    let t = fx.access();
    fx.clock.advance(15 * 60 + 61);
    assert_token_error(&fx.bearer(&t).await, TokenError::Expired);
}

#[tokio::test]
async fn s11_14_sub_missing_or_wrong_type() {
    let fx = Fx::new();
    for sub in [
        None,
        Some(json!(42)),
        Some(json!(null)),
        Some(json!(["alice"])),
        Some(json!({})),
    ] {
        let p = claims_with(|m| match sub.clone() {
            None => {
                m.remove("sub");
            }
            Some(v) => {
                m.insert("sub".into(), v);
            }
        });
        assert_token_error(
            &fx.bearer(&signed(HDR, &p)).await,
            TokenError::InvalidClaims,
        );
    }
}

#[tokio::test]
async fn s11_15_ctl_bytes_cannot_reach_the_layer() {
    // HeaderValue refuses NUL and CTLs; on the wire hyper answers 400 (see
    // s10_2_s10_9_s2_11_s11_15_over_hyper). A tab inside the value reaches the layer.
    let fx = Fx::new();
    let t = fx.access();
    for ctl in [0u8, 1, 8, 0x0b, 0x1f, 0x7f] {
        let mut v = format!("Bearer {t}").into_bytes();
        v.insert(12, ctl);
        assert!(HeaderValue::from_bytes(&v).is_err());
    }
    let mut v = format!("Bearer {t}").into_bytes();
    v.insert(12, b'\t');
    assert_invalid_request(&fx.send(&fx.auth.layer(), &[v.as_slice()]).await);
}

#[tokio::test]
async fn s11_16_alg_variants() {
    let fx = Fx::new();
    let p = good_claims();
    for h in [
        r#"{"alg":"hs256"}"#,
        r#"{"alg":"HS256 "}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"alg":null}"#,
        r#"{"typ":"JWT"}"#,
        r#"{}"#,
        r#"{"alg":"Hs256"}"#,
        r#"{"ALG":"HS256"}"#,
    ] {
        assert_token_error(&fx.bearer(&signed(h, &p)).await, TokenError::Malformed);
    }
    assert_passed(&fx.bearer(&signed(r#"{"alg":"HS256"}"#, &p)).await);
}

#[tokio::test]
async fn s11_17_query_string_with_valid_header() {
    let fx = Fx::new();
    let t = fx.access();
    for uri in [
        "/protected?x=1",
        "/protected?access_token=junk&y=%20%2E",
        "/protected?a=b;c=d&&=&",
        "/protected?",
    ] {
        let o = call(
            &fx.auth.layer(),
            request(uri, &[format!("Bearer {t}").as_bytes()]),
        )
        .await;
        assert_eq!(assert_passed(&o).sub, "alice");
    }
}
