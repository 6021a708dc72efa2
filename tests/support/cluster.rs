//! A real Redis Cluster for tests: six `redis-server` child processes (3 masters,
//! 3 replicas) on free loopback ports, joined with `redis-cli --cluster create`.
//!
//! The harness talks to the nodes with a tiny RESP2 client of its own (not the
//! `redis` crate), so the store under test and the harness never share a bug.
//!
//! Every wait is bounded; every child is killed (and its temp dir removed) on drop.
//! Lifecycle operations and waits panic with the cluster's state and log tails on
//! failure: they are test steps. Raw commands ([`command`], [`Conn::cmd`]) return
//! `Result`, since a test may expect a node to be unreachable.
//!
//! Timing: `cluster-node-timeout` is 1000 ms, so a node killed or paused is failed
//! over after about 2–3 s. Restart a killed master only after its failover: a master
//! without persistence that comes back before its replica took over owns its slots
//! again, empty (that is how Redis behaves, not a harness bug).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::redis::redis_bin;

/// The CLI that joins the cluster: `/usr/bin/redis-cli`, or `REDIS_CLI` (`valkey-cli`).
pub fn redis_cli() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "/usr/bin/redis-cli".into())
}
/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// `cluster-node-timeout` of every node.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// Bound on one command to one node (a paused node never answers).
const COMMAND_LIMIT: Duration = Duration::from_secs(2);
/// Bound on the cluster forming, from the first spawn to every node `ok`.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Bound on a failover, a restart, or the cluster becoming healthy again.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------------

/// The hash slot of `key`, as Redis computes it: CRC16 (XMODEM) of the hash tag
/// (the part between the first `{` and the next `}`, when not empty) or of the key.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as in Redis' `crc16.c`.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

// ---------------------------------------------------------------------------------
// A tiny RESP2 client
// ---------------------------------------------------------------------------------

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string), if it is one.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply as an integer, if it is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "{s}"),
            Reply::Error(e) => write!(f, "(error) {e}"),
            Reply::Int(i) => write!(f, "(integer) {i}"),
            Reply::Bulk(None) | Reply::Array(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Parses one reply from the start of `buf`: `Ok(None)` when more bytes are needed.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..eol].split_first() else {
        return Err("empty RESP line".into());
    };
    let line = std::str::from_utf8(line).map_err(|e| format!("bad RESP line: {e}"))?;
    let rest = eol + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|e| format!("bad RESP number {line:?}: {e}"))
    };
    Ok(Some(match kind {
        b'+' => (Reply::Simple(line.to_owned()), rest),
        b'-' => (Reply::Error(line.to_owned()), rest),
        b':' => (Reply::Int(number()?), rest),
        b'$' => {
            let len = number()?;
            if len < 0 {
                (Reply::Bulk(None), rest)
            } else {
                let len = len as usize;
                if buf.len() < rest + len + 2 {
                    return Ok(None);
                }
                (
                    Reply::Bulk(Some(buf[rest..rest + len].to_vec())),
                    rest + len + 2,
                )
            }
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                (Reply::Array(None), rest)
            } else {
                let mut items = Vec::with_capacity(len as usize);
                let mut at = rest;
                for _ in 0..len {
                    match parse_reply(&buf[at..])? {
                        Some((item, used)) => {
                            items.push(item);
                            at += used;
                        }
                        None => return Ok(None),
                    }
                }
                (Reply::Array(Some(items)), at)
            }
        }
        other => return Err(format!("unexpected RESP type byte {other:#04x}")),
    }))
}

/// One connection to one node. Every call is bounded by [`COMMAND_LIMIT`] (or the
/// limit given); after an error the connection should be dropped.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pub port: u16,
}

impl Conn {
    pub async fn connect(port: u16) -> Result<Self, String> {
        let stream = tokio::time::timeout(COMMAND_LIMIT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| format!("connect to {port}: timed out"))?
            .map_err(|e| format!("connect to {port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: Vec::new(),
            port,
        })
    }

