//! event-publisher: the reservations table's change stream → reservation events on SQS.
//! Partial failures are reported so the stream retries from the first unsent record.

use flashsale_core::events::sqs::SqsEventSink;
use flashsale_core::events::stream::{publish, BatchResponse, StreamEvent};
use flashsale_core::{config, observability, store};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let aws = store::aws_config().await;
    let sink = SqsEventSink::new(
        aws_sdk_sqs::Client::new(&aws),
        env.required("EVENTS_QUEUE_URL")?,
    );
    let sink = &sink;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            Ok::<BatchResponse, Error>(publish(sink, event.payload, 10).await)
        },
    ))
    .await
}
