//! Smoke test of the Redis Cluster harness (`tests/support/cluster.rs`): the
//! cluster forms, keys land where Redis says, a killed master is failed over to
//! its replica with the replicated writes, pause/resume, restart and `CLIENT KILL`
//! do what they say, and nothing is left behind on drop.
//!
//! Skipped (passes with a message) without `redis-server`/`redis-cli`, unless
//! `REQUIRE_REDIS=1`.

mod support;

#[cfg(feature = "redis")]
mod cluster {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use crate::support::cluster::{
        Conn, RedisCluster, Reply, SLOTS, command, key_slot, process_state,
    };

    /// Keys written per master.
    const PER_MASTER: usize = 5;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_forms_fails_over_and_cleans_up() {
        let started = Instant::now();
        let Some(mut cluster) = RedisCluster::start().await else {
            return;
        };
        println!("cluster started in {:?}", started.elapsed());

        // Three masters with one live replica each, covering every slot once.
        let shards = cluster.shards().await;
        assert_eq!(shards.len(), 3, "{shards:?}");
        let mut covered = 0u32;
        for shard in &shards {
            assert_eq!(shard.replicas.len(), 1, "{shard:?}");
            covered += shard
                .slots
                .iter()
                .map(|&(a, b)| u32::from(b - a) + 1)
                .sum::<u32>();
        }
        assert_eq!(covered, u32::from(SLOTS));
        assert_eq!(cluster.urls().len(), 6);
        assert_eq!(cluster.urls_env().split(',').count(), 6);

        // Our slot computation agrees with Redis, hash tags included.
        let port = cluster.ports()[0];
        for key in [
            "jti:abc",
            "{user1000}.following",
            "{user1000}.followers",
            "foo{}{bar}",
            "foo{{bar}}zap",
            "foo{bar}{zap}",
            "{}",
            "",
        ] {
            let redis = command(port, &["CLUSTER", "KEYSLOT", key]).await.unwrap();
            assert_eq!(
                redis,
                Reply::Int(i64::from(key_slot(key.as_bytes()))),
                "{key:?}"
            );
        }

        // Replicated writes on every master.
        let mut written: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for i in 0..1000 {
            if written.len() == 3 && written.values().all(|k| k.len() >= PER_MASTER) {
                break;
            }
            let key = format!("key:{i}");
            let master = cluster.master_for_key(key.as_bytes()).await;
            if written.get(&master).is_some_and(|k| k.len() >= PER_MASTER) {
                continue;
            }
            assert_eq!(cluster.set_replicated(&key, &format!("v{i}")).await, master);
            written.entry(master).or_default().push(key);
        }
        assert_eq!(written.len(), 3, "keys on every master: {written:?}");

        // A replica's copy is readable there (READONLY).
        let victim = shards[0].master;
        let replica = shards[0].replicas[0];
        for key in &written[&victim] {
            let value = cluster.get_from(replica, key).await.unwrap();
            assert_eq!(value.as_deref(), Some(&*key.replace("key:", "v")));
        }

        // Pause a replica of another shard: it stops answering, then answers again.
        let other_replica = shards[1].replicas[0];
        let pid = cluster.pid(other_replica).unwrap();
        cluster.pause(other_replica);
        assert_eq!(process_state(pid).as_deref(), Some("T"), "paused process");
        let mut conn = Conn::connect(other_replica).await.unwrap();
        let paused = conn.cmd_within(&["PING"], Duration::from_millis(300)).await;
        assert!(paused.is_err(), "a paused node answered: {paused:?}");
        cluster.resume(other_replica);
        let pong = command(other_replica, &["PING"]).await.unwrap();
        assert_eq!(pong, Reply::Simple("PONG".into()));

        // CLIENT KILL drops an application connection.
        let mut conn = Conn::connect(victim).await.unwrap();
        assert_eq!(
            conn.cmd(&["PING"]).await.unwrap(),
            Reply::Simple("PONG".into())
        );
        let killed = cluster
            .client_kill(victim, &["TYPE", "normal"])
            .await
            .unwrap();
        assert!(killed >= 1, "killed {killed}");
        assert!(
            conn.cmd(&["PING"]).await.is_err(),
            "the connection survived CLIENT KILL"
        );

        // Kill a master: its replica takes over with the replicated keys.
        cluster.kill(victim);
        let killed_at = Instant::now();
        let promoted = cluster.wait_for_failover(victim).await;
        println!("failover took {:?}", killed_at.elapsed());
        assert_eq!(promoted, replica, "the victim's replica is promoted");
        assert!(!cluster.masters().await.contains(&victim));
        for keys in written.values() {
            for key in keys {
                let value = cluster.get(key).await.unwrap();
                assert_eq!(value.as_deref(), Some(&*key.replace("key:", "v")), "{key}");
            }
        }
        for key in &written[&victim] {
            assert_eq!(cluster.master_for_key(key.as_bytes()).await, promoted);
        }

        // The killed master comes back as the promoted node's replica, with the data.
        let restarted_at = Instant::now();
        cluster.restart(victim).await;
        println!("restart and resync took {:?}", restarted_at.elapsed());
        assert_eq!(cluster.replicas_of(promoted).await, vec![victim]);
        for key in &written[&victim] {
            let value = cluster.get_from(victim, key).await.unwrap();
            assert_eq!(value.as_deref(), Some(&*key.replace("key:", "v")), "{key}");
        }

        // Drop kills every node (a paused one included) and removes the temp dir.
        let dir = cluster.dir().to_path_buf();
        let ports = cluster.ports();
        let pids: Vec<u32> = ports.iter().filter_map(|&p| cluster.pid(p)).collect();
        assert_eq!(pids.len(), 6);
        cluster.pause(ports[2]);
        drop(cluster);
        assert!(!dir.exists(), "{dir:?} left behind");
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "redis-server {pid} survived the drop"
            );
        }
        println!("whole scenario took {:?}", started.elapsed());
    }

    /// The hard case of issue 10: a master crashes while its replica is frozen. The
    /// shard is down until the replica runs again, then the replica takes over with
    /// every write it acknowledged, and a paused master resumed later rejoins as a
    /// replica.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn master_killed_while_its_replica_is_paused() {
        let Some(mut cluster) = RedisCluster::start().await else {
            return;
        };
        let shards = cluster.shards().await;
        let (master, replica) = (shards[2].master, shards[2].replicas[0]);
        let key = (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| shards[2].serves(key_slot(k.as_bytes())))
            .unwrap();
        assert_eq!(cluster.set_replicated(&key, "kept").await, master);

        cluster.pause(replica);
        cluster.kill(master);
        // Longer than the node timeout: the others see both gone, the shard is down.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let other = shards[0].master;
        let info = command(other, &["CLUSTER", "INFO"])
            .await
            .unwrap()
            .text()
            .unwrap();
        assert!(info.contains("cluster_state:fail"), "{info}");

        cluster.resume(replica);
        let resumed_at = Instant::now();
        assert_eq!(cluster.wait_for_failover(master).await, replica);
        println!("failover after resume took {:?}", resumed_at.elapsed());
        assert_eq!(cluster.get(&key).await.unwrap().as_deref(), Some("kept"));

        // Pause a master: failed over like a crash; resumed, it rejoins as a replica.
        let (master, replica) = (shards[1].master, shards[1].replicas[0]);
        cluster.pause(master);
        assert_eq!(cluster.wait_for_failover(master).await, replica);
        cluster.resume(master);
        cluster.wait_healthy().await;
        assert_eq!(cluster.replicas_of(replica).await, vec![master]);
    }
}
