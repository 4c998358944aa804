use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const TEST_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (below 55536, so a cluster bus port fits beside it).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port < 55_536 {
            return port;
        }
    }
}

/// One `redis-server` process owned by the test that started it.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// A standalone server with persistence off.
    pub fn start() -> Self {
        Self::spawn(&[])
    }

    /// A node ready to join a cluster (`cluster-enabled yes`).
    pub fn start_cluster_node() -> Self {
        Self::start_cluster_node_with_timeout(5000)
    }

    /// A cluster node whose peers are judged failed after `node_timeout_ms` (failover tests
    /// use a short one).
    pub fn start_cluster_node_with_timeout(node_timeout_ms: u32) -> Self {
        let bus = free_port().to_string();
        Self::spawn(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &node_timeout_ms.to_string(),
            "--cluster-port",
            &bus,
        ])
    }

    /// A standalone server started with extra arguments (e.g. `--replicaof 127.0.0.1 <port>`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::spawn(extra)
    }

    /// SIGKILL: the process dies at once, without a save or a goodbye to its replicas.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP / SIGCONT: freezes the process (its sockets stay open, nothing is read).
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(extra: &[&str]) -> Self {
        // A port picked by free_port can be taken before redis binds it; retry a few times.
        for _ in 0..5 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("flashsale-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create redis dir");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                ])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .args(extra)
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
            let child = cmd
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            let mut server = Self { child, port, dir };
            if server.wait_ready(Duration::from_secs(5)) {
                return server;
            }
            // Dropping kills it; try another port.
        }
        panic!("redis-server did not start after 5 attempts");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.cli(&["PING"]).trim() == "PONG" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command with `redis-cli` against this node only and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A multiplexed connection that reconnects by itself. Tests drive thousands of
    /// concurrent requests through one socket, so the per-response timeout is generous (a
    /// Lambda has about one request in flight per connection; there the default suits).
    pub async fn connection(&self) -> redis::aio::ConnectionManager {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(TEST_RESPONSE_TIMEOUT));
        redis::Client::open(self.url())
            .expect("redis url")
            .get_connection_manager_with_config(config)
            .await
            .expect("connect to redis")
    }

    /// A plain connection to this node only (no cluster redirects), for inspecting a node.
    pub async fn direct_connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
