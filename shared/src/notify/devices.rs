//! A buyer's devices for push: `POST /me/devices` registers a device token with SNS (a
//! platform endpoint of the stack's platform application) and keeps the endpoint in the devices
//! table (`user_id` partition key, `endpoint_arn` sort key); the notifier pushes to each.

use std::future::Future;

use aws_sdk_dynamodb::Client;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::SendError;
use crate::domain::UserId;
use crate::http::request::{body_bytes, identity_of, json_object};
use crate::http::{json, problems, Problem};
use crate::store::item::{self, str};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("devices store unavailable: {0}")]
    Unavailable(String),
}

/// The port: the push endpoints of each buyer.
pub trait Devices: Send + Sync {
    fn endpoints_of(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<String>, DeviceError>> + Send;
    /// Adds `endpoint` to `user`'s devices (again: no change).
    fn add(
        &self,
        user: &UserId,
        endpoint: &str,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send;
}

/// Creates the platform endpoint of a device token (SNS `CreatePlatformEndpoint`: the same
/// token answers the same endpoint, so a repeated registration is harmless).
pub trait EndpointRegistry: Send + Sync {
    fn endpoint_for(
        &self,
        token: &str,
        user: &UserId,
    ) -> impl Future<Output = Result<String, SendError>> + Send;
}

#[derive(Clone)]
pub struct DynamoDevices {
    client: Client,
    table: String,
}

impl DynamoDevices {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl Devices for DynamoDevices {
    async fn endpoints_of(&self, user: &UserId) -> Result<Vec<String>, DeviceError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", str(user.as_str()))
            .limit(20)
            .send()
            .await
            .map_err(|e| DeviceError::Unavailable(format!("{e:?}")))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| item::opt_s(i, "endpoint_arn"))
            .collect())
    }

    async fn add(&self, user: &UserId, endpoint: &str) -> Result<(), DeviceError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("user_id", str(user.as_str()))
            .item("endpoint_arn", str(endpoint))
            .send()
            .await
            .map_err(|e| DeviceError::Unavailable(format!("{e:?}")))?;
        Ok(())
    }
}

/// The most characters a device token may have: FCM registration tokens are about 160, APNs
/// device tokens 64 hex digits; room to spare inside the 4 KiB request body.
pub const MAX_TOKEN_CHARS: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    token: String,
}

#[derive(Debug, Serialize)]
struct Registered {
    endpoint_arn: String,
}

/// 501 `push-not-configured`: the deployment has no push platform application.
pub fn push_not_configured() -> Problem {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "push-not-configured",
        "Push not configured",
        "This deployment sends no push notifications (no push platform application); email only.",
    )
}

fn invalid_token(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-device-token",
        "Invalid device token",
        detail,
    )
}

/// `POST /me/devices` with `{"token": "<device token>"}`: 201 `{endpoint_arn}`; 422
/// `invalid-device-token` for a token that is empty, too long or not visible ASCII, or that
/// the push service refuses.
pub async fn register<D: Devices, R: EndpointRegistry>(
    devices: &D,
    registry: &R,
    request: &Request,
) -> Response<Body> {
    let identity = match identity_of(request) {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    let bytes = match body_bytes(request) {
        Ok(bytes) => bytes,
        Err(problem) => return problem.into_response(),
    };
    let body: RegisterBody = match json_object(bytes) {
        Ok(body) => body,
        Err(e) => {
            return problems::malformed_body(format!("The body is not {{\"token\": \"...\"}}: {e}"))
                .into_response()
        }
    };
    // Not trimmed: a token with spaces around is not one (the API's pattern says so).
    let token = body.token.as_str();
    if token.is_empty()
        || token.len() > MAX_TOKEN_CHARS
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return invalid_token(&format!(
            "A device token is 1 to {MAX_TOKEN_CHARS} visible ASCII characters."
        ))
        .into_response();
    }
    let endpoint = match registry.endpoint_for(token, &identity.user_id).await {
        Ok(endpoint) => endpoint,
        Err(SendError::Permanent(why)) => {
            tracing::info!(%why, "device token refused by the push service");
            return invalid_token("The push service refused this device token.").into_response();
        }
        Err(SendError::Transient(why)) | Err(SendError::Unknown(why)) => {
            tracing::warn!(%why, "registering a device failed");
            return problems::dependency_unavailable("Retry shortly.").into_response();
        }
    };
    match devices.add(&identity.user_id, &endpoint).await {
        Ok(()) => json(
            StatusCode::CREATED,
            &Registered {
                endpoint_arn: endpoint,
            },
        ),
        Err(error) => {
            tracing::error!(%error, "storing a device failed");
            problems::dependency_unavailable("Retry shortly.").into_response()
        }
    }
}
