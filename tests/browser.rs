//! A real browser against the quickstart's cookie session: headless Chromium, driven
//! over the W3C WebDriver protocol (chromedriver), logs in through the page, makes
//! calls with and without the CSRF header, lives through implicit refreshes (the test
//! moves a `ManualClock` instead of sleeping) and logs out.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian:
//! `apt-get install chromium chromium-driver`). Without them the test says it is
//! skipped and passes, unless `REQUIRE_BROWSER=1` is set, in which case it fails.
//!
//! The WebDriver client is a few functions over the tests' shared HTTP/1 client
//! (`tests/support/client.rs`, hyper): no extra dependency.

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{COOKIE, HeaderName, WWW_AUTHENTICATE};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::client;
use tower_jwt_auth::{ImplicitRefresh, JwtAuth, ManualClock, TokenType};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for one thing the page should do.
const WAIT: Duration = Duration::from_secs(10);
/// Longest wait for one HTTP exchange (a new WebDriver session starts a browser).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole scenario.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);
const ACCESS_TTL: u64 = 60;
const WINDOW: u64 = 20;
/// Past expiry: TTL + the default 5 s leeway, plus a margin.
const PAST_EXPIRY: u64 = ACCESS_TTL + 5 + 5;
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The buttons whose (async) click handlers the test waits for.
const BUTTONS: [&str; 5] = ["login", "get", "post", "post-nocsrf", "logout"];

