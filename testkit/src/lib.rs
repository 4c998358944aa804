//! Test harness: real `redis-server` processes on loopback, one per test (or per benchmark),
//! and real three-master Redis Clusters (no mocks of Redis anywhere); throwaway DynamoDB tables
//! on LocalStack; an HTTP fault proxy that injects AWS faults in front of LocalStack; and a
//! stand-in for Cloudflare Turnstile's siteverify; and the domain fixtures the tests and tools
//! share ([`fixtures`]).
//!
//! Each server listens on 127.0.0.1 at a free port, keeps its files in its own temporary
//! folder, and dies with its owner: `Drop` kills it, and `PR_SET_PDEATHSIG` kills it even if
//! the test process itself is killed.

pub mod dynamo;
pub mod fault_proxy;
pub mod fixtures;
pub mod sentinel;
pub mod tcp_proxy;
pub mod turnstile;
/// The local Stripe stand-in, started in-process by tests (tools/payment-sandbox).
pub mod sandbox {
    pub use payment_sandbox::{Sandbox, SandboxConfig};
}
mod process;

use std::time::Duration;

pub use process::{free_port, RedisServer};

/// A Redis Cluster of `masters` nodes (no replicas) on loopback, created with
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, joins them into a cluster, and waits until every node reports
    /// `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0, 5000)
    }

    /// A cluster of `masters` primaries with `replicas` replicas each (`redis-cli` assigns
    /// them), whose nodes judge a peer failed after `node_timeout_ms`: a killed primary is
    /// replaced by its replica after about that long.
    pub fn start_with_replicas(masters: usize, replicas: usize, node_timeout_ms: u32) -> Self {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_cluster_node_with_timeout(node_timeout_ms))
            .collect();
        let mut create = std::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok(Duration::from_secs(20));
        if replicas > 0 {
            // A replica that has not synced yet would never be promoted (its data counts as
            // infinitely old): wait until every one of them is linked to its primary.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let linked = cluster
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.cli(&["INFO", "replication"])
                            .contains("master_link_status:up")
                    })
                    .count();
                if linked == masters * replicas {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "cluster replicas did not sync"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    fn wait_until_ok(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let all_ok = self
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if all_ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The index of the node that is primary for `key`'s slot now (asked of a live node).
    pub async fn primary_for_key(&mut self, key: &str) -> Option<usize> {
        let live = self.nodes.iter_mut().position(|n| n.is_running())?;
        let mut conn = self.nodes[live].direct_connection().await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()?;
        // CLUSTER SLOTS: [[start, end, [ip, port, id], [replica...]...], ...]
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .ok()?;
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                (parts.first(), parts.get(1))
            else {
                continue;
            };
            if !(*start..=*end).contains(&i64::from(slot)) {
                continue;
            }
            let Some(redis::Value::Array(primary)) = parts.get(2) else {
                continue;
            };
            let Some(redis::Value::Int(port)) = primary.get(1) else {
                continue;
            };
            return self.nodes.iter().position(|n| i64::from(n.port()) == *port);
        }
        None
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A cluster-aware multiplexed connection (routes each command by its key's slot).
    pub async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::builder(self.urls())
            .response_timeout(process::TEST_RESPONSE_TIMEOUT)
            .build()
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("connect to cluster")
    }
}
