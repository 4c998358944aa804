//! The saga's task steps that need logic, Redis or the payment provider (one Lambda,
//! `saga-steps`; the single-call steps — read the reservation, mark it FAILED, notify, dead-letter
//! — are direct Step Functions integrations in the ASL).
//!
//! Each step is idempotent: Step Functions retries it on the transient error types, and a
//! step that ran but whose answer was lost must be safe to run again.
//! Every failure carries a stable `errorType` from [`super::error_types`]; [`StepKind::errors`]
//! lists what each step can raise, and a test checks the state machine handles all of them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error_types as et;
use super::records::{CheckoutRecord, CheckoutRecords, ConfirmOutcome, Order};
use super::{charge_idempotency_key, refund_idempotency_key};
use crate::domain::{Clock, Money, ReservationId};
use crate::payment::{
    ChargeOutcome, ChargeRequest, PaymentError, PaymentIntent, PaymentIntentId, PaymentProvider,
    PaymentStatus, RefundOutcome,
};
use crate::reservation::ReservationStatus;
use crate::sale::SaleCatalog;
use crate::stock::repair::RepairRequests;
use crate::stock::{CommitOutcome, HoldSpec, ReleaseOutcome, RestoreOutcome, StockEngine};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Charge,
    ReadCharge,
    CreateOrder,
    CommitHold,
    Refund,
    ReleaseHold,
}

impl StepKind {
    pub const ALL: [StepKind; 6] = [
        Self::Charge,
        Self::ReadCharge,
        Self::CreateOrder,
        Self::CommitHold,
        Self::Refund,
        Self::ReleaseHold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::ReadCharge => "read_charge",
            Self::CreateOrder => "create_order",
            Self::CommitHold => "commit_hold",
            Self::Refund => "refund",
            Self::ReleaseHold => "release_hold",
        }
    }

    /// Every error type the step can end with: `(name, transient)`. Transient ones must be
    /// retried by the definition, the others must not be (they would fail the same way).
    /// Charge also ends with [`et::PAYMENT_DECLINED`] sent by the webhook (SendTaskFailure).
    pub fn errors(self) -> &'static [(&'static str, bool)] {
        const INPUT: (&str, bool) = (et::INVALID_INPUT, false);
        const STORE: (&str, bool) = (et::STORE_UNAVAILABLE, true);
        const STOCK: (&str, bool) = (et::STOCK_UNAVAILABLE, true);
        const PROVIDER: (&str, bool) = (et::PROVIDER_UNAVAILABLE, true);
        match self {
            Self::Charge => &[
                INPUT,
                STORE,
                STOCK,
                PROVIDER,
                (et::STOCK_LOST, false),
                (et::ALREADY_CHARGED, false),
                (et::CIRCUIT_OPEN, false),
                (et::PROVIDER_REJECTED, false),
                (et::PAYMENT_DECLINED, false),
                (et::RESERVATION_NOT_PAYABLE, false),
            ],
            Self::ReadCharge => &[
                INPUT,
                STORE,
                PROVIDER,
                (et::PROVIDER_REJECTED, false),
                (et::PAYMENT_DECLINED, false),
            ],
            Self::CreateOrder => &[INPUT, STORE, (et::ORDER_REJECTED, false)],
            Self::CommitHold => &[INPUT, STORE, STOCK],
            Self::Refund => &[
                INPUT,
                STORE,
                PROVIDER,
                (et::PROVIDER_REJECTED, false),
                (et::CHARGE_UNSETTLED, false),
            ],
            Self::ReleaseHold => &[INPUT, STORE, STOCK, (et::HOLD_LOST, false)],
        }
    }
}

/// What the state machine sends (see statemachines/checkout-saga.asl.json).
#[derive(Debug, Clone, Deserialize)]
pub struct StepInput {
    pub step: StepKind,
    pub reservation_id: String,
    /// Charge only: the `.waitForTaskToken` token the webhook resumes.
    #[serde(default)]
    pub token: Option<String>,
    /// Charge only.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// CreateOrder only: what the webhook reported (SendTaskSuccess output).
    #[serde(default)]
    pub charge: Option<ChargeResult>,
}

