//! A stateful session model. The fuzzer chooses a sequence of operations: log in,
//! browser requests with the cookie jar (implicit refresh through cookies), explicit
//! refresh (bearer or cookie), logout, a revocation that keeps the cookies, "log out
//! everywhere" (`revoke_subject`), time passing on a `ManualClock`, replaying any
//! token ever issued in any place, and forged variants of them. The harness keeps its
//! own model of what must no longer work, and checks every response:
//!
//! - no forged, expired, revoked or rotated-away token reaches the handler (a token
//!   the layer mints from the refresh cookie must come from a good refresh token of
//!   the same family); no session outlives `max_session_lifetime`;
//! - no cookie-authenticated unsafe request reaches it without exactly one CSRF
//!   header holding the token's value;
//! - no `Set-Cookie` unless the handler ran and answered 2xx/3xx, and every token the
//!   server hands out is one the model still accepts;
//! - no store write on a rejected request (except reuse of a rotated-away refresh
//!   token, which must revoke the family: it is only accepted for such a token);
//! - rejections are client errors (400/401/403).

#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use tower_jwt_auth::{
    AuthLayer, JwtAuth, Location, ManualClock, MemoryStore, TokenPayload, TokenType,
};
use tower_jwt_auth_fuzz::*;

const SUBJECTS: [&str; 2] = ["alice", "bob"];
const MAX_SESSION: u64 = 2 * 24 * 3600;
const GRACE: u64 = 5;
const MAX_OPS: usize = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Protected(u16),
    Fresh,
    Refresh,
    Logout,
    Revoke,
    /// The refresh route, revoking the refresh token it got (an app's logout that
    /// only has the refresh token).
    RevokeRefresh,
}

impl Route {
    fn of(b: u8) -> Self {
        match b % 9 {
            0 | 1 => Route::Protected(200),
            2 => Route::Protected(302),
            3 => Route::Protected(404),
            4 => Route::Fresh,
            5 => Route::Refresh,
            6 => Route::Logout,
            7 => Route::Revoke,
            _ => Route::RevokeRefresh,
        }
    }

    fn token_type(self) -> TokenType {
        if matches!(self, Route::Refresh | Route::RevokeRefresh) {
            TokenType::Refresh
        } else {
            TokenType::Access
        }
    }

    fn handler(self) -> Handler {
        match self {
            Route::Protected(code) => Handler::Status(code),
            Route::Fresh => Handler::Status(200),
            Route::Refresh => Handler::Refresh,
            Route::Logout => Handler::Logout,
            Route::Revoke | Route::RevokeRefresh => Handler::RevokeOnly,
        }
    }
}

#[derive(Default)]
struct Jar {
    access: Option<String>,
    refresh: Option<String>,
    csrf: Option<String>,
}

/// What was sent.
#[derive(Default)]
struct Sent {
    bearer: Option<String>,
    access_cookie: Option<String>,
    refresh_cookie: Option<String>,
    csrf: Vec<String>,
}

struct Model {
    grace: u64,
    max_session: Option<u64>,
    /// Every token the server handed out, with its claims.
    issued: HashMap<String, TokenPayload>,
    history: Vec<String>,
    revoked_jti: HashSet<String>,
    revoked_family: HashSet<String>,
    subject_before: HashMap<String, u64>,
    /// The newest refresh token of each family, and when its grace window closes.
    newest: HashMap<String, String>,
    window_end: HashMap<String, u64>,
    jar: Jar,
}

impl Model {
    fn issue(&mut self, token: &str) -> TokenPayload {
        let claims = peek_claims(token).expect("the server issued a token we cannot read");
        if !self.issued.contains_key(token) {
            self.issued.insert(token.to_owned(), claims.clone());
            self.history.push(token.to_owned());
        }
        claims
    }

    /// Why the model refuses `c` now, if it does.
    fn refuses(&self, c: &TokenPayload, now: u64) -> Option<&'static str> {
        if c.exp.saturating_add(LEEWAY) < now {
            return Some("expired");
        }
        if self
            .max_session
            .is_some_and(|max| c.session_start().saturating_add(max).saturating_add(LEEWAY) < now)
        {
            return Some("past the session's lifetime");
        }
        if self.revoked_jti.contains(&c.jti) {
            return Some("revoked");
        }
        if c.family
            .as_ref()
            .is_some_and(|f| self.revoked_family.contains(f))
        {
            return Some("family revoked");
        }
        if self.subject_before.get(&c.sub).is_some_and(|b| c.iat <= *b) {
            return Some("subject revoked");
        }
        if c.token_type == TokenType::Refresh {
            let family = c.family.as_deref().unwrap_or(&c.jti);
            let newest = self.newest.get(family).is_none_or(|n| *n == c.jti);
            let in_window =
                self.grace > 0 && self.window_end.get(family).is_some_and(|e| now <= *e);
            if !newest && !in_window {
                return Some("rotated away");
            }
        }
        None
    }

    /// Whether a newer refresh token of its family was issued.
    fn rotated_away(&self, c: &TokenPayload) -> bool {
        let family = c.family.as_deref().unwrap_or(&c.jti);
        self.newest.get(family).is_some_and(|n| *n != c.jti)
    }

    fn pick(&self, u: &mut Unstructured<'_>) -> Option<String> {
        if self.history.is_empty() {
            return None;
        }
        let i = u.choose_index(self.history.len()).unwrap_or(0);
        Some(self.history[i].clone())
    }
}

