//! The SNS adapters: [`Pusher`] (`Publish` to a device's platform endpoint) and
//! [`EndpointRegistry`] (`CreatePlatformEndpoint` of the stack's platform application).

use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::Client;

use super::devices::EndpointRegistry;
use super::{Pusher, SendError};
use crate::domain::UserId;

/// Error codes after which the same call cannot succeed (SNS API reference): a disabled or
/// deleted endpoint, a token the platform refuses.
const PERMANENT: [&str; 4] = [
    "EndpointDisabled",
    "InvalidParameter",
    "NotFound",
    "PlatformApplicationDisabled",
];

fn classify<E: ProvideErrorMetadata, R>(error: aws_sdk_sns::error::SdkError<E, R>) -> SendError {
    super::classify(&error, &PERMANENT)
}

#[derive(Clone)]
pub struct SnsPusher {
    client: Client,
}

impl SnsPusher {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Pusher for SnsPusher {
    async fn push(&self, endpoint: &str, text: &str) -> Result<(), SendError> {
        self.client
            .publish()
            .target_arn(endpoint)
            .message(text)
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

#[derive(Clone)]
pub struct SnsEndpoints {
    client: Client,
    platform_application_arn: String,
}

impl SnsEndpoints {
    pub fn new(client: Client, platform_application_arn: impl Into<String>) -> Self {
        Self {
            client,
            platform_application_arn: platform_application_arn.into(),
        }
    }
}

impl EndpointRegistry for SnsEndpoints {
    async fn endpoint_for(&self, token: &str, user: &UserId) -> Result<String, SendError> {
        let out = self
            .client
            .create_platform_endpoint()
            .platform_application_arn(&self.platform_application_arn)
            .token(token)
            .custom_user_data(user.as_str())
            .send()
            .await
            .map_err(classify)?;
        out.endpoint_arn()
            .map(str::to_owned)
            .ok_or_else(|| SendError::Transient("CreatePlatformEndpoint answered no ARN".into()))
    }
}
