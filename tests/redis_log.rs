//! The revocation log and the mirrors that follow it, against a real `redis-server`
//! (SECURITY.md 13.3, 13.4, 13.8): trimming by Redis's own ids, a follower that finds
//! entries it had not read trimmed, freshness proved only by a read that drained the
//! log, and a store started while Redis is down.
#![cfg(feature = "redis")]

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::cluster::{Conn, Reply};
use support::redis::RedisServer;
use tower_jwt_auth::revocation::{RedisStore, RedisStoreBuilder, RevocationStore};
use tower_jwt_auth::{AuthError, JwtAuth, TokenError, TokenPayload, TokenType};

const SECRET: &[u8] = b"the redis log tests use this 32+ byte secret";
const LOG: &str = "tower-jwt-auth:log";
/// A frozen store's round-trip bound, far above its freeze: the frozen mirror must
/// find its reply waiting when it thaws, not a timeout (which would resynchronise it
/// for another reason).
const FROZEN_TIMEOUT: Duration = Duration::from_secs(3);
/// Longer than the staleness bound (1 s): a thawed mirror is stale, and its first
/// fresh answer is the one that counts.
const FREEZE: Duration = Duration::from_millis(1300);

fn auth(store: RedisStore) -> JwtAuth {
    JwtAuth::builder()
        .hs256(SECRET)
        .revocation_store(store)
        .build()
        .unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The ids the log holds, oldest first.
async fn log_ids(redis: &mut Conn) -> Vec<String> {
    match redis.cmd(&["XRANGE", LOG, "-", "+"]).await.unwrap() {
        Reply::Array(Some(entries)) => entries
            .iter()
            .filter_map(|e| match e {
                Reply::Array(Some(parts)) => parts.first().and_then(Reply::text),
                _ => None,
            })
            .collect(),
        other => panic!("XRANGE: {other}"),
    }
}

async fn xadd(redis: &mut Conn, id: &str) {
    let reply = redis.cmd(&["XADD", LOG, id, "s", "seed"]).await.unwrap();
    assert!(!reply.is_error(), "{reply}");
}

/// An access token and its claims, from `auth`.
fn token(auth: &JwtAuth, sub: &str) -> (String, TokenPayload) {
    let (token, claims) = auth.access_token(sub).issue_with_claims().unwrap();
    (token, claims)
}

/// SECURITY.md 13.3: the log is trimmed by Redis's own ids. Entries whose ids run ten
/// days ahead of this machine's clock (as a writer whose clock is behind Redis's would
/// see them) are trimmed relative to the newest id, never kept or dropped by the
/// writer's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_trimmed_by_redis_ids_not_the_writers_clock() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let mut redis = Conn::connect(server.port).await.unwrap();
    let ahead = now_ms() + 10 * 24 * 3600 * 1000;
    let (old, recent) = (format!("{ahead}-0"), format!("{}-0", ahead + 120_000));
    xadd(&mut redis, &old).await;
    xadd(&mut redis, &recent).await;
    // A retention of 1 ms is raised to the floor (a minute).
    let store = RedisStore::builder()
        .log_retention(Duration::from_millis(1))
        .connect(&server.url())
        .await
        .unwrap();
    let auth = auth(store);
    let (_, claims) = token(&auth, "alice");
    auth.revoke(&claims).await.unwrap();
    let ids = log_ids(&mut redis).await;
    assert!(
        !ids.contains(&old),
        "two minutes older than the newest: trimmed"
    );
    assert!(ids.contains(&recent), "within a minute of the newest: kept");
    assert_eq!(ids.len(), 2, "{ids:?}");
}

