//! The quickstart and the resource server as real processes: the quickstart signs
//! ES256 tokens with `JWT_PRIVATE_KEY` and publishes its key set; the resource server
//! verifies those tokens through that published set alone (no shared secret). The
//! resource server starts first, while its key provider (the quickstart) is down.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode, header};
use serde_json::json;
use support::client::{Response, send};
use support::provider::{free_port, install_crypto};

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds both examples (a no-op after `cargo test --all-features`, which builds them)
/// and returns the directory holding them.
fn examples() -> PathBuf {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(manifest)
        .args(["build", "--all-features", "--example", "quickstart"])
        .args(["--example", "resource_server"])
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "building the examples failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // This test runs from <target>/debug/deps: the examples are in <target>/debug/examples.
    let exe = std::env::current_exe().expect("test executable");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("profile dir");
    profile.join("examples")
}

fn pem(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("test key")
}

fn spawn(program: PathBuf, env: &[(&str, String)]) -> Running {
    let mut cmd = Command::new(program);
    // Nothing of the developer's environment leaks in (a REDIS_URL, a JWT_SECRET_KEY).
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().expect("spawn example"))
}

/// Waits (bounded) until `addr` answers `GET path` with something other than
/// `unwanted`; returns that answer.
async fn answer_other_than(
    addr: SocketAddr,
    path: &str,
    headers: &[(header::HeaderName, String)],
    unwanted: Option<StatusCode>,
    limit: Duration,
) -> Response {
    let start = Instant::now();
    loop {
        let last = send(addr, Method::GET, path, headers, None).await;
        match &last {
            Ok(res) if Some(res.status) != unwanted => return last.unwrap(),
            _ if start.elapsed() > limit => panic!("{addr}{path} after {limit:?}: {last:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_tokens_verify_in_the_resource_server_through_the_published_set() {
    install_crypto();
    let dir = examples();
    let (issuer_port, resource_port) = (free_port(), free_port());
    let issuer_addr: SocketAddr = ([127, 0, 0, 1], issuer_port).into();
    let resource_addr: SocketAddr = ([127, 0, 0, 1], resource_port).into();
    let issuer = format!("http://127.0.0.1:{issuer_port}");

    // The resource server first: its provider is down, it must start anyway and answer
    // 503 for a token until the keys are loaded.
    let _resource_server = spawn(
        dir.join("resource_server"),
        &[
            ("JWKS_URL", format!("{issuer}/.well-known/jwks.json")),
            ("JWT_DECODE_ISSUER", issuer.clone()),
            ("JWKS_REFRESH_COOLDOWN", "1".into()),
            ("PORT", resource_port.to_string()),
        ],
    );
    let some_token = format!("Bearer {}", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
    let down = answer_other_than(
        resource_addr,
        "/protected",
        &[(header::AUTHORIZATION, some_token)],
        None,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no keys yet: 503, not a failed start ({down:?})"
    );

    let _quickstart = spawn(
        dir.join("quickstart"),
        &[
            ("JWT_ALGORITHM", "ES256".into()),
            ("JWT_PRIVATE_KEY", pem("ec_private.pem")),
            ("JWT_PUBLIC_KEY", pem("ec_public.pem")),
            ("JWT_ENCODE_ISSUER", issuer.clone()),
            ("JWT_DECODE_ISSUER", issuer.clone()),
            ("PORT", issuer_port.to_string()),
        ],
    );
    let published = answer_other_than(
        issuer_addr,
        "/.well-known/jwks.json",
        &[],
        None,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(published.status, StatusCode::OK);
    let keys = published.json();
    let kid = keys["keys"][0]["kid"].as_str().expect("a published kid");
    assert_eq!(keys["keys"][0]["alg"], "ES256");
    assert!(keys["keys"][0].get("d").is_none(), "public parts only");

    let login = send(
        issuer_addr,
        Method::POST,
        "/login",
        &[],
        Some(json!({"username": "test", "password": "test"})),
    )
    .await
    .expect("login");
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    let access = login.json()["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert!(
        jsonwebtoken::decode_header(&access)
            .expect("header")
            .kid
            .as_deref()
            == Some(kid),
        "the token names the published key"
    );

    // The resource server retries with a backoff capped at the cooldown (1 s here).
    let bearer = [(header::AUTHORIZATION, format!("Bearer {access}"))];
    let ok = answer_other_than(
        resource_addr,
        "/protected",
        &bearer,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(ok.json()["sub"], "test");
    assert_eq!(ok.json()["iss"], issuer.as_str());

    // The refresh token is not an access token; a token signed with another key is
    // refused although it names the published kid.
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&access)
        .expect("claims")
        .claims;
    for (what, token) in [
        ("a refresh token", refresh),
        ("a tampered token", format!("{access}x")),
        ("a forged token", forge(&claims, kid)),
    ] {
        let res = send(
            resource_addr,
            Method::GET,
            "/protected",
            &[(header::AUTHORIZATION, format!("Bearer {token}"))],
            None,
        )
        .await
        .expect("request");
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}: {res:?}");
        assert!(
            res.header(header::WWW_AUTHENTICATE)
                .is_some_and(|w| w.contains("invalid_token")),
            "{what}: {res:?}"
        );
    }
}

/// The same claims and `kid`, signed with a P-256 key that is not the published one.
fn forge(claims: &serde_json::Value, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem("attacker_ec_private.pem").as_bytes())
        .expect("attacker key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}
