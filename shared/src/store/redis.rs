//! The Redis connection: a single node (local Redis, ElastiCache without cluster mode) or a
//! Redis Cluster (ElastiCache cluster mode). Both are multiplexed, so one connection per Lambda
//! instance serves every request.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::{self, ConfigError};

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
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("mode", &self.mode)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisSettings {
    /// `REDIS_URL` (redis:// or rediss://), `REDIS_MODE` (`standalone` | `cluster`, default
    /// standalone), `REDIS_RESPONSE_TIMEOUT_MS` (default 500).
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = config::required("REDIS_URL")?;
        let mode = match config::parsed_or("REDIS_MODE", "standalone".to_string())?.as_str() {
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
            connect_timeout: Duration::from_millis(config::parsed_or(
                "REDIS_CONNECT_TIMEOUT_MS",
                1_000,
            )?),
            response_timeout: Duration::from_millis(config::parsed_or(
                "REDIS_RESPONSE_TIMEOUT_MS",
                500,
            )?),
        })
    }
}

/// A multiplexed connection to a node or a cluster. Cheap to clone.
#[derive(Clone)]
pub enum RedisConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects. A standalone connection is lazy (it connects on first use and reconnects by
    /// itself), so a cold start survives Redis being briefly away; a cluster connection must
    /// read the slot map first and so connects now.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        match settings.mode {
            RedisMode::Standalone => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.response_timeout))
                    .set_number_of_retries(2);
                let client = redis::Client::open(settings.url.as_str())?;
                Ok(Self::Standalone(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            RedisMode::Cluster => {
                let client = redis::cluster::ClusterClient::builder(vec![settings.url.as_str()])
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.response_timeout)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
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
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
