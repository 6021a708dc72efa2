//! One connection to a single Redis node or to a Redis Cluster, with the few
//! operations the store needs on either: scripts, commands routed to the node that
//! serves a key, replication acknowledgements, and scanning every primary.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisResult, Script, Value};

use crate::revocation::StoreError;

/// A reconnecting connection: `ConnectionManager` for one node, the cluster client's
/// connection (MOVED/ASK, topology refresh, failover) for a cluster.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A primary to scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Node {
    host: String,
    port: u16,
}

/// Where the keys are (see [`Connection::placement`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Placement {
    /// The node itself (`None`), or the live primaries of the cluster, which serve
    /// every slot between them. While a slot has no live primary (a failover in
    /// progress) `placement` is an error: a resynchronisation that skipped a shard
    /// would call the mirror complete without that shard's revocations.
    pub(super) primaries: Vec<Option<Node>>,
    /// Each primary's address and slot ranges, sorted.
    slots: Vec<(String, String)>,
    /// Whether a primary has a slot migrating or importing.
    pub(super) migrating: bool,
}

impl Placement {
    /// Whether no key can have moved between `self` and `later`.
    pub(super) fn settled_until(&self, later: &Self) -> bool {
        !self.migrating && !later.migrating && self.slots == later.slots
    }
}

impl Connection {
    pub(super) async fn invoke<T: FromRedisValue>(
        &mut self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> RedisResult<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        match self {
            Self::Single(c) => match invocation.invoke_async(c).await {
                // The manager reconnects after a dropped connection; the command that
                // met the drop fails, so it is tried once more on the new connection.
                Err(e) if dropped(&e) => invocation.invoke_async(c).await,
                other => other,
            },
            Self::Cluster(c) => invocation.invoke_async(c).await,
        }
    }

    /// A command whose keys route it.
    pub(super) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Single(c) => match cmd.query_async(c).await {
                Err(e) if dropped(&e) => cmd.query_async(c).await,
                other => other,
            },
            Self::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// A command without keys (`WAIT`, `ROLE`, `XREAD`'s stream is not its first
    /// argument) sent to the primary serving `key`.
    pub(super) async fn on_node_of<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: Cmd,
    ) -> RedisResult<T> {
        match self {
            Self::Single(_) => self.query(&cmd).await,
            Self::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let value = c
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(value.extract_error()?)?)
            }
        }
    }

    /// Like [`on_node_of`](Self::on_node_of), but a dropped connection is an error,
    /// never retried behind the caller's back: the mirror must see every gap.
    pub(super) async fn on_node_of_once<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: Cmd,
    ) -> RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(_) => self.on_node_of(key, cmd).await,
        }
    }

    /// How many replicas the primary serving `key` has: for a cluster, every replica
    /// the cluster lists for it, connected or not (a replica cut off is still a
    /// replica whose copy would be lost); for one node, those connected now.
    pub(super) async fn replicas(&mut self, key: &str) -> RedisResult<usize> {
        match self {
            Self::Single(_) => {
                let role: Value = self.on_node_of(key, redis::cmd("ROLE")).await?;
                Ok(connected_replicas(&role))
            }
            Self::Cluster(_) => {
                let mut nodes = redis::cmd("CLUSTER");
                nodes.arg("NODES");
                let nodes: String = self.on_node_of(key, nodes).await?;
                Ok(replicas_of_myself(&nodes))
            }
        }
    }

    /// Waits (bounded) until the writes this connection made to the primary serving
    /// `key` are held by at least one replica; whether one did.
    pub(super) async fn wait_for_replica(
        &mut self,
        key: &str,
        timeout: Duration,
    ) -> RedisResult<bool> {
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(millis);
        let acknowledged: i64 = self.on_node_of(key, wait).await?;
        Ok(acknowledged >= 1)
    }

    /// Where the keys are now: the live primaries serving every slot, which slots each
    /// serves, and whether any slot is being migrated. A scan of every primary is
    /// complete only if no key moved between two nodes while it ran: a key migrated
    /// from a node not scanned yet to one already scanned would be missed.
    pub(super) async fn placement(&mut self) -> RedisResult<Placement> {
        match self {
            Self::Single(_) => Ok(Placement {
                primaries: vec![None],
                slots: Vec::new(),
                migrating: false,
            }),
            Self::Cluster(c) => {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(c).await?;
                let primaries = primaries_serving_every_slot(&nodes).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::ClusterConnectionNotFound,
                        "a slot has no live primary",
                    ))
                })?;
                // A node marks its own slots in migration (`[slot->-id]`, `[slot-<-id]`)
                // only in its own `CLUSTER NODES`.
                let mut migrating = false;
                for node in &primaries {
                    let mut cmd = redis::cmd("CLUSTER");
                    cmd.arg("NODES");
                    let own: String = self.on(Some(node), cmd).await?;
                    migrating |= migrating_on_myself(&own);
                }
                Ok(Placement {
                    slots: slot_map(&nodes),
                    primaries: primaries.into_iter().map(Some).collect(),
                    migrating,
                })
            }
        }
    }

    /// One `SCAN` step on `node` (the single node when `None`).
    pub(super) async fn scan(
        &mut self,
        node: Option<&Node>,
        cursor: u64,
        pattern: &str,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        self.on(node, cmd).await
    }

    /// A pipeline run on `node` (the single node when `None`).
    pub(super) async fn pipeline_on(
        &mut self,
        node: Option<&Node>,
        pipeline: redis::Pipeline,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match (self, node) {
            (Self::Cluster(c), Some(node)) => {
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: node.host.clone(),
                    port: node.port,
                };
                c.route_pipeline(pipeline, 0, count, route).await
            }
            (Self::Cluster(c), None) => pipeline.query_async(c).await,
            (Self::Single(c), _) => pipeline.query_async(c).await,
        }
    }

    async fn on<T: FromRedisValue>(&mut self, node: Option<&Node>, cmd: Cmd) -> RedisResult<T> {
        match (self, node) {
            (Self::Cluster(c), Some(node)) => {
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: node.host.clone(),
                    port: node.port,
                };
                let value = c.route_command(cmd, RoutingInfo::SingleNode(route)).await?;
                Ok(redis::from_redis_value(value.extract_error()?)?)
            }
            (Self::Cluster(c), None) => cmd.query_async(c).await,
            (Self::Single(c), _) => cmd.query_async(c).await,
        }
    }
}