    /// Sends one command, returns its reply (a Redis error is `Ok(Reply::Error)`).
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, String> {
        self.cmd_within(args, COMMAND_LIMIT).await
    }

    pub async fn cmd_within<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        limit: Duration,
    ) -> Result<Reply, String> {
        let port = self.port;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        let exchange = async {
            self.stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write to {port}: {e}"))?;
            loop {
                if let Some((reply, used)) = parse_reply(&self.buf)? {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read from {port}: {e}"))?;
                if n == 0 {
                    return Err(format!("{port} closed the connection"));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| format!("{port} did not answer within {limit:?}"))?
    }
}

/// One command on a fresh connection to `port`.
pub async fn command<A: AsRef<[u8]>>(port: u16, args: &[A]) -> Result<Reply, String> {
    Conn::connect(port).await?.cmd(args).await
}

/// One command whose reply must be text (an error reply is an `Err`).
async fn text(port: u16, args: &[&str]) -> Result<String, String> {
    match command(port, args).await? {
        Reply::Error(e) => Err(format!("{port} {args:?}: {e}")),
        reply => reply
            .text()
            .ok_or_else(|| format!("{port} {args:?}: not text: {reply}")),
    }
}

/// `field:value` lines of an `INFO`/`CLUSTER INFO` answer.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

// ---------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    /// The master's id for a replica.
    pub master_id: Option<String>,
    pub connected: bool,
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }
    /// Flagged `fail` or `fail?` by the node that was asked.
    pub fn is_failing(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }
}

/// A master, the slot ranges it serves and its replicas, as one node sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub master: u16,
    pub replicas: Vec<u16>,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Shard {
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Parses `CLUSTER NODES`.
pub fn parse_nodes(text: &str) -> Result<Vec<NodeView>, String> {
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("bad CLUSTER NODES line: {line:?}"));
        }
        // `ip:port@cport[,hostname]`
        let port = fields[1]
            .split('@')
            .next()
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad address in {line:?}"))?;
        let mut slots = Vec::new();
        for spec in &fields[8..] {
            // `[slot->-id]` / `[slot-<-id]`: migrating or importing, not owned.
            if spec.starts_with('[') {
                continue;
            }
            let range = match spec.split_once('-') {
                Some((a, b)) => (a.parse(), b.parse()),
                None => (spec.parse(), spec.parse()),
            };
            match range {
                (Ok(a), Ok(b)) => slots.push((a, b)),
                _ => return Err(format!("bad slot range {spec:?} in {line:?}")),
            }
        }
        nodes.push(NodeView {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            connected: fields[7] == "connected",
            slots,
        });
    }
    Ok(nodes)
}

/// Shards (masters serving slots) from a `CLUSTER NODES` view, sorted by first slot.
/// Replicas flagged failing are left out.
pub fn shards_of(view: &[NodeView]) -> Vec<Shard> {
    let mut shards: Vec<Shard> = view
        .iter()
        .filter(|n| n.is_master() && !n.slots.is_empty())
        .map(|m| Shard {
            master: m.port,
            replicas: view
                .iter()
                .filter(|r| r.master_id.as_deref() == Some(&m.id) && !r.is_failing())
                .map(|r| r.port)
                .collect(),
            slots: m.slots.clone(),
        })
        .collect();
    for shard in &mut shards {
        shard.replicas.sort_unstable();
    }
    shards.sort_by_key(|s| s.slots.first().copied());
    shards
}

// ---------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------

struct Node {
    port: u16,
    bus_port: u16,
    child: Option<Child>,
    paused: bool,
}

/// Six `redis-server` processes forming a 3-master/3-replica cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

/// Whether the cluster tests can run (`redis-server` and `redis-cli` installed);
/// fails when `REQUIRE_REDIS=1` and they cannot.
pub fn available() -> bool {
    if !super::redis::available() {
        return false;
    }
    if Path::new(&redis_cli()).exists() {
        return true;
    }
    if std::env::var("REQUIRE_REDIS").as_deref() == Ok("1") {
        panic!("REQUIRE_REDIS=1 but {} is not installed", redis_cli());
    }
    println!("redis cluster tests SKIPPED: redis-cli not installed");
    false
}

