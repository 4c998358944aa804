//! The SQS adapter of [`RepairRequests`]: one message per request on the repair queue
//! (`REPAIR_QUEUE_URL`), consumed by the `expiry-cleanup` function.

use aws_sdk_sqs::error::DisplayErrorContext;

use super::{RepairError, RepairKind, RepairRequest, RepairRequests};
use crate::domain::SaleId;

pub struct SqsRepairRequests {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsRepairRequests {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl RepairRequests for SqsRepairRequests {
    async fn request_rebuild(&self, sale: &SaleId) -> Result<(), RepairError> {
        let body = serde_json::to_string(&RepairRequest {
            repair: RepairKind::Rebuild,
            sale_id: sale.to_string(),
        })
        .map_err(|e| RepairError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| RepairError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}
