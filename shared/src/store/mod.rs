//! Connections to the stores, built once per cold start and shared by every request, and the
//! helpers the DynamoDB adapters share.

pub mod dynamo;

/// A store call that did not succeed: the store is unavailable (retry later), or a record in it
/// is malformed (a bug or a foreign write).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reservation store unavailable: {0}")]
    Unavailable(String),
    #[error("reservation record is malformed: {0}")]
    Malformed(String),
}

/// The AWS configuration from the standard chain (`AWS_ENDPOINT_URL` for LocalStack), loaded
/// once per cold start and shared by every SDK client of the function.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub mod item;
pub mod redis;
pub mod write;
