//! A loopback TCP proxy with faults, for Redis (or anything else over TCP).
//!
//! Two uses:
//! - **the primary endpoint**: ElastiCache Multi-AZ gives clients one DNS name that moves to the
//!   new primary on a failover. Locally the proxy plays that name: [`TcpProxy::retarget`] points
//!   *new* connections at another node while existing ones stay where they are (a DNS change
//!   does not close sockets; a demoted primary keeps answering `READONLY` on them);
//! - **faults between the client and Redis**: latency on every chunk, refusing connections
//!   (Redis unreachable), stalling (bytes are held, nothing answers), and dropping a
//!   connection right after Redis answered (the command ran, the client never hears it and
//!   re-sends it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy treats traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every chunk waits this long in each direction.
    Latency(Duration),
    /// New connections are accepted and closed at once; existing ones are cut.
    Refuse,
    /// Bytes are read and held; nothing is forwarded until the mode changes.
    Stall,
}

struct Shared {
    target: RwLock<SocketAddr>,
    mode: RwLock<Mode>,
    /// Replies to swallow: the next n server-to-client chunks close their connection instead.
    drop_replies: AtomicU32,
    dropped: AtomicU64,
    /// Bumped to cut every open connection.
    cut: watch::Sender<u64>,
    connections: AtomicU64,
}

/// The proxy. Listens on 127.0.0.1; stops (and cuts its connections) when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// A proxy on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_on(0, target).await
    }

    /// A proxy on `port` (0: any free port).
    pub async fn start_on(port: u16, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target: RwLock::new(target),
            mode: RwLock::new(Mode::Pass),
            drop_replies: AtomicU32::new(0),
            dropped: AtomicU64::new(0),
            cut,
            connections: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = Arc::clone(&accept_shared);
                tokio::spawn(async move {
                    let _ = serve(shared, client).await;
                });
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Points new connections at `target`; open ones stay where they are.
    pub fn retarget(&self, target: SocketAddr) {
        *self
            .shared
            .target
            .write()
            .unwrap_or_else(|p| p.into_inner()) = target;
    }

    pub fn target(&self) -> SocketAddr {
        *self.shared.target.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.write().unwrap_or_else(|p| p.into_inner()) = mode;
        if mode == Mode::Refuse {
            self.cut_connections();
        }
    }

    /// The next `n` replies from the server close their connection instead of reaching the
    /// client (the command ran; its answer is lost).
    pub fn drop_next_replies(&self, n: u32) {
        self.shared.drop_replies.store(n, Ordering::SeqCst);
    }

    /// Replies swallowed so far.
    pub fn dropped_replies(&self) -> u64 {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// Closes every open connection (new ones are accepted as the mode says).
    pub fn cut_connections(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_connections();
    }
}

fn mode(shared: &Shared) -> Mode {
    *shared.mode.read().unwrap_or_else(|p| p.into_inner())
}

async fn serve(shared: Arc<Shared>, mut client: TcpStream) -> std::io::Result<()> {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    if mode(&shared) == Mode::Refuse {
        return Ok(());
    }
    let target = *shared.target.read().unwrap_or_else(|p| p.into_inner());
    let Ok(mut server) = TcpStream::connect(target).await else {
        return Ok(());
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut cut = shared.cut.subscribe();
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = cut.changed() => return Ok(()),
            read = client_read.read(&mut up) => {
                let n = read?;
                if n == 0 { return Ok(()); }
                if !wait_for_mode(&shared, &mut cut).await { return Ok(()); }
                server_write.write_all(&up[..n]).await?;
            }
            read = server_read.read(&mut down) => {
                let n = read?;
                if n == 0 { return Ok(()); }
                if shared
                    .drop_replies
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                    .is_ok()
                {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                if !wait_for_mode(&shared, &mut cut).await { return Ok(()); }
                client_write.write_all(&down[..n]).await?;
            }
        }
    }
}

/// Applies the current mode to one chunk: waits out latency or a stall. False if the
/// connection must close (refused, or cut meanwhile).
async fn wait_for_mode(shared: &Shared, cut: &mut watch::Receiver<u64>) -> bool {
    loop {
        match mode(shared) {
            Mode::Pass => return true,
            Mode::Refuse => return false,
            Mode::Latency(pause) => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => return true,
                    _ = cut.changed() => return false,
                }
            }
            Mode::Stall => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = cut.changed() => return false,
                }
            }
        }
    }
}
