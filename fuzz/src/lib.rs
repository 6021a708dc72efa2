//! Shared pieces of the fuzz targets: keys, configurations, a bank of real tokens,
//! a recording handler, and a tiny executor (every future here is ready at once:
//! the in-memory store answers without I/O).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_jwt_auth::{
    Algorithm, AuthError, AuthLayer, Authenticated, JwtAuth, JwtAuthBuilder, Key, Location,
    ManualClock, MemoryStore, TokenError, TokenPayload,
};

/// The instant every target starts at (tokens in the seeds were issued then).
pub const NOW: u64 = 1_800_000_000;
pub const SECRET: &[u8] = b"the fuzz targets' HS256 secret, 32+ bytes";
pub const ATTACKER_SECRET: &[u8] = b"an attacker's HS256 secret of 32+ bytes!!";
/// A second HMAC key, verification only, selected by `kid`.
pub const OLD_SECRET: &[u8] = b"the previous HS384 key: forty-eight bytes long!!";
pub const LEEWAY: u64 = 5;
pub const ACCESS_TTL: u64 = 15 * 60;
pub const REFRESH_TTL: u64 = 20 * 24 * 3600;

pub const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/keys/rsa_public.pem");
pub const EC_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ec_public.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
pub const ED_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ed25519_private.pem");
pub const ED_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ed25519_public.pem");
pub const ATTACKER_RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/attacker_rsa_private.pem");
pub const ATTACKER_RSA_PUBLIC: &[u8] = include_bytes!("../../tests/keys/attacker_rsa_public.pem");

pub const RSA_KID: &str = "rsa-1";
pub const ED_KID: &str = "ed-1";
pub const OLD_KID: &str = "old";

/// Polls a future that must be ready without I/O (bounded: a future that stays
/// pending is a bug in the harness or in the crate's in-memory path).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a future of the in-memory path stayed pending");
}

/// The HS256 configuration (plus an HS384 verification key selected by `kid`).
pub fn hs_builder(clock: &ManualClock) -> JwtAuthBuilder {
    JwtAuth::builder()
        .hs256(SECRET)
        .verification_key(Key::hmac(Algorithm::HS384, OLD_SECRET).kid(OLD_KID))
        .clock(clock.clone())
        .leeway(Duration::from_secs(LEEWAY))
        .access_ttl(Duration::from_secs(ACCESS_TTL))
        .refresh_ttl(Duration::from_secs(REFRESH_TTL))
}

/// The asymmetric configuration: RS256 signs (with a `kid`); ES256 (no `kid`) and
/// EdDSA (with a `kid`) verify.
pub fn asym_builder(clock: &ManualClock) -> JwtAuthBuilder {
    JwtAuth::builder()
        .signing_key(Key::pem_pair(Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC).kid(RSA_KID))
        .verification_key(Key::public_pem(Algorithm::ES256, EC_PUBLIC))
        .verification_key(Key::public_pem(Algorithm::EdDSA, ED_PUBLIC).kid(ED_KID))
        .clock(clock.clone())
        .leeway(Duration::from_secs(LEEWAY))
        .access_ttl(Duration::from_secs(ACCESS_TTL))
        .refresh_ttl(Duration::from_secs(REFRESH_TTL))
}

/// The three base64url segments of a compact token, if it has exactly three.
pub fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut it = token.split('.');
    let parts = (it.next()?, it.next()?, it.next()?);
    it.next().is_none().then_some(parts)
}

/// The claims of a token, read without any check (for the harness's own model).
pub fn peek_claims(token: &str) -> Option<TokenPayload> {
    let (_, payload, _) = segments(token)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Signs `header.payload` (JSON, as given) with an HMAC secret: a token of any shape.
pub fn hs256_token(header: &[u8], payload: &[u8], secret: &[u8]) -> String {
    use hmac::Mac;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

/// Whether an HMAC-SHA256 of the signing input with `secret` is the token's signature
/// (the independent reference check for HS256).
pub fn hs256_recomputes(token: &str, secret: &[u8]) -> bool {
    use hmac::Mac;
    let Some((h, p, s)) = segments(token) else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(s) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// A replacement of one character of `token` at `pos` (the signature, the payload
/// or the header, depending on where it lands), never the same character.
pub fn flip_char(token: &str, pos: usize, with: u8) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = token.as_bytes().to_vec();
    if bytes.is_empty() {
        return String::from("x");
    }
    let i = pos % bytes.len();
    let mut c = ALPHABET[usize::from(with) % ALPHABET.len()];
    if c == bytes[i] {
        c = if c == b'A' { b'B' } else { b'A' };
    }
    bytes[i] = c;
    String::from_utf8(bytes).unwrap_or_default()
}

/// `token` with the payload of `other` (and its own header and signature).
pub fn swap_payload(token: &str, other: &str) -> String {
    match (segments(token), segments(other)) {
        (Some((h, _, s)), Some((_, p, _))) => format!("{h}.{p}.{s}"),
        _ => format!("{token}x"),
    }
}

/// What the recording handler saw of one request.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub ran: bool,
    pub claims: Option<TokenPayload>,
    pub presented: Option<(Location, String)>,
    /// What the handler did to the store.
    pub revoked: bool,
    pub refresh_error: Option<AuthError>,
    pub refreshed: Option<(String, Option<String>)>,
}

/// What a handler does once the request got through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Answers with this status, touching nothing.
    Status(u16),
    /// Explicit refresh: rotates the refresh token, sets cookies when it came from one.
    Refresh,
    /// Logout: revokes the token (and its family), clears the cookies.
    Logout,
    /// Revokes the session without clearing cookies (review F4).
    RevokeOnly,
}

