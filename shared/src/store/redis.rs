//! The Redis connection: a single node (local Redis, ElastiCache without cluster mode) or a
//! Redis Cluster (ElastiCache cluster mode). Both are multiplexed, so one connection per Lambda
//! instance serves every request.
//!
//! # Through a failover
//! ElastiCache Multi-AZ promotes a replica and moves the primary endpoint's DNS name to it. A
//! client that reconnects reaches the new primary, but a plain `ConnectionManager` reconnects
//! only when its socket breaks: after a planned failover the old primary stays up as a replica
//! and answers every write with `READONLY` for as long as the connection lives. So the
//! standalone connection ([`FailoverConnection`]) treats the replies that mean "this is not the
//! primary (yet)" (`READONLY`, `MASTERDOWN`, `LOADING`) and a dropped or refused connection as
//! "reconnect through the endpoint and try again", within a deadline per call
//! (`REDIS_CALL_DEADLINE_MS`): while no primary answers, a call fails after the deadline (the
//! reserve path answers 503) instead of hanging until the Lambda times out.
//!
//! Retrying a call whose answer was lost can run it twice: every Lua script is safe to run
//! twice with the same arguments (`tests/script_reruns.rs`), and the plain commands used are
//! reads or idempotent writes. Cluster mode follows `MOVED` and refreshes its slot map on
//! `READONLY` by itself (redis-rs).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use crate::config::{ConfigError, Env};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisMode {
    Standalone,
    Cluster,
}

/// Where Redis is and how to talk to it. `Debug` hides the URL: it may carry a password.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    pub mode: RedisMode,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// How long one call may take in all, reconnections and retries included.
    pub call_deadline: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("mode", &self.mode)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("call_deadline", &self.call_deadline)
            .finish()
    }
}

impl RedisSettings {
    /// `REDIS_URL` (redis:// or rediss://), `REDIS_MODE` (`standalone` | `cluster`, default
    /// standalone), `REDIS_RESPONSE_TIMEOUT_MS` (default 500).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.required("REDIS_URL")?;
        let mode = match env
            .parsed_or("REDIS_MODE", "standalone".to_string())?
            .as_str()
        {
            "standalone" => RedisMode::Standalone,
            "cluster" => RedisMode::Cluster,
            other => {
                return Err(ConfigError::Invalid {
                    name: "REDIS_MODE",
                    reason: format!("{other:?} is neither standalone nor cluster"),
                })
            }
        };
        Ok(Self {
            url,
            mode,
            connect_timeout: Duration::from_millis(
                env.parsed_or("REDIS_CONNECT_TIMEOUT_MS", 1_000)?,
            ),
            response_timeout: Duration::from_millis(
                env.parsed_or("REDIS_RESPONSE_TIMEOUT_MS", 500)?,
            ),
            call_deadline: Duration::from_millis(env.parsed_or("REDIS_CALL_DEADLINE_MS", 1_500)?),
        })
    }

    /// Settings for `url` with the defaults above (tests and tools).
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::with_mode(url, RedisMode::Standalone)
    }

    /// Settings for a cluster reached through `url` (any node), with the defaults above.
    pub fn cluster(url: impl Into<String>) -> Self {
        Self::with_mode(url, RedisMode::Cluster)
    }

    fn with_mode(url: impl Into<String>, mode: RedisMode) -> Self {
        Self {
            url: url.into(),
            mode,
            connect_timeout: Duration::from_millis(1_000),
            response_timeout: Duration::from_millis(500),
            call_deadline: Duration::from_millis(1_500),
        }
    }
}

/// Server replies after which the call is retried on a fresh connection: the node is not (or
/// no longer) the primary, or is still loading its data.
const FAILOVER_REPLIES: [&str; 3] = ["READONLY", "MASTERDOWN", "LOADING"];

/// Failures after which the call is retried on a fresh connection: a failover reply, or a
/// connection that broke.
fn means_reconnect(error: &RedisError) -> bool {
    error
        .code()
        .is_some_and(|code| FAILOVER_REPLIES.contains(&code))
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_io_error()
        || error.is_timeout()
}

/// redis-rs hands server error replies back as values (`Value::ServerError`), turned into
/// errors only when a caller converts the reply: a failover reply must be caught here.
trait FailoverReply {
    fn failover_reply(&self) -> Option<String>;
}

impl FailoverReply for Value {
    fn failover_reply(&self) -> Option<String> {
        match self {
            Value::ServerError(error) if FAILOVER_REPLIES.contains(&error.code()) => {
                Some(format!("{error:?}"))
            }
            _ => None,
        }
    }
}