fn dropped(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error()
}

/// The replicas of the node answering `CLUSTER NODES` (the `myself` line).
fn replicas_of_myself(nodes: &str) -> usize {
    let myself = nodes.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let id = fields.next()?;
        let flags = fields.nth(1)?;
        flags.split(',').any(|f| f == "myself").then_some(id)
    });
    let Some(myself) = myself else { return 0 };
    nodes
        .lines()
        .filter(|line| line.split_whitespace().nth(3) == Some(myself))
        .count()
}

/// How many replicas a `ROLE` reply lists (a primary's third element).
fn connected_replicas(role: &Value) -> usize {
    match role {
        Value::Array(items) => match items.get(2) {
            Some(Value::Array(replicas)) => replicas.len(),
            _ => 0,
        },
        _ => 0,
    }
}

/// The live primaries serving slots, from `CLUSTER NODES`, when together they serve
/// all 16384 of them; `None` when a slot is unassigned or served by a failed node.
fn primaries_serving_every_slot(nodes: &str) -> Option<Vec<Node>> {
    const SLOTS: usize = 16384;
    let mut served = vec![false; SLOTS];
    let mut primaries = Vec::new();
    for line in nodes.lines() {
        let Some(node) = primary(line) else { continue };
        let mut serves_any = false;
        // Fields 9 and on: slots (`5461`, `0-5460`), or migration marks (`[…]`).
        for range in line.split_whitespace().skip(8) {
            if range.starts_with('[') {
                continue;
            }
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (Ok(first), Ok(last)) = (first.parse::<usize>(), last.parse::<usize>()) else {
                continue;
            };
            for slot in served.get_mut(first..=last)? {
                *slot = true;
                serves_any = true;
            }
        }
        if serves_any {
            primaries.push(node);
        }
    }
    served.iter().all(|s| *s).then_some(primaries)
}

/// Each live primary's address and its slot ranges (migration marks left out), sorted:
/// two maps differ when a slot changed hands.
fn slot_map(nodes: &str) -> Vec<(String, String)> {
    let mut map: Vec<(String, String)> = nodes
        .lines()
        .filter(|line| primary(line).is_some())
        .filter_map(|line| {
            let address = line.split_whitespace().nth(1)?.to_owned();
            let slots: Vec<&str> = line
                .split_whitespace()
                .skip(8)
                .filter(|f| !f.starts_with('['))
                .collect();
            Some((address, slots.join(" ")))
        })
        .collect();
    map.sort();
    map
}

/// Whether the node answering `CLUSTER NODES` marks a slot of its own as migrating
/// or importing.
fn migrating_on_myself(nodes: &str) -> bool {
    nodes.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let myself = fields
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|f| f == "myself"));
        myself && line.split_whitespace().skip(8).any(|f| f.starts_with('['))
    })
}