pub type Body = String;

/// An inner service that records what it saw and acts as `handler` says.
pub fn recording_service(
    auth: JwtAuth,
    seen: Arc<Mutex<Seen>>,
    handler: Handler,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request<Body>| {
        let auth = auth.clone();
        let seen = seen.clone();
        async move {
            let authenticated = req.extensions().get::<Authenticated>();
            let claims = authenticated.map(|a| TokenPayload::clone(a.claims()));
            let presented = authenticated.map(|a| (a.location(), a.token().as_str().to_owned()));
            let mut record = Seen {
                ran: true,
                claims: claims.clone(),
                presented: presented.clone(),
                ..Seen::default()
            };
            let mut res = Response::new(String::new());
            match handler {
                Handler::Status(code) => {
                    *res.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                }
                Handler::Refresh => match &claims {
                    Some(c) => match auth.refresh(c).await {
                        Ok(refreshed) => {
                            if presented.as_ref().is_some_and(|p| p.0 == Location::Cookie) {
                                auth.set_refreshed_cookies(res.headers_mut(), &refreshed);
                            }
                            record.refreshed =
                                Some((refreshed.access_token, refreshed.refresh_token));
                        }
                        Err(e) => {
                            *res.status_mut() = e.status();
                            record.refresh_error = Some(e);
                        }
                    },
                    None => *res.status_mut() = StatusCode::UNAUTHORIZED,
                },
                Handler::Logout | Handler::RevokeOnly => {
                    if let Some(c) = &claims {
                        match auth.revoke(c).await {
                            Ok(()) => record.revoked = true,
                            Err(e) => *res.status_mut() = e.status(),
                        }
                    }
                    if handler == Handler::Logout {
                        auth.unset_cookies(res.headers_mut());
                    }
                }
            }
            *seen.lock().unwrap() = record;
            Ok::<_, std::convert::Infallible>(res)
        }
    })
}

/// Sends one request through `layer` to a recording handler; returns the response
/// and what the handler saw (`ran: false` when the layer rejected it).
pub fn send(
    auth: &JwtAuth,
    layer: &AuthLayer,
    handler: Handler,
    req: Request<Body>,
) -> (Response<Body>, Seen) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut svc = layer.layer(recording_service(auth.clone(), seen.clone(), handler));
    let res = block_on(async {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
        svc.call(req).await
    });
    let res = match res {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let seen = seen.lock().unwrap().clone();
    (res, seen)
}

/// The store's whole state, to tell whether a request wrote to it (its `Debug` shows
/// every entry; a read leaves it identical).
pub fn snapshot(store: &MemoryStore) -> String {
    format!("{store:?}")
}

/// The rejection a response carries (the layer puts it in the extensions).
pub fn rejection(res: &Response<Body>) -> Option<&AuthError> {
    res.extensions().get::<AuthError>()
}

pub fn is_reuse(res: &Response<Body>) -> bool {
    matches!(
        rejection(res),
        Some(AuthError::InvalidToken(TokenError::Reused))
    )
}

/// The `Set-Cookie` values of a response.
pub fn set_cookies(res: &Response<Body>) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The value a response sets for cookie `name` (`Some("")` for a removal).
pub fn cookie_value(res: &Response<Body>, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    set_cookies(res).into_iter().find_map(|c| {
        let rest = c.strip_prefix(&prefix)?;
        Some(rest.split(';').next().unwrap_or_default().to_owned())
    })
}

/// Methods that need no CSRF header (RFC 9110 §9.2.1 safe methods, exact).
pub fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD || method == Method::OPTIONS
}

/// A method chosen by `b`: the usual ones, odd spellings, WebDAV, and nonsense.
pub fn method_of(b: u8) -> Method {
    const NAMES: [&str; 16] = [
        "GET",
        "HEAD",
        "OPTIONS",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "get",
        "PoSt",
        "patch",
        "PROPPATCH",
        "MERGE",
        "TRACE",
        "CONNECT",
        "head",
        "X-ANY",
    ];
    Method::from_bytes(NAMES[usize::from(b) % NAMES.len()].as_bytes()).unwrap_or(Method::GET)
}

/// Whether an error is one a rejection may carry for a bad request (never a 5xx).
pub fn is_client_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 403)
}

/// A `Cookie` header with the given pairs (plus a cookie that is not ours).
pub fn cookie_header(pairs: &[(&str, &str)]) -> Option<HeaderValue> {
    let mut v = String::from("theme=dark");
    for (name, value) in pairs {
        v.push_str("; ");
        v.push_str(name);
        v.push('=');
        v.push_str(value);
    }
    HeaderValue::from_str(&v).ok()
}

/// Adds a header value, ignoring values `http` would refuse.
pub fn add_header(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.append(name, v);
    }
}

pub fn add_cookie(headers: &mut HeaderMap, pairs: &[(&str, &str)]) {
    if let Some(v) = cookie_header(pairs) {
        headers.append(COOKIE, v);
    }
}
