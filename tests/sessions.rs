//! Browser sessions through the layer: cookies, CSRF double submit, implicit refresh
//! (SECURITY.md §6.3, §7, §8), against the in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_auth::{
    Authenticated, CookieNames, ImplicitRefresh, JwtAuth, ManualClock, TokenPair, TokenPayload,
    TokenType,
};

const SECRET: &[u8] = b"the session tests use this 32+ byte secret";
const NOW: u64 = 1_800_000_000;

struct Fixture {
    auth: JwtAuth,
    clock: ManualClock,
    calls: Arc<AtomicUsize>,
}

fn fixture() -> Fixture {
    let clock = ManualClock::new(NOW);
    let auth = JwtAuth::builder()
        .hs256(SECRET)
        .clock(clock.clone())
        .access_ttl(Duration::from_secs(15 * 60))
        .implicit_refresh(ImplicitRefresh::window(Duration::from_secs(10 * 60)))
        .build()
        .unwrap();
    Fixture {
        auth,
        clock,
        calls: Arc::new(AtomicUsize::new(0)),
    }
}

impl Fixture {
    fn pair(&self) -> TokenPair {
        self.auth
            .access_token("alice")
            .fresh(true)
            .scopes(["read", "write"])
            .claim("tenant", "acme")
            .pair()
            .unwrap()
    }