/// SECURITY.md 13.3: `log_retention(Duration::MAX)` keeps every entry (it used to
/// overflow to a retention of zero), and a retention under the floor is raised to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_tiny_retentions_are_saturated_and_floored() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let mut redis = Conn::connect(server.port).await.unwrap();
    xadd(&mut redis, "1-1").await;
    let forever = auth(
        RedisStore::builder()
            .log_retention(Duration::MAX)
            .connect(&server.url())
            .await
            .unwrap(),
    );
    forever.revoke(&token(&forever, "alice").1).await.unwrap();
    assert!(log_ids(&mut redis).await.contains(&"1-1".to_owned()));

    let half_a_minute_ago = format!("{}-0", now_ms() - 30_000);
    redis.cmd(&["DEL", LOG]).await.unwrap();
    xadd(&mut redis, &half_a_minute_ago).await;
    let tiny = auth(
        RedisStore::builder()
            .log_retention(Duration::from_millis(1))
            .connect(&server.url())
            .await
            .unwrap(),
    );
    tiny.revoke(&token(&tiny, "bob").1).await.unwrap();
    assert!(log_ids(&mut redis).await.contains(&half_a_minute_ago));

    // Settings whose sums would overflow are refused before any I/O.
    for builder in [
        RedisStore::builder().timeout(Duration::MAX),
        RedisStore::builder().acknowledgement_timeout(Duration::MAX),
        RedisStore::builder().max_staleness(Duration::MAX),
        RedisStore::builder().timeout(Duration::ZERO),
    ] {
        assert!(builder.connect(&server.url()).await.is_err());
    }
}

/// A store whose tasks run on a runtime of their own, on a thread of its own, so the
/// test can freeze it (as a paused process would be) while another instance writes.
struct Frozen {
    store: RedisStore,
    freeze: mpsc::Sender<(Duration, mpsc::Sender<()>)>,
}

impl Frozen {
    fn start(url: String, builder: RedisStoreBuilder) -> Self {
        let (store_tx, store_rx) = mpsc::channel();
        let (freeze, freezes) = mpsc::channel::<(Duration, mpsc::Sender<()>)>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                store_tx.send(builder.connect(&url).await.unwrap()).unwrap();
                loop {
                    match freezes.try_recv() {
                        Ok((how_long, frozen)) => {
                            let _ = frozen.send(());
                            // Blocks the runtime, and the mirror's task with it.
                            std::thread::sleep(how_long);
                        }
                        Err(mpsc::TryRecvError::Empty) => {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
            });
        });
        let store = store_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { store, freeze }
    }

    /// Freezes the store's runtime for `how_long`; returns once it is frozen.
    fn freeze(&self, how_long: Duration) {
        let (frozen, is_frozen) = mpsc::channel();
        self.freeze.send((how_long, frozen)).unwrap();
        is_frozen.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}

/// Waits until a mirror frozen at `frozen` is past the staleness bound (and still
/// frozen): from now on its answers are fail-closed until it has caught up.
async fn past_the_bound(frozen: Instant) {
    let stale = Duration::from_millis(1100);
    tokio::time::sleep(stale.saturating_sub(frozen.elapsed())).await;
    assert!(
        frozen.elapsed() < FREEZE,
        "the writes took longer than the freeze"
    );
}

/// The first answer of `auth` about `token` once its mirror is fresh again (bounded).
async fn once_fresh(auth: &JwtAuth, token: &str) -> Result<TokenPayload, AuthError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match auth.verify_unrevoked(token, TokenType::Access).await {
            Err(AuthError::StoreUnavailable) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

/// SECURITY.md 13.3: a follower paused while entries it had not read were trimmed
/// treats that as a gap and resynchronises; it used to read on from the entries left
/// and answer "not revoked" for the trimmed ones until they expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_paused_past_the_retention_resynchronises() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let writer = auth(
        RedisStore::builder()
            .log_retention(Duration::from_millis(1))
            .connect(&server.url())
            .await
            .unwrap(),
    );
    let follower = Frozen::start(server.url(), RedisStore::builder().timeout(FROZEN_TIMEOUT));
    let reader = auth(follower.store.clone());
    let tokens: Vec<(String, TokenPayload)> =
        (0..3).map(|i| token(&writer, &format!("u{i}"))).collect();
    assert!(once_fresh(&reader, &tokens[1].0).await.is_ok());

    let frozen = Instant::now();
    follower.freeze(FREEZE);
    // The first entry reaches the frozen follower's socket (its read was waiting);
    // the second waits for its next read, and is trimmed before it comes: an entry
    // two minutes ahead moves the retention's floor past both.
    writer.revoke(&tokens[0].1).await.unwrap();
    writer.revoke(&tokens[1].1).await.unwrap();
    let mut redis = Conn::connect(server.port).await.unwrap();
    // Written as the store appends: naming the entry before it.
    let before = log_ids(&mut redis).await.pop().unwrap();
    let ahead = format!("{}-0", now_ms() + 120_000);
    let reply = redis
        .cmd(&["XADD", LOG, &ahead, "p", &before, "s", "seed"])
        .await
        .unwrap();
    assert!(!reply.is_error(), "{reply}");
    writer.revoke(&tokens[2].1).await.unwrap();
    assert_eq!(
        log_ids(&mut redis).await.len(),
        2,
        "the first two were trimmed"
    );
    past_the_bound(frozen).await;

    for (token, _) in &tokens {
        assert_eq!(
            once_fresh(&reader, token).await.map(|c| c.sub),
            Err(TokenError::Revoked.into()),
            "every revocation is known once the mirror is fresh again"
        );
    }
}