struct Session {
    auth: JwtAuth,
    clock: ManualClock,
    store: Arc<MemoryStore>,
    model: Model,
}

impl Session {
    fn layer(&self, route: Route) -> AuthLayer {
        match route {
            Route::Fresh => self.auth.layer().fresh(),
            Route::Refresh | Route::RevokeRefresh => self.auth.layer().refresh(),
            _ => self.auth.layer(),
        }
    }

    fn login(&mut self, sub: &str) {
        let pair = self.auth.token_pair(sub).expect("login");
        self.model.issue(&pair.access_token);
        let r = self.model.issue(&pair.refresh_token);
        let family = r.family.clone().expect("pairs have a family");
        self.model.newest.insert(family, r.jti.clone());
        self.model.jar = Jar {
            access: Some(pair.access_token),
            refresh: Some(pair.refresh_token),
            csrf: Some(pair.csrf),
        };
    }

    /// Sends a request and checks every invariant; updates the model and, for a
    /// browser request, the jar.
    fn request(&mut self, route: Route, method: Method, sent: Sent, grpc: bool, browser: bool) {
        let names = self.auth.cookie_names().clone();
        let mut headers = HeaderMap::new();
        if let Some(t) = &sent.bearer {
            add_header(
                &mut headers,
                "authorization",
                format!("Bearer {t}").as_bytes(),
            );
        }
        let mut pairs = Vec::new();
        if let Some(t) = &sent.access_cookie {
            pairs.push((names.access.as_str(), t.as_str()));
        }
        if let Some(t) = &sent.refresh_cookie {
            pairs.push((names.refresh.as_str(), t.as_str()));
        }
        if !pairs.is_empty() {
            add_cookie(&mut headers, &pairs);
        }
        for v in &sent.csrf {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append("x-csrf-token", v);
            }
        }
        if grpc {
            add_header(&mut headers, "content-type", b"application/grpc");
        }
        let mut req = Request::builder()
            .method(method.clone())
            .uri("/r")
            .body(String::new())
            .expect("request");
        *req.headers_mut() = headers;
        let now = self.auth.now();
        let before = snapshot(&self.store);
        let (res, seen) = send(&self.auth, &self.layer(route), route.handler(), req);
        let after = snapshot(&self.store);
        let status = res.status();
        let cookies = set_cookies(&res);
        let carried = |t: &str| {
            [&sent.bearer, &sent.access_cookie, &sent.refresh_cookie]
                .iter()
                .any(|c| c.as_deref() == Some(t))
        };

        if !seen.ran {
            if grpc {
                assert!(
                    res.headers().contains_key("grpc-status"),
                    "gRPC rejection {status}"
                );
            } else {
                assert!(is_client_error(status), "rejection answers {status}");
            }
            assert!(cookies.is_empty(), "Set-Cookie on a rejection: {cookies:?}");
            if is_reuse(&res) {
                // Only a rotated-away refresh token of a live family is reuse; its
                // family is revoked from now on.
                let reused: Vec<TokenPayload> = [&sent.bearer, &sent.refresh_cookie]
                    .iter()
                    .filter_map(|t| self.model.issued.get(t.as_deref()?))
                    .filter(|c| c.token_type == TokenType::Refresh && self.model.rotated_away(c))
                    .cloned()
                    .collect();
                assert!(
                    !reused.is_empty(),
                    "reuse reported without a rotated-away token"
                );
                for c in reused {
                    let family = c.family.clone().unwrap_or(c.jti.clone());
                    self.model.revoked_family.insert(family);
                }
            } else {
                assert_eq!(before, after, "a rejected request wrote to the store");
            }
            return;
        }

