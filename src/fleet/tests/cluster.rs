//! The fleet on a real Redis Cluster: six `redis-server --cluster-enabled yes` processes (three
//! shards, a replica each) joined by `redis-cli --cluster create`, with a short node timeout so
//! that a failover takes seconds. Found from any node's URL; a manual failover
//! (`CLUSTER FAILOVER`) and a killed primary (SIGKILL) of the shard holding the fleet's keys.

use super::{eventually_within, fleet, prefix, redis_installed};
use crate::fleet::{Admission, Fleet, WindowSpec};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MODEL: &str = "m";

/// A Redis Cluster of `redis-server` children on loopback ports; killed and removed on drop.
pub(crate) struct RedisCluster {
    dir: PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
    /// One cluster at a time: six servers each, on two cores, with second-scale timeouts.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl RedisCluster {
    /// Starts three shards with a replica each; `None` (after printing why) when
    /// `redis-server` is not installed.
    pub(crate) async fn start() -> Option<RedisCluster> {
        if !redis_installed() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "bedrock-pool-cluster-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        let turn = TURN.lock().await;
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = RedisCluster {
            dir,
            nodes: Vec::new(),
            _turn: turn,
        };
        for _ in 0..6 {
            let port = super::free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "1000"])
                // A replica takes over however long it was cut off from its primary.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.nodes.push((port, Some(child)));
        }
        for (port, _) in &cluster.nodes {
            let up = eventually_within(Duration::from_secs(10), || async {
                cmd(*port, &["PING"]).await.is_ok()
            })
            .await;
            assert!(up, "cluster node {port} did not answer PING");
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for (port, _) in &cluster.nodes {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok(3).await;
        Some(cluster)
    }

    /// Waits until every live node sees the cluster OK, and `replicas` replicas are in sync
    /// with their primaries (a replica that never synced could not take over).
    pub(crate) async fn wait_ok(&self, replicas: usize) {
        let ok = eventually_within(Duration::from_secs(60), || async {
            let mut synced = 0;
            for (port, child) in &self.nodes {
                if child.is_none() {
                    continue;
                }
                let Ok(info) = cmd(*port, &["CLUSTER", "INFO"]).await else {
                    return false;
                };
                if !info.contains("cluster_state:ok") {
                    return false;
                }
                let Ok(repl) = cmd(*port, &["INFO", "replication"]).await else {
                    return false;
                };
                if repl.contains("role:slave") && repl.contains("master_link_status:up") {
                    synced += 1;
                }
            }
            synced >= replicas
        })
        .await;
        assert!(ok, "the cluster did not become ok");
    }

    /// Returns the URL of the `i`-th node started.
    pub(crate) fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[i].0)
    }

    /// Returns the index of the node with this port.
    fn index(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|(p, _)| *p == port)
            .expect("a node of this cluster")
    }

    /// Returns the (primary, replica) ports of the shard holding `key`'s slot, once a live node
    /// sees both (after a failover the old primary takes a moment to become a replica).
    pub(crate) async fn shard_of(&self, key: &str) -> (u16, u16) {
        for _ in 0..100 {
            if let Some((primary, Some(replica))) = self.try_shard_of(key).await {
                return (primary, replica);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no primary and replica for {key} in 10 s");
    }

    /// Returns the port of the primary holding `key`'s slot, once a live node sees one.
    pub(crate) async fn primary_of(&self, key: &str) -> u16 {
        for _ in 0..100 {
            if let Some((primary, _)) = self.try_shard_of(key).await {
                return primary;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no primary for {key} in 10 s");
    }

    async fn try_shard_of(&self, key: &str) -> Option<(u16, Option<u16>)> {
        let asker = self
            .nodes
            .iter()
            .find(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .expect("a live node");
        let slot: u16 = cmd(asker, &["CLUSTER", "KEYSLOT", key])
            .await
            .expect("keyslot")
            .parse()
            .expect("a slot number");
        let nodes = cmd(asker, &["CLUSTER", "NODES"]).await.ok()?;
        shard_ports(&nodes, slot)
    }

    /// Kills the node on `port` (SIGKILL, as a crash would).
    pub(crate) fn kill(&mut self, port: u16) {
        let i = self.index(port);
        if let Some(mut child) = self.nodes[i].1.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command to the node on `port` and returns its answer as text.
pub(crate) async fn cmd(port: u16, args: &[&str]) -> redis::RedisResult<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    let v: redis::Value = c.query_async(&mut conn).await?;
    Ok(match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::SimpleString(s) => s,
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

/// Finds, in a `CLUSTER NODES` answer, the primary serving `slot` and one of its replicas.
fn shard_ports(nodes: &str, slot: u16) -> Option<(u16, Option<u16>)> {
    let port = |addr: &str| -> Option<u16> {
        addr.split(['@', ','])
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    };
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let primary = lines.iter().find(|f| {
        f.len() > 8
            && f[2].contains("master")
            && !f[2].contains("fail")
            && f[8..].iter().any(|r| {
                let mut ends = r.splitn(2, '-');
                let lo = ends.next().and_then(|s| s.parse::<u16>().ok());
                let hi = ends.next().and_then(|s| s.parse::<u16>().ok()).or(lo);
                matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
            })
    })?;
    let replica = lines
        .iter()
        .find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == primary[0]);
    Some((port(primary[1])?, replica.and_then(|r| port(r[1]))))
}

const SPEC: WindowSpec = WindowSpec {
    requests: Some(4),
    tokens: None,
    window: Duration::from_secs(30),
};

async fn admitted(f: &Fleet) -> bool {
    matches!(
        f.acquire(MODEL, SPEC, 1, &[]).await,
        Ok(a) if matches!(a.admission, Admission::Admitted(_))
    )
}

/// Asks until the fleet answers (it may rest after a failure), then tells whether it admitted.
async fn answer(f: &Fleet, within: Duration) -> Option<Admission> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if let Ok(a) = f.acquire(MODEL, SPEC, 1, &[]).await {
            return Some(a.admission);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The cluster is found from any node's URL, primary or replica, with no setting; the fleets
/// on different nodes share one window (the scripts' keys are in one slot, wherever it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_found_from_any_node_and_shares_one_window() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let p = prefix("cluster");
    let fleets: Vec<Fleet> = (0..6).map(|i| fleet(&cluster.url(i), &p)).collect();
    let mut admitted_n = 0;
    for f in &fleets {
        // The first call may find the cluster still being learned: it then goes local.
        match answer(f, Duration::from_secs(10)).await {
            Some(Admission::Admitted(_)) => admitted_n += 1,
            Some(Admission::RetryAfter(_)) => {}
            other => panic!("the cluster did not answer: {other:?} {:?}", f.stats()),
        }
        assert!(f.stats().cluster, "{:?}", f.stats());
    }
    // Six fleets asked once each against a limit of four: exactly four were admitted.
    assert_eq!(admitted_n, 4);
    assert!(!admitted(&fleets[0]).await);
    // The keys live in the prefix's slot, on its shard's primary.
    let (primary, _) = cluster.shard_of(&format!("{{{p}}}")).await;
    let n = cmd(primary, &["ZCARD", &format!("{{{p}}}:win:30000:{MODEL}")])
        .await
        .expect("zcard");
    assert_eq!(n, "4");
}

/// A manual failover of the shard holding the fleet's keys (`CLUSTER FAILOVER` on its replica):
/// the fleet follows the slot to the new primary, and the window survives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_fleets_shard_keeps_the_window() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let p = prefix("cluster-failover");
    let (primary, replica) = cluster.shard_of(&format!("{{{p}}}")).await;
    // The URL names another shard's node: the slot is found through the cluster.
    let other = (0..6)
        .find(|&i| ![primary, replica].contains(&cluster.nodes[i].0))
        .expect("a node of another shard");
    let f = fleet(&cluster.url(other), &p);
    for _ in 0..2 {
        assert_eq!(
            answer(&f, Duration::from_secs(10))
                .await
                .map(|a| matches!(a, Admission::Admitted(_))),
            Some(true)
        );
    }
    cmd(replica, &["CLUSTER", "FAILOVER"])
        .await
        .expect("failover starts");
    let promoted = eventually_within(Duration::from_secs(20), || async {
        cmd(replica, &["ROLE"])
            .await
            .is_ok_and(|r| r.contains("master"))
    })
    .await;
    assert!(promoted, "the replica became primary");
    // Two more fit (the two admitted before the failover were kept), then the limit holds.
    for _ in 0..2 {
        let a = answer(&f, Duration::from_secs(20)).await;
        assert!(
            matches!(a, Some(Admission::Admitted(_))),
            "{a:?} {:?}",
            f.stats()
        );
    }
    let a = answer(&f, Duration::from_secs(10)).await;
    assert!(matches!(a, Some(Admission::RetryAfter(_))), "{a:?}");
    // The node asked may learn of the failover a moment later than the replica itself (its
    // view of the cluster lags under load): wait for it rather than read it once.
    let key = format!("{{{p}}}");
    let seen = eventually_within(Duration::from_secs(20), || async {
        cluster.primary_of(&key).await == replica
    })
    .await;
    assert!(seen, "the cluster names the replica as the shard's primary");
}

/// The primary of the fleet's shard is killed (SIGKILL): while the cluster has no primary for
/// the slot the calls go on locally, and once the replica took over, sharing resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_of_the_fleets_shard_is_replaced() {
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let p = prefix("cluster-kill");
    let (primary, replica) = cluster.shard_of(&format!("{{{p}}}")).await;
    let other = (0..6)
        .find(|&i| ![primary, replica].contains(&cluster.nodes[i].0))
        .expect("a node of another shard");
    let f = fleet(&cluster.url(other), &p);
    assert!(matches!(
        answer(&f, Duration::from_secs(10)).await,
        Some(Admission::Admitted(_))
    ));
    cluster.kill(primary);
    let started = std::time::Instant::now();
    let back = answer(&f, Duration::from_secs(30)).await;
    assert!(
        matches!(back, Some(Admission::Admitted(_))),
        "{back:?} {:?}",
        f.stats()
    );
    eprintln!(
        "sharing resumed {:?} after the primary was killed ({:?})",
        started.elapsed(),
        f.stats()
    );
    cluster.wait_ok(0).await;
    let key = format!("{{{p}}}");
    let seen = eventually_within(Duration::from_secs(20), || async {
        cluster.primary_of(&key).await == replica
    })
    .await;
    assert!(seen, "the cluster names the replica as the shard's primary");
}
