//! devices: `POST /me/devices`, a buyer's device token → an SNS platform endpoint kept for
//! push notifications. Wiring only; the logic is `flashsale_core::notify::devices`.

use flashsale_core::notify::devices::{push_not_configured, register, DynamoDevices};
use flashsale_core::notify::sns::SnsEndpoints;
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let aws = store::aws_config().await;
    let devices = DynamoDevices::new(
        aws_sdk_dynamodb::Client::new(&aws),
        env.required("DEVICES_TABLE")?,
    );
    // Absent when the deployment has no push platform application: registration is 501.
    let registry = env
        .optional("PUSH_PLATFORM_APPLICATION_ARN")
        .map(|arn| SnsEndpoints::new(aws_sdk_sns::Client::new(&aws), arn));
    let (devices, registry) = (&devices, &registry);
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(match registry {
            Some(registry) => register(devices, registry, &request).await,
            None => push_not_configured().into_response(),
        })
    }))
    .await
}
