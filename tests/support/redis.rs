//! A real `redis-server` child process on a free loopback port, for tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server binary: `/usr/bin/redis-server`, or `REDIS_SERVER` (for example a
/// `valkey-server`, to run the same tests against Valkey).
pub fn redis_bin() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".into())
}

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Whether the Redis tests can run; fails when `REQUIRE_REDIS=1` and they cannot.
pub fn available() -> bool {
    if Path::new(&redis_bin()).exists() {
        return true;
    }
    if std::env::var("REQUIRE_REDIS").as_deref() == Ok("1") {
        panic!("REQUIRE_REDIS=1 but {} is not installed", redis_bin());
    }
    println!("redis tests SKIPPED: redis-server not installed");
    false
}

impl RedisServer {
    /// A server on a free port, or `None` when redis-server is not installed.
    pub async fn start() -> Option<Self> {
        if !available() {
            return None;
        }
        // A port picked this way can be taken by someone else before redis binds it.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_on(free_port()).await {
                Ok(server) => return Some(server),
                Err(e) => last = Some(e),
            }
        }
        panic!("could not start redis-server: {last:?}");
    }

    /// A server on `port`, answering PING.
    pub async fn start_on(port: u16) -> Result<Self, String> {
        let child = Command::new(redis_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", redis_bin()))?;
        let mut server = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                server.child = None;
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if ping(port).await {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!(
            "redis-server on port {port} did not answer PING within 10 s"
        ))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = stream.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(true))
    )
}