/// The output the webhook sends with SendTaskSuccess when the provider says a charge succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ChargeResult {
    pub payment_intent_id: String,
    pub amount_received: u64,
}

/// A step failure: `error_type` becomes the Lambda's `errorType`, which Retry/Catch match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct StepError {
    pub error_type: &'static str,
    pub message: String,
}

impl StepError {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
        }
    }
}

/// The Lambda runtime reports `error_type` as the function error's `errorType`, which the state
/// machine's Retry/Catch match (the default would be a Rust type name).
impl From<StepError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(error: StepError) -> Self {
        Self {
            error_type: error.error_type.to_owned(),
            error_message: error.message,
        }
    }
}

impl From<PaymentError> for StepError {
    fn from(error: PaymentError) -> Self {
        let error_type = match &error {
            PaymentError::CircuitOpen { .. } => et::CIRCUIT_OPEN,
            PaymentError::Rejected { .. } => et::PROVIDER_REJECTED,
            // A breaker-store failure is the breaker's problem, not the provider's: retry.
            PaymentError::Transient(_) | PaymentError::Breaker(_) => et::PROVIDER_UNAVAILABLE,
        };
        Self::new(error_type, error.to_string())
    }
}

fn store_error(e: impl std::fmt::Display) -> StepError {
    StepError::new(et::STORE_UNAVAILABLE, e.to_string())
}

fn stock_error(e: impl std::fmt::Display) -> StepError {
    StepError::new(et::STOCK_UNAVAILABLE, e.to_string())
}

/// How long the compensation keeps asking about a charge that stays `processing` before it
/// hands it to a person (ChargeUnsettled). Card payments settle in seconds; Stripe's SEPA
/// Direct Debit documentation says a debit's success or failure can take up to 14 business
/// days to be known, so 21 calendar days. (A Standard workflow may run for a year.)
pub const CHARGE_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(21 * 24 * 3600);

/// Everything the steps talk to. `charges` is the provider behind the circuit breaker;
/// `refunds` is the bare provider: a compensation must keep trying even while charges fail fast.
/// `repairs` asks for a stock rebuild when a step finds the sale's Redis data lost or fenced,
/// so a payment waiting on it (StockUnavailable, retried) waits seconds, not the next sweep.
pub struct SagaSteps<R, P, F, S, C, K, M> {
    pub records: R,
    pub charges: P,
    pub refunds: F,
    pub stock: S,
    pub catalog: C,
    pub clock: K,
    pub repairs: M,
}

