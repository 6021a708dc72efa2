//! Remote key sets against a real provider served on loopback (tests/support/provider.rs).
#![cfg(feature = "jwks")]

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::provider::{Mode, Provider, SigningKey, claims, free_port, set};
use tower::ServiceExt;
use tower_jwt_auth::{AuthError, ConfigError, JwtAuth, RemoteKeySet, TokenError, TokenType};

/// Fast timings; background refreshes far away unless a test wants them. Bound to
/// [`ISS`] (a test naming another issuer replaces it).
fn remote(url: &str) -> RemoteKeySet {
    RemoteKeySet::jwks_url(url)
        .issuer(ISS)
        .refresh_cooldown(Duration::from_millis(300))
        .fetch_timeout(Duration::from_millis(500))
        .cache_max_age(Duration::from_secs(60))
}

fn build(set: RemoteKeySet) -> JwtAuth {
    JwtAuth::builder().remote_keys(set).build().expect("build")
}

fn verify(auth: &JwtAuth, token: &str) -> Result<String, AuthError> {
    auth.verify(token, TokenType::Access).map(|c| c.sub)
}

/// Verifies until the answer is no longer `KeysUnavailable` (bounded): the first
/// fetch is under way.
async fn when_loaded(auth: &JwtAuth, token: &str) -> Result<String, AuthError> {
    for _ in 0..200 {
        match verify(auth, token) {
            Err(AuthError::KeysUnavailable) => tokio::time::sleep(Duration::from_millis(10)).await,
            other => return other,
        }
    }
    verify(auth, token)
}

