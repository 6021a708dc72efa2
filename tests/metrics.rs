//! What an operator sees: the quickstart's `/metrics` (Prometheus text) after real
//! sessions, rejections counted whatever the order of layers, and `/healthz` following
//! the revocation store (a real `redis-server`, killed and restarted on the same port).
//!
//! A metrics recorder is process-wide: every test here shares the quickstart's, so
//! each one holds [`LOCK`] and checks differences between two scrapes.

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_jwt_auth::metrics::{
    IMPLICIT_REFRESHES, REFRESHES, REQUESTS, REVOCATIONS, STORE_DURATION, STORE_ERRORS, STORE_LAG,
    STORE_READY,
};
use tower_jwt_auth::{ImplicitRefresh, JwtAuth, ManualClock, TokenType};

const SECRET: &str = "the metrics tests use a secret of 32+ bytes";
const NOW: u64 = 1_800_000_000;

/// Serializes the tests of this binary: they share one recorder.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------
// Scraping
// ---------------------------------------------------------------------------------

/// One scrape: every sample by name and sorted labels.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: HashMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let mut samples = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            let value: f64 = value.parse().expect("sample value");
            samples.insert((name.to_owned(), labels), value);
        }
        Self { text, samples }
    }

    /// The value of a series (0 when it was never recorded).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every label value of every series of this crate.
    fn label_values(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.samples
            .keys()
            .filter(|(name, _)| name.starts_with("tower_jwt_auth_"))
            .flat_map(|(name, labels)| {
                labels
                    .iter()
                    .map(move |(k, v)| (name.as_str(), k.as_str(), v.as_str()))
            })
    }
}

async fn scrape(app: &Router) -> Scrape {
    let res = send(app, Method::GET, "/metrics", &[], None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        res.content_type
    );
    Scrape::parse(res.text)
}

