//! The probe adapters: Redis PING and a DynamoDB GetItem (the cheapest call that proves the
//! table is reachable with this function's permissions).

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;

use super::{Probe, ProbeFailure};
use crate::store::redis::RedisConnection;

pub struct RedisProbe(pub RedisConnection);

impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ProbeFailure>> {
        Box::pin(async move {
            let mut conn = self.0.clone();
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            match pong {
                Ok(reply) if reply == "PONG" => Ok(()),
                Ok(other) => {
                    tracing::warn!(reply = %other, "redis health check: unexpected reply");
                    Err(ProbeFailure::Error)
                }
                Err(error) => {
                    tracing::warn!(%error, "redis health check failed");
                    Err(ProbeFailure::Error)
                }
            }
        })
    }
}

pub struct DynamoTableProbe {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    /// The table's partition key attribute name.
    pub key_attribute: &'static str,
}

impl Probe for DynamoTableProbe {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ProbeFailure>> {
        Box::pin(async move {
            let result = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(self.key_attribute, AttributeValue::S("__health__".into()))
                .send()
                .await;
            result.map(|_| ()).map_err(|error| {
                tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error), "dynamodb health check failed");
                ProbeFailure::Error
            })
        })
    }
}
