//! Connections to the stores, built once per cold start and shared by every request, and the
//! helpers the DynamoDB adapters share.

pub mod dynamo;

/// The AWS configuration from the standard chain (`AWS_ENDPOINT_URL` for LocalStack), loaded
/// once per cold start and shared by every SDK client of the function.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub mod item;
pub mod redis;
pub mod write;
