//! An identity provider served on loopback, steered by the test: it publishes a JWK
//! Set (and an OpenID Connect discovery document), rotates keys, goes slow, goes
//! down, redirects, names another issuer, and counts what it is asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the provider answers the JWKS and discovery URLs.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Answers normally.
    Up,
    /// Closes the connection without answering.
    Down,
    /// Waits this long before answering.
    Slow(Duration),
    /// Answers this status with the set as body.
    Status(u16),
    /// Redirects (302) to this path of the provider.
    Redirect(&'static str),
}

struct State {
    mode: Mode,
    /// The JWK Set document, as served.
    jwks: String,
    /// The `issuer` the discovery document names (None: the provider's own).
    discovery_issuer: Option<String>,
    /// The `jwks_uri` the discovery document names (None: this provider's /jwks).
    jwks_uri: Option<String>,
    cache_control: Option<String>,
}

/// The provider. Dropping it stops serving.
pub struct Provider {
    pub base: String,
    state: Arc<Mutex<State>>,
    jwks_fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
    other_fetches: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Provider {
    /// Serves `jwks` on a free port.
    pub async fn start(jwks: &JwkSet) -> Self {
        Self::start_on(free_port(), jwks).await
    }

    /// Serves `jwks` on `port` (a port that was free: "the provider comes up").
    pub async fn start_on(port: u16, jwks: &JwkSet) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let base = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Up,
            jwks: serde_json::to_string(jwks).expect("jwks json"),
            discovery_issuer: None,
            jwks_uri: None,
            cache_control: None,
        }));
        let counters: [Arc<AtomicUsize>; 4] = Default::default();
        let [jwks_fetches, discovery_fetches, other_fetches, in_flight] = counters;
        let shared = (
            state.clone(),
            base.clone(),
            jwks_fetches.clone(),
            discovery_fetches.clone(),
            other_fetches.clone(),
            in_flight.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { answer(req, shared).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            base,
            state,
            jwks_fetches,
            discovery_fetches,
            other_fetches,
            in_flight,
            task,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Publishes another set.
    pub fn publish(&self, jwks: &JwkSet) {
        self.publish_raw(serde_json::to_string(jwks).unwrap());
    }

    /// Publishes any document at the JWKS URL.
    pub fn publish_raw(&self, body: String) {
        self.state.lock().unwrap().jwks = body;
    }

    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.state.lock().unwrap().discovery_issuer = Some(issuer.to_owned());
    }

    pub fn set_jwks_uri(&self, uri: &str) {
        self.state.lock().unwrap().jwks_uri = Some(uri.to_owned());
    }

    pub fn set_cache_control(&self, value: &str) {
        self.state.lock().unwrap().cache_control = Some(value.to_owned());
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    /// Requests for the set so far.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Requests for any other path (a redirect target, a `jku`).
    pub fn other_fetches(&self) -> usize {
        self.other_fetches.load(Ordering::SeqCst)
    }

    /// Requests being answered right now (a slow provider).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the set was asked for at least `n` times.
    pub async fn wait_fetches(&self, n: usize) {
        for _ in 0..500 {
            if self.jwks_fetches() >= n {
                // Let the client parse and swap in what it got.
                tokio::time::sleep(Duration::from_millis(30)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the set was fetched {} times, not {n}", self.jwks_fetches());
    }
}

type Shared = (
    Arc<Mutex<State>>,
    String,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
);

async fn answer(req: Request<Incoming>, shared: Shared) -> Result<Response<Full<Bytes>>, String> {
    let (state, base, jwks_fetches, discovery_fetches, other_fetches, in_flight) = shared;
    let path = req.uri().path().to_owned();
    let (mode, body, cache_control) = {
        let state = state.lock().unwrap();
        let body = match path.as_str() {
            "/jwks" => {
                jwks_fetches.fetch_add(1, Ordering::SeqCst);
                state.jwks.clone()
            }
            "/.well-known/openid-configuration" => {
                discovery_fetches.fetch_add(1, Ordering::SeqCst);
                json!({
                    "issuer": state.discovery_issuer.clone().unwrap_or_else(|| base.clone()),
                    "jwks_uri": state.jwks_uri.clone().unwrap_or_else(|| format!("{base}/jwks")),
                })
                .to_string()
            }
            _ => {
                other_fetches.fetch_add(1, Ordering::SeqCst);
                state.jwks.clone()
            }
        };
        (state.mode.clone(), body, state.cache_control.clone())
    };
    let mut res = Response::builder().header("content-type", "application/json");
    if let Some(cc) = cache_control {
        res = res.header("cache-control", cc);
    }
    match mode {
        Mode::Up => {}
        // An error from the service makes hyper close the connection unanswered.
        Mode::Down => return Err("down".into()),
        Mode::Slow(delay) => {
            in_flight.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        Mode::Status(status) => res = res.status(status),
        Mode::Redirect(to) if path == "/jwks" || path.starts_with("/.well-known") => {
            res = res
                .status(StatusCode::FOUND)
                .header("location", format!("{base}{to}"));
        }
        Mode::Redirect(_) => {}
    }
    Ok(res.body(Full::new(Bytes::from(body))).unwrap())
}

/// A signing key of the provider, made from a PEM of tests/keys.
#[derive(Clone)]
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub key: EncodingKey,
    pub jwk: Jwk,
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).expect(name)
}

impl SigningKey {
    /// `alg` with the test key of its family (RSA for RS*/PS*, P-256, P-384, Ed25519).
    pub fn new(alg: Algorithm, kid: &str) -> Self {
        install_crypto();
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem("ec_private.pem")),
            Algorithm::ES384 => EncodingKey::from_ec_pem(&pem("ec384_private.pem")),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem("ed25519_private.pem")),
            _ => EncodingKey::from_rsa_pem(&pem("rsa_private.pem")),
        }
        .expect("test key");
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            alg,
            kid: kid.to_owned(),
            key,
            jwk,
        }
    }

    /// The attacker's RSA key (not in any published set).
    pub fn attacker(kid: &str) -> Self {
        install_crypto();
        let key = EncodingKey::from_rsa_pem(&pem("attacker_rsa_private.pem")).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            alg: Algorithm::RS256,
            kid: kid.to_owned(),
            key,
            jwk,
        }
    }

    /// The JWK as a JSON value (to tamper with).
    pub fn jwk_value(&self) -> Value {
        serde_json::to_value(&self.jwk).unwrap()
    }

    /// A token with these claims, `kid` in its header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// A JWK Set of these keys.
pub fn set(keys: &[&SigningKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    }
}

/// Provider-style claims: no `type`, `fresh` or `csrf`.
pub fn claims(iss: &str, sub: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"iss": iss, "sub": sub, "iat": now, "exp": now + 300, "scope": "read write"})
}

/// `jsonwebtoken` needs a process-wide crypto provider to sign.
pub fn install_crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// The same token with its ECDSA signature `(r, s)` rewritten as `(r, n - s)`: a
/// different signature that verifies all the same (ES256 and ES384 only).
pub fn malleate(token: &str, alg: Algorithm) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    const P256_N: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
    const P384_N: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973";
    let n = match alg {
        Algorithm::ES256 => P256_N,
        Algorithm::ES384 => P384_N,
        other => panic!("{other:?} signatures are not malleable this way"),
    };
    let n: Vec<u8> = (0..n.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&n[i..i + 2], 16).unwrap())
        .collect();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let s = &mut signature[n.len()..];
    // s := n - s, big-endian, with borrow.
    let mut borrow = 0i16;
    for (s, n) in s.iter_mut().zip(&n).rev() {
        let d = i16::from(*n) - i16::from(*s) - borrow;
        borrow = i16::from(d < 0);
        *s = d.rem_euclid(256) as u8;
    }
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