/// A live primary from a `CLUSTER NODES` line (`id host:port@bus flags …`).
fn primary(line: &str) -> Option<Node> {
    let mut fields = line.split_whitespace();
    let address = fields.nth(1)?;
    let flags = fields.next()?;
    let is_primary = flags.split(',').any(|f| f == "master");
    let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
    if !is_primary || failed {
        return None;
    }
    let address = address.split('@').next()?;
    let (host, port) = address.rsplit_once(':')?;
    Some(Node {
        host: host.to_owned(),
        port: port.parse().ok()?,
    })
}

/// The error a caller may see: the category only, never the text (which may echo
/// arguments such as token ids).
pub(super) fn store_error(e: &redis::RedisError) -> StoreError {
    StoreError::new(format!("redis: {:?}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let line = "07c3 127.0.0.1:30004@40004 master - 0 1426238316232 8 connected 5461-10922";
        let node = primary(line).unwrap();
        assert_eq!((node.host.as_str(), node.port), ("127.0.0.1", 30004));
        assert!(primary("67ed 127.0.0.1:30002@40002 slave 07c3 0 1 2 connected").is_none());
        assert!(primary("67ed 127.0.0.1:30002@40002 master,fail - 0 1 2 connected").is_none());
        assert!(primary("garbage").is_none());
    }

    #[test]
    fn every_slot_needs_a_live_primary() {
        let healthy = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [5461->-c3]
c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923 10924-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected";
        let ports: Vec<u16> = primaries_serving_every_slot(healthy)
            .unwrap()
            .iter()
            .map(|n| n.port)
            .collect();
        assert_eq!(ports, [7000, 7001, 7002]);
        // The primary of 5461-10922 failed and its replica is not promoted yet: the
        // keys of those slots cannot be read, so no list of primaries is complete.
        let failing = healthy.replace("master - 0 0 2", "master,fail - 0 0 2");
        assert!(primaries_serving_every_slot(&failing).is_none());
        // Once promoted, the failed node keeps no slots and is left out.
        let promoted = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected
e5 127.0.0.1:7004@17004 master - 0 0 4 connected 5461-10922
c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383";
        let ports: Vec<u16> = primaries_serving_every_slot(promoted)
            .unwrap()
            .iter()
            .map(|n| n.port)
            .collect();
        assert_eq!(ports, [7000, 7004, 7002]);
        // Unassigned slots, and nonsense.
        assert!(primaries_serving_every_slot(&healthy.replace("10924-16383", "")).is_none());
        assert!(primaries_serving_every_slot("garbage").is_none());
        assert!(primaries_serving_every_slot(&healthy.replace("0-5460", "0-99999")).is_none());
    }

    /// SECURITY.md 13.7 (review R7): a slot in migration, or a slot that changed
    /// hands, makes a scan of every primary incomplete.
    #[test]
    fn sees_slots_in_migration_and_slots_that_moved() {
        let source = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [77->-b2]
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-16383";
        let target = "\
a1 127.0.0.1:7000@17000 master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 5461-16383 [77-<-a1]";
        let other = "\
a1 127.0.0.1:7000@17000 master - 0 0 1 connected 0-5460 [77->-b2]
b2 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 5461-16383";
        assert!(migrating_on_myself(source));
        assert!(migrating_on_myself(target));
        assert!(
            !migrating_on_myself(other),
            "another node's mark is not this one's"
        );
        assert_eq!(slot_map(source), slot_map(target), "marks are not slots");
        let moved = "\
a1 127.0.0.1:7000@17000 master - 0 0 1 connected 0-76 78-5460
b2 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 77 5461-16383";
        assert_ne!(slot_map(source), slot_map(moved));
        let place = |nodes: &str, migrating| Placement {
            primaries: Vec::new(),
            slots: slot_map(nodes),
            migrating,
        };
        assert!(place(other, false).settled_until(&place(other, false)));
        assert!(!place(other, false).settled_until(&place(moved, false)));
        assert!(!place(other, true).settled_until(&place(other, false)));
        assert!(!place(other, false).settled_until(&place(other, true)));
    }

    #[test]
    fn counts_the_replicas_a_cluster_lists_for_a_primary() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 slave,fail a1 0 0 1 disconnected
d4 127.0.0.1:7004@17004 slave b2 0 0 2 connected";
        assert_eq!(
            replicas_of_myself(nodes),
            1,
            "a failed replica still counts"
        );
        assert_eq!(replicas_of_myself("garbage"), 0);
    }

    #[test]
    fn counts_replicas_in_role() {
        let role = Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(3129659),
            Value::Array(vec![Value::Array(vec![]), Value::Array(vec![])]),
        ]);
        assert_eq!(connected_replicas(&role), 2);
        assert_eq!(connected_replicas(&Value::Nil), 0);
    }
}
