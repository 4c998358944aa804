//! Test harness: real `redis-server` processes on loopback, one per test (or per benchmark),
//! and real three-master Redis Clusters (no mocks of Redis anywhere); throwaway DynamoDB tables
//! on LocalStack; and an HTTP fault proxy that injects AWS faults in front of LocalStack.
//!
//! Each server listens on 127.0.0.1 at a free port, keeps its files in its own temporary
//! folder, and dies with its owner: `Drop` kills it, and `PR_SET_PDEATHSIG` kills it even if
//! the test process itself is killed.

pub mod dynamo;
pub mod fault_proxy;
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
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_cluster_node())
            .collect();
        let mut create = std::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok(Duration::from_secs(20));
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
