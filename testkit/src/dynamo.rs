//! Throwaway DynamoDB tables with the production schema (see infra/lib/data.ts), uniquely
//! named per test, on LocalStack (which runs DynamoDB Local) at 127.0.0.1:4566.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

pub const LOCALSTACK: &str = "http://127.0.0.1:4566";

pub async fn localstack_client() -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(LOCALSTACK)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "testkit",
        ))
        .load()
        .await;
    Client::new(&config)
}

pub struct Tables {
    pub sales: String,
    pub reservations: String,
    /// Reservations: key `reservation_id`, GSIs `pending-by-expiry` (expiry_bucket, expires_at)
    /// and `by-sale-bucketed` (sale_bucket, reservation_id).
    /// Orders (written by the saga): key `reservation_id`, GSI `by-sale` (sale_id, reservation_id).
    pub orders: String,
    client: Client,
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

fn attr(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .expect("attr")
}

impl Tables {
    /// Creates `<prefix>-sales-<id>`, `<prefix>-reservations-<id>` and `<prefix>-orders-<id>`.
    /// Indexes project every attribute (production projects fewer; see infra/lib/data.ts).
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let id = std::process::id().to_string()
            + &format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            );
        let sales = format!("{prefix}-sales-{id}");
        let reservations = format!("{prefix}-reservations-{id}");
        let orders = format!("{prefix}-orders-{id}");
        client
            .create_table()
            .table_name(&sales)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("sale_id", ScalarAttributeType::S))
            .key_schema(key("sale_id", KeyType::Hash))
            .send()
            .await
            .expect("create sales table (is LocalStack running? ./dev up)");
        let gsi = |name: &str, pk: &str, sk: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash))
                .key_schema(key(sk, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("gsi")
        };
        client
            .create_table()
            .table_name(&reservations)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("reservation_id", ScalarAttributeType::S))
            .attribute_definitions(attr("expiry_bucket", ScalarAttributeType::S))
            .attribute_definitions(attr("expires_at", ScalarAttributeType::N))
            .attribute_definitions(attr("sale_bucket", ScalarAttributeType::S))
            .key_schema(key("reservation_id", KeyType::Hash))
            .global_secondary_indexes(gsi("pending-by-expiry", "expiry_bucket", "expires_at"))
            .global_secondary_indexes(gsi("by-sale-bucketed", "sale_bucket", "reservation_id"))
            .send()
            .await
            .expect("create reservations table");
        client
            .create_table()
            .table_name(&orders)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("reservation_id", ScalarAttributeType::S))
            .attribute_definitions(attr("sale_id", ScalarAttributeType::S))
            .key_schema(key("reservation_id", KeyType::Hash))
            .global_secondary_indexes(gsi("by-sale", "sale_id", "reservation_id"))
            .send()
            .await
            .expect("create orders table");
        Self {
            sales,
            reservations,
            orders,
            client: client.clone(),
        }
    }

    /// Deletes the tables (tests call this at the end; LocalStack forgets them on restart).
    pub async fn delete(self) {
        for table in [&self.sales, &self.reservations, &self.orders] {
            let _ = self.client.delete_table().table_name(table).send().await;
        }
    }
}
