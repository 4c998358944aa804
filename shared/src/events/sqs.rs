//! The SQS adapter of [`EventSink`]: SendMessageBatch (up to 10 per call) in order.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use super::{EventSink, ReservationEvent, SinkError};

pub struct SqsEventSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsEventSink {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl EventSink for SqsEventSink {
    async fn send(&self, events: &[ReservationEvent]) -> Result<usize, SinkError> {
        let mut accepted = 0;
        for chunk in events.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let body = serde_json::to_string(event)
                        .map_err(|e| SinkError::Unavailable(e.to_string()))?;
                    let kind = MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(event.event_type.as_str())
                        .build()
                        .map_err(|e| SinkError::Unavailable(e.to_string()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .message_attributes("event_type", kind)
                        .build()
                        .map_err(|e| SinkError::Unavailable(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| SinkError::Unavailable(DisplayErrorContext(&e).to_string()))?;
            // Entries are independent; count the accepted prefix so order is kept on retry.
            let failed: Vec<usize> = output
                .failed()
                .iter()
                .filter_map(|f| f.id().parse().ok())
                .collect();
            let prefix = (0..chunk.len()).take_while(|i| !failed.contains(i)).count();
            accepted += prefix;
            if prefix < chunk.len() {
                return Ok(accepted);
            }
        }
        Ok(accepted)
    }
}
