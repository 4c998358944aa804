//! get-reservation: `GET /reservations/{reservationId}`, the caller's own reservation.

use flashsale_core::reservation::dynamo::DynamoReservationStore;
use flashsale_core::reservation::http;
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let reservations = DynamoReservationStore::new(
        store::dynamo::client(&store::aws_config().await),
        env.required("RESERVATIONS_TABLE")?,
    );
    let reservations = &reservations;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(http::get_reservation(reservations, &request).await)
    }))
    .await
}