/// A series: name and labels.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// Asserts that each series grew by exactly the expected amount between two scrapes.
fn assert_deltas(before: &Scrape, after: &Scrape, expected: &[(&str, Labels<'_>, f64)]) {
    for (name, labels, delta) in expected {
        let got = after.get(name, labels) - before.get(name, labels);
        assert_eq!(got, *delta, "{name}{labels:?}\n{}", after.text);
    }
}

// ---------------------------------------------------------------------------------
// HTTP through the router
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    www: Option<String>,
    content_type: String,
    set_cookies: Vec<String>,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }

    fn field(&self, name: &str) -> String {
        self.json()[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
            .to_owned()
    }
}

async fn send(
    app: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Resp {
    let mut req = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, value.as_str());
    }
    let body = match body {
        Some(v) => {
            req = req.header(CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let call = app.clone().oneshot(req.body(body).expect("request"));
    let res = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("answer within 10 s")
        .expect("infallible");
    let header = |name| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let www = header(WWW_AUTHENTICATE);
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let set_cookies = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        www,
        content_type,
        set_cookies,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    (AUTHORIZATION.as_str(), format!("Bearer {token}"))
}

/// Cookies by name, updated from `Set-Cookie` like a browser (without attributes).
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn update(&mut self, res: &Resp) {
        for c in &res.set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }

    fn header(&self) -> (&'static str, String) {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (COOKIE.as_str(), parts.join("; "))
    }
}

fn login_body() -> Value {
    json!({"username": "test", "password": "test"})
}

/// Every label value the crate may record: anything else (a subject, a token id, a
/// token) fails the test.
const LABEL_VALUES: &[&str] = &[
    "accepted",
    "rejected",
    "anonymous",
    "header",
    "cookie",
    "query",
    "400",
    "401",
    "403",
    "503",
    "window",
    "refresh_cookie",
    "refreshed",
    "reused",
    "revoked",
    "store_unavailable",
    "invalid",
    "token",
    "family",
    "subject",
    "check",
    "revoke",
    "revoke_subject",
    "rotate",
    "health",
    "hit",
    "miss",
];

fn assert_bounded_labels(scrape: &Scrape, secrets: &[&str]) {
    // Tokens and token ids appear nowhere; short values (a subject) in no label.
    for secret in secrets.iter().filter(|s| s.len() >= 16) {
        assert!(
            !scrape.text.contains(secret),
            "{secret} appears in the scrape"
        );
    }
    for (name, key, value) in scrape.label_values() {
        if key == "le" || key == "quantile" {
            continue;
        }
        let known = LABEL_VALUES.contains(&value)
            || (key == "reason" && value.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        assert!(known, "{name}: label {key}={value:?} is not a static value");
        assert!(!secrets.contains(&value), "{name}: {key}={value}");
    }
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// A browser session and two API sessions through the quickstart, then one scrape:
/// accepted requests by location, the CSRF failure, the expired token, implicit and
/// explicit refreshes, reuse, revocations and the revoked token are all counted.
#[tokio::test]
async fn a_session_shows_in_the_scrape() {
    let _serial = LOCK.lock().await;
    let clock = ManualClock::new(NOW);
    let auth = JwtAuth::builder()
        .hs256(SECRET)
        .clock(clock.clone())
        .access_ttl(Duration::from_secs(15 * 60))
        .implicit_refresh(ImplicitRefresh::window(Duration::from_secs(5 * 60)))
        .build()
        .unwrap();
    let names = auth.cookie_names().clone();
    let app = quickstart::app(auth.clone());
    let before = scrape(&app).await;
    let mut secrets: Vec<String> = vec!["test".into()];

    // Browser: log in, read, a POST without then with the CSRF header.
    let mut jar = Jar::default();
    let res = send(&app, Method::POST, "/session", &[], Some(login_body())).await;
    assert_eq!(res.status, StatusCode::OK);
    jar.update(&res);
    let first_access = jar.get(&names.access);
    secrets.push(first_access.clone());
    secrets.push(jar.get(&names.refresh));
    let jti = auth.verify(&first_access, TokenType::Access).unwrap().jti;
    secrets.push(jti);
    let res = send(&app, Method::GET, "/protected", &[jar.header()], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = send(&app, Method::POST, "/protected", &[jar.header()], None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF header: {res:?}");
    let csrf = ("x-csrf-token", jar.get(&names.csrf_access));
    let res = send(
        &app,
        Method::POST,
        "/protected",
        &[jar.header(), csrf],
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);

    // Within the refresh window: the layer re-issues the access cookie.
    clock.advance(11 * 60);
    let res = send(&app, Method::GET, "/protected", &[jar.header()], None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(!res.set_cookies.is_empty(), "re-issued in the window");

    // Past expiry: the token as a bearer is refused; the cookie session goes on from
    // the refresh cookie.
    clock.advance(20 * 60);
    let res = send(
        &app,
        Method::GET,
        "/protected",
        &[bearer(&first_access)],
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = send(&app, Method::GET, "/protected", &[jar.header()], None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        !res.set_cookies.is_empty(),
        "minted from the refresh cookie"
    );

    // API session B: read, refresh, log out; its access token is then revoked.
    let b = send(&app, Method::POST, "/login", &[], Some(login_body())).await;
    let (access, refresh) = (b.field("access_token"), b.field("refresh_token"));
    let res = send(&app, Method::GET, "/protected", &[bearer(&access)], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = send(&app, Method::POST, "/refresh", &[bearer(&refresh)], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let next_access = res.field("access_token");
    // A handler's `?` on an `AuthError`: the layer's kind of answer, and not counted as
    // a layer decision.
    let garbage = Some(json!({"refresh_token": "not.a.token"}));
    let res = send(
        &app,
        Method::POST,
        "/logout",
        &[bearer(&next_access)],
        garbage,
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:?}");
    assert_eq!(
        res.www.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="The token is malformed""#)
    );
    let res = send(&app, Method::POST, "/logout", &[bearer(&next_access)], None).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let res = send(
        &app,
        Method::GET,
        "/protected",
        &[bearer(&next_access)],
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    secrets.extend([access, refresh, next_access]);

    // API session C: a rotated refresh token presented again is reuse, caught by the
    // layer.
    let c = send(&app, Method::POST, "/login", &[], Some(login_body())).await;
    let old = c.field("refresh_token");
    let res = send(&app, Method::POST, "/refresh", &[bearer(&old)], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = send(&app, Method::POST, "/refresh", &[bearer(&old)], None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.www.as_deref(),
        Some(
            r#"Bearer error="invalid_token", error_description="The refresh token was already used""#
        )
    );
    secrets.push(old);

    let after = scrape(&app).await;
    let accepted = |location| [("outcome", "accepted"), ("location", location)];
    let rejected = |reason, status| {
        [
            ("outcome", "rejected"),
            ("reason", reason),
            ("status", status),
        ]
    };
    assert_deltas(
        &before,
        &after,
        &[
            (REQUESTS, &accepted("cookie"), 4.0),
            (REQUESTS, &accepted("header"), 5.0),
            (REQUESTS, &accepted("query"), 0.0),
            (REQUESTS, &rejected("csrf_failed", "403"), 1.0),
            (REQUESTS, &rejected("expired", "401"), 1.0),
            (REQUESTS, &rejected("revoked", "401"), 1.0),
            (REQUESTS, &rejected("reused", "401"), 1.0),
            (REQUESTS, &rejected("malformed", "401"), 0.0),
            (IMPLICIT_REFRESHES, &[("source", "window")], 1.0),
            (IMPLICIT_REFRESHES, &[("source", "refresh_cookie")], 1.0),
            (REFRESHES, &[("outcome", "refreshed")], 2.0),
            (REFRESHES, &[("outcome", "reused")], 0.0),
            (REVOCATIONS, &[("kind", "token")], 1.0),
            (REVOCATIONS, &[("kind", "family")], 1.0),
        ],
    );
    // Help text comes from `describe()`.
    assert!(
        after.text.contains(&format!("# HELP {REQUESTS} ")),
        "{}",
        after.text
    );
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_bounded_labels(&after, &secrets);
}

/// A user's own metrics layer inside the auth layer never sees rejections; outside,
/// it does. The crate's counter sees them either way.
#[tokio::test]
async fn rejections_are_counted_whatever_the_layer_order() {
    let _serial = LOCK.lock().await;
    let auth = JwtAuth::builder().hs256(SECRET).build().unwrap();
    let metrics_app = quickstart::app(auth.clone());
    let token = auth.token_pair("carol").unwrap().access_token;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = {
        let seen = seen.clone();
        move |req: Request, next: Next| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                metrics::counter!("user_http_requests_total").increment(1);
                Ok::<Response, std::convert::Infallible>(next.run(req).await)
            }
        }
    };
    let route = || Router::new().route("/", get(|| async { "ok" }));
    // `.layer(a).layer(b)`: `b` is outermost.
    let user_outside = route()
        .layer(auth.layer())
        .layer(middleware::from_fn(count.clone()));
    let user_inside = route()
        .layer(middleware::from_fn(count))
        .layer(auth.layer());

    let missing = [
        ("outcome", "rejected"),
        ("reason", "missing_credentials"),
        ("status", "401"),
    ];
    let bad_signature = [
        ("outcome", "rejected"),
        ("reason", "invalid_signature"),
        ("status", "401"),
    ];
    // A signature character that is not the last (whose low bits may be padding).
    let i = token.len() - 10;
    let swapped = if &token[i..=i] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &token[..i], &token[i + 1..]);
    for (order, app, user_sees) in [("outside", &user_outside, 4), ("inside", &user_inside, 1)] {
        seen.store(0, Ordering::SeqCst);
        let before = scrape(&metrics_app).await;
        let user_before = before.get("user_http_requests_total", &[]);
        for _ in 0..2 {
            let res = send(app, Method::GET, "/", &[], None).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        }
        let res = send(app, Method::GET, "/", &[bearer(&forged)], None).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        let res = send(app, Method::GET, "/", &[bearer(&token)], None).await;
        assert_eq!(res.status, StatusCode::OK);
        let after = scrape(&metrics_app).await;
        assert_deltas(
            &before,
            &after,
            &[
                (REQUESTS, &missing, 2.0),
                (REQUESTS, &bad_signature, 1.0),
                (
                    REQUESTS,
                    &[("outcome", "accepted"), ("location", "header")],
                    1.0,
                ),
            ],
        );
        let user_counted = after.get("user_http_requests_total", &[]) - user_before;
        assert_eq!(seen.load(Ordering::SeqCst), user_sees, "user layer {order}");
        assert_eq!(user_counted, user_sees as f64, "user layer {order}");
        assert_bounded_labels(&after, &[&token, &forged, "carol"]);
    }
}

/// `/healthz` with the in-memory store and without revocation: always ready.
#[tokio::test]
async fn healthz_is_ready_without_a_remote_store() {
    let _serial = LOCK.lock().await;
    let memory = JwtAuth::builder().hs256(SECRET).build().unwrap();
    let res = send(&quickstart::app(memory), Method::GET, "/healthz", &[], None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.json(),
        json!({"ready": true, "revocation_store": {"ready": true}})
    );
    let none = JwtAuth::builder()
        .hs256(SECRET)
        .without_revocation()
        .build()
        .unwrap();
    let res = send(&quickstart::app(none), Method::GET, "/healthz", &[], None).await;
    assert_eq!(
        (res.status, res.json()),
        (StatusCode::OK, json!({"ready": true}))
    );
}

/// `/healthz` follows a real Redis: 200 with the mirror's lag, 503 once it is killed
/// (requests fail closed once the mirror is past its staleness bound, and the store
/// errors are counted), 200 again when it is back on the same port.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_redis() {
    use support::redis::RedisServer;
    use tower_jwt_auth::revocation::RedisStore;

    let _serial = LOCK.lock().await;
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let port = server.port;
    let store = RedisStore::builder()
        .timeout(Duration::from_millis(300))
        .connect(&server.url())
        .await
        .expect("connect to the test redis-server");
    let auth = JwtAuth::builder()
        .hs256(SECRET)
        .revocation_store(store)
        .build()
        .unwrap();
    let app = quickstart::app(auth.clone());
    let token = auth.token_pair("dave").unwrap().access_token;
    let health = || send(&app, Method::GET, "/healthz", &[], None);

    let before = scrape(&app).await;
    let res = health().await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let body = res.json();
    assert_eq!(body["revocation_store"]["ready"], json!(true));
    let lag = body["revocation_store"]["lag_seconds"].as_f64();
    assert!(lag.is_some_and(|l| (0.0..=1.0).contains(&l)), "{body}");
    let res = send(&app, Method::GET, "/protected", &[bearer(&token)], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let up = scrape(&app).await;
    assert_eq!(up.get(STORE_READY, &[]), 1.0);
    let lag = up.get(STORE_LAG, &[]);
    assert!((0.0..=1.0).contains(&lag), "{}", up.text);
    let timed = |s: &Scrape, op| s.get(&format!("{STORE_DURATION}_count"), &[("operation", op)]);
    assert!(
        timed(&up, "health") > timed(&before, "health"),
        "{}",
        up.text
    );

    server.kill();
    let res = health().await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:?}");
    let body = res.json();
    assert_eq!(body["ready"], json!(false));
    assert_eq!(body["revocation_store"]["ready"], json!(false));
    assert!(
        body["revocation_store"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("revocation store: redis")),
        "{body}"
    );
    // The mirror answers until it is past its staleness bound (1 s), then fails closed.
    let mut polls = 0;
    loop {
        polls += 1;
        let res = send(&app, Method::GET, "/protected", &[bearer(&token)], None).await;
        if res.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert!(polls < 50, "still 200 after {polls} polls with Redis down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = scrape(&app).await;
    assert_eq!(down.get(STORE_READY, &[]), 0.0);
    assert_deltas(
        &up,
        &down,
        &[
            (STORE_ERRORS, &[("operation", "health")], 1.0),
            (STORE_ERRORS, &[("operation", "check")], 1.0),
            (
                REQUESTS,
                &[
                    ("outcome", "rejected"),
                    ("reason", "store_unavailable"),
                    ("status", "503"),
                ],
                1.0,
            ),
        ],
    );

    let mut restarted = RedisServer::start_on(port)
        .await
        .expect("restart redis on the same port");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let res = health().await;
        if res.status == StatusCode::OK {
            break;
        }
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:?}");
        assert!(attempts < 100, "not ready again after {attempts} probes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = send(&app, Method::GET, "/protected", &[bearer(&token)], None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(scrape(&app).await.get(STORE_READY, &[]), 1.0);
    restarted.kill();
}