/// `n` distinct free loopback ports (held together while picked, so distinct).
/// `n` free ports never handed out before in this process: a port freed by a killed
/// node and taken by another test's cluster would let the two clusters gossip into one.
fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        // Held until all are picked, so the kernel hands out distinct ports.
        listeners.push(listener);
        if !handed_out.contains(&port) {
            handed_out.push(port);
            ports.push(port);
        }
    }
    ports
}

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "tower-jwt-auth-cluster-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the cluster's temp dir");
    dir
}

/// The state letter of `/proc/<pid>/stat` ("T" once stopped), if the process exists.
pub fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the state follows the last ')'.
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    Some(state.to_owned())
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("kill {sig} {pid}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {sig} {pid}: {status}"))
    }
}

impl RedisCluster {
    /// A healthy cluster (every node `cluster_state:ok`, every master with an online
    /// replica), or `None` when Redis is not installed (see [`available`]).
    pub async fn start() -> Option<Self> {
        if !available() {
            return None;
        }
        // Free ports can be taken by someone else before redis binds them: retry.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(cluster) => return Some(cluster),
                Err(e) => last = e,
            }
        }
        panic!("could not start a redis cluster: {last}");
    }

    async fn try_start() -> Result<Self, String> {
        let deadline = Instant::now() + START_LIMIT;
        let ports = free_ports(12);
        let mut cluster = Self {
            nodes: ports
                .chunks(2)
                .map(|p| Node {
                    port: p[0],
                    bus_port: p[1],
                    child: None,
                    paused: false,
                })
                .collect(),
            dir: fresh_dir(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        for node in &cluster.nodes {
            let port = node.port;
            cluster
                .wait_until(deadline, &format!("{port} answers PING"), || async move {
                    Ok(text(port, &["PING"]).await.as_deref() == Ok("PONG"))
                })
                .await?;
        }

        let mut create = tokio::process::Command::new(redis_cli());
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let limit = deadline.saturating_duration_since(Instant::now());
        let output = tokio::time::timeout(limit, create.output())
            .await
            .map_err(|_| format!("redis-cli --cluster create took more than {limit:?}"))?
            .map_err(|e| format!("run {}: {e}", redis_cli()))?;
        if !output.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        cluster.wait_healthy_until(deadline).await?;
        Ok(cluster)
    }

    fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.join(port.to_string())
    }

    fn index(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"))
    }

    /// Starts node `i` with its port, bus port and directory (kept across restarts).
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let (port, bus_port) = (self.nodes[i].port, self.nodes[i].bus_port);
        let dir = self.node_dir(port);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {dir:?}: {e}"))?;
        let child = Command::new(redis_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args(["--logfile", "redis.log", "--loglevel", "notice"])
            .args(["--save", "", "--appendonly", "no"])
            // No persistence at all: a replica's full sync stays in memory (no dump
            // file a restart would load), and without the default 5 s delay.
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .args(["--repl-diskless-load", "swapdb"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", redis_bin()))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Polls `check` until it returns `Ok(true)` or `deadline` passes. A node that
    /// exited on its own fails the wait at once.
    async fn wait_until<F, Fut>(
        &self,
        deadline: Instant,
        what: &str,
        mut check: F,
    ) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, String>>,
    {
        let mut last;
        loop {
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => last = "not yet".into(),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out waiting until {what} ({last})\n{}",
                    self.diagnostics()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    // -- what there is ---------------------------------------------------------------

    /// Every node's port, in start order (killed and paused nodes included).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Every node's URL, `redis://127.0.0.1:PORT`.
    pub fn urls(&self) -> Vec<String> {
        self.ports().into_iter().map(url).collect()
    }

    /// The URLs comma-separated, as `REDIS_CLUSTER_NODES` takes them.
    pub fn urls_env(&self) -> String {
        self.urls().join(",")
    }

    /// The cluster's temp dir (node `P`'s files are in `dir/P/`: `nodes.conf`, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id of the node on `port`, if it runs.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.nodes[self.index(port)].child.as_ref().map(Child::id)
    }

    /// Nodes running and not paused.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.paused)
            .map(|n| n.port)
            .collect()
    }

    /// `CLUSTER NODES` as the node on `port` sees it.
    pub async fn view_from(&self, port: u16) -> Result<Vec<NodeView>, String> {
        parse_nodes(&text(port, &["CLUSTER", "NODES"]).await?)
    }

    /// The shards as the first live node that answers sees them.
    pub async fn shards(&self) -> Vec<Shard> {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match self.view_from(port).await {
                Ok(view) => return shards_of(&view),
                Err(e) => errors.push(e),
            }
        }
        panic!("no live node answered CLUSTER NODES: {errors:?}");
    }

    /// The masters' ports, sorted by the first slot they serve.
    pub async fn masters(&self) -> Vec<u16> {
        self.shards().await.iter().map(|s| s.master).collect()
    }

    /// The replicas of the master on `master`.
    pub async fn replicas_of(&self, master: u16) -> Vec<u16> {
        self.shards()
            .await
            .into_iter()
            .find(|s| s.master == master)
            .map(|s| s.replicas)
            .unwrap_or_default()
    }

    /// The shard serving `slot`.
    pub async fn shard_for_slot(&self, slot: u16) -> Shard {
        let shards = self.shards().await;
        shards
            .iter()
            .find(|s| s.serves(slot))
            .cloned()
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {shards:?}"))
    }

    /// The master serving `key` (hash tags included).
    pub async fn master_for_key(&self, key: &[u8]) -> u16 {
        self.shard_for_slot(key_slot(key)).await.master
    }

    // -- data --------------------------------------------------------------------------

    /// `SET key value` on the key's master, then `WAIT 1` (1 s): the write is on a
    /// replica when this returns. Returns the master's port.
    pub async fn set_replicated(&self, key: &str, value: &str) -> u16 {
        let master = self.master_for_key(key.as_bytes()).await;
        let result = async {
            let mut conn = Conn::connect(master).await?;
            let set = conn.cmd(&["SET", key, value]).await?;
            if set != Reply::Simple("OK".into()) {
                return Err(format!("SET {key}: {set}"));
            }
            match conn.cmd(&["WAIT", "1", "1000"]).await? {
                Reply::Int(n) if n >= 1 => Ok(()),
                other => Err(format!("WAIT 1 1000 after SET {key}: {other}")),
            }
        }
        .await;
        if let Err(e) = result {
            panic!("set_replicated on {master}: {e}\n{}", self.diagnostics());
        }
        master
    }

    /// `GET key` on the node on `port` (a replica answers after `READONLY`).
    pub async fn get_from(&self, port: u16, key: &str) -> Result<Option<String>, String> {
        let mut conn = Conn::connect(port).await?;
        conn.cmd(&["READONLY"]).await?;
        match conn.cmd(&["GET", key]).await? {
            Reply::Bulk(None) => Ok(None),
            Reply::Error(e) => Err(format!("GET {key} on {port}: {e}")),
            reply => Ok(reply.text()),
        }
    }

    /// `GET key` on the key's current master.
    pub async fn get(&self, key: &str) -> Result<Option<String>, String> {
        let master = self.master_for_key(key.as_bytes()).await;
        self.get_from(master, key).await
    }

    /// `CLIENT KILL <filter…>` on one node (the new filter form, so the harness'
    /// own connection is skipped); the number of clients killed. For example
    /// `["TYPE", "normal"]` drops every application connection, `["ADDR", "127.0.0.1:54321"]`
    /// one of them.
    pub async fn client_kill(&self, port: u16, filter: &[&str]) -> Result<i64, String> {
        let mut args = vec!["CLIENT", "KILL"];
        args.extend_from_slice(filter);
        match command(port, &args).await? {
            Reply::Int(n) => Ok(n),
            other => Err(format!("CLIENT KILL {filter:?} on {port}: {other}")),
        }
    }

    /// `CLIENT KILL TYPE normal` on every live node: every application connection
    /// drops (replication and cluster bus links stay). The total killed.
    pub async fn drop_client_connections(&self) -> i64 {
        let mut total = 0;
        for port in self.live_ports() {
            total += self
                .client_kill(port, &["TYPE", "normal"])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        total
    }

    /// `CLIENT LIST` of one node (one line per client: `id=… addr=… name=… cmd=…`).
    pub async fn client_list(&self, port: u16) -> Result<String, String> {
        text(port, &["CLIENT", "LIST"]).await
    }

    // -- faults ----------------------------------------------------------------------

    /// SIGKILL: the node on `port` crashes (its cluster config stays for [`Self::restart`]).
    pub fn kill(&mut self, port: u16) {
        let i = self.index(port);
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// SIGSTOP: the node on `port` stops answering (connections stay open).
    pub fn pause(&mut self, port: u16) {
        let i = self.index(port);
        let pid = self.nodes[i]
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("pause: {port} is not running"));
        signal(pid, "-STOP").unwrap_or_else(|e| panic!("{e}"));
        self.nodes[i].paused = true;
        // `kill` returns once the signal is queued; the process stops a little later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_state(pid).as_deref() != Some("T") {
            assert!(
                Instant::now() < deadline,
                "pause: {port} did not stop within 5 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT: a paused node runs again.
    pub fn resume(&mut self, port: u16) {
        let i = self.index(port);
        let pid = self.nodes[i]
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("resume: {port} is not running"));
        signal(pid, "-CONT").unwrap_or_else(|e| panic!("{e}"));
        self.nodes[i].paused = false;
    }

    /// Starts a killed node again on the same port with the same cluster config and
    /// waits until it is back as a replica with its link up and the cluster healthy.
    /// A former master comes back as a replica of the node that took its slots (call
    /// [`Self::wait_for_failover`] first). Its data is gone (no persistence) and is
    /// resynchronised from its master.
    pub async fn restart(&mut self, port: u16) {
        let i = self.index(port);
        if self.nodes[i].child.is_some() {
            self.kill(port);
        }
        if let Err(e) = self.spawn(i) {
            panic!("restart {port}: {e}");
        }
        let deadline = Instant::now() + SETTLE_LIMIT;
        let result = self
            .wait_until(
                deadline,
                &format!("{port} is back as a replica"),
                || async move {
                    let info = text(port, &["INFO", "replication"]).await?;
                    Ok(info_field(&info, "role") == Some("slave")
                        && info_field(&info, "master_link_status") == Some("up"))
                },
            )
            .await;
        if let Err(e) = result {
            panic!("restart {port}: {e}");
        }
        self.wait_healthy().await;
    }

    /// Waits until the slots `old_master` served are served by another master that
    /// says it is a master, `old_master` serves nothing, and every live node reports
    /// `cluster_state:ok` with that view. Returns the new master's port.
    ///
    /// Call it after [`Self::kill`] or [`Self::pause`] of a master, before any other
    /// topology change (the old master's slots are read from a live node's view first).
    pub async fn wait_for_failover(&self, old_master: u16) -> u16 {
        let deadline = Instant::now() + SETTLE_LIMIT;
        let slot = self.old_slot(old_master, deadline).await;
        let new_master = std::cell::Cell::new(None);
        let what = format!("a replica of {old_master} took over slot {slot}");
        let result = self
            .wait_until(deadline, &what, || {
                let new_master = &new_master;
                async move {
                    let mut owner = None;
                    for port in self.live_ports() {
                        let view = self.view_from(port).await?;
                        if view
                            .iter()
                            .any(|n| n.port == old_master && !n.slots.is_empty())
                        {
                            return Ok(false);
                        }
                        let shard = shards_of(&view).into_iter().find(|s| s.serves(slot));
                        let Some(shard) = shard else { return Ok(false) };
                        if owner.is_some_and(|o| o != shard.master) {
                            return Ok(false);
                        }
                        owner = Some(shard.master);
                        let info = text(port, &["CLUSTER", "INFO"]).await?;
                        if info_field(&info, "cluster_state") != Some("ok") {
                            return Ok(false);
                        }
                    }
                    let Some(owner) = owner else { return Ok(false) };
                    let role = text(owner, &["INFO", "replication"]).await?;
                    if info_field(&role, "role") != Some("master") {
                        return Ok(false);
                    }
                    new_master.set(Some(owner));
                    Ok(true)
                }
            })
            .await;
        match (result, new_master.get()) {
            (Ok(()), Some(port)) => port,
            (Err(e), _) => panic!("wait_for_failover({old_master}): {e}"),
            (Ok(()), None) => unreachable!("the wait succeeds only with a new master"),
        }
    }

    /// A slot `old_master` served, as a live node still remembers it.
    async fn old_slot(&self, old_master: u16, deadline: Instant) -> u16 {
        while Instant::now() < deadline {
            for port in self.live_ports() {
                if let Ok(view) = self.view_from(port).await
                    && let Some(node) = view.iter().find(|n| n.port == old_master)
                {
                    if let Some(&(first, _)) = node.slots.first() {
                        return first;
                    }
                    panic!(
                        "wait_for_failover({old_master}): it serves no slot in {port}'s view \
                         (not a master, or already failed over)\n{}",
                        self.diagnostics()
                    );
                }
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "wait_for_failover({old_master}): no live node answered\n{}",
            self.diagnostics()
        );
    }

    /// Waits until every live node reports `cluster_state:ok` and the same masters,
    /// and every master has an online replica when a live replica exists for it.
    pub async fn wait_healthy(&self) {
        if let Err(e) = self.wait_healthy_until(Instant::now() + SETTLE_LIMIT).await {
            panic!("wait_healthy: {e}");
        }
    }

    async fn wait_healthy_until(&self, deadline: Instant) -> Result<(), String> {
        self.wait_until(deadline, "the cluster is healthy", || async move {
            let live = self.live_ports();
            let mut agreed: Option<Vec<Shard>> = None;
            for &port in &live {
                let info = text(port, &["CLUSTER", "INFO"]).await?;
                if info_field(&info, "cluster_state") != Some("ok") {
                    return Err(format!("{port}: cluster_state not ok"));
                }
                let mut shards = shards_of(&self.view_from(port).await?);
                // Replicas that are not running are still listed by the others.
                for shard in &mut shards {
                    shard.replicas.retain(|r| live.contains(r));
                }
                match &agreed {
                    Some(first) if *first != shards => {
                        return Err(format!("views differ: {first:?} vs {port}: {shards:?}"));
                    }
                    _ => agreed = Some(shards),
                }
            }
            for shard in agreed.unwrap_or_default() {
                if shard.replicas.is_empty() {
                    continue;
                }
                let info = text(shard.master, &["INFO", "replication"]).await?;
                let online = info
                    .lines()
                    .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                    .count();
                if online < shard.replicas.len() {
                    return Err(format!(
                        "{}: {online} replica(s) online of {:?}",
                        shard.master, shard.replicas
                    ));
                }
                for &replica in &shard.replicas {
                    let info = text(replica, &["INFO", "replication"]).await?;
                    if info_field(&info, "master_link_status") != Some("up") {
                        return Err(format!("{replica}: link to {} not up", shard.master));
                    }
                }
            }
            Ok(true)
        })
        .await
    }

    /// The state of every node and the tail of its log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::from("cluster nodes:");
        for node in &self.nodes {
            let state = match (&node.child, node.paused) {
                (None, _) => "killed",
                (Some(_), true) => "paused",
                (Some(_), false) => "running",
            };
            out.push_str(&format!("\n  {} ({state}), log tail:", node.port));
            let log = std::fs::read_to_string(self.node_dir(node.port).join("redis.log"))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(6)..] {
                out.push_str("\n    ");
                out.push_str(line);
            }
        }
        out
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A stopped process dies from SIGKILL too, but its exit is only
                // reaped promptly once it runs again.
                if node.paused {
                    let _ = signal(child.id(), "-CONT");
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis://127.0.0.1:PORT`.
pub fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}