impl<R, P, F, S, C, K, M> SagaSteps<R, P, F, S, C, K, M>
where
    R: CheckoutRecords,
    P: PaymentProvider,
    F: PaymentProvider,
    S: StockEngine,
    C: SaleCatalog,
    K: Clock,
    M: RepairRequests,
{
    pub async fn run(&self, input: StepInput) -> Result<Value, StepError> {
        let id = ReservationId::parse(&input.reservation_id)
            .map_err(|e| StepError::new(et::INVALID_INPUT, e.to_string()))?;
        let record = self
            .records
            .get(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| StepError::new(et::INVALID_INPUT, format!("no reservation {id}")))?;
        match input.step {
            StepKind::Charge => self.charge(&record, &input).await,
            StepKind::ReadCharge => self.read_charge(&record).await,
            StepKind::CreateOrder => self.create_order(&record, input.charge.as_ref()).await,
            StepKind::CommitHold => self.commit_hold(&record).await,
            StepKind::Refund => self.refund(&record).await,
            StepKind::ReleaseHold => self.release_hold(&record).await,
        }
    }

    /// Stores the task token, makes sure the reservation still holds its units, then asks the
    /// provider to charge (idempotently per reservation).
    ///
    /// A charge the provider answers `succeeded` (a card paid at once, or a charge an earlier
    /// attempt or execution made, replayed by its idempotency key) needs no webhook: the step
    /// ends with [`et::ALREADY_CHARGED`], which the definition routes to ReadCharge and on to
    /// CreateOrder. Only a charge still `processing` waits for the provider's webhook. So a
    /// webhook lost, or delivered to an earlier execution's task, cannot strand a paid order.
    async fn charge(&self, record: &CheckoutRecord, input: &StepInput) -> Result<Value, StepError> {
        let r = &record.reservation;
        let (Some(token), Some(method)) = (&input.token, &input.payment_method) else {
            return Err(StepError::new(
                et::INVALID_INPUT,
                "charge needs token and payment_method",
            ));
        };
        if r.status != ReservationStatus::PaymentProcessing
            || !self
                .records
                .store_charge_token(r.reservation_id, token)
                .await
                .map_err(store_error)?
        {
            return Err(StepError::new(
                et::RESERVATION_NOT_PAYABLE,
                format!("reservation is {}", r.status.as_str()),
            ));
        }
        self.ensure_held(record).await?;
        let request = ChargeRequest {
            reservation_id: r.reservation_id,
            amount: r.amount,
            payment_method: method.clone(),
            idempotency_key: charge_idempotency_key(r.reservation_id),
        };
        match self.charges.charge(&request).await? {
            ChargeOutcome::Accepted(intent) => {
                self.records
                    .store_payment_intent(r.reservation_id, intent.id.as_str())
                    .await
                    .map_err(store_error)?;
                let mut status = intent.status.clone();
                if status != PaymentStatus::Succeeded && record.payment_intent_id.is_some() {
                    // An earlier attempt charged already: the provider replays its first
                    // answer, so ask for the intent as it is now.
                    status = self.refunds.retrieve(&intent.id).await?.status;
                }
                if status == PaymentStatus::Succeeded {
                    return Err(StepError::new(
                        et::ALREADY_CHARGED,
                        format!("{} succeeded: nothing to wait for", intent.id),
                    ));
                }
                Ok(json!({ "payment_intent_id": intent.id.as_str(), "waiting_for": "webhook" }))
            }
            ChargeOutcome::Declined { intent, decline } => {
                if let Some(intent) = intent {
                    self.records
                        .store_payment_intent(r.reservation_id, intent.id.as_str())
                        .await
                        .map_err(store_error)?;
                }
                let reason = decline.decline_code.unwrap_or(decline.code);
                Err(StepError::new(et::PAYMENT_DECLINED, reason))
            }
        }
    }

    /// A reservation about to be charged must still hold its units in Redis: a failover may
    /// have lost the hold (and put the units back on sale). A lost hold is taken again if the
    /// shard has the units; if not, nothing is charged and the saga compensates (StockLost).
    async fn ensure_held(&self, record: &CheckoutRecord) -> Result<(), StepError> {
        let r = &record.reservation;
        let sale = self.sale_stock(record).await?;
        match self
            .stock
            .ensure_held(&sale, &spec_of(record), self.clock.now())
            .await
            .map_err(stock_error)?
        {
            RestoreOutcome::AlreadyHeld | RestoreOutcome::WasCommitted => Ok(()),
            RestoreOutcome::Restored { .. } => {
                tracing::warn!(reservation_id = %r.reservation_id, "the hold of a reservation being paid was lost; taken again before charging");
                Ok(())
            }
            RestoreOutcome::NoUnits { available } => {
                tracing::error!(reservation_id = %r.reservation_id, available, "the hold of a reservation being paid was lost and no unit is left: not charging");
                Err(StepError::new(
                    et::STOCK_LOST,
                    "the reservation's units were lost before payment",
                ))
            }
            // Redis is being rebuilt or lost the sale: retried with backoff (long enough for a
            // rebuild, see the Charge state). A lost or fenced sale gets its rebuild asked for
            // now; a paused one is being rebuilt already.
            other @ (RestoreOutcome::Paused
            | RestoreOutcome::Fenced
            | RestoreOutcome::SaleNotSetUp) => {
                if other != RestoreOutcome::Paused {
                    self.request_rebuild(&r.sale_id).await;
                }
                Err(StepError::new(
                    et::STOCK_UNAVAILABLE,
                    format!("stock not ready: {}", other.as_str()),
                ))
            }
        }
    }

    /// What the provider says of this reservation's charge, in the shape the webhook sends
    /// (`{payment_intent_id, amount_received}`): for a charge that had succeeded before this
    /// execution's Charge step (see [`Self::charge`]).
    async fn read_charge(&self, record: &CheckoutRecord) -> Result<Value, StepError> {
        let Some(pi) = record.payment_intent_id.as_deref() else {
            return Err(StepError::new(
                et::INVALID_INPUT,
                "no payment intent recorded",
            ));
        };
        let id = PaymentIntentId::parse(pi)
            .map_err(|e| StepError::new(et::INVALID_INPUT, e.to_string()))?;
        let intent: PaymentIntent = self.refunds.retrieve(&id).await?;
        if intent.status != PaymentStatus::Succeeded {
            return Err(StepError::new(
                et::PAYMENT_DECLINED,
                format!("the charge is {}", intent.status.as_str()),
            ));
        }
        Ok(json!({
            "payment_intent_id": intent.id.as_str(),
            "amount_received": intent.amount_minor,
        }))
    }

    /// One transaction: the order and PAYMENT_PROCESSING ─▶ CONFIRMED. A retry after a lost
    /// answer finds the reservation CONFIRMED and succeeds without a second order.
    async fn create_order(
        &self,
        record: &CheckoutRecord,
        charge: Option<&ChargeResult>,
    ) -> Result<Value, StepError> {
        let r = &record.reservation;
        let order_id = format!("ord_{}", r.reservation_id);
        if r.status == ReservationStatus::Confirmed {
            return Ok(json!({ "order_id": record.order_id.clone().unwrap_or(order_id) }));
        }
        let charge =
            charge.ok_or_else(|| StepError::new(et::INVALID_INPUT, "create_order needs charge"))?;
        if r.status != ReservationStatus::PaymentProcessing {
            return Err(StepError::new(
                et::ORDER_REJECTED,
                format!("reservation is {}", r.status.as_str()),
            ));
        }
        if i64::try_from(charge.amount_received).ok() != Some(r.amount.amount_minor) {
            return Err(StepError::new(
                et::ORDER_REJECTED,
                format!(
                    "charged {} but the reservation costs {}",
                    charge.amount_received, r.amount.amount_minor
                ),
            ));
        }
        let order = Order {
            order_id: order_id.clone(),
            reservation_id: r.reservation_id,
            payment_intent_id: charge.payment_intent_id.clone(),
            amount: Money::new(r.amount.amount_minor, r.amount.currency)
                .map_err(|e| StepError::new(et::INVALID_INPUT, e.to_string()))?,
            created_at: self.clock.now(),
        };
        match self
            .records
            .confirm_with_order(record, &order)
            .await
            .map_err(store_error)?
        {
            ConfirmOutcome::Confirmed | ConfirmOutcome::AlreadyConfirmed => {
                Ok(json!({ "order_id": order_id }))
            }
            ConfirmOutcome::NotProcessing => Err(StepError::new(
                et::ORDER_REJECTED,
                "the reservation left PAYMENT_PROCESSING",
            )),
        }
    }

    async fn sale_stock(
        &self,
        record: &CheckoutRecord,
    ) -> Result<crate::stock::SaleStock, StepError> {
        let sale_id = &record.reservation.sale_id;
        self.catalog
            .get(sale_id)
            .await
            .map_err(store_error)?
            .map(|sale| sale.stock())
            .ok_or_else(|| StepError::new(et::INVALID_INPUT, format!("no sale {sale_id}")))
    }

    /// Asks for the sale's stock to be rebuilt now. A failure is only logged: the sweep finds a
    /// lost or fenced sale within a minute anyway.
    async fn request_rebuild(&self, sale: &crate::domain::SaleId) {
        if let Err(error) = self.repairs.request_rebuild(sale).await {
            tracing::error!(%error, sale_id = %sale, "could not ask for a rebuild");
        }
    }

    /// The held unit becomes sold. The reservation is paid (CONFIRMED, an order exists), so it
    /// keeps its units even if Redis lost or released its hold: they are taken as sold again,
    /// into debt if the shard has none left (reported: OVERSOLD, a person must resolve it).
    async fn commit_hold(&self, record: &CheckoutRecord) -> Result<Value, StepError> {
        let r = &record.reservation;
        let sale = self.sale_stock(record).await?;
        match self
            .stock
            .commit_paid(&sale, &spec_of(record), self.clock.now())
            .await
            .map_err(stock_error)?
        {
            CommitOutcome::Committed | CommitOutcome::AlreadyCommitted => {
                Ok(json!({ "committed": true }))
            }
            CommitOutcome::Retaken { available_after } => {
                if available_after < 0 {
                    tracing::error!(reservation_id = %r.reservation_id, sale_id = %r.sale_id, shard = r.shard, available_after, "OVERSOLD: a paid order's hold was lost and its units had been sold again; taken into debt, a person must resolve it");
                    crate::metrics::emit(
                        "saga-steps",
                        &[("UnitsOversold", u64::from(r.quantity.get()))],
                        0.0,
                    );
                } else {
                    tracing::warn!(reservation_id = %r.reservation_id, "a paid order's hold was lost: its units are taken as sold again");
                }
                Ok(
                    json!({ "committed": true, "retaken": true, "available_after": available_after }),
                )
            }
            // The shard is paused (a rebuild runs and counts this order as sold) or the sale is
            // gone from Redis (a rebuild is asked for): retried.
            other => {
                if other == CommitOutcome::SaleNotSetUp {
                    self.request_rebuild(&r.sale_id).await;
                }
                Err(StepError::new(et::STOCK_UNAVAILABLE, other.as_str()))
            }
        }
    }

    /// Gives back anything charged: a succeeded intent is refunded, an unfinished one is
    /// cancelled. One still processing cannot be cancelled (Stripe refuses for cards): the step
    /// answers `"pending": true` and the definition asks again after `refund_recheck` seconds
    /// (WaitForCharge, RecheckRefund), until it has settled, so a success whose webhook is lost
    /// for good is still refunded. (The webhook intake also refunds a success that arrives for
    /// a FAILED reservation; whichever comes first refunds, with one idempotency key.) After
    /// [`CHARGE_SETTLE_LIMIT`] of processing it gives up: ChargeUnsettled, a person's job.
    async fn refund(&self, record: &CheckoutRecord) -> Result<Value, StepError> {
        let Some(pi) = record.payment_intent_id.as_deref() else {
            return Ok(json!({ "refunded": false, "reason": "nothing was charged" }));
        };
        let id = PaymentIntentId::parse(pi)
            .map_err(|e| StepError::new(et::INVALID_INPUT, e.to_string()))?;
        let intent = self.refunds.retrieve(&id).await?;
        match intent.status {
            PaymentStatus::Succeeded => self.refund_intent(&id).await,
            PaymentStatus::Canceled => Ok(json!({ "refunded": false, "reason": "canceled" })),
            PaymentStatus::Processing => {
                let started = record
                    .payment_started_at
                    .unwrap_or(record.reservation.created_at);
                if started.until(self.clock.now()) > CHARGE_SETTLE_LIMIT {
                    return Err(StepError::new(
                        et::CHARGE_UNSETTLED,
                        format!(
                            "{pi} still processing {CHARGE_SETTLE_LIMIT:?} after the payment began"
                        ),
                    ));
                }
                Ok(json!({
                    "refunded": false,
                    "pending": true,
                    "reason": "still processing: checked again later"
                }))
            }
            _ => match self.refunds.cancel(&id, &format!("cancel-{pi}")).await {
                Ok(_) => Ok(json!({ "refunded": false, "reason": "canceled now" })),
                // It succeeded between the two calls: refund it.
                Err(PaymentError::Rejected { .. }) => self.refund_intent(&id).await,
                Err(e) => Err(e.into()),
            },
        }
    }

    async fn refund_intent(&self, id: &PaymentIntentId) -> Result<Value, StepError> {
        match self
            .refunds
            .refund(id, &refund_idempotency_key(id.as_str()))
            .await?
        {
            RefundOutcome::Refunded { refund_id, .. } => {
                Ok(json!({ "refunded": true, "refund_id": refund_id }))
            }
            RefundOutcome::AlreadyRefunded => Ok(json!({ "refunded": true, "reason": "already" })),
            RefundOutcome::NotCharged(status) => {
                Ok(json!({ "refunded": false, "reason": status.as_str() }))
            }
        }
    }

    /// The held unit goes back on sale. Only for a FAILED reservation: MarkFailed runs first,
    /// so a confirmed reservation can never lose its unit here.
    async fn release_hold(&self, record: &CheckoutRecord) -> Result<Value, StepError> {
        let r = &record.reservation;
        if r.status == ReservationStatus::Confirmed {
            tracing::error!(reservation = %r.reservation_id, "release requested for a confirmed reservation; refused");
            return Err(StepError::new(
                et::HOLD_LOST,
                "the reservation is CONFIRMED",
            ));
        }
        let sale = self.sale_stock(record).await?;
        match self
            .stock
            .release(&sale, r.shard, r.reservation_id)
            .await
            .map_err(stock_error)?
        {
            ReleaseOutcome::WasCommitted => Err(StepError::new(
                et::HOLD_LOST,
                "the hold was committed (sold)",
            )),
            ReleaseOutcome::NotFound => {
                // Redis lost the hold (a failover): its units are back already, but the
                // buyer's claim lives on another slot and may have survived; it must go too,
                // or it counts against the buyer's limit for the rest of the sale.
                self.stock
                    .drop_claim(&sale, &r.user_id, r.reservation_id)
                    .await
                    .map_err(stock_error)?;
                Ok(json!({ "released": ReleaseOutcome::NotFound.as_str(), "claim_dropped": true }))
            }
            ReleaseOutcome::SaleNotSetUp => {
                // Redis lost the whole sale: the rebuild counts this FAILED reservation as
                // not holding anything. Ask for it now rather than at the next sweep.
                self.request_rebuild(&r.sale_id).await;
                Ok(
                    json!({ "released": ReleaseOutcome::SaleNotSetUp.as_str(), "rebuild_requested": true }),
                )
            }
            // (`Released` carries the buyer: only the outcome's name goes into the output.)
            outcome => Ok(json!({ "released": outcome.as_str() })),
        }
    }
}