/// One exchange with chromedriver or the app (`tests/support/client.rs`), bounded by
/// `HTTP_TIMEOUT`: a WebDriver command may load a page first.
async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(HeaderName, String)],
    json_body: Option<Value>,
) -> Result<client::Response, String> {
    client::send_within(HTTP_TIMEOUT, addr, method, path, headers, json_body).await
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------
// chromedriver: started on a free port in its own process group, which is ended on
// drop (also when the test panics or times out), with the browser it started.

struct Chromedriver {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Chromedriver {
    fn start(dir: PathBuf) -> Result<Self, String> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("chromedriver.log"))
            .map_err(|e| format!("creating the chromedriver log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {CHROMEDRIVER}: {e}"))?;
        Ok(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        })
    }

    /// Polls `/status` until chromedriver says it is ready.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last: String;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "chromedriver exited early ({status}); log:\n{}",
                    self.log_tail()
                ));
            }
            match http(self.addr, Method::GET, "/status", &[], None).await {
                Ok(r) if r.status == StatusCode::OK => {
                    let v = r.json();
                    if v["value"]["ready"] == json!(true) {
                        return Ok(());
                    }
                    last = r.text();
                }
                Ok(r) => last = format!("{} {}", r.status, r.text()),
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver not ready after 20 s (last: {last}); log:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let start = log.len().saturating_sub(3000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log[start..].to_owned()
    }

    fn signal_group(&self, signal: &str) {
        // Only the process group this test created (chromedriver and its browser).
        let _ = Command::new("kill")
            .args([
                format!("-{signal}"),
                "--".into(),
                format!("-{}", self.child.id()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- chromedriver log (tail) ---\n{}", self.log_tail());
        }
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (a browser that ignored TERM).
        self.signal_group("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------
// A WebDriver session. Deleted explicitly at the end; on a panic or a timeout, Drop
// deletes it with a blocking request so the browser closes.

struct Session {
    driver: SocketAddr,
    id: String,
    open: bool,
}

impl Session {
    async fn new(driver: SocketAddr, profile: &Path) -> Result<Self, String> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let r = http(driver, Method::POST, "/session", &[], Some(caps)).await?;
        let body = r.text();
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("new session: {e}: {body}"))?;
        let id = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("new session failed ({}): {body}", r.status))?
            .to_owned();
        let session = Self {
            driver,
            id,
            open: true,
        };
        session
            .cmd(
                Method::POST,
                "/timeouts",
                Some(json!({"script": 10_000, "pageLoad": 20_000, "implicit": 0})),
            )
            .await?;
        Ok(session)
    }

    /// One WebDriver command on this session; returns its `value`.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let full = format!("/session/{}{path}", self.id);
        // W3C: POST commands carry a JSON body, even when empty.
        let body = body.or_else(|| (method == Method::POST).then(|| json!({})));
        let r = http(self.driver, method.clone(), &full, &[], body).await?;
        let text = r.text();
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))?;
        if !r.status.is_success() {
            return Err(format!(
                "{method} {path}: {} {}: {}",
                r.status,
                v["value"]["error"].as_str().unwrap_or("?"),
                v["value"]["message"].as_str().unwrap_or(&text)
            ));
        }
        Ok(v["value"].clone())
    }

    async fn navigate(&self, url: &str) -> Result<(), String> {
        self.cmd(Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("find {css}: unexpected answer {v}"))
    }

    async fn click(&self, css: &str) -> Result<(), String> {
        let element = self.find(css).await?;
        self.cmd(Method::POST, &format!("/element/{element}/click"), None)
            .await
            .map(drop)
    }

    async fn text(&self, css: &str) -> Result<String, String> {
        let element = self.find(css).await?;
        let v = self
            .cmd(Method::GET, &format!("/element/{element}/text"), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    async fn script(&self, js: &str) -> Result<Value, String> {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// The last argument of the script is the callback that ends it.
    async fn script_async(&self, js: &str) -> Result<Value, String> {
        self.cmd(
            Method::POST,
            "/execute/async",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// All cookies of the current page, `HttpOnly` ones included, with their flags.
    async fn cookies(&self) -> Result<Vec<Value>, String> {
        let v = self.cmd(Method::GET, "/cookie", None).await?;
        v.as_array()
            .cloned()
            .ok_or_else(|| format!("get cookies: unexpected answer {v}"))
    }

    async fn close(mut self) -> Result<(), String> {
        self.open = false;
        self.cmd(Method::DELETE, "", None).await.map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        // Blocking and bounded: we may be unwinding, or the runtime may be gone.
        let timeout = Duration::from_secs(5);
        if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&self.driver, timeout) {
            let _ = stream.set_read_timeout(Some(timeout));
            let _ = stream.set_write_timeout(Some(timeout));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.id, self.driver
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // chromedriver answers once the browser is closed; it may keep the
                // connection open, so wait for the first bytes only.
                let _ = stream.read(&mut [0u8; 512]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The page, as a user sees it. Failures report what the page shows.

struct Page<'a> {
    s: &'a Session,
}

/// Panics with the message and what the page shows (`#status`, `#who`, cookies).
macro_rules! fail {
    ($page:expr, $($msg:tt)+) => {
        panic!("{}\n    page: {}", format!($($msg)+), $page.context().await)
    };
}

macro_rules! check {
    ($page:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            fail!($page, $($msg)+)
        }
    };
}

impl Page<'_> {
    /// Best effort and bounded: what the page shows, for failure messages.
    async fn context(&self) -> String {
        let read = async {
            let status = self
                .s
                .text("#status")
                .await
                .unwrap_or_else(|e| format!("<{e}>"));
            let who = self
                .s
                .text("#who")
                .await
                .unwrap_or_else(|e| format!("<{e}>"));
            let cookies = self
                .s
                .text("#cookies")
                .await
                .unwrap_or_else(|e| format!("<{e}>"));
            format!("#status = {status:?}, #who = {who:?}, scripts see cookies = {cookies:?}")
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap_or_else(|_| "<the browser did not answer>".into())
    }

    async fn ok<T>(&self, result: Result<T, String>, what: &str) -> T {
        match result {
            Ok(v) => v,
            Err(e) => fail!(self, "{what}: {e}"),
        }
    }

    async fn text(&self, id: &str) -> String {
        let r = self.s.text(&format!("#{id}")).await;
        self.ok(r, &format!("text of #{id}")).await
    }

    async fn script(&self, js: &str) -> Value {
        let r = self.s.script(js).await;
        self.ok(r, "execute script").await
    }

    /// Counts finished runs of the buttons' async click handlers, so a click can
    /// wait until its fetches and the view update behind it are all done.
    async fn instrument(&self) {
        let js = format!(
            r#"window.__completed = 0;
            for (const id of {buttons}) {{
              const el = document.getElementById(id);
              const handler = el.onclick;
              el.onclick = (ev) => Promise.resolve()
                .then(() => handler.call(el, ev))
                .finally(() => {{ window.__completed += 1; }});
            }}
            return true;"#,
            buttons = json!(BUTTONS)
        );
        self.script(&js).await;
    }

    /// Clicks `#id` like a user, waits until its handler has finished, and returns
    /// what `#status` then shows.
    async fn click(&self, id: &str) -> String {
        let before = self
            .script("document.getElementById('status').textContent = '(clicked)'; return window.__completed;")
            .await
            .as_u64();
        let Some(before) = before else {
            fail!(self, "the page is not instrumented (reloaded?)")
        };
        let r = self.s.click(&format!("#{id}")).await;
        self.ok(r, &format!("click #{id}")).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let done = self.script("return window.__completed;").await.as_u64();
            if done.is_some_and(|n| n > before) {
                break;
            }
            if Instant::now() > deadline {
                fail!(
                    self,
                    "clicked #{id}: the page did not finish within {WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.text("status").await
    }

    /// Clicks and checks that `#status` starts with `expected`.
    async fn click_expect(&self, id: &str, expected: &str) -> String {
        let status = self.click(id).await;
        check!(
            self,
            status.starts_with(expected),
            "clicked #{id}: expected #status to start with {expected:?}, got {status:?}"
        );
        status
    }

    /// Waits until `#id` shows `expected`.
    async fn wait_text(&self, id: &str, expected: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(id).await;
            if text == expected {
                return;
            }
            if Instant::now() > deadline {
                fail!(
                    self,
                    "#{id} shows {text:?}, expected {expected:?} within {WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A `fetch()` from the page's origin (the browser adds its cookies); returns
    /// the status, once the response body has been read.
    async fn fetch(&self, method: &str, path: &str) -> u64 {
        let js = format!(
            r#"const done = arguments[arguments.length - 1];
            fetch({path}, {{ method: {method}, credentials: "same-origin" }})
              .then(r => r.text().then(() => done(r.status)))
              .catch(e => done("fetch failed: " + e));"#,
            path = json!(path),
            method = json!(method),
        );
        let r = self.s.script_async(&js).await;
        let v = self.ok(r, &format!("fetch {method} {path}")).await;
        match v.as_u64() {
            Some(status) => status,
            None => fail!(self, "fetch {method} {path}: {v}"),
        }
    }

    /// The browser's cookie `name` (from WebDriver, so `HttpOnly` ones too).
    async fn cookie(&self, name: &str) -> Option<Value> {
        let r = self.s.cookies().await;
        let all = self.ok(r, "get cookies").await;
        all.into_iter().find(|c| c["name"] == json!(name))
    }

    async fn cookie_value(&self, name: &str) -> String {
        match self.cookie(name).await {
            Some(c) => c["value"].as_str().unwrap_or_default().to_owned(),
            None => fail!(self, "the browser holds no cookie {name:?}"),
        }
    }

    /// The names of the cookies scripts can read (`document.cookie`).
    async fn script_cookie_names(&self) -> (String, Vec<String>) {
        let v = self.script("return document.cookie;").await;
        let raw = v.as_str().unwrap_or_default().to_owned();
        let names = raw
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.split('=').next().unwrap_or_default().to_owned())
            .collect();
        (raw, names)
    }
}

// ---------------------------------------------------------------------------------

/// Progress, shown with `--nocapture` and with the output of a failed test.
fn step(what: &str) {
    println!("browser test: {what}");
}

fn missing_browser() -> Vec<&'static str> {
    [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect()
}

fn temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tower-jwt-auth-browser-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(dir.join("profile"))
        .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_cookie_session_with_csrf_and_implicit_refresh() {
    let missing = missing_browser();
    if !missing.is_empty() {
        if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!(
                "REQUIRE_BROWSER=1 but {missing:?} not found (apt-get install chromium chromium-driver)"
            );
        }
        println!(
            "browser test SKIPPED: chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let started = Instant::now();
    let dir = temp_dir();
    let profile = dir.join("profile");
    let mut driver = Chromedriver::start(dir).unwrap_or_else(|e| panic!("{e}"));
    // Both cookie modes: the defaults (`__Host-` names, `Secure`, which browsers accept
    // from http://127.0.0.1 as a potentially trustworthy origin) and plain-http dev mode.
    for secure in [true, false] {
        let profile = profile.with_extension(if secure { "secure" } else { "dev" });
        match tokio::time::timeout(SCENARIO_TIMEOUT, scenario(&mut driver, &profile, secure)).await
        {
            Ok(()) => println!(
                "browser scenario (secure cookies: {secure}) passed in {:.1?}",
                started.elapsed()
            ),
            Err(_) => panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}"),
        }
    }
}

async fn scenario(driver: &mut Chromedriver, profile: &Path, secure: bool) {
    let clock = ManualClock::starting_now();
    let mut builder =
        JwtAuth::builder().hs256("browser-test secret, long enough for HS256 (>= 32 bytes)");
    if !secure {
        builder = builder.insecure_cookies_for_local_development();
    }
    let auth = builder
        .access_ttl(Duration::from_secs(ACCESS_TTL))
        .implicit_refresh(ImplicitRefresh::window(Duration::from_secs(WINDOW)))
        .clock(clock.clone())
        .build()
        .expect("valid configuration");
    let names = auth.cookie_names().clone();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app");
    let app = listener.local_addr().expect("app address");
    let router = quickstart::app(auth.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    driver.wait_ready().await.unwrap_or_else(|e| panic!("{e}"));
    let session = Session::new(driver.addr, profile)
        .await
        .unwrap_or_else(|e| panic!("starting the browser: {e}"));
    let page = Page { s: &session };

    step("open the page");
    // The page loads; its first call to /session finds nobody signed in.
    let r = session.navigate(&format!("http://{app}/")).await;
    page.ok(r, "open the quickstart page").await;
    page.wait_text("who", "nobody").await;
    let deadline = Instant::now() + WAIT;
    while page.text("cookies").await.is_empty() {
        check!(page, Instant::now() < deadline, "the page never rendered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    page.instrument().await;

    step("log in");
    // Log in through the form.
    page.click_expect("login", "login 200").await;
    page.wait_text("who", "test").await;

    step("cookie flags");
    // Scripts see the CSRF cookies, never the tokens.
    let (raw, visible) = page.script_cookie_names().await;
    check!(
        page,
        visible.contains(&names.csrf_access) && visible.contains(&names.csrf_refresh),
        "document.cookie should hold the CSRF cookies: {raw:?}"
    );
    check!(
        page,
        !visible.contains(&names.access) && !visible.contains(&names.refresh),
        "document.cookie must not expose the token cookies (HttpOnly): {raw:?}"
    );
    // The browser holds them, HttpOnly, SameSite=Lax (and, in dev mode, not Secure).
    for name in [&names.access, &names.refresh] {
        let Some(c) = page.cookie(name).await else {
            fail!(page, "no {name} cookie after login")
        };
        check!(
            page,
            c["httpOnly"] == json!(true),
            "{name} must be HttpOnly: {c}"
        );
        check!(
            page,
            c["sameSite"] == json!("Lax"),
            "{name} must be SameSite=Lax: {c}"
        );
        check!(
            page,
            c["secure"] == json!(secure),
            "{name}: Secure should be {secure} in this mode: {c}"
        );
        check!(
            page,
            c["path"] == json!("/"),
            "{name} must have Path=/: {c}"
        );
    }
    let Some(csrf_cookie) = page.cookie(&names.csrf_access).await else {
        fail!(page, "no {} cookie after login", names.csrf_access)
    };
    check!(
        page,
        csrf_cookie["httpOnly"] == json!(false),
        "the CSRF cookie must be readable by scripts: {csrf_cookie}"
    );
    let csrf = csrf_cookie["value"].as_str().unwrap_or_default().to_owned();
    check!(page, !csrf.is_empty(), "empty CSRF cookie");

    step("CSRF on unsafe calls");
    // Unsafe calls need the CSRF header; safe ones do not.
    page.click_expect("post", "POST 200").await;
    page.click_expect("post-nocsrf", "POST 403").await;
    page.click_expect("get", "GET 200").await;

    // The same access cookie replayed outside the browser works (so the 401 after
    // logout below means revoked, not misread).
    let access0 = page.cookie_value(&names.access).await;
    let replay = |name: &str, value: &str| {
        let cookie = format!("{name}={value}");
        async move { http(app, Method::GET, "/protected", &[(COOKIE, cookie)], None).await }
    };
    let r = replay(&names.access, &access0).await;
    let r = page.ok(r, "replay the access cookie").await;
    check!(
        page,
        r.status == StatusCode::OK,
        "replayed access cookie: {} {}",
        r.status,
        r.text()
    );
    let login_claims = auth
        .verify(&access0, TokenType::Access)
        .expect("login token");
    check!(
        page,
        login_claims.fresh,
        "the login's access token is fresh"
    );
    check!(
        page,
        page.text("refreshed").await == "never",
        "no refresh yet"
    );

    step("implicit refresh from the refresh cookie (access expired)");
    // The access token expires; the user just clicks GET again: the refresh cookie
    // mints a new access cookie on the way, no login needed.
    clock.advance(PAST_EXPIRY);
    check!(
        page,
        auth.verify(&access0, TokenType::Access).is_err(),
        "the login's access token should be expired by now"
    );
    page.click_expect("get", "GET 200").await;
    let access1 = page.cookie_value(&names.access).await;
    check!(
        page,
        access1 != access0,
        "the access cookie was not replaced after expiry"
    );
    let claims1 = match auth.verify(&access1, TokenType::Access) {
        Ok(c) => c,
        Err(e) => fail!(page, "the re-issued access cookie does not verify: {e}"),
    };
    check!(
        page,
        claims1.sub == "test" && !claims1.fresh,
        "re-issued claims: {claims1:?}"
    );
    check!(
        page,
        claims1.exp == auth.now() + ACCESS_TTL,
        "re-issued exp: {claims1:?}"
    );
    check!(
        page,
        claims1.csrf.as_deref() == Some(csrf.as_str()),
        "the re-issued token must keep the CSRF value"
    );
    check!(
        page,
        page.cookie_value(&names.csrf_access).await == csrf,
        "the CSRF cookie changed"
    );
    page.wait_text("who", "test").await;
    check!(
        page,
        page.text("refreshed").await != "never",
        "the page should notice the new token (#refreshed)"
    );

    step("implicit re-issue inside the window");
    // Within the window (not expired): a plain GET re-issues the access cookie.
    clock.advance(ACCESS_TTL - WINDOW + 5);
    check!(
        page,
        auth.verify(&access1, TokenType::Access).is_ok(),
        "the access token should still be valid inside the window"
    );
    let status = page.fetch("GET", "/protected").await;
    check!(
        page,
        status == 200,
        "GET /protected inside the window: {status}"
    );
    let access2 = page.cookie_value(&names.access).await;
    check!(
        page,
        access2 != access1,
        "the access cookie was not re-issued inside the window"
    );
    let claims2 = auth.verify(&access2, TokenType::Access);
    check!(
        page,
        claims2
            .as_ref()
            .is_ok_and(|c| c.jti != claims1.jti && c.exp == auth.now() + ACCESS_TTL),
        "re-issued in the window: {claims2:?}"
    );
    step("CSRF after the refreshes");
    // Unsafe calls keep working after the refreshes, with the same CSRF value.
    page.click_expect("post", "POST 200").await;
    page.click_expect("post-nocsrf", "POST 403").await;

    step("refresh-cookie fallback on POST");
    // Expired again, and the first call is a POST: the refresh-cookie fallback
    // still demands the CSRF header, and a refused request gets no new cookie.
    // (A raw fetch: after a click the page also reloads /session, a GET that
    // rightly refreshes.)
    clock.advance(PAST_EXPIRY);
    let status = page.fetch("POST", "/protected").await;
    check!(
        page,
        status == 403,
        "POST without CSRF after expiry: {status}"
    );
    check!(
        page,
        page.cookie_value(&names.access).await == access2,
        "a request refused for CSRF must not get a new access cookie"
    );
    page.click_expect("post", "POST 200").await;
    let access3 = page.cookie_value(&names.access).await;
    check!(
        page,
        access3 != access2,
        "no new access cookie after expiry (POST)"
    );
    check!(
        page,
        page.cookie_value(&names.csrf_access).await == csrf,
        "the CSRF cookie changed"
    );
    let refresh = page.cookie_value(&names.refresh).await;

    step("log out");
    // Log out: the cookies go, the next call is refused.
    page.click_expect("logout", "logout 204").await;
    page.wait_text("who", "nobody").await;
    let r = session.cookies().await;
    let left: Vec<String> = page
        .ok(r, "get cookies")
        .await
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    check!(
        page,
        [
            &names.access,
            &names.refresh,
            &names.csrf_access,
            &names.csrf_refresh
        ]
        .iter()
        .all(|n| !left.contains(n)),
        "logout should clear the four cookies, left: {left:?}"
    );
    page.click_expect("get", "GET 401").await;

    step("replay revoked tokens");
    // The tokens themselves are revoked: replaying them outside the browser fails.
    for (name, value) in [(&names.access, &access3), (&names.refresh, &refresh)] {
        let r = replay(name, value).await;
        let r = page.ok(r, "replay after logout").await;
        let challenge = r
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        check!(
            page,
            r.status == StatusCode::UNAUTHORIZED && challenge.contains("invalid_token"),
            "replaying {name} after logout: {} {challenge:?} {}",
            r.status,
            r.text()
        );
    }

    let r = session.close().await;
    if let Err(e) = r {
        panic!("closing the browser: {e}");
    }
}
