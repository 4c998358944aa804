//! The DynamoDB client. The endpoint comes from the standard AWS configuration chain, so the
//! same binary talks to AWS, or to LocalStack when `AWS_ENDPOINT_URL` is set.

/// A client from the function's AWS configuration ([`super::aws_config`], loaded once per cold
/// start).
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}