    /// Sends a request through `auth.layer()` to a service that answers with the status
    /// named by the path (`/404`, `/500`, …), `/logout` clearing the cookies.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Response<String> {
        self.send_with(self.auth.layer(), method, path, headers)
            .await
    }

    async fn send_with(
        &self,
        layer: tower_jwt_auth::AuthLayer,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Response<String> {
        let calls = self.calls.clone();
        let auth = self.auth.clone();
        let inner = service_fn(move |req: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let auth = auth.clone();
            async move {
                let claims = req
                    .extensions()
                    .get::<Authenticated>()
                    .map(|a| TokenPayload::clone(a.claims()));
                if req.uri().path() == "/revoke"
                    && let Some(claims) = &claims
                {
                    // Revokes the session without clearing its cookies.
                    auth.revoke(claims).await.unwrap();
                }
                let mut res = Response::new(claims.map(|c| c.sub).unwrap_or_default());
                match req.uri().path() {
                    "/logout" => auth.unset_cookies(res.headers_mut()),
                    p => {
                        if let Ok(code) = p.trim_start_matches('/').parse::<u16>() {
                            *res.status_mut() = StatusCode::from_u16(code).unwrap();
                        }
                    }
                }
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        layer
            .layer(inner)
            .oneshot(req.body(String::new()).unwrap())
            .await
            .unwrap()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn names(&self) -> CookieNames {
        self.auth.cookie_names().clone()
    }

    fn cookie(&self, access: Option<&str>, refresh: Option<&str>) -> (&'static str, String) {
        let n = self.names();
        let mut parts = vec!["theme=dark".to_owned()];
        if let Some(a) = access {
            parts.push(format!("{}={a}", n.access));
        }
        if let Some(r) = refresh {
            parts.push(format!("{}={r}", n.refresh));
        }
        ("cookie", parts.join("; "))
    }
}

fn set_cookies(res: &Response<String>) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The access token a response sets, if any.
fn new_access(f: &Fixture, res: &Response<String>) -> Option<String> {
    let prefix = format!("{}=", f.names().access);
    set_cookies(res).into_iter().find_map(|c| {
        let value = c.strip_prefix(&prefix)?.split(';').next()?.to_owned();
        (!value.is_empty()).then_some(value)
    })
}

fn www(res: &Response<String>) -> &str {
    res.headers()
        .get(WWW_AUTHENTICATE)
        .map_or("", |v| v.to_str().unwrap())
}

#[test]
fn s7_1_to_7_4_cookies_are_hardened_and_prefixed() {
    let f = fixture();
    let pair = f.pair();
    let mut h = HeaderMap::new();
    f.auth.set_cookies(&mut h, &pair);
    let cookies: Vec<_> = h
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 4);
    for c in &cookies {
        assert!(c.starts_with("__Host-"), "{c}");
        assert!(
            c.contains("Secure") && c.contains("Path=/") && c.contains("SameSite=Lax"),
            "{c}"
        );
        assert!(!c.contains("Domain"), "{c}");
    }
    let token_cookies: Vec<_> = cookies.iter().filter(|c| !c.contains("csrf")).collect();
    assert_eq!(token_cookies.len(), 2);
    assert!(token_cookies.iter().all(|c| c.contains("HttpOnly")));
    let csrf_cookies: Vec<_> = cookies.iter().filter(|c| c.contains("csrf")).collect();
    assert!(csrf_cookies.iter().all(|c| !c.contains("HttpOnly")));
    assert!(csrf_cookies.iter().all(|c| c.contains(&pair.csrf)));

    // AuthX's names are a preset; prefixed names without Secure are refused.
    let authx = JwtAuth::builder()
        .hs256(SECRET)
        .cookie_names(CookieNames::authx())
        .build()
        .unwrap();
    assert_eq!(authx.cookie_names().access, "access_token_cookie");
    let insecure = JwtAuth::builder()
        .hs256(SECRET)
        .cookie_names(CookieNames::default())
        .cookie_path("/api")
        .build();
    assert!(insecure.is_err(), "__Host- with Path=/api must be refused");
}

#[tokio::test]
async fn s7_4_unprefixed_cookie_planted_by_a_subdomain_is_ignored() {
    let f = fixture();
    let pair = f.pair();
    let planted = ("cookie", format!("access_token={}", pair.access_token));
    let res = f.send(Method::GET, "/", &[planted]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), "Bearer");
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn s7_5_repeated_auth_cookie_is_a_bad_request() {
    let f = fixture();
    let mine = f.pair();
    let attacker = f.auth.access_token("mallory").pair().unwrap();
    let n = f.names();
    for order in [[&attacker, &mine], [&mine, &attacker]] {
        let header = format!(
            "{}={}; {}={}",
            n.access, order[0].access_token, n.access, order[1].access_token
        );
        let res = f.send(Method::GET, "/", &[("cookie", header)]).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(www(&res).contains(r#"error="invalid_request""#));
    }
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn s7_6_unsafe_cookie_request_needs_the_csrf_header() {
    let f = fixture();
    let pair = f.pair();
    let cookie = f.cookie(Some(&pair.access_token), None);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let res = f
            .send(method.clone(), "/", std::slice::from_ref(&cookie))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "{method} without header"
        );
        let wrong = ("x-csrf-token", "not-the-value".to_owned());
        let res = f.send(method.clone(), "/", &[cookie.clone(), wrong]).await;
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "{method} with a wrong header"
        );
        assert!(set_cookies(&res).is_empty());
    }
    assert_eq!(f.calls(), 0);
    let right = ("x-csrf-token", pair.csrf.clone());
    let res = f.send(Method::POST, "/", &[cookie, right]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn s7_7_csrf_value_not_bound_to_the_session_is_refused() {
    let f = fixture();
    let pair = f.pair();
    let n = f.names();
    // The attacker plants a csrf cookie and sends the same value in the header.
    let cookie = format!(
        "{}={}; {}=planted",
        n.access, pair.access_token, n.csrf_access
    );
    let res = f
        .send(
            Method::POST,
            "/",
            &[("cookie", cookie), ("x-csrf-token", "planted".into())],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn s7_8_safe_methods_need_no_csrf_header() {
    let f = fixture();
    let pair = f.pair();
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let res = f
            .send(
                method.clone(),
                "/",
                &[f.cookie(Some(&pair.access_token), None)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{method}");
    }
}

#[tokio::test]
async fn s7_9_bearer_needs_no_csrf_but_bearer_plus_cookie_is_ambiguous() {
    let f = fixture();
    let pair = f.pair();
    let bearer = ("authorization", format!("Bearer {}", pair.access_token));
    let res = f
        .send(Method::POST, "/", std::slice::from_ref(&bearer))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = f
        .send(
            Method::GET,
            "/",
            &[bearer, f.cookie(Some(&pair.access_token), None)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(www(&res).contains(r#"error="invalid_request""#));
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn s7_10_expired_access_cookie_falls_back_to_the_refresh_cookie() {
    let f = fixture();
    let pair = f.pair();
    f.clock.advance(16 * 60 + 10);
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.access_token), Some(&pair.refresh_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "alice");
    let token = new_access(&f, &res).expect("a new access cookie");
    let claims = f.auth.verify(&token, TokenType::Access).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_ne!(claims.jti, pair.access_claims.jti);
    assert!(!claims.fresh);
    assert_eq!(
        claims.scopes, pair.access_claims.scopes,
        "scopes survive the refresh"
    );
    assert_eq!(claims.claim::<String>("tenant").as_deref(), Some("acme"));
    assert_eq!(
        claims.csrf.as_deref(),
        Some(pair.csrf.as_str()),
        "in-flight CSRF stays valid"
    );
    assert_eq!(claims.exp, f.clock_now() + 15 * 60);
    // Only the access cookie: implicit refresh never rotates the refresh token.
    assert_eq!(set_cookies(&res).len(), 1);

    // Missing access cookie: same fallback.
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(None, Some(&pair.refresh_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(new_access(&f, &res).is_some());
}

impl Fixture {
    /// A request with the refresh cookie alone: it must pass, and the access token
    /// minted from the refresh cookie is returned.
    async fn resume_from_refresh_cookie(&self, refresh_token: &str) -> String {
        let res = self
            .send(Method::GET, "/", &[self.cookie(None, Some(refresh_token))])
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        new_access(self, &res).expect("an access cookie minted from the refresh cookie")
    }

    fn clock_now(&self) -> u64 {
        use tower_jwt_auth::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn s7_10_forged_access_cookie_never_falls_back() {
    let f = fixture();
    let pair = f.pair();
    let other = JwtAuth::builder()
        .hs256(b"another secret that is long enough!!")
        .clock(f.clock.clone())
        .build()
        .unwrap()
        .access_token("alice")
        .issue()
        .unwrap();
    let header = pair.access_token.split('.').next().unwrap().to_owned();
    let mut parts = pair.access_token.split('.');
    let (_, payload) = (parts.next(), parts.next().unwrap());
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let tampered = format!(
        "{header}.{payload}x.{}",
        pair.access_token.rsplit('.').next().unwrap()
    );
    f.clock.advance(16 * 60 + 10);
    for forged in [other, alg_none, tampered, "garbage".to_owned()] {
        let res = f
            .send(
                Method::GET,
                "/",
                &[f.cookie(Some(&forged), Some(&pair.refresh_token))],
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{forged}");
        assert!(www(&res).contains("invalid_token"));
        assert!(
            set_cookies(&res).is_empty(),
            "a rejected request mints nothing (I4)"
        );
    }
    // Without a refresh cookie an expired access cookie is just expired.
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.access_token), None)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains("expired"));
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn s7_10_refresh_cookie_must_be_valid_and_unrevoked() {
    let f = fixture();
    let pair = f.pair();
    // Expired refresh token.
    f.clock.advance(21 * 24 * 3600);
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.access_token), Some(&pair.refresh_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&res).is_empty());

    // Revoked family.
    let f = fixture();
    let pair = f.pair();
    f.auth.revoke(&pair.refresh_claims).await.unwrap();
    f.clock.advance(16 * 60 + 10);
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.access_token), Some(&pair.refresh_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains("revoked"));
    assert!(set_cookies(&res).is_empty());
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn s6_3_refresh_token_in_the_access_cookie_and_the_reverse() {
    let f = fixture();
    let pair = f.pair();
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.refresh_token), None)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains("wrong type"));
    // An access token in the refresh cookie cannot mint anything.
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(None, Some(&pair.access_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&res).is_empty());
    // The refresh route reads the refresh cookie, never the access cookie.
    let csrf = ("x-csrf-token", pair.csrf.clone());
    let res = f
        .send_with(
            f.auth.layer().refresh(),
            Method::POST,
            "/",
            &[f.cookie(Some(&pair.refresh_token), None), csrf.clone()],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = f
        .send_with(
            f.auth.layer().refresh(),
            Method::POST,
            "/",
            &[f.cookie(None, Some(&pair.refresh_token)), csrf],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn s7_11_csrf_is_checked_before_any_refresh() {
    let f = fixture();
    let pair = f.pair();
    f.clock.advance(16 * 60 + 10);
    let cookie = f.cookie(Some(&pair.access_token), Some(&pair.refresh_token));
    let res = f
        .send(Method::POST, "/", std::slice::from_ref(&cookie))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(f.calls(), 0);
    let res = f
        .send(
            Method::POST,
            "/",
            &[cookie, ("x-csrf-token", pair.csrf.clone())],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(new_access(&f, &res).is_some());
}

#[tokio::test]
async fn s7_12_concurrent_implicit_refreshes_all_succeed() {
    let f = Arc::new(fixture());
    let pair = f.pair();
    f.clock.advance(16 * 60 + 10);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let f = f.clone();
        let cookie = f.cookie(Some(&pair.access_token), Some(&pair.refresh_token));
        tasks.spawn(async move { f.send(Method::GET, "/", &[cookie]).await.status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    // The refresh token still works afterwards: no rotation, no reuse detection.
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(None, Some(&pair.refresh_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn s7_13_many_cookies_are_refused_not_crashed() {
    let f = fixture();
    let many = (0..1000)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ");
    let res = f.send(Method::GET, "/", &[("cookie", many)]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn s7_14_logout_clears_both_cookies_and_revokes_the_family() {
    let f = fixture();
    let pair = f.pair();
    let cookie = f.cookie(Some(&pair.access_token), Some(&pair.refresh_token));
    let res = f
        .send(
            Method::POST,
            "/logout",
            &[cookie.clone(), ("x-csrf-token", pair.csrf.clone())],
        )
        .await;
    let cleared = set_cookies(&res);
    assert_eq!(cleared.len(), 4);
    assert!(cleared.iter().all(|c| c.contains("Max-Age=0")));
    f.auth.revoke(&pair.access_claims).await.unwrap();
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.access_token), None)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The paired refresh token shares the family: it cannot mint access tokens any more.
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(None, Some(&pair.refresh_token))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&res).is_empty());
}

#[tokio::test]
async fn s7_15_quoted_or_percent_encoded_cookie_values_are_refused() {
    let f = fixture();
    let pair = f.pair();
    let quoted = format!("\"{}\"", pair.access_token);
    let encoded = pair.access_token.replace('.', "%2E");
    for value in [quoted, encoded] {
        let res = f
            .send(Method::GET, "/", &[f.cookie(Some(&value), None)])
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn implicit_refresh_in_the_window_keeps_claims() {
    let f = fixture();
    let pair = f.pair();
    f.clock.advance(6 * 60); // 9 minutes left, inside the 10 minute window
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&pair.access_token), None)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = new_access(&f, &res).expect("re-issued");
    let claims = f.auth.verify(&token, TokenType::Access).unwrap();
    let old = &pair.access_claims;
    assert_eq!(
        (&claims.sub, &claims.scopes, &claims.csrf),
        (&old.sub, &old.scopes, &old.csrf)
    );
    assert_eq!(claims.extra, old.extra);
    assert_eq!(claims.family, old.family);
    assert!(!claims.fresh && old.fresh);
    assert_ne!(claims.jti, old.jti);
    assert!(claims.exp > old.exp);

    // Outside the window: nothing is set.
    let fresh = f.pair();
    let res = f
        .send(
            Method::GET,
            "/",
            &[f.cookie(Some(&fresh.access_token), None)],
        )
        .await;
    assert!(set_cookies(&res).is_empty());
    // Bearer tokens are never refreshed implicitly.
    let res = f
        .send(
            Method::GET,
            "/",
            &[("authorization", format!("Bearer {}", pair.access_token))],
        )
        .await;
    assert!(set_cookies(&res).is_empty());
}

#[tokio::test]
async fn implicit_refresh_never_on_errors_logout_or_grpc() {
    let f = fixture();
    let pair = f.pair();
    f.clock.advance(6 * 60);
    let cookie = f.cookie(Some(&pair.access_token), Some(&pair.refresh_token));
    for path in ["/401", "/403", "/404", "/500", "/503"] {
        let res = f
            .send(Method::GET, path, std::slice::from_ref(&cookie))
            .await;
        assert!(set_cookies(&res).is_empty(), "{path}");
    }
    for path in ["/200", "/204", "/302"] {
        let res = f
            .send(Method::GET, path, std::slice::from_ref(&cookie))
            .await;
        assert!(new_access(&f, &res).is_some(), "{path}");
    }
    // The handler cleared the cookies: the layer does not resurrect the session.
    let res = f
        .send(
            Method::POST,
            "/logout",
            &[cookie.clone(), ("x-csrf-token", pair.csrf.clone())],
        )
        .await;
    assert!(new_access(&f, &res).is_none());
    assert_eq!(set_cookies(&res).len(), 4);
    // gRPC never gets cookies.
    let grpc = ("content-type", "application/grpc".to_owned());
    let res = f.send(Method::GET, "/", &[cookie, grpc]).await;
    assert!(set_cookies(&res).is_empty());
}

#[tokio::test]
async fn far_future_exp_is_robust() {
    let f = fixture();
    let token = f
        .auth
        .access_token("alice")
        .ttl(Duration::MAX)
        .issue()
        .unwrap();
    let claims = f.auth.verify(&token, TokenType::Access).unwrap();
    assert_eq!(claims.exp, u64::MAX);
    let res = f
        .send(Method::GET, "/", &[f.cookie(Some(&token), None)])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
}

#[tokio::test]
async fn explicit_refresh_rotates_and_detects_reuse() {
    let f = fixture();
    let pair = f.pair();
    let first = f.auth.refresh(&pair.refresh_claims).await.unwrap();
    let rotated = first
        .refresh_claims
        .clone()
        .expect("rotation is on by default");
    assert_eq!(rotated.family, pair.refresh_claims.family);
    assert_ne!(rotated.jti, pair.refresh_claims.jti);
    let access = f
        .auth
        .verify(&first.access_token, TokenType::Access)
        .unwrap();
    assert_eq!(access.scopes, pair.access_claims.scopes);
    // Reuse of the rotated token: refused, and the newest one dies with the family.
    assert!(f.auth.refresh(&pair.refresh_claims).await.is_err());
    assert!(f.auth.refresh(&rotated).await.is_err());
    let bearer = ("authorization", format!("Bearer {}", first.access_token));
    let res = f.send(Method::GET, "/", &[bearer]).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "access tokens of the family die too"
    );
}

#[tokio::test]
async fn optional_route_lets_anonymous_through_but_not_bad_tokens() {
    let f = fixture();
    let res = f
        .send_with(f.auth.layer().optional(), Method::GET, "/", &[])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "", "no claims");
    let bad = ("authorization", "Bearer a.b.c".to_owned());
    let res = f
        .send_with(f.auth.layer().optional(), Method::GET, "/", &[bad])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn fresh_and_scopes_are_enforced() {
    let f = fixture();
    let pair = f.pair();
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));
    let res = f
        .send_with(
            f.auth.layer().fresh().scopes(["read"]),
            Method::GET,
            "/",
            &[bearer(&pair.access_token)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = f
        .send_with(
            f.auth.layer().scopes(["admin"]),
            Method::GET,
            "/",
            &[bearer(&pair.access_token)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(www(&res).contains("insufficient_scope"));
    let stale = f.auth.reissue_access(&pair.access_claims).issue().unwrap();
    let res = f
        .send_with(f.auth.layer().fresh(), Method::GET, "/", &[bearer(&stale)])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn s8_4_absolute_session_lifetime_is_never_extended_by_refreshing() {
    let clock = ManualClock::new(NOW);
    let auth = JwtAuth::builder()
        .hs256(SECRET)
        .clock(clock.clone())
        .max_session_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap();
    let pair = auth.token_pair("alice").unwrap();
    assert_eq!(pair.refresh_claims.auth_time, Some(NOW));
    assert_eq!(
        pair.refresh_claims.exp,
        NOW + 3600,
        "capped at the session's end"
    );

    clock.advance(50 * 60);
    let refreshed = auth.refresh(&pair.refresh_claims).await.unwrap();
    let next = refreshed.refresh_claims.unwrap();
    assert_eq!(
        next.auth_time,
        Some(NOW),
        "the session start survives rotation"
    );
    assert_eq!(next.exp, NOW + 3600);
    let access = auth
        .verify(&refreshed.access_token, TokenType::Access)
        .unwrap();
    assert_eq!(access.exp, NOW + 3600);

    clock.advance(11 * 60 + 10);
    let token = refreshed.refresh_token.unwrap();
    assert!(auth.verify(&token, TokenType::Refresh).is_err());
    // Neither can the refresh cookie mint an access cookie any more.
    let f = Fixture {
        auth: auth.clone(),
        clock,
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let res = f
        .send(Method::GET, "/", &[f.cookie(None, Some(&token))])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&res).is_empty());
}

#[tokio::test]
async fn query_token_only_for_websocket_upgrades_and_only_when_configured() {
    let f = fixture();
    let pair = f.pair();
    let with_query = JwtAuth::builder()
        .hs256(SECRET)
        .clock(f.clock.clone())
        .locations([
            tower_jwt_auth::Location::Header,
            tower_jwt_auth::Location::Query,
        ])
        .build()
        .unwrap();
    let g = Fixture {
        auth: with_query,
        clock: f.clock.clone(),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let path = format!("/ws?room=1&token={}", pair.access_token);
    let upgrade = [
        ("connection", "upgrade".to_owned()),
        ("upgrade", "websocket".to_owned()),
    ];
    let res = g.send(Method::GET, &path, &upgrade).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "alice");
    // Not an upgrade: the query string is not a transport (RFC 6750 §5.3).
    let res = g.send(Method::GET, &path, &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), "Bearer");
    // Not configured (the default): ignored even on an upgrade.
    let res = f.send(Method::GET, &path, &upgrade).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), "Bearer");
    // Two transports, or a repeated parameter: malformed.
    let bearer = ("authorization", format!("Bearer {}", pair.access_token));
    let res = g
        .send(
            Method::GET,
            &path,
            &[upgrade[0].clone(), upgrade[1].clone(), bearer],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let twice = format!("{path}&token={}", pair.access_token);
    let res = g.send(Method::GET, &twice, &upgrade).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A forged one is refused.
    let res = g.send(Method::GET, "/ws?token=a.b.c", &upgrade).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains("invalid_token"));
    assert_eq!(g.calls(), 1);
}

/// Review F4: a handler that revokes the session (without clearing cookies) gets no
/// re-issued access cookie on its response, for a token with or without a family.
#[tokio::test]
async fn review_reissue_never_outlives_a_revocation_made_by_the_handler() {
    let f = fixture();
    let lone = f.auth.access_token("alice").issue().unwrap();
    let pair = f.pair();
    f.clock.advance(6 * 60); // inside the 10 minute window
    for (what, token) in [("no family", &lone), ("family", &pair.access_token)] {
        let control = f
            .send(Method::GET, "/", &[f.cookie(Some(token), None)])
            .await;
        assert!(
            new_access(&f, &control).is_some(),
            "{what}: control re-issues"
        );
        let res = f
            .send(Method::GET, "/revoke", &[f.cookie(Some(token), None)])
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{what}");
        assert!(
            new_access(&f, &res).is_none(),
            "{what}: a revoked session got a new access cookie: {:?}",
            set_cookies(&res)
        );
        let res = f
            .send(Method::GET, "/", &[f.cookie(Some(token), None)])
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}: revoked");
    }
}

/// Review F8: every method except GET, HEAD and OPTIONS needs the CSRF header on a
/// cookie-authenticated request, whatever its case.
#[tokio::test]
async fn review_csrf_covers_every_unsafe_method() {
    let f = fixture();
    let pair = f.pair();
    let cookie = f.cookie(Some(&pair.access_token), None);
    for method in [
        "patch",
        "PoSt",
        "PROPPATCH",
        "MERGE",
        "TRACE",
        "get",
        "POST",
        "DELETE",
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let before = f.calls();
        let res = f.send(m.clone(), "/", std::slice::from_ref(&cookie)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} without CSRF");
        assert_eq!(f.calls(), before, "{method}: the handler must not run");
        let with = [cookie.clone(), ("x-csrf-token", pair.csrf.clone())];
        let res = f.send(m, "/", &with).await;
        assert_eq!(res.status(), StatusCode::OK, "{method} with CSRF");
    }
    for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let res = f.send(m.clone(), "/", std::slice::from_ref(&cookie)).await;
        assert_eq!(res.status(), StatusCode::OK, "{m} is safe");
    }
}

/// Review F9: with a maximum session lifetime, a token without `auth_time` (AuthX's)
/// counts its session from its own `iat`, and what it mints carries that start.
#[tokio::test]
async fn review_max_session_lifetime_applies_without_auth_time() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};

    let clock = ManualClock::new(NOW);
    let auth = JwtAuth::builder()
        .hs256(SECRET)
        .clock(clock.clone())
        .max_session_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap();
    // An AuthX-style refresh token: no auth_time, no family, 20 days.
    let claims = serde_json::json!({
        "sub": "alice", "jti": "authx-1", "type": "refresh", "csrf": "c",
        "iat": NOW, "exp": NOW + 20 * 24 * 3600,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );

    clock.advance(50 * 60);
    let refresh = auth.verify(&token, TokenType::Refresh).unwrap();
    let minted = auth.refresh(&refresh).await.unwrap();
    assert_eq!(
        minted.access_claims.auth_time,
        Some(NOW),
        "the session start is kept"
    );
    assert!(minted.access_claims.exp <= NOW + 3600);
    // Implicit re-issue keeps the start too.
    let reissued = auth.reissue_access(&minted.access_claims).issue().unwrap();
    let reissued = auth.verify(&reissued, TokenType::Access).unwrap();
    assert_eq!(reissued.auth_time, Some(NOW));

    clock.advance(11 * 60);
    assert!(
        auth.verify(&token, TokenType::Refresh).is_err(),
        "the AuthX refresh token is past the session's end"
    );
}

/// Review: a plain HTTP route can refuse gRPC-style answers: a request claiming to be
/// gRPC gets the RFC 6750 answer there, and the gRPC answer elsewhere.
#[tokio::test]
async fn review_http_only_routes_answer_http_to_grpc_content_types() {
    let f = fixture();
    let grpc = ("content-type", "application/grpc".to_owned());
    let res = f.send(Method::GET, "/", std::slice::from_ref(&grpc)).await;
    assert_eq!(res.status(), StatusCode::OK, "gRPC-style by default");
    assert!(res.headers().contains_key("grpc-status"));
    let res = f
        .send_with(f.auth.layer().http_only(), Method::GET, "/", &[grpc])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), "Bearer");
    assert!(!res.headers().contains_key("grpc-status"));
    assert_eq!(f.calls(), 0);
}

/// Finding FZ1: an access token minted from the refresh cookie shortly before the
/// family is revoked through that refresh token stays revoked until it expires, even
/// once the refresh token itself could no longer verify and the store has purged what
/// it may.
#[tokio::test]
async fn an_access_token_minted_before_a_family_revocation_stays_revoked() {
    let f = fixture();
    let pair = f.pair();
    let refresh = &pair.refresh_claims;
    // The access cookie has expired, the refresh cookie has a minute left.
    f.clock.set(refresh.exp - 60);
    let minted = f.resume_from_refresh_cookie(&pair.refresh_token).await;
    f.auth.revoke(refresh).await.unwrap();
    // Past the refresh token's exp and leeway; the minted token lives 14 more minutes.
    f.clock.set(refresh.exp + 60);
    // A write for the same subject lets the store purge what it considers expired.
    let other = f.auth.token_pair("alice").unwrap();
    f.auth.revoke(&other.access_claims).await.unwrap();
    assert_eq!(
        f.auth.verify_unrevoked(&minted, TokenType::Access).await,
        Err(tower_jwt_auth::TokenError::Revoked.into()),
        "the family's revocation must outlive the access tokens its refresh token minted"
    );
}

/// SECURITY.md 13.11 (review R11): one re-issue path, for access tokens only, and
/// clamped to the session's end like every other token; through the layer's implicit
/// refresh as through the API.
#[tokio::test]
async fn reissuing_takes_access_tokens_only_and_never_outlives_the_session() {
    let clock = ManualClock::new(NOW);
    let auth = JwtAuth::builder()
        .hs256(SECRET)
        .clock(clock.clone())
        .access_ttl(Duration::from_secs(15 * 60))
        .implicit_refresh(ImplicitRefresh::window(Duration::from_secs(10 * 60)))
        .max_session_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap();
    let pair = auth.token_pair("alice").unwrap();
    assert!(matches!(
        auth.reissue_access(&pair.refresh_claims).issue(),
        Err(tower_jwt_auth::IssueError::NotAnAccessToken)
    ));

    // Ten minutes before the session ends, inside the implicit-refresh window.
    clock.set(NOW + 50 * 60);
    let current = auth.access_token("alice").pair().unwrap();
    let mut current = current.access_claims;
    current.auth_time = Some(NOW);
    let access = auth.reissue_access(&current).issue().unwrap();
    let reissued = auth.verify(&access, TokenType::Access).unwrap();
    assert_eq!(reissued.exp, NOW + 3600, "the API clamps");

    clock.set(NOW + 52 * 60);
    let f = Fixture {
        auth: auth.clone(),
        clock,
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let res = f
        .send(Method::GET, "/", &[f.cookie(Some(&access), None)])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let minted = new_access(&f, &res).expect("re-issued in the window");
    let minted = auth.verify(&minted, TokenType::Access).unwrap();
    assert_eq!(minted.exp, NOW + 3600, "the layer clamps too");
    assert_eq!(minted.token_type, TokenType::Access);
}

/// SECURITY.md 13.12 (review R12): an access token minted from a refresh token inside
/// that token's leeway (after its `exp`) verifies until its own `exp` plus leeway; the
/// family's revocation must last that long, even after the store purged what it may.
#[tokio::test]
async fn a_family_revocation_covers_tokens_minted_inside_the_leeway() {
    let f = fixture();
    let pair = f.pair();
    let refresh = &pair.refresh_claims;
    // Past the refresh token's exp, within the 5 s leeway: the fallback still mints.
    f.clock.set(refresh.exp + 5);
    let minted = f.resume_from_refresh_cookie(&pair.refresh_token).await;
    let minted_exp = f.auth.verify(&minted, TokenType::Access).unwrap().exp;
    assert_eq!(minted_exp, refresh.exp + 5 + 15 * 60);
    f.auth.revoke(refresh).await.unwrap();
    // One second before the minted token stops verifying (its exp + 5 s leeway).
    f.clock.set(minted_exp + 4);
    let other = f.auth.token_pair("alice").unwrap();
    f.auth.revoke(&other.access_claims).await.unwrap();
    assert_eq!(
        f.auth.verify_unrevoked(&minted, TokenType::Access).await,
        Err(tower_jwt_auth::TokenError::Revoked.into()),
    );
}