const ISS: &str = "https://idp.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_every_asymmetric_algorithm_with_provider_claims() {
    let keys = [
        SigningKey::new(Algorithm::RS256, "rs"),
        SigningKey::new(Algorithm::PS256, "ps"),
        SigningKey::new(Algorithm::ES256, "es"),
        SigningKey::new(Algorithm::ES384, "es384"),
        SigningKey::new(Algorithm::EdDSA, "ed"),
    ];
    let provider = Provider::start(&set(&keys.iter().collect::<Vec<_>>())).await;
    let auth = build(remote(&provider.jwks_url()).issuer(ISS));
    for key in &keys {
        let token = key.sign(&claims(ISS, key.kid.as_str()));
        assert_eq!(
            when_loaded(&auth, &token).await.as_deref(),
            Ok(key.kid.as_str()),
            "{:?}",
            key.alg
        );
    }
    let claims = auth
        .verify(&keys[0].sign(&claims(ISS, "a")), TokenType::Access)
        .unwrap();
    assert_eq!(
        claims.scopes.as_deref(),
        Some(&["read".to_owned(), "write".to_owned()][..])
    );
    assert!(
        claims.jti.starts_with("sha256:"),
        "a token without jti gets one"
    );
    assert_eq!(provider.jwks_fetches(), 1, "one fetch served them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_only_verified_with_its_own_issuers_keys() {
    let a = SigningKey::new(Algorithm::RS256, "a");
    let b = SigningKey::new(Algorithm::ES256, "b");
    let pa = Provider::start(&set(&[&a])).await;
    let pb = Provider::start(&set(&[&b])).await;
    let auth = JwtAuth::builder()
        .remote_keys(remote(&pa.jwks_url()).issuer("https://a"))
        .remote_keys(remote(&pb.jwks_url()).issuer("https://b"))
        .build()
        .unwrap();
    assert_eq!(
        when_loaded(&auth, &a.sign(&claims("https://a", "x")))
            .await
            .as_deref(),
        Ok("x")
    );
    assert_eq!(
        when_loaded(&auth, &b.sign(&claims("https://b", "y")))
            .await
            .as_deref(),
        Ok("y")
    );
    assert_eq!(
        verify(&auth, &a.sign(&claims("https://b", "x"))),
        Err(AuthError::InvalidToken(TokenError::InvalidIssuer)),
        "A's key cannot vouch for B's tokens"
    );
    let mut no_exp = claims("https://a", "x");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify(&auth, &a.sign(&no_exp)),
        Err(AuthError::InvalidToken(TokenError::InvalidClaims))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_keys_keep_working_beside_a_remote_set() {
    let remote_key = SigningKey::new(Algorithm::ES256, "idp");
    let provider = Provider::start(&set(&[&remote_key])).await;
    let auth = JwtAuth::builder()
        .hs256(b"an example secret of thirty-two bytes!")
        .remote_keys(remote(&provider.jwks_url()).issuer(ISS))
        .build()
        .unwrap();
    let own = auth.token_pair("alice").unwrap().access_token;
    assert_eq!(verify(&auth, &own).as_deref(), Ok("alice"));
    assert_eq!(
        when_loaded(&auth, &remote_key.sign(&claims(ISS, "bob")))
            .await
            .as_deref(),
        Ok("bob")
    );
    // A provider token cannot pass for the crate's own refresh token.
    let err = auth.verify(&remote_key.sign(&claims(ISS, "bob")), TokenType::Refresh);
    assert_eq!(
        err.unwrap_err(),
        AuthError::InvalidToken(TokenError::WrongType)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_binds_the_issuer() {
    let key = SigningKey::new(Algorithm::RS256, "k");
    let provider = Provider::start(&set(&[&key])).await;
    let issuer = provider.base.clone();
    let auth = build(
        RemoteKeySet::oidc_issuer(&issuer)
            .refresh_cooldown(Duration::from_millis(300))
            .fetch_timeout(Duration::from_millis(500)),
    );
    assert_eq!(
        when_loaded(&auth, &key.sign(&claims(&issuer, "a")))
            .await
            .as_deref(),
        Ok("a")
    );
    assert_eq!(provider.discovery_fetches(), 1);

    // A discovery document naming another issuer is refused: no keys are loaded.
    let liar = Provider::start(&set(&[&key])).await;
    liar.set_discovery_issuer("https://another.example.com");
    let auth =
        build(RemoteKeySet::oidc_issuer(&liar.base).refresh_cooldown(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(liar.discovery_fetches() >= 1);
    assert_eq!(liar.jwks_fetches(), 0, "its jwks_uri is never used");
    assert_eq!(
        verify(&auth, &key.sign(&claims(&liar.base, "a"))),
        Err(AuthError::KeysUnavailable)
    );

    // Discovery pointing to a plain-http, non-loopback jwks_uri is refused too.
    let insecure = Provider::start(&set(&[&key])).await;
    insecure.set_jwks_uri("http://idp.example.com/jwks");
    let auth = build(
        RemoteKeySet::oidc_issuer(&insecure.base).refresh_cooldown(Duration::from_millis(300)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        verify(&auth, &key.sign(&claims(&insecure.base, "a"))),
        Err(AuthError::KeysUnavailable)
    );
}

#[test]
fn only_https_except_loopback() {
    let err = JwtAuth::builder()
        .remote_keys(RemoteKeySet::jwks_url("http://idp.example.com/jwks"))
        .build();
    assert!(
        matches!(err, Err(ConfigError::InvalidKeySource(_))),
        "{err:?}"
    );
    let err = JwtAuth::builder()
        .remote_keys(RemoteKeySet::oidc_issuer("http://idp.example.com"))
        .build();
    assert!(matches!(err, Err(ConfigError::InvalidKeySource(_))));
    assert!(
        JwtAuth::builder()
            .remote_keys(RemoteKeySet::jwks_url("https://idp.example.com/jwks").issuer(ISS))
            .build()
            .is_ok()
    );
    assert!(
        JwtAuth::builder()
            .remote_keys(RemoteKeySet::jwks_url("http://localhost:1/jwks").issuer(ISS))
            .build()
            .is_ok()
    );
}

/// SECURITY.md 13.2 (review R2): a JWKS URL without an issuer is a build error; the
/// explicit opt-out accepts any `iss`, and a bound set only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_is_bound_to_an_issuer_unless_told_otherwise() {
    let unbound = JwtAuth::builder()
        .remote_keys(RemoteKeySet::jwks_url("https://idp.example.com/jwks"))
        .build();
    match unbound {
        Err(ConfigError::InvalidKeySource(why)) => assert!(why.contains("issuer"), "{why}"),
        other => panic!("an unbound set was built: {:?}", other.err()),
    }

    let key = SigningKey::new(Algorithm::ES256, "k");
    let provider = Provider::start(&set(&[&key])).await;
    let tenant = key.sign(&claims("https://idp.example.com/tenants/mallory", "a"));
    let bound = build(remote(&provider.jwks_url()));
    assert!(
        when_loaded(&bound, &key.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    assert!(matches!(
        verify(&bound, &tenant),
        Err(AuthError::InvalidToken(TokenError::InvalidIssuer))
    ));
    let open = JwtAuth::builder()
        .remote_keys(RemoteKeySet::jwks_url(provider.jwks_url()).any_issuer())
        .build()
        .unwrap();
    assert_eq!(when_loaded(&open, &tenant).await.as_deref(), Ok("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kid_is_fetched_once_and_bogus_kids_at_most_once_per_cooldown() {
    let old = SigningKey::new(Algorithm::RS256, "old");
    let provider = Provider::start(&set(&[&old])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_secs(30)),
    );
    assert!(
        when_loaded(&auth, &old.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    assert_eq!(provider.jwks_fetches(), 1);

    // Rotation: the provider publishes a new key; 50 concurrent first sights of it
    // share one fetch.
    let new = SigningKey::new(Algorithm::ES256, "new");
    provider.publish(&set(&[&old, &new]));
    let token = new.sign(&claims(ISS, "b"));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (auth, token) = (auth.clone(), token.clone());
            std::thread::spawn(move || verify(&auth, &token))
        })
        .collect();
    for h in handles {
        let _ = h.join().unwrap();
    }
    provider.wait_fetches(2).await;
    assert_eq!(verify(&auth, &token).as_deref(), Ok("b"));
    assert_eq!(provider.jwks_fetches(), 2, "one fetch for the new kid");

    // Within the cooldown, a flood of unknown kids fetches nothing.
    for i in 0..100 {
        let bogus = SigningKey::new(Algorithm::RS256, &format!("bogus{i}"));
        assert!(verify(&auth, &bogus.sign(&claims(ISS, "x"))).is_err());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(provider.jwks_fetches(), 2, "the cooldown holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_delays_a_new_key_by_one_cooldown_at_most() {
    let old = SigningKey::new(Algorithm::RS256, "old");
    let provider = Provider::start(&set(&[&old])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(500)),
    );
    assert!(
        when_loaded(&auth, &old.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    // A bogus kid spends the cooldown...
    assert!(
        verify(
            &auth,
            &SigningKey::new(Algorithm::RS256, "bogus").sign(&claims(ISS, "x"))
        )
        .is_err()
    );
    provider.wait_fetches(2).await;
    // ...then the genuine key appears: refused until the cooldown ends, never longer.
    let new = SigningKey::new(Algorithm::ES256, "new");
    provider.publish(&set(&[&old, &new]));
    let token = new.sign(&claims(ISS, "b"));
    let mut ok = false;
    for _ in 0..80 {
        if verify(&auth, &token).is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        ok,
        "the new key verifies within a cooldown (500 ms) plus a fetch"
    );
    assert_eq!(provider.jwks_fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresh_follows_max_age_and_drops_removed_keys() {
    let a = SigningKey::new(Algorithm::RS256, "a");
    let b = SigningKey::new(Algorithm::ES256, "b");
    let provider = Provider::start(&set(&[&a, &b])).await;
    provider.set_cache_control("public, max-age=1");
    // The provider's shorter max-age wins over the configured 60 s.
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(100)),
    );
    let token_b = b.sign(&claims(ISS, "b"));
    assert!(when_loaded(&auth, &token_b).await.is_ok());
    // A second sight puts the token in the verified-token cache.
    assert!(verify(&auth, &token_b).is_ok());
    provider.publish(&set(&[&a]));
    provider.wait_fetches(2).await;
    assert_eq!(
        verify(&auth, &token_b),
        Err(AuthError::InvalidToken(TokenError::UnsupportedAlgorithm)),
        "a removed key stops verifying after the next refresh"
    );
    assert!(verify(&auth, &a.sign(&claims(ISS, "a"))).is_ok());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = provider.jwks_fetches();
    assert!((3..=4).contains(&n), "refreshed about every second: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_the_provider_down_and_retries_within_the_cooldown() {
    let key = SigningKey::new(Algorithm::ES256, "k");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/jwks");
    let auth = build(
        remote(&url)
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(400)),
    );
    let token = key.sign(&claims(ISS, "a"));
    // Long enough for an uncapped backoff to grow past the cooldown.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(verify(&auth, &token), Err(AuthError::KeysUnavailable));

    // Through the layer: 503, and gRPC UNAVAILABLE.
    let svc = auth
        .layer()
        .layer(tower::service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    use tower::Layer;
    let req = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let req = Request::post("/svc/M")
        .header("content-type", "application/grpc")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        res.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap()),
        Some("14")
    );

    // The provider comes up: keys within a cooldown (400 ms) plus a fetch.
    let provider = Provider::start_on(port, &set(&[&key])).await;
    let mut ok = false;
    for _ in 0..70 {
        if verify(&auth, &token).is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "loaded within the cooldown after the provider came up");
    assert_eq!(provider.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_verify_up_to_max_staleness_then_fail_closed_then_heal() {
    let key = SigningKey::new(Algorithm::RS256, "k");
    let provider = Provider::start(&set(&[&key])).await;
    provider.set_cache_control("max-age=0");
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(100))
            .max_staleness(Duration::from_millis(800)),
    );
    let token = key.sign(&claims(ISS, "a"));
    assert!(when_loaded(&auth, &token).await.is_ok());
    // A second sight puts the token in the verified-token cache.
    assert!(verify(&auth, &token).is_ok());
    provider.set_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        verify(&auth, &token).is_ok(),
        "cached keys outlive a failed refresh"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        verify(&auth, &token),
        Err(AuthError::KeysUnavailable),
        "fail closed"
    );
    provider.set_mode(Mode::Up);
    let before = provider.jwks_fetches();
    provider.wait_fetches(before + 1).await;
    assert!(
        verify(&auth, &token).is_ok(),
        "healed by the next good fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_neither_holds_requests_nor_loads_past_the_timeout() {
    let key = SigningKey::new(Algorithm::RS256, "k");
    let provider = Provider::start(&set(&[&key])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .fetch_timeout(Duration::from_millis(300)),
    );
    let token = key.sign(&claims(ISS, "a"));
    assert!(when_loaded(&auth, &token).await.is_ok());
    provider.set_mode(Mode::Slow(Duration::from_secs(2)));
    // An unknown kid starts a fetch that hangs...
    let _ = verify(
        &auth,
        &SigningKey::new(Algorithm::RS256, "new").sign(&claims(ISS, "x")),
    );
    for _ in 0..100 {
        if provider.in_flight() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(provider.in_flight(), 1);
    // ...while a known key verifies at once.
    assert!(verify(&auth, &token).is_ok());

    // A provider slower than the timeout never loads.
    let slow = Provider::start(&set(&[&key])).await;
    slow.set_mode(Mode::Slow(Duration::from_secs(2)));
    let auth = build(
        remote(&slow.jwks_url())
            .issuer(ISS)
            .fetch_timeout(Duration::from_millis(200)),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(verify(&auth, &token), Err(AuthError::KeysUnavailable));
    slow.set_mode(Mode::Up);
    assert!(
        when_loaded(&auth, &token).await.is_ok() || {
            tokio::time::sleep(Duration::from_millis(500)).await;
            verify(&auth, &token).is_ok()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_other_statuses_are_refused() {
    let key = SigningKey::new(Algorithm::RS256, "k");
    let token = key.sign(&claims(ISS, "a"));
    for mode in [
        Mode::Redirect("/elsewhere"),
        Mode::Status(203),
        Mode::Status(500),
    ] {
        let provider = Provider::start(&set(&[&key])).await;
        provider.set_mode(mode.clone());
        let auth = build(remote(&provider.jwks_url()).issuer(ISS));
        provider.wait_fetches(1).await;
        assert_eq!(
            verify(&auth, &token),
            Err(AuthError::KeysUnavailable),
            "{mode:?}"
        );
        assert_eq!(
            provider.other_fetches(),
            0,
            "{mode:?}: redirect not followed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sets_keep_the_previous_keys() {
    let key = SigningKey::new(Algorithm::RS256, "k");
    let provider = Provider::start(&set(&[&key])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(100))
            .max_keys(5)
            .max_response_bytes(16 * 1024),
    );
    let token = key.sign(&claims(ISS, "a"));
    assert!(when_loaded(&auth, &token).await.is_ok());
    let other = SigningKey::new(Algorithm::ES256, "other");
    let bogus = SigningKey::new(Algorithm::RS256, "bogus");
    let bad_sets = [
        "not json".to_owned(),
        r#"{"keys":{}}"#.to_owned(),
        // Too many keys (6 > 5), the new one among them.
        json!({"keys": [other.jwk_value(), key.jwk_value(), key.jwk_value(), key.jwk_value(), key.jwk_value(), key.jwk_value()]}).to_string(),
        // Too large (> 16 KiB), the new one in it.
        json!({"keys": [other.jwk_value()], "pad": "x".repeat(20_000)}).to_string(),
        // Nothing usable.
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "other"}]}).to_string(),
    ];
    for (i, body) in bad_sets.into_iter().enumerate() {
        provider.publish_raw(body);
        let before = provider.jwks_fetches();
        // An unknown kid asks for a refresh; the cooldown is 100 ms.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let _ = verify(&auth, &bogus.sign(&claims(ISS, "x")));
        provider.wait_fetches(before + 1).await;
        assert!(verify(&auth, &token).is_ok(), "set {i}: previous keys kept");
        assert!(
            verify(&auth, &other.sign(&claims(ISS, "x"))).is_err(),
            "set {i} refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_public_signature_keys_and_their_own_algorithm() {
    let rsa = SigningKey::new(Algorithm::RS256, "rsa");
    let ec = SigningKey::new(Algorithm::ES256, "ec");
    let enc = SigningKey::new(Algorithm::RS256, "enc");
    let ops = SigningKey::new(Algorithm::RS256, "ops");
    let private = SigningKey::new(Algorithm::ES256, "private");
    let mut enc_jwk = enc.jwk_value();
    enc_jwk["use"] = json!("enc");
    let mut ops_jwk = ops.jwk_value();
    ops_jwk["key_ops"] = json!(["encrypt"]);
    let mut private_jwk = private.jwk_value();
    private_jwk["d"] = json!("AAAA");
    let provider = Provider::start(&set(&[&rsa])).await;
    provider.publish_raw(
        json!({"keys": [rsa.jwk_value(), ec.jwk_value(), enc_jwk, ops_jwk, private_jwk,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]})
        .to_string(),
    );
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_secs(30)),
    );
    assert!(
        when_loaded(&auth, &rsa.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    assert!(verify(&auth, &ec.sign(&claims(ISS, "a"))).is_ok());
    for refused in [&enc, &ops, &private] {
        assert!(
            verify(&auth, &refused.sign(&claims(ISS, "a"))).is_err(),
            "{}",
            refused.kid
        );
    }
    let fetches = provider.jwks_fetches();

    // HS256 "signed" with the RSA key's public JWK, naming the RSA kid.
    let public = serde_json::to_vec(&rsa.jwk).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(ISS, "evil"),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(verify(&auth, &forged).is_err());
    // HS256 with the `oct` key's secret.
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("hmac".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(ISS, "evil"),
        &jsonwebtoken::EncodingKey::from_secret(b"secretsecretsecretsecretsecret"),
    )
    .unwrap();
    assert!(verify(&auth, &forged).is_err());
    // PS256 with an RS256-only key, an ES256 token naming the RSA kid.
    let mut ps = SigningKey::new(Algorithm::PS256, "rsa");
    assert!(
        verify(&auth, &ps.sign(&claims(ISS, "evil"))).is_err(),
        "the JWK's alg binds"
    );
    ps = SigningKey::new(Algorithm::ES256, "rsa");
    assert!(verify(&auth, &ps.sign(&claims(ISS, "evil"))).is_err());
    // `none`.
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa"})),
        b64(claims(ISS, "evil"))
    );
    assert!(verify(&auth, &none).is_err());
    // An attacker's key named in `jku`/`jwk`: never fetched, never used.
    let attacker = SigningKey::attacker("evil");
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("evil".into());
    header.jku = Some(format!("{}/attacker", provider.base));
    header.jwk = Some(attacker.jwk.clone());
    let forged = jsonwebtoken::encode(&header, &claims(ISS, "evil"), &attacker.key).unwrap();
    assert!(verify(&auth, &forged).is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(provider.other_fetches(), 0, "jku never fetched");
    assert!(
        provider.jwks_fetches() <= fetches + 1,
        "algorithm mismatches fetch nothing; unknown kids once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_this_crate_verifies_elsewhere_through_its_published_set_alone() {
    use tower_jwt_auth::Key;
    let pem = |name: &str| {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let issuer = JwtAuth::builder()
        .signing_key(
            Key::pem_pair(
                Algorithm::ES256,
                pem("ec_private.pem"),
                pem("ec_public.pem"),
            )
            .kid("q1"),
        )
        .verification_key(Key::public_pem(Algorithm::RS256, pem("rsa_public.pem")))
        .issuer(ISS)
        .build()
        .unwrap();
    let published = issuer.jwks();
    let json = serde_json::to_value(&published).unwrap();
    assert_eq!(json["keys"].as_array().unwrap().len(), 2);
    assert_eq!(json["keys"][0]["kid"], "q1");
    assert_eq!(json["keys"][0]["alg"], "ES256");
    assert_eq!(json["keys"][0]["use"], "sig");
    assert!(json["keys"][0].get("d").is_none(), "public parts only");
    // A key without kid is published under its RFC 7638 thumbprint.
    let thumbprint = json["keys"][1]["kid"].as_str().unwrap();
    assert_eq!(thumbprint.len(), 43, "{thumbprint}");

    let provider = Provider::start(&published).await;
    let resource_server = build(remote(&provider.jwks_url()).issuer(ISS));
    let pair = issuer.token_pair("alice").unwrap();
    assert_eq!(
        when_loaded(&resource_server, &pair.access_token)
            .await
            .as_deref(),
        Ok("alice")
    );
    assert_eq!(
        verify(&resource_server, &pair.refresh_token),
        Err(AuthError::InvalidToken(TokenError::WrongType)),
        "a refresh token never passes as a provider's access token"
    );

    let hmac_only = JwtAuth::builder()
        .hs256(b"an example secret of thirty-two bytes!")
        .build()
        .unwrap();
    assert!(
        hmac_only.jwks().keys.is_empty(),
        "secrets are never published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_sharing_a_kid_each_verify_their_own_tokens() {
    let a = SigningKey::new(Algorithm::RS256, "shared");
    let b = SigningKey::attacker("shared");
    let pa = Provider::start(&set(&[&a])).await;
    let pb = Provider::start(&set(&[&b])).await;
    let auth = JwtAuth::builder()
        .remote_keys(remote(&pa.jwks_url()).issuer("https://a"))
        .remote_keys(remote(&pb.jwks_url()).issuer("https://b"))
        .build()
        .unwrap();
    assert_eq!(
        when_loaded(&auth, &a.sign(&claims("https://a", "x")))
            .await
            .as_deref(),
        Ok("x")
    );
    assert_eq!(
        when_loaded(&auth, &b.sign(&claims("https://b", "y")))
            .await
            .as_deref(),
        Ok("y")
    );
    assert_eq!(
        verify(&auth, &b.sign(&claims("https://a", "y"))),
        Err(AuthError::InvalidToken(TokenError::InvalidIssuer)),
        "B's key still cannot vouch for A's tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_kid_is_unavailable_not_invalid_while_its_own_set_is_not_loaded() {
    let a = SigningKey::new(Algorithm::RS256, "shared");
    let b = SigningKey::attacker("shared");
    let pb = Provider::start(&set(&[&b])).await;
    let down = format!("http://127.0.0.1:{}/jwks", free_port());
    let auth = JwtAuth::builder()
        .remote_keys(remote(&down).issuer("https://a"))
        .remote_keys(remote(&pb.jwks_url()).issuer("https://b"))
        .build()
        .unwrap();
    assert_eq!(
        when_loaded(&auth, &b.sign(&claims("https://b", "y")))
            .await
            .as_deref(),
        Ok("y")
    );
    // A's token names a kid B also publishes: B's key refuses it, and A's keys, which
    // might accept it, are not loaded. 503, not a 401 that would end A's session.
    assert_eq!(
        verify(&auth, &a.sign(&claims("https://a", "x"))),
        Err(AuthError::KeysUnavailable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_is_honoured_within_bounds() {
    let key = SigningKey::new(Algorithm::RS256, "k");
    // `no-store` asks for a fetch on every use: held to one per cooldown (300 ms).
    let eager = Provider::start(&set(&[&key])).await;
    eager.set_cache_control("no-store");
    let _auth = build(remote(&eager.jwks_url()));
    // A day-long max-age is cut to the configured max age (400 ms).
    let lazy = Provider::start(&set(&[&key])).await;
    lazy.set_cache_control("max-age=86400");
    let _auth2 = build(remote(&lazy.jwks_url()).cache_max_age(Duration::from_millis(400)));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (e, l) = (eager.jwks_fetches(), lazy.jwks_fetches());
    assert!(
        (3..=5).contains(&e),
        "no-store: one fetch per cooldown, not a loop: {e}"
    );
    assert!((2..=4).contains(&l), "max-age capped by cache_max_age: {l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_are_bearer_only_never_cookies() {
    let key = SigningKey::new(Algorithm::ES256, "k");
    let provider = Provider::start(&set(&[&key])).await;
    let auth = JwtAuth::builder()
        .hs256(b"an example secret of thirty-two bytes!")
        .remote_keys(remote(&provider.jwks_url()).issuer(ISS))
        .build()
        .unwrap();
    // Expiring within the implicit-refresh window: as a cookie it would be re-issued
    // as this crate's own token, outliving the provider's `exp`.
    let mut soon = claims(ISS, "alice");
    soon["exp"] = json!(soon["iat"].as_u64().unwrap() + 60);
    let token = key.sign(&soon);
    assert!(when_loaded(&auth, &token).await.is_ok());
    use tower::Layer;
    let svc = auth
        .layer()
        .layer(tower::service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let bearer = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(bearer).await.unwrap().status(),
        StatusCode::OK
    );
    let cookie = Request::get("/")
        .header("cookie", format!("__Host-access_token={token}"))
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(cookie).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get("set-cookie").is_none(), "never re-issued");
}

/// A service behind the layer that answers 200.
fn layered(
    auth: &JwtAuth,
) -> impl tower::Service<
    Request<String>,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    use tower::Layer;
    auth.layer()
        .layer(tower::service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }))
}

fn bearer(token: &str) -> Request<String> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_a_new_kid_wait_for_the_fetch_of_its_key() {
    let old = SigningKey::new(Algorithm::RS256, "old");
    let provider = Provider::start(&set(&[&old])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_secs(30))
            .fetch_timeout(Duration::from_secs(2)),
    );
    assert!(
        when_loaded(&auth, &old.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    let svc = layered(&auth);

    // The provider rotates a key in and answers slowly: the first requests that name
    // it wait for the one fetch they share, and pass.
    let new = SigningKey::new(Algorithm::ES256, "new");
    provider.publish(&set(&[&old, &new]));
    provider.set_mode(Mode::Slow(Duration::from_millis(300)));
    let token = new.sign(&claims(ISS, "b"));
    let started = std::time::Instant::now();
    let requests: Vec<_> = (0..20)
        .map(|_| tokio::spawn(svc.clone().oneshot(bearer(&token))))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "they waited for the fetch"
    );
    assert_eq!(provider.jwks_fetches(), 2, "one fetch for all of them");

    // Within the cooldown an unknown kid fetches nothing and waits for nothing.
    provider.set_mode(Mode::Up);
    let bogus = SigningKey::new(Algorithm::RS256, "bogus").sign(&claims(ISS, "x"));
    let started = std::time::Instant::now();
    let res = svc.clone().oneshot(bearer(&bogus)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < Duration::from_millis(250));
    let started = std::time::Instant::now();
    assert!(
        auth.verify_unrevoked(&bogus, TokenType::Access)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(provider.jwks_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kid_waits_no_longer_than_the_fetch_timeout() {
    let old = SigningKey::new(Algorithm::RS256, "old");
    let provider = Provider::start(&set(&[&old])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(50))
            .fetch_timeout(Duration::from_millis(300)),
    );
    assert!(
        when_loaded(&auth, &old.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    // The provider hangs: the request waits for the fetch's timeout, then is refused.
    provider.set_mode(Mode::Slow(Duration::from_secs(5)));
    let new = SigningKey::new(Algorithm::ES256, "new");
    let started = std::time::Instant::now();
    let res = layered(&auth)
        .oneshot(bearer(&new.sign(&claims(ISS, "b"))))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        waited >= Duration::from_millis(250),
        "it waited ({waited:?})"
    );
    assert!(waited < Duration::from_millis(1500), "bounded ({waited:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_api_waits_for_a_new_kid_too() {
    let old = SigningKey::new(Algorithm::RS256, "old");
    let provider = Provider::start(&set(&[&old])).await;
    let auth = build(
        remote(&provider.jwks_url())
            .issuer(ISS)
            .refresh_cooldown(Duration::from_millis(50))
            .fetch_timeout(Duration::from_secs(2)),
    );
    assert!(
        when_loaded(&auth, &old.sign(&claims(ISS, "a")))
            .await
            .is_ok()
    );
    provider.set_mode(Mode::Slow(Duration::from_millis(300)));
    // `authenticate`, then `verify_unrevoked`, each with a key rotated in just before.
    let new = SigningKey::new(Algorithm::ES256, "new");
    provider.publish(&set(&[&old, &new]));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut headers = http::HeaderMap::new();
    let value = format!("Bearer {}", new.sign(&claims(ISS, "c")));
    headers.insert("authorization", value.parse().unwrap());
    let started = std::time::Instant::now();
    let claims_c = auth.authenticate(&http::Method::GET, &headers).await;
    assert_eq!(claims_c.map(|c| c.sub).as_deref(), Ok("c"));
    assert!(started.elapsed() >= Duration::from_millis(250));

    let newer = SigningKey::new(Algorithm::EdDSA, "newer");
    provider.publish(&set(&[&old, &new, &newer]));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let started = std::time::Instant::now();
    let verified = auth
        .verify_unrevoked(&newer.sign(&claims(ISS, "d")), TokenType::Access)
        .await;
    assert_eq!(verified.map(|c| c.sub).as_deref(), Ok("d"));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(provider.jwks_fetches(), 3);
}

/// SECURITY.md 13.1 (review R1): a provider token without `jti` is identified by what its
/// signature covers, so a revoked ES256/ES384 token whose signature is rewritten as
/// `(r, n - s)` (still valid) stays revoked, through the async API and the layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_ecdsa_token_stays_revoked_with_its_signature_rewritten() {
    use support::provider::malleate;
    let keys = [
        SigningKey::new(Algorithm::ES256, "es256"),
        SigningKey::new(Algorithm::ES384, "es384"),
    ];
    let provider = Provider::start(&set(&keys.iter().collect::<Vec<_>>())).await;
    let auth = build(remote(&provider.jwks_url()).issuer(ISS));
    let svc = layered(&auth);
    for key in &keys {
        let token = key.sign(&claims(ISS, "mallory"));
        assert!(when_loaded(&auth, &token).await.is_ok());
        let rewritten = malleate(&token, key.alg);
        assert_ne!(rewritten, token);
        let original = auth.verify(&token, TokenType::Access).unwrap();
        let other = auth
            .verify(&rewritten, TokenType::Access)
            .expect("the rewritten signature verifies");
        assert_eq!(other.jti, original.jti, "{:?}: one id for both", key.alg);

        auth.revoke(&original).await.unwrap();
        for presented in [&token, &rewritten] {
            assert!(
                matches!(
                    auth.verify_unrevoked(presented, TokenType::Access).await,
                    Err(AuthError::InvalidToken(TokenError::Revoked))
                ),
                "{:?}",
                key.alg
            );
            let res = svc.clone().oneshot(bearer(presented)).await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{:?}", key.alg);
        }
    }
}

/// SECURITY.md 13.5 (review R5): a huge setting is a build error, never a panic on
/// the fetching task or the request path.
#[test]
fn huge_key_set_settings_are_refused_at_build() {
    let url = "https://idp.example.com/jwks";
    let sets = [
        RemoteKeySet::jwks_url(url).max_staleness(Duration::MAX),
        RemoteKeySet::jwks_url(url).fetch_timeout(Duration::MAX),
        RemoteKeySet::jwks_url(url).cache_max_age(Duration::MAX),
        RemoteKeySet::jwks_url(url).refresh_cooldown(Duration::MAX),
    ];
    for set in sets {
        let built = JwtAuth::builder().remote_keys(set.issuer(ISS)).build();
        assert!(
            matches!(built, Err(ConfigError::InvalidKeySource(ref why)) if why.contains("at most")),
            "{:?}",
            built.err()
        );
    }
}

/// SECURITY.md 13.5 (review R5): keys past the max staleness stop verifying on the
/// request path itself, even when the task that would drop them is gone (here: its
/// runtime was shut down).
#[test]
fn staleness_fails_closed_without_the_fetching_task() {
    let key = SigningKey::new(Algorithm::ES256, "k");
    let first = tokio::runtime::Runtime::new().unwrap();
    let (provider, auth, token) = first.block_on(async {
        let provider = Provider::start(&set(&[&key])).await;
        let auth = build(remote(&provider.jwks_url()).max_staleness(Duration::from_millis(700)));
        let token = key.sign(&claims(ISS, "a"));
        assert_eq!(when_loaded(&auth, &token).await.as_deref(), Ok("a"));
        (provider, auth, token)
    });
    drop(first);
    drop(provider);
    let fresh = key.sign(&claims(ISS, "b"));
    assert_eq!(
        verify(&auth, &fresh).as_deref(),
        Ok("b"),
        "within staleness"
    );
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(verify(&auth, &fresh), Err(AuthError::KeysUnavailable));
    assert_eq!(
        verify(&auth, &token),
        Err(AuthError::KeysUnavailable),
        "a cached token too"
    );
}