impl FailoverReply for Vec<Value> {
    fn failover_reply(&self) -> Option<String> {
        self.iter().find_map(FailoverReply::failover_reply)
    }
}

/// A standalone connection that follows the primary endpoint through a failover (see the
/// module doc). Cheap to clone; clones share the current connection.
#[derive(Clone)]
pub struct FailoverConnection {
    inner: Arc<FailoverInner>,
}

struct FailoverInner {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The connection in use and its generation (bumped on every replacement, so concurrent
    /// callers that saw the same failure replace it once).
    current: RwLock<(u64, ConnectionManager)>,
    deadline: Duration,
}

impl FailoverConnection {
    pub fn new(settings: &RedisSettings) -> Result<Self, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout))
            .set_number_of_retries(1);
        let client = redis::Client::open(settings.url.as_str())?;
        let first = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            inner: Arc::new(FailoverInner {
                client,
                config,
                current: RwLock::new((0, first)),
                deadline: settings.call_deadline,
            }),
        })
    }

    fn current(&self) -> (u64, ConnectionManager) {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the connection of generation `seen` by a fresh one (a no-op if another caller
    /// replaced it already).
    fn replace(&self, seen: u64) {
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if current.0 != seen {
            return;
        }
        match ConnectionManager::new_lazy_with_config(
            self.inner.client.clone(),
            self.inner.config.clone(),
        ) {
            Ok(fresh) => *current = (seen + 1, fresh),
            Err(error) => tracing::warn!(%error, "could not create a new Redis connection"),
        }
    }

    /// Runs `call` on the current connection; on a failover-class failure replaces the
    /// connection and tries again, with a short growing pause, until the call's deadline.
    async fn with_failover<T, F, Fut>(&self, mut call: F) -> Result<T, RedisError>
    where
        T: FailoverReply,
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + self.inner.deadline;
        let mut pause = Duration::from_millis(25);
        loop {
            let (generation, conn) = self.current();
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(left, call(conn)).await {
                Ok(Ok(reply)) => match reply.failover_reply() {
                    Some(text) => Err(RedisError::from((
                        ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                        "failover reply",
                        text,
                    ))),
                    None => Ok(reply),
                },
                Ok(Err(error)) => Err(error),
                Err(_) => Err(deadline_exceeded()),
            };
            match result {
                Err(error) if means_reconnect(&error) && Instant::now() + pause < deadline => {
                    tracing::warn!(%error, "Redis is failing over or unreachable; reconnecting");
                    self.replace(generation);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                other => return other,
            }
        }
    }
}

impl ConnectionLike for FailoverConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.with_failover(|mut conn| async move { conn.req_packed_command(cmd).await })
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.with_failover(|mut conn| async move {
                conn.req_packed_commands(pipeline, offset, count).await
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}

/// A multiplexed connection to a node or a cluster. Cheap to clone.
#[derive(Clone)]
pub enum RedisConnection {
    Standalone(FailoverConnection),
    /// The cluster connection follows MOVED and refreshes its slot map itself; each call is
    /// bounded by the deadline, so a cluster with no primary for a slot answers 503 in time.
    Cluster(ClusterConnection, Duration),
}

fn deadline_exceeded() -> RedisError {
    RedisError::from((ErrorKind::Io, "Redis call deadline exceeded"))
}

impl RedisConnection {
    /// Connects. A standalone connection is lazy (it connects on first use and reconnects by
    /// itself), so a cold start survives Redis being briefly away; a cluster connection must
    /// read the slot map first and so connects now.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        match settings.mode {
            RedisMode::Standalone => Ok(Self::Standalone(FailoverConnection::new(settings)?)),
            RedisMode::Cluster => {
                let client = redis::cluster::ClusterClient::builder(vec![settings.url.as_str()])
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.response_timeout)
                    .build()?;
                Ok(Self::Cluster(
                    client.get_async_connection().await?,
                    settings.call_deadline,
                ))
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c, deadline) => {
                let deadline = *deadline;
                Box::pin(async move {
                    tokio::time::timeout(deadline, c.req_packed_command(cmd))
                        .await
                        .unwrap_or_else(|_| Err(deadline_exceeded()))
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c, deadline) => {
                let deadline = *deadline;
                Box::pin(async move {
                    tokio::time::timeout(deadline, c.req_packed_commands(pipeline, offset, count))
                        .await
                        .unwrap_or_else(|_| Err(deadline_exceeded()))
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c, _) => c.get_db(),
        }
    }
}
