//! The fleet's connection to Redis: one node (a standalone Redis, or a primary endpoint that
//! moves on failover) or a Redis Cluster, told apart by asking the server (`INFO cluster`).

use crate::error::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// How many times the cluster client sends a command again by itself (after `MOVED`, `ASK`,
/// `TRYAGAIN` or an I/O error) before it answers the error. Each script is idempotent (an
/// acquire finds its own ticket), and a round trip on the hot path waits no longer than the
/// fleet's timeout anyway; a few quick retries ride out a slot that moved.
const CLUSTER_RETRIES: u32 = 3;

/// A connection to the fleet's Redis, whatever its deployment; a cheap clone.
#[derive(Clone)]
pub(super) enum Conn {
    /// One node: a standalone Redis, or the primary endpoint of a replication group.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the node that holds their keys' slot.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Returns "cluster" or "single node", for logs and statistics.
    pub(super) fn mode(&self) -> &'static str {
        match self {
            Conn::Single(_) => "single node",
            Conn::Cluster(_) => "cluster",
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// What building a connection to the fleet's Redis takes (kept to build a new one).
pub(super) struct Connect {
    pub(super) url: String,
    pub(super) ca_pem: Option<String>,
    pub(super) connect_timeout: Duration,
    pub(super) retry_after: Duration,
}

impl Connect {
    /// Returns the node's connection settings: TCP keepalive and `TCP_USER_TIMEOUT`, so that a
    /// black-holed connection is found dead by the kernel in seconds, not after its
    /// retransmission limit (about 15 minutes).
    pub(super) fn info(&self) -> Result<redis::ConnectionInfo> {
        Ok(self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|_| bad_url())?
            .set_tcp_settings(tcp_settings()))
    }

    /// Returns a client of the one node the URL names.
    pub(super) fn client(&self) -> Result<redis::Client> {
        let info = self.info()?;
        match self.certificates() {
            None => redis::Client::open(info),
            Some(certs) => redis::Client::build_with_tls(info, certs),
        }
        .map_err(|_| bad_url())
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.ca_pem.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.as_bytes().to_vec()),
        })
    }

    /// Connects: asks the node whether it is part of a cluster, then returns a cluster
    /// connection (which learns the slots from it) or the connection manager on the node that
    /// asked. The host name is resolved again each time (an ElastiCache primary endpoint moves).
    pub(super) async fn open(&self) -> RedisResult<Conn> {
        let client = self.client().map_err(|_| invalid_url_error())?;
        let mut probe = self.manager(client).await?;
        let info: RedisResult<String> = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut probe)
            .await;
        let cluster = match info {
            Ok(text) => is_cluster(&text),
            // A server error (INFO refused by an ACL, say): ask the cluster itself.
            Err(e) if e.code().is_some() => {
                let nodes: RedisResult<Value> = redis::cmd("CLUSTER")
                    .arg("MYID")
                    .query_async(&mut probe)
                    .await;
                nodes.is_ok()
            }
            Err(e) => return Err(e),
        };
        if cluster {
            drop(probe);
            let mut builder =
                ClusterClientBuilder::new(vec![self.info().map_err(|_| invalid_url_error())?])
                    .tcp_settings(tcp_settings())
                    .connection_timeout(self.connect_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
            if let Some(certs) = self.certificates() {
                builder = builder.certs(certs);
            }
            let cluster = builder.build()?;
            Ok(Conn::Cluster(cluster.get_async_connection().await?))
        } else {
            Ok(Conn::Single(probe))
        }
    }

    /// Returns a manager connected to `client`'s node.
    async fn manager(&self, client: redis::Client) -> RedisResult<ConnectionManager> {
        // One quick retry per connection attempt: our own `retry_after` paces the rest. No
        // response timeout of its own: each round trip has the fleet's.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(self.retry_after);
        ConnectionManager::new_with_config(client, config).await
    }
}

/// Whether an `INFO cluster` answer says the node runs in cluster mode.
fn is_cluster(info: &str) -> bool {
    info.lines()
        .any(|l| l.trim().eq_ignore_ascii_case("cluster_enabled:1"))
}

fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(10))
}

fn bad_url() -> Error {
    Error::invalid("fleet.url", "is not a Redis URL")
}

fn invalid_url_error() -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, "fleet.url"))
}

#[cfg(test)]
mod tests {
    use super::is_cluster;

    #[test]
    fn cluster_mode_is_read_from_info() {
        assert!(is_cluster("# Cluster\r\ncluster_enabled:1\r\n"));
        assert!(!is_cluster("# Cluster\r\ncluster_enabled:0\r\n"));
        assert!(!is_cluster(""));
    }
}
