//! notifier: the events queue (SQS event source, `ReportBatchItemFailures`) → notifications.
//! Wiring only; the logic is `flashsale_core::notify`. Everything here runs once per cold
//! start.

use aws_sdk_ses::config::retry::RetryConfig;
use flashsale_core::domain::SystemClock;
use flashsale_core::events::stream::BatchResponse;
use flashsale_core::notify::consumer::{Notifier, SqsBatch};
use flashsale_core::notify::devices::DynamoDevices;
use flashsale_core::notify::dynamo::DynamoNotificationLog;
use flashsale_core::notify::ses::SesMailer;
use flashsale_core::notify::sns::SnsPusher;
use flashsale_core::{config, observability, store};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let aws = store::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let notifier = Notifier {
        log: DynamoNotificationLog::new(dynamo.clone(), env.required("NOTIFICATIONS_TABLE")?),
        // One attempt per call, no SDK retries: a retried send could deliver twice (at most
        // once; the queue redelivers what was refused for now).
        mailer: SesMailer::new(
            aws_sdk_ses::Client::from_conf(
                aws_sdk_ses::config::Builder::from(&aws)
                    .retry_config(RetryConfig::disabled())
                    .build(),
            ),
            env.required("MAIL_SENDER")?,
        ),
        pusher: SnsPusher::new(aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(&aws)
                .retry_config(RetryConfig::disabled())
                .build(),
        )),
        devices: DynamoDevices::new(dynamo, env.required("DEVICES_TABLE")?),
        clock: SystemClock,
    };
    let notifier = &notifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsBatch>| async move {
        Ok::<BatchResponse, Error>(notifier.handle_batch(event.payload).await)
    }))
    .await
}
