//! The DynamoDB adapter of [`NotificationLog`]: one item per (event, channel) in the
//! notifications table, claimed by a conditional put with a lease.
//!
//! Item: `notification_id` (`<event id>#<channel>`, the key), `status` (`SENDING` claimed,
//! `ATTEMPTED` handed to the provider, `SENT`, `GAVE_UP`), `token` (the claim's holder), `lease_until` (ms), `reason` (why given up),
//! `ttl` (seconds: DynamoDB's TTL removes the item after [`RETENTION`], long after any
//! redelivery of its message could come).

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::{Claim, Finished, LogError, NotificationLog};
use crate::domain::Timestamp;
use crate::store::item::{self, num, str};
use crate::store::write::{self, RetryPolicy, WriteFailure};

/// How long a record of a notification is kept.
pub const RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

const SENDING: &str = "SENDING";
const ATTEMPTED: &str = "ATTEMPTED";
const SENT: &str = "SENT";
const GAVE_UP: &str = "GAVE_UP";

#[derive(Clone)]
pub struct DynamoNotificationLog {
    client: Client,
    table: String,
}

impl DynamoNotificationLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(error: impl std::fmt::Debug) -> LogError {
    LogError::Unavailable(format!("{error:?}"))
}

impl DynamoNotificationLog {
    /// The record of `id`, read consistently (what the last write left).
    async fn read(&self, id: &str) -> Result<Option<item::Item>, LogError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("notification_id", str(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item().cloned())
    }
}

impl NotificationLog for DynamoNotificationLog {
    async fn claim(
        &self,
        id: &str,
        token: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Claim, LogError> {
        let ttl = now.plus(RETENTION).as_secs();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("notification_id", str(id))
            .item("status", str(SENDING))
            .item("token", str(token))
            .item("lease_until", num(now.plus(lease).as_millis()))
            .item("ttl", num(ttl))
            .condition_expression(
                "attribute_not_exists(notification_id) OR (#s = :sending AND lease_until < :now)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":sending", str(SENDING))
            .expression_attribute_values(":now", num(now.as_millis()));
        let put = write::with_retries(
            RetryPolicy::BACKGROUND,
            "claim notification",
            write::classify,
            || request.clone().send(),
        )
        .await
        .map_err(unavailable)?;
        match put {
            Ok(_) => Ok(Claim::Claimed),
            Err(WriteFailure::ConditionFailed { .. }) => {
                // Someone's claim stands: ours whose answer was lost, a sent one, or a live lease.
                let Some(stored) = self.read(id).await? else {
                    // Gone meanwhile (its TTL): nothing to guard any more; let it be retried.
                    return Ok(Claim::Busy);
                };
                let status = item::opt_s(&stored, "status");
                Ok(match status.as_deref() {
                    // Attempted: the provider may have it; never again (at most once).
                    Some(SENT) | Some(GAVE_UP) | Some(ATTEMPTED) => Claim::Done,
                    _ if item::opt_s(&stored, "token").as_deref() == Some(token) => Claim::Claimed,
                    _ => Claim::Busy,
                })
            }
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn attempt(&self, id: &str, token: &str) -> Result<bool, LogError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("notification_id", str(id))
            .update_expression("SET #s = :attempted REMOVE lease_until")
            .condition_expression("#t = :token AND #s = :sending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":attempted", str(ATTEMPTED))
            .expression_attribute_values(":sending", str(SENDING))
            .expression_attribute_values(":token", str(token));
        match write::with_retries(
            RetryPolicy::BACKGROUND,
            "attempt notification",
            write::classify,
            || request.clone().send(),
        )
        .await
        .map_err(unavailable)?
        {
            Ok(_) => Ok(true),
            // Our own earlier try of this update committed and its answer was lost (attempted
            // with our token: ours to send), or our lease ran out and another delivery took it.
            Err(WriteFailure::ConditionFailed { .. }) => {
                Ok(self.read(id).await?.is_some_and(|i| {
                    item::opt_s(&i, "status").as_deref() == Some(ATTEMPTED)
                        && item::opt_s(&i, "token").as_deref() == Some(token)
                }))
            }
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn release(&self, id: &str, token: &str) -> Result<(), LogError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("notification_id", str(id))
            .condition_expression("#t = :token AND #s = :attempted")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":attempted", str(ATTEMPTED))
            .expression_attribute_values(":token", str(token));
        match write::with_retries(
            RetryPolicy::BACKGROUND,
            "release notification",
            write::classify,
            || request.clone().send(),
        )
        .await
        .map_err(unavailable)?
        {
            Ok(_) | Err(WriteFailure::ConditionFailed { .. }) => Ok(()),
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn finish(&self, id: &str, token: &str, outcome: Finished) -> Result<(), LogError> {
        let (status, reason) = match &outcome {
            Finished::Sent => (SENT, None),
            Finished::GaveUp(why) => (GAVE_UP, Some(why.clone())),
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("notification_id", str(id))
            .update_expression(if reason.is_some() {
                "SET #s = :status, reason = :reason REMOVE lease_until"
            } else {
                "SET #s = :status REMOVE lease_until"
            })
            .condition_expression("#t = :token")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":status", str(status))
            .expression_attribute_values(":token", str(token));
        if let Some(reason) = reason {
            request = request.expression_attribute_values(":reason", AttributeValue::S(reason));
        }
        match write::with_retries(
            RetryPolicy::BACKGROUND,
            "finish notification",
            write::classify,
            || request.clone().send(),
        )
        .await
        .map_err(unavailable)?
        {
            Ok(_) => Ok(()),
            Err(WriteFailure::ConditionFailed { .. }) => {
                // Our lease ran out and another delivery took the claim: it finishes it.
                tracing::warn!(
                    notification_id = id,
                    "claim taken over before it was finished"
                );
                Ok(())
            }
            Err(other) => Err(unavailable(other)),
        }
    }
}
