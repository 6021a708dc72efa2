//! `JwtAuth::from_env()` with AuthX's `JWT_*` variables. One test function: the
//! environment is process-wide.

use tower_jwt_auth::{ConfigError, JwtAuth, TokenType};

fn set(vars: &[(&str, &str)]) {
    for (k, v) in vars {
        // SAFETY: this test binary runs a single test, so no other thread reads the
        // environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
}

fn clear(vars: &[&str]) {
    for k in vars {
        // SAFETY: as above.
        unsafe { std::env::remove_var(k) };
    }
}

const ALL: &[&str] = &[
    "JWT_SECRET_KEY",
    "JWT_ALGORITHM",
    "JWT_ACCESS_TOKEN_EXPIRES",
    "JWT_REFRESH_TOKEN_EXPIRES",
    "JWT_DECODE_LEEWAY",
    "JWT_TOKEN_LOCATION",
    "JWT_ACCESS_COOKIE_NAME",
    "JWT_COOKIE_SECURE",
    "JWT_COOKIE_SAMESITE",
    "JWT_COOKIE_CSRF_PROTECT",
    "JWT_IMPLICIT_REFRESH_DELTATIME",
    "JWT_ENCODE_ISSUER",
    "JWT_DECODE_AUDIENCE",
];

#[test]
fn reads_authx_variables_and_names_the_bad_one() {
    clear(ALL);
    assert_eq!(JwtAuth::from_env().unwrap_err(), ConfigError::NoKey);

    set(&[
        ("JWT_SECRET_KEY", "an AuthX secret shared by both services"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "60"),
        ("JWT_REFRESH_TOKEN_EXPIRES", "3600"),
        ("JWT_TOKEN_LOCATION", r#"["headers", "cookies"]"#),
        ("JWT_ACCESS_COOKIE_NAME", "my_access"),
        ("JWT_COOKIE_SECURE", "false"),
        ("JWT_COOKIE_SAMESITE", "strict"),
        ("JWT_ENCODE_ISSUER", "https://auth.example"),
        ("JWT_DECODE_AUDIENCE", "api"),
    ]);
    let auth = JwtAuth::from_env().unwrap();
    let pair = auth.token_pair("alice").unwrap();
    let claims = auth.verify(&pair.access_token, TokenType::Access).unwrap();
    assert_eq!(claims.exp - claims.iat, 60);
    assert_eq!(pair.refresh_claims.exp - pair.refresh_claims.iat, 3600);
    assert_eq!(claims.iss.as_deref(), Some("https://auth.example"));
    assert_eq!(claims.aud.as_deref(), Some(&["api".to_owned()][..]));
    assert_eq!(auth.cookie_names().access, "my_access");
    // Plain-http development: no Secure, no __Host- prefixes on the other names.
    assert_eq!(auth.cookie_names().refresh, "refresh_token");
    let mut headers = http::HeaderMap::new();
    auth.set_cookies(&mut headers, &pair);
    let first = headers
        .get(http::header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(first.starts_with("my_access=") && first.contains("SameSite=Strict"));
    assert!(!first.contains("Secure"));

    // The same secret from another process (an AuthX service) verifies these tokens.
    let twin = JwtAuth::from_env().unwrap();
    assert!(twin.verify(&pair.access_token, TokenType::Access).is_ok());

    for (name, value) in [
        ("JWT_ACCESS_TOKEN_EXPIRES", "15m"),
        ("JWT_COOKIE_SECURE", "maybe"),
        ("JWT_COOKIE_SAMESITE", "sometimes"),
        ("JWT_TOKEN_LOCATION", "headers,body"),
        ("JWT_ALGORITHM", "HS1024"),
        ("JWT_IMPLICIT_REFRESH_DELTATIME", "-1"),
    ] {
        set(&[(name, value)]);
        match JwtAuth::from_env() {
            Err(ConfigError::InvalidEnv { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}={value}: {other:?}"),
        }
        let message = JwtAuth::from_env().unwrap_err().to_string();
        assert!(
            message.starts_with(name) && !message.contains(value),
            "{message}"
        );
        clear(&[name]);
    }

    set(&[("JWT_SECRET_KEY", "too short")]);
    assert!(matches!(
        JwtAuth::from_env(),
        Err(ConfigError::WeakSecret { .. })
    ));
    clear(ALL);

    // An asymmetric signing key: tokens carry the kid the published set names.
    let pem = |name: &str| {
        std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    };
    let (private, public) = (pem("ec_private.pem"), pem("ec_public.pem"));
    set(&[
        ("JWT_ALGORITHM", "ES256"),
        ("JWT_PRIVATE_KEY", &private),
        ("JWT_PUBLIC_KEY", &public),
    ]);
    let auth = JwtAuth::from_env().unwrap();
    let token = auth.token_pair("alice").unwrap().access_token;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwks = auth.jwks();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(header.kid, jwks.keys[0].common.key_id);
    assert_eq!(
        header.kid.as_ref().map(|k| k.len()),
        Some(43),
        "the RFC 7638 thumbprint"
    );
    let kid = header.kid.clone();

    // SECURITY.md 13.9 (review R9): the private key alone is enough; its public half
    // is derived, under the same thumbprint, and verifies what it signs.
    clear(&["JWT_PUBLIC_KEY"]);
    let alone = JwtAuth::from_env().expect("JWT_PRIVATE_KEY alone");
    let token = alone.token_pair("alice").unwrap().access_token;
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid, kid);
    assert!(alone.verify(&token, TokenType::Access).is_ok());
    assert!(
        auth.verify(&token, TokenType::Access).is_ok(),
        "one key pair"
    );
    // A mismatched pair is still refused.
    set(&[("JWT_PUBLIC_KEY", &pem("attacker_ec_public.pem"))]);
    assert!(matches!(
        JwtAuth::from_env(),
        Err(ConfigError::InvalidKey(_))
    ));
    clear(&["JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY"]);
    match JwtAuth::from_env() {
        Err(ConfigError::InvalidEnv { name, .. }) => assert_eq!(name, "JWT_PRIVATE_KEY"),
        other => panic!("no key at all: {other:?}"),
    }
    clear(&["JWT_ALGORITHM", "JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY"]);
}
