//! pay: `POST /reservations/{reservationId}/payment`. Wiring only; the flow is
//! `flashsale_core::saga::pay`. Everything here runs once per cold start.

use flashsale_core::domain::SystemClock;
use flashsale_core::saga::dynamo::DynamoCheckoutRecords;
use flashsale_core::saga::http;
use flashsale_core::saga::pay::PayService;
use flashsale_core::saga::sfn::StepFunctionsControl;
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let aws = store::aws_config().await;
    let service = PayService {
        records: DynamoCheckoutRecords::new(
            store::dynamo::client(&aws),
            env.required("RESERVATIONS_TABLE")?,
            env.required("ORDERS_TABLE")?,
        ),
        saga: StepFunctionsControl::new(
            StepFunctionsControl::client(&aws),
            env.required("SAGA_STATE_MACHINE_ARN")?,
        ),
        clock: SystemClock,
    };
    let service = &service;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(http::pay(service, &request).await)
    }))
    .await
}
