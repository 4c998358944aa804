//! One DynamoDB item per sale and a conditional decrement (`UpdateItem`, `SET available =
//! available - :q`, condition `available >= :q`), as serverless samples do. Never oversells;
//! has no per-buyer record. Run here against LocalStack's DynamoDB (DynamoDB Local), which does
//! not model a real table's per-partition limit (about 1,000 write units per second per
//! partition, "Best practices for designing and using partition keys effectively", DynamoDB
//! Developer Guide): on AWS one hot item is capped near that, whatever the crowd.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

use super::{Answer, Attempt, Design};
use crate::crowd::Crowd;

pub struct DynamoConditional {
    client: Client,
    table: String,
}

impl DynamoConditional {
    /// Creates the bench's table (`peer-bench-<pid>`, key `sale_id`), on demand billing.
    pub async fn create(client: Client) -> anyhow::Result<Self> {
        let table = format!("peer-bench-{}", std::process::id());
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sale_id")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sale_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .send()
            .await?;
        Ok(Self { client, table })
    }

    /// Drops the tables earlier runs of this bench left behind (a killed run cannot drop its
    /// own).
    pub async fn drop_stale(client: &Client) -> anyhow::Result<()> {
        let tables = client.list_tables().send().await?;
        for table in tables
            .table_names()
            .iter()
            .filter(|t| t.starts_with("peer-bench-"))
        {
            client.delete_table().table_name(table).send().await?;
        }
        Ok(())
    }

    pub async fn delete(&self) -> anyhow::Result<()> {
        self.client
            .delete_table()
            .table_name(&self.table)
            .send()
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Design for DynamoConditional {
    fn name(&self) -> &'static str {
        "DynamoDB conditional decrement"
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("sale_id", AttributeValue::S(run.into()))
            .item("available", AttributeValue::N(crowd.spec.stock.to_string()))
            .send()
            .await?;
        Ok(())
    }

    async fn attempt(&self, run: &str, _: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sale_id", AttributeValue::S(run.into()))
            .update_expression("SET available = available - :q")
            .condition_expression("available >= :q")
            .expression_attribute_values(":q", AttributeValue::N(attempt.quantity.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Answer::Granted),
            Err(error) => {
                let error = error.into_service_error();
                if error.is_conditional_check_failed_exception() {
                    Ok(Answer::SoldOut)
                } else {
                    Err(error.into())
                }
            }
        }
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("sale_id", AttributeValue::S(run.into()))
            .consistent_read(true)
            .send()
            .await?;
        let available = item
            .item()
            .and_then(|i| i.get("available"))
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| anyhow::anyhow!("the sale item has no available"))?;
        Ok(available.parse()?)
    }
}