/// SECURITY.md 13.4: a read that returned a full batch does not prove the mirror
/// fresh: entries may still wait behind it. A follower catching up on a backlog never
/// answers for a token revoked at the backlog's end before it read that far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_read_that_drained_the_log_proves_freshness() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let follower = Frozen::start(server.url(), RedisStore::builder().timeout(FROZEN_TIMEOUT));
    let reader = auth(follower.store.clone());
    let (token, claims) = token(&reader, "alice");
    assert!(once_fresh(&reader, &token).await.is_ok());

    let frozen = Instant::now();
    follower.freeze(FREEZE);
    // A backlog of 20 000 revocations of other tokens, then this one's, as one script.
    let until = (now_ms() / 1000 + 3600).to_string();
    let backlog = "for i = 1, 20000 do redis.call('XADD', KEYS[1], '*', 's', 'x', 'j', 'other-' .. i, 'ju', ARGV[2]) end \
                   return redis.call('XADD', KEYS[1], '*', 's', ARGV[3], 'j', ARGV[1], 'ju', ARGV[2])";
    let mut redis = Conn::connect(server.port).await.unwrap();
    let reply = redis
        .cmd(&["EVAL", backlog, "1", LOG, &claims.jti, &until, &claims.sub])
        .await
        .unwrap();
    assert!(!reply.is_error(), "{reply}");

    past_the_bound(frozen).await;
    // Poll as fast as possible while the follower works through the backlog.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answers = 0u64;
    loop {
        match reader.verify_unrevoked(&token, TokenType::Access).await {
            Err(AuthError::StoreUnavailable) => answers += 1,
            Err(AuthError::InvalidToken(TokenError::Revoked)) => break,
            other => panic!("answered {other:?} after {answers} fail-closed answers"),
        }
        assert!(Instant::now() < deadline, "never caught up");
        tokio::task::yield_now().await;
    }
}

/// SECURITY.md 13.8: a store connected while Redis is down is no error: it fails
/// closed (503, health not ready) and becomes ready once Redis is, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_while_redis_is_down_fails_closed_then_heals() {
    if !support::redis::available() {
        return;
    }
    let port = support::provider::free_port();
    for staleness in [Duration::from_secs(1), Duration::ZERO] {
        let store = RedisStore::builder()
            .max_staleness(staleness)
            .timeout(Duration::from_millis(200))
            .connect(&format!("redis://127.0.0.1:{port}/"))
            .await
            .expect("a store, failing closed");
        let auth = auth(store.clone());
        let (token, claims) = token(&auth, "alice");
        assert_eq!(
            auth.verify_unrevoked(&token, TokenType::Access).await,
            Err(AuthError::StoreUnavailable)
        );
        assert!(store.health().await.is_err());
        assert_eq!(auth.revoke(&claims).await, Err(AuthError::StoreUnavailable));

        let server = RedisServer::start_on(port).await.unwrap();
        let started = Instant::now();
        assert!(once_fresh(&auth, &token).await.is_ok(), "healed");
        println!("S={staleness:?}: ready {:?} after redis", started.elapsed());
        assert!(store.health().await.is_ok());
        auth.revoke(&claims).await.unwrap();
        assert_eq!(
            auth.verify_unrevoked(&token, TokenType::Access).await,
            Err(TokenError::Revoked.into())
        );
        drop(server);
    }
}
