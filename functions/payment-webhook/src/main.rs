//! payment-webhook: `POST /webhooks/payments` (public; authenticated by the provider's
//! signature). Wiring only; the flow is `flashsale_core::saga::webhook`.

use flashsale_core::domain::SystemClock;
use flashsale_core::payment::signature::webhook_secrets_from_env;
use flashsale_core::payment::stripe::{StripeConfig, StripeProvider};
use flashsale_core::saga::dynamo::{DynamoCheckoutRecords, DynamoWebhookEventLog};
use flashsale_core::saga::http;
use flashsale_core::saga::sfn::StepFunctionsControl;
use flashsale_core::saga::webhook::WebhookService;
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let aws = store::aws_config().await;
    let dynamo = store::dynamo::client(&aws);
    let service = WebhookService {
        events: DynamoWebhookEventLog::new(dynamo.clone(), env.required("WEBHOOK_EVENTS_TABLE")?),
        records: DynamoCheckoutRecords::new(
            dynamo,
            env.required("RESERVATIONS_TABLE")?,
            env.required("ORDERS_TABLE")?,
        ),
        saga: StepFunctionsControl::new(
            StepFunctionsControl::client(&aws),
            env.required("SAGA_STATE_MACHINE_ARN")?,
        ),
        refunds: StripeProvider::new(StripeConfig::from_env(&env)?)?,
        clock: SystemClock,
        secrets: webhook_secrets_from_env(&env)?,
    };
    let service = &service;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(http::webhook(service, &request).await)
    }))
    .await
}