fn spec_of(record: &CheckoutRecord) -> HoldSpec {
    let r = &record.reservation;
    HoldSpec {
        reservation_id: r.reservation_id,
        user: r.user_id.clone(),
        quantity: r.quantity,
        shard: r.shard,
        expires_at: r.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payment errors in the one vocabulary the state machine matches.
    #[test]
    fn payment_errors_take_the_sagas_names() {
        let name = |e: PaymentError| StepError::from(e).error_type;
        assert_eq!(
            name(PaymentError::Transient("x".into())),
            et::PROVIDER_UNAVAILABLE
        );
        assert_eq!(
            name(PaymentError::CircuitOpen {
                retry_after: std::time::Duration::from_secs(1)
            }),
            et::CIRCUIT_OPEN
        );
        assert_eq!(
            name(PaymentError::Rejected {
                code: None,
                message: "x".into()
            }),
            et::PROVIDER_REJECTED
        );
        // The breaker's store failing is retried like a provider that did not answer.
        assert_eq!(
            name(PaymentError::Breaker("x".into())),
            et::PROVIDER_UNAVAILABLE
        );
    }

    #[test]
    fn step_input_reads_what_the_definition_sends() {
        let input: StepInput = serde_json::from_value(json!({
            "step": "create_order",
            "reservation_id": "0191d6a0-0000-7000-8000-000000000000",
            "charge": { "payment_intent_id": "pi_1", "amount_received": 500 }
        }))
        .unwrap();
        assert_eq!(input.step, StepKind::CreateOrder);
        assert_eq!(input.charge.unwrap().amount_received, 500);
    }

    #[test]
    fn every_step_can_fail_with_bad_input_and_names_are_unique_per_step() {
        for step in StepKind::ALL {
            let names: Vec<_> = step.errors().iter().map(|(n, _)| *n).collect();
            assert!(names.contains(&et::INVALID_INPUT), "{step:?}");
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{step:?}");
        }
    }
}
