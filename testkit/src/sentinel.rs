//! A Redis primary, one replica and three Sentinels on loopback, behind a primary endpoint.
//!
//! The endpoint is a [`TcpProxy`] that follows Sentinel: a task asks the Sentinels for the
//! master's address every 50 ms and re-points the proxy when it changes, the way ElastiCache
//! Multi-AZ moves its primary endpoint's DNS name, and closes the connections it had open to
//! the old primary, the way a Sentinel-aware client drops them on `+switch-master` (and the way
//! ElastiCache's failover restarts the old primary). Clients use one URL for the whole test
//! ([`SentinelGroup::endpoint_url`]), as a Lambda uses `REDIS_URL`.
//!
//! Why close them: Sentinel demotes a primary that is still up (a planned failover) only
//! seconds after the promotion; measured here, a client that kept its connection to the old
//! primary had holds acknowledged there for about 10 s, all lost when it became a replica, while
//! new clients sold on the new primary: two primaries selling the same units. Closing the
//! connections at the switch bounds that window to the endpoint's 50 ms poll.
//!
//! Sentinel settings: quorum 2 of 3, `down-after-milliseconds` 1000, `failover-timeout` 5000:
//! a killed primary is replaced in about 2 s on these machines.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::{free_port, RedisServer};
use crate::tcp_proxy::TcpProxy;

/// The master name the Sentinels monitor.
pub const MASTER: &str = "fs";

/// One `redis-server --sentinel` process.
struct Sentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sentinel {
    fn start(primary: u16) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("flashsale-sentinel-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("sentinel dir");
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = dir.display()
                ),
            )
            .expect("write sentinel.conf");
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("redis-server must be installed");
            let mut sentinel = Self { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = sentinel.child.try_wait() {
                    break;
                }
                if sentinel.cli(&["PING"]).trim() == "PONG" {
                    return sentinel;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = sentinel.child.kill();
        }
        panic!("redis-sentinel did not start");
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The group. Dropping it stops every process and the endpoint.
pub struct SentinelGroup {
    /// Both data nodes; which one is the primary changes with failovers.
    nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    endpoint: Arc<TcpProxy>,
    switched_at: Arc<Mutex<Option<Instant>>>,
    follower: tokio::task::JoinHandle<()>,
}

impl SentinelGroup {
    /// Starts the primary, its replica (in sync before this returns), three Sentinels (that see
    /// each other and the replica), and the endpoint.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`SentinelGroup::start`], with extra arguments for both data nodes.
    pub async fn start_with(node_args: &[&str]) -> Self {
        let primary = RedisServer::start_with(node_args);
        let mut replica_args: Vec<String> = node_args.iter().map(|s| s.to_string()).collect();
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port().to_string(),
        ]);
        let replica =
            RedisServer::start_with(&replica_args.iter().map(String::as_str).collect::<Vec<_>>());
        wait_until(Duration::from_secs(20), "the replica to sync", || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port())).collect();
        wait_until(
            Duration::from_secs(30),
            "the Sentinels to see the group",
            || {
                sentinels.iter().all(|s| {
                    let info = s.cli(&["SENTINEL", "MASTER", MASTER]);
                    let field = |name: &str| -> Option<u32> {
                        let mut lines = info.lines();
                        while let Some(line) = lines.next() {
                            if line.trim() == name {
                                return lines.next().and_then(|v| v.trim().parse().ok());
                            }
                        }
                        None
                    };
                    field("num-slaves") == Some(1) && field("num-other-sentinels") == Some(2)
                })
            },
        );
        let endpoint = Arc::new(TcpProxy::start(primary.addr()).await);
        let switched_at = Arc::new(Mutex::new(None));
        let follower = tokio::spawn(follow(
            sentinels.iter().map(Sentinel::url).collect(),
            Arc::clone(&endpoint),
            Arc::clone(&switched_at),
        ));
        Self {
            nodes: vec![primary, replica],
            sentinels,
            endpoint,
            switched_at,
            follower,
        }
    }

    /// The primary endpoint: what clients connect to.
    pub fn endpoint_url(&self) -> String {
        self.endpoint.redis_url()
    }

    pub fn endpoint(&self) -> &TcpProxy {
        &self.endpoint
    }

    /// The node the endpoint points at now.
    pub fn primary(&self) -> &RedisServer {
        let target = self.endpoint.target();
        self.nodes
            .iter()
            .find(|n| n.addr() == target)
            .expect("the endpoint points at a node of the group")
    }

    /// The other data node.
    pub fn replica(&self) -> &RedisServer {
        let target = self.endpoint.target();
        self.nodes
            .iter()
            .find(|n| n.addr() != target)
            .expect("two data nodes")
    }

    /// SIGKILLs the current primary; returns when it died.
    pub fn kill_primary(&mut self) -> (SocketAddr, Instant) {
        let target = self.endpoint.target();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.addr() == target)
            .expect("primary");
        node.kill_hard();
        (target, Instant::now())
    }

    /// Asks a Sentinel for a planned failover (the primary stays up and becomes a replica).
    pub fn planned_failover(&self) {
        let answer = self.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER]);
        assert!(answer.contains("OK"), "SENTINEL FAILOVER: {answer}");
    }

    /// Waits until the endpoint points somewhere other than `old`; returns the new primary's
    /// address and when the endpoint switched.
    pub async fn wait_for_switch(
        &self,
        old: SocketAddr,
        timeout: Duration,
    ) -> (SocketAddr, Instant) {
        let deadline = Instant::now() + timeout;
        loop {
            let target = self.endpoint.target();
            if target != old {
                let at = self
                    .switched_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_else(Instant::now);
                return (target, at);
            }
            assert!(Instant::now() < deadline, "no failover within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The data node listening at `addr`, if it is part of the group.
    pub fn node_at(&self, addr: SocketAddr) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.addr() == addr)
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// Polls the Sentinels (`redis://host:port` URLs) for the master's address every 50 ms,
/// re-points the endpoint when it changes and closes the connections it had open (see the
/// module doc). Runs until dropped; `switched_at` gets the time of the last switch.
pub async fn follow(
    sentinels: Vec<String>,
    endpoint: Arc<TcpProxy>,
    switched_at: Arc<Mutex<Option<Instant>>>,
) {
    let mut connections = Vec::new();
    while connections.is_empty() {
        for url in &sentinels {
            if let Ok(client) = redis::Client::open(url.as_str()) {
                if let Ok(conn) = client.get_multiplexed_async_connection().await {
                    connections.push(conn);
                }
            }
        }
        if connections.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    loop {
        for conn in connections.iter_mut() {
            let answer: Result<Option<(String, u16)>, _> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER)
                .query_async(conn)
                .await;
            if let Ok(Some((host, port))) = answer {
                if let Ok(addr) = format!("{host}:{port}").parse::<SocketAddr>() {
                    if addr != endpoint.target() {
                        endpoint.retarget(addr);
                        endpoint.cut_connections();
                        *switched_at.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now());
                    }
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wait_until(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