        // The handler ran.
        let (claims, (location, presented)) = match (&seen.claims, &seen.presented) {
            (Some(c), Some(p)) => (c.clone(), p.clone()),
            _ => panic!("the handler ran without claims on a required route"),
        };
        if let Some(t) = self.model.issued.get(&presented) {
            assert!(
                carried(&presented),
                "the handler saw a token that was not sent"
            );
            assert_eq!(&claims, t, "the handler got other claims");
            assert_eq!(claims.token_type, route.token_type(), "wrong type accepted");
            if let Some(why) = self.model.refuses(t, now) {
                panic!("{route:?} accepted a token that is {why}: {t:?}");
            }
            if route == Route::Fresh {
                assert!(t.fresh, "a fresh route accepted a refreshed token");
            }
        } else {
            // Minted by the layer from the refresh cookie.
            assert!(
                matches!(route, Route::Protected(_) | Route::Logout | Route::Revoke),
                "{route:?} ran with a token the server never issued (forged?)"
            );
            let r = sent
                .refresh_cookie
                .as_ref()
                .and_then(|t| self.model.issued.get(t))
                .expect("a token the server never issued reached the handler (forged?)");
            if let Some(why) = self.model.refuses(r, now) {
                panic!("minted an access token from a refresh token that is {why}: {r:?}");
            }
            assert_eq!(r.token_type, TokenType::Refresh);
            assert_eq!(claims.family, r.family, "minted into another family");
            assert_eq!(claims.sub, r.sub);
            assert!(!claims.fresh && claims.token_type == TokenType::Access);
        }
        if location == Location::Cookie && !is_safe(&method) {
            let want = claims.csrf.clone().unwrap_or_default();
            assert!(
                sent.csrf.len() == 1 && sent.csrf[0] == want && !want.is_empty(),
                "a cookie {method} request without the CSRF value reached the handler"
            );
        }
        let ok = status.is_success() || status.is_redirection();
        assert!(cookies.is_empty() || ok, "Set-Cookie on a {status} answer");
        if let Handler::Status(code) = route.handler() {
            assert_eq!(status.as_u16(), code, "the handler's status was changed");
            assert_eq!(before, after, "a read-only request wrote to the store");
        }

        // What the handler did, in the model.
        if seen.revoked {
            self.model.revoked_jti.insert(claims.jti.clone());
            if let Some(f) = &claims.family {
                self.model.revoked_family.insert(f.clone());
            }
            if matches!(route, Route::Revoke | Route::RevokeRefresh) {
                assert!(cookies.is_empty(), "a cookie re-issued after a revocation");
            }
        }
        if let Some((access, refresh)) = &seen.refreshed {
            let presented_claims = self.model.issued.get(&presented).cloned();
            let p = presented_claims.expect("the refresh route ran with an issued token");
            let family = p.family.clone().unwrap_or(p.jti.clone());
            if self.model.newest.get(&family).is_none_or(|n| *n == p.jti) {
                self.model
                    .window_end
                    .insert(family.clone(), now.saturating_add(self.model.grace));
            }
            self.model.issue(access);
            if let Some(refresh) = refresh {
                let r = self.model.issue(refresh);
                self.model.newest.insert(family, r.jti);
            }
        }
        if let Some(tower_jwt_auth::AuthError::InvalidToken(tower_jwt_auth::TokenError::Reused)) =
            &seen.refresh_error
        {
            self.model
                .revoked_family
                .insert(claims.family.clone().unwrap_or(claims.jti.clone()));
        }

        // Every token handed out must be one the model accepts now.
        for name in [&names.access, &names.refresh] {
            if let Some(v) = cookie_value(&res, name).filter(|v| !v.is_empty()) {
                let c = self.model.issue(&v);
                if let Some(why) = self.model.refuses(&c, now) {
                    panic!("the server handed out a token that is {why}: {c:?}");
                }
            }
        }
        if let Some((access, refresh)) = &seen.refreshed {
            for t in std::iter::once(access).chain(refresh) {
                let c = self.model.issue(t);
                if let Some(why) = self.model.refuses(&c, now) {
                    panic!("the refresh handed out a token that is {why}: {c:?}");
                }
            }
        }
        if browser {
            let jar = &mut self.model.jar;
            for (name, slot) in [
                (&names.access, &mut jar.access),
                (&names.refresh, &mut jar.refresh),
                (&names.csrf_access, &mut jar.csrf),
            ] {
                if let Some(v) = cookie_value(&res, name) {
                    *slot = (!v.is_empty()).then_some(v);
                }
            }
        }
    }
}

fn forge(u: &mut Unstructured<'_>, token: &str, other: &str) -> String {
    let arg: u8 = u.arbitrary().unwrap_or(0);
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => flip_char(token, usize::from(arg) * 13, arg),
        1 => swap_payload(token, other),
        2 => match segments(token) {
            Some((h, p, _)) => hs256_token(
                &URL_SAFE_NO_PAD.decode(h).unwrap_or_default(),
                &URL_SAFE_NO_PAD.decode(p).unwrap_or_default(),
                ATTACKER_SECRET,
            ),
            None => token.to_owned(),
        },
        _ => token[..token.len().saturating_sub(usize::from(arg % 4) + 1)].to_owned(),
    }
}

