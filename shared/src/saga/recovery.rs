//! Payments that no process is moving on. A reservation is PAYMENT_PROCESSING from the intake's
//! conditional write until the saga confirms or fails it; if no saga runs for it (the start
//! failed or its answer was lost and the buyer never retried, or an execution ended without
//! settling the record, e.g. a compensation that kept failing), nothing else would ever touch
//! it: the expiry worker skips PAYMENT_PROCESSING on purpose. The hold reconciler, which
//! already reads every held reservation of a sale each minute, hands such payments (older than
//! its grace period) to [`SagaRecovery`]:
//!
//! | execution `<id>[-r<n>]`      | action                                                   |
//! |------------------------------|----------------------------------------------------------|
//! | RUNNING                      | none (it will settle the record)                         |
//! | does not exist               | start it (what the intake meant to do)                   |
//! | ended, record still PAYMENT_PROCESSING | next attempt (conditional on the attempt), start `<id>-r<n+1>` |
//!
//! A restarted saga charges with the same idempotency key (`charge-<id>`), so the provider
//! answers with the same PaymentIntent and never charges twice; if that intent already
//! succeeded, the Charge step completes itself (see [`super::steps`]).

use super::control::{ExecutionState, SagaControl, Started};
use super::pay::saga_input;
use super::records::CheckoutRecords;
use crate::domain::ReservationId;
use crate::reconcile::{PaymentCheck, PaymentRecovery, RecoveryError};
use crate::reservation::ReservationStatus;

pub struct SagaRecovery<R, G> {
    pub records: R,
    pub saga: G,
}

impl<R: CheckoutRecords, G: SagaControl> SagaRecovery<R, G> {
    async fn start(
        &self,
        name: &str,
        id: ReservationId,
        method: &str,
    ) -> Result<(), RecoveryError> {
        match self
            .saga
            .start(name, &saga_input(id, method))
            .await
            .map_err(|e| RecoveryError(e.to_string()))?
        {
            Started::Started | Started::AlreadyStarted { .. } => Ok(()),
        }
    }
}

impl<R: CheckoutRecords, G: SagaControl> PaymentRecovery for SagaRecovery<R, G> {
    async fn settle(&self, id: ReservationId) -> Result<PaymentCheck, RecoveryError> {
        let Some(record) = self
            .records
            .get(id)
            .await
            .map_err(|e| RecoveryError(e.to_string()))?
        else {
            return Ok(PaymentCheck::NotProcessing);
        };
        if record.reservation.status != ReservationStatus::PaymentProcessing {
            return Ok(PaymentCheck::NotProcessing);
        }
        let method = record.payment_method.clone().unwrap_or_default();
        let name = record.execution_name();
        match self
            .saga
            .describe(&name)
            .await
            .map_err(|e| RecoveryError(e.to_string()))?
        {
            ExecutionState::Running => Ok(PaymentCheck::Running),
            ExecutionState::NotFound => {
                tracing::warn!(reservation_id = %id, execution = %name, "payment without a saga: starting it");
                self.start(&name, id, &method).await?;
                Ok(PaymentCheck::Started)
            }
            ExecutionState::Ended(status) => {
                let next = record.saga_attempt + 1;
                if !self
                    .records
                    .next_saga_attempt(id, record.saga_attempt)
                    .await
                    .map_err(|e| RecoveryError(e.to_string()))?
                {
                    return Ok(PaymentCheck::NotProcessing);
                }
                let name = super::execution_name(id, next);
                tracing::error!(reservation_id = %id, ended = %status, execution = %name, "a saga ended without settling its payment: restarting it");
                self.start(&name, id, &method).await?;
                Ok(PaymentCheck::Restarted)
            }
        }
    }
}
