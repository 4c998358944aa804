//! The DynamoDB client. The endpoint comes from the standard AWS configuration chain, so the
//! same binary talks to AWS, or to LocalStack when `AWS_ENDPOINT_URL` is set.

use aws_config::BehaviorVersion;

pub async fn client() -> aws_sdk_dynamodb::Client {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&config)
}