const ADVANCE: [u64; 15] = [
    1,
    5,
    6,
    60,
    300,
    601,
    ACCESS_TTL - 1,
    ACCESS_TTL + LEEWAY + 1,
    3600,
    86400,
    MAX_SESSION,
    REFRESH_TTL - 30,
    REFRESH_TTL + LEEWAY + 1,
    7 * 86400,
    0,
];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let config: u8 = u.arbitrary().unwrap_or(0);
    let grace = if config & 1 == 1 { GRACE } else { 0 };
    let max_session = (config & 2 == 2).then_some(MAX_SESSION);
    let clock = ManualClock::new(NOW);
    let store = Arc::new(MemoryStore::default());
    let mut builder = hs_builder(&clock)
        .shared_revocation_store(store.clone())
        .rotation_grace(Duration::from_secs(grace));
    if let Some(max) = max_session {
        builder = builder.max_session_lifetime(Duration::from_secs(max));
    }
    let auth = builder.build().expect("config");
    let mut s = Session {
        auth,
        clock,
        store,
        model: Model {
            grace,
            max_session,
            issued: HashMap::new(),
            history: Vec::new(),
            revoked_jti: HashSet::new(),
            revoked_family: HashSet::new(),
            subject_before: HashMap::new(),
            newest: HashMap::new(),
            window_end: HashMap::new(),
            jar: Jar::default(),
        },
    };
    s.login(SUBJECTS[0]);

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = u.int_in_range(0..=8u8) else {
            break;
        };
        match op {
            0 => {
                let sub = SUBJECTS[usize::from(u.arbitrary::<u8>().unwrap_or(0) % 2)];
                s.login(sub);
            }
            1 | 8 => {
                // A browser: the jar's cookies, and usually the right CSRF header.
                let route = Route::of(u.arbitrary().unwrap_or(0));
                let method = method_of(u.arbitrary().unwrap_or(0));
                let jar = &s.model.jar;
                let mut sent = Sent {
                    access_cookie: jar.access.clone(),
                    refresh_cookie: jar.refresh.clone(),
                    ..Sent::default()
                };
                if route.token_type() == TokenType::Refresh {
                    sent.access_cookie = None;
                }
                match u.int_in_range(0..=3u8).unwrap_or(0) {
                    0 => {}
                    1 => sent.csrf.push("wrong".into()),
                    _ => sent.csrf.extend(jar.csrf.clone()),
                }
                s.request(route, method, sent, false, true);
            }
            2 | 3 => {
                // Replay of any token ever issued, anywhere; op 3 forges it first.
                let route = Route::of(u.arbitrary().unwrap_or(0));
                let method = method_of(u.arbitrary().unwrap_or(0));
                let mut sent = Sent::default();
                let place: u8 = u.arbitrary().unwrap_or(0);
                let mut token = s.model.pick(&mut u);
                if op == 3 {
                    let other = s.model.pick(&mut u).unwrap_or_default();
                    token = token.map(|t| forge(&mut u, &t, &other));
                }
                match place % 4 {
                    0 => sent.bearer = token,
                    1 => sent.access_cookie = token,
                    2 => sent.refresh_cookie = token,
                    _ => {
                        sent.access_cookie = token;
                        sent.refresh_cookie = s.model.pick(&mut u);
                    }
                }
                match u.int_in_range(0..=3u8).unwrap_or(0) {
                    0 => {}
                    1 => sent.csrf.push(String::new()),
                    _ => {
                        if let Some(c) = s.model.pick(&mut u).and_then(|t| peek_claims(&t)) {
                            sent.csrf.extend(c.csrf);
                        }
                    }
                }
                let grpc = u.arbitrary::<u8>().unwrap_or(0) == 7;
                s.request(route, method, sent, grpc, false);
            }
            4 => {
                let i = u.choose_index(ADVANCE.len()).unwrap_or(0);
                let secs = if ADVANCE[i] == 0 {
                    u64::from(u.arbitrary::<u16>().unwrap_or(0))
                } else {
                    ADVANCE[i]
                };
                s.clock.advance(secs);
            }
            5 => {
                let sub = SUBJECTS[usize::from(u.arbitrary::<u8>().unwrap_or(0) % 2)];
                block_on(s.auth.revoke_subject(sub)).expect("revoke_subject");
                let now = s.auth.now();
                let b = s.model.subject_before.entry(sub.to_owned()).or_insert(now);
                *b = (*b).max(now);
            }
            6 => {
                let sent = Sent {
                    bearer: s.model.pick(&mut u),
                    ..Sent::default()
                };
                s.request(Route::Refresh, Method::POST, sent, false, false);
            }
            _ => {
                let sent = Sent {
                    bearer: s.model.pick(&mut u),
                    ..Sent::default()
                };
                s.request(Route::Logout, Method::POST, sent, false, false);
            }
        }
    }
});
