//! In-memory fakes of the saga's ports, for fast tests of [`super::pay::PayService`],
//! [`super::steps::SagaSteps`], [`super::webhook::WebhookService`] and
//! [`super::recovery::SagaRecovery`]. They keep the semantics the DynamoDB and Step Functions
//! adapters promise (conditional writes, executions by name, tasks that end), plus switches
//! that inject the faults those adapters must survive: a failed call, and a call that took
//! effect but whose answer was lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::control::{ControlError, ExecutionState, Resumed, SagaControl, Started};
use super::records::{BeginPayment, CheckoutRecord, CheckoutRecords, ConfirmOutcome, Order};
use super::webhook::{Claim, EventLogError, WebhookEventLog};
use crate::domain::{ReservationId, Timestamp, UserId};
use crate::reservation::{Reservation, ReservationStatus, StoreError};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the next call of an operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails and has no effect.
    Fails,
    /// The call takes effect, but the caller gets an error (its answer was lost).
    AnswerLost,
}

/// Reservations with their payment attributes, and orders. Clones share the same records.
#[derive(Clone, Default)]
pub struct InMemoryCheckoutRecords {
    records: Arc<Mutex<HashMap<ReservationId, CheckoutRecord>>>,
    orders: Arc<Mutex<HashMap<ReservationId, Order>>>,
    faults: Arc<Mutex<HashMap<&'static str, Vec<Fault>>>>,
}

impl InMemoryCheckoutRecords {
    /// Adds a reservation (as the reserve path would have written it).
    pub fn insert(&self, reservation: Reservation) {
        lock(&self.records).insert(
            reservation.reservation_id,
            CheckoutRecord {
                reservation,
                payment_key: None,
                payment_method: None,
                charge_token: None,
                payment_intent_id: None,
                order_id: None,
                failure_reason: None,
                payment_started_at: None,
                saga_attempt: 1,
            },
        );
    }

    pub fn record(&self, id: ReservationId) -> Option<CheckoutRecord> {
        lock(&self.records).get(&id).cloned()
    }

    pub fn orders(&self) -> Vec<Order> {
        lock(&self.orders).values().cloned().collect()
    }

    /// What the saga's MarkFailed step does (a direct DynamoDB write in the state machine).
    pub fn mark_failed(&self, id: ReservationId, reason: &str) -> bool {
        let mut records = lock(&self.records);
        match records.get_mut(&id) {
            Some(r) if r.reservation.status == ReservationStatus::PaymentProcessing => {
                r.reservation.status = ReservationStatus::Failed;
                r.failure_reason = Some(reason.to_owned());
                r.charge_token = None;
                true
            }
            _ => false,
        }
    }

    /// The next calls of `operation` (a method name of [`CheckoutRecords`]) fail like this,
    /// one fault per call, in order.
    pub fn inject(&self, operation: &'static str, faults: &[Fault]) {
        lock(&self.faults)
            .entry(operation)
            .or_default()
            .extend_from_slice(faults);
    }

    fn fault(&self, operation: &'static str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let queue = faults.get_mut(operation)?;
        (!queue.is_empty()).then(|| queue.remove(0))
    }

    /// Runs `write` under the fault switch of `operation`.
    fn write<T>(
        &self,
        operation: &'static str,
        write: impl FnOnce(&mut HashMap<ReservationId, CheckoutRecord>) -> T,
    ) -> Result<T, StoreError> {
        match self.fault(operation) {
            Some(Fault::Fails) => Err(StoreError::Unavailable(format!("{operation}: injected"))),
            Some(Fault::AnswerLost) => {
                write(&mut lock(&self.records));
                Err(StoreError::Unavailable(format!(
                    "{operation}: answer lost (injected)"
                )))
            }
            None => Ok(write(&mut lock(&self.records))),
        }
    }
}

impl CheckoutRecords for InMemoryCheckoutRecords {
    async fn get(&self, id: ReservationId) -> Result<Option<CheckoutRecord>, StoreError> {
        if let Some(Fault::Fails | Fault::AnswerLost) = self.fault("get") {
            return Err(StoreError::Unavailable("get: injected".into()));
        }
        Ok(self.record(id))
    }

    async fn begin_payment(
        &self,
        id: ReservationId,
        user: &UserId,
        payment_key: &str,
        payment_method: &str,
        now: Timestamp,
    ) -> Result<BeginPayment, StoreError> {
        self.write("begin_payment", |records| match records.get_mut(&id) {
            Some(r)
                if r.reservation.status == ReservationStatus::Pending
                    && &r.reservation.user_id == user
                    && now < r.reservation.expires_at =>
            {
                r.reservation.status = ReservationStatus::PaymentProcessing;
                r.payment_key = Some(payment_key.to_owned());
                r.payment_method = Some(payment_method.to_owned());
                r.payment_started_at = Some(now);
                r.saga_attempt = 1;
                BeginPayment::Started
            }
            _ => BeginPayment::Refused,
        })
    }

    async fn next_saga_attempt(&self, id: ReservationId, attempt: u32) -> Result<bool, StoreError> {
        self.write("next_saga_attempt", |records| match records.get_mut(&id) {
            Some(r)
                if r.reservation.status == ReservationStatus::PaymentProcessing
                    && r.saga_attempt == attempt =>
            {
                r.saga_attempt = attempt + 1;
                r.charge_token = None;
                true
            }
            _ => false,
        })
    }

    async fn store_charge_token(&self, id: ReservationId, token: &str) -> Result<bool, StoreError> {
        self.write("store_charge_token", |records| match records.get_mut(&id) {
            Some(r) if r.reservation.status == ReservationStatus::PaymentProcessing => {
                r.charge_token = Some(token.to_owned());
                true
            }
            _ => false,
        })
    }

    async fn store_payment_intent(&self, id: ReservationId, pi: &str) -> Result<(), StoreError> {
        self.write("store_payment_intent", |records| {
            if let Some(r) = records.get_mut(&id) {
                r.payment_intent_id = Some(pi.to_owned());
            }
        })
    }

    async fn confirm_with_order(
        &self,
        record: &CheckoutRecord,
        order: &Order,
    ) -> Result<ConfirmOutcome, StoreError> {
        let id = record.reservation.reservation_id;
        let result = self.write("confirm_with_order", |records| {
            let mut orders = lock(&self.orders);
            match records.get_mut(&id) {
                Some(r)
                    if r.reservation.status == ReservationStatus::PaymentProcessing
                        && !orders.contains_key(&id) =>
                {
                    r.reservation.status = ReservationStatus::Confirmed;
                    r.order_id = Some(order.order_id.clone());
                    r.charge_token = None;
                    orders.insert(id, order.clone());
                    ConfirmOutcome::Confirmed
                }
                Some(r) if r.reservation.status == ReservationStatus::Confirmed => {
                    ConfirmOutcome::AlreadyConfirmed
                }
                _ => ConfirmOutcome::NotProcessing,
            }
        });
        result
    }
}

/// What a task was resumed with: (token, Ok(output) | Err(error name)).
pub type Resumption = (String, Result<Value, String>);

/// Step Functions in memory: executions by name (a name is never reused), the task tokens the
/// Charge step hands out, and what was resumed. Clones share the same state.
#[derive(Clone, Default)]
pub struct InMemorySagaControl {
    executions: Arc<Mutex<HashMap<String, (Value, ExecutionState)>>>,
    /// Tokens of tasks waiting to be resumed.
    open_tokens: Arc<Mutex<Vec<String>>>,
    resumed: Arc<Mutex<Vec<Resumption>>>,
    start_faults: Arc<Mutex<Vec<Fault>>>,
}

impl InMemorySagaControl {
    /// The next StartExecution calls fail like this, one per call.
    pub fn fail_starts(&self, faults: &[Fault]) {
        lock(&self.start_faults).extend_from_slice(faults);
    }

    /// Names of the executions started, in no particular order.
    pub fn executions(&self) -> Vec<String> {
        lock(&self.executions).keys().cloned().collect()
    }

    pub fn input_of(&self, name: &str) -> Option<Value> {
        lock(&self.executions)
            .get(name)
            .map(|(input, _)| input.clone())
    }

    /// Ends an execution (as Step Functions would when it succeeds, fails or times out).
    pub fn end(&self, name: &str, status: &str) {
        if let Some((_, state)) = lock(&self.executions).get_mut(name) {
            *state = ExecutionState::Ended(status.to_owned());
        }
    }

    /// A task waiting with `token` (what the Charge step's `.waitForTaskToken` creates).
    pub fn open_task(&self, token: &str) {
        lock(&self.open_tokens).push(token.to_owned());
    }

    /// What was sent to tasks: (token, Ok(output) | Err(error)).
    pub fn resumed(&self) -> Vec<Resumption> {
        lock(&self.resumed).clone()
    }

    fn resume(&self, token: &str, outcome: Result<Value, String>) -> Resumed {
        let mut open = lock(&self.open_tokens);
        match open.iter().position(|t| t == token) {
            Some(i) => {
                open.remove(i);
                lock(&self.resumed).push((token.to_owned(), outcome));
                Resumed::Resumed
            }
            None => Resumed::TaskEnded,
        }
    }
}

impl SagaControl for InMemorySagaControl {
    async fn start(&self, name: &str, input: &Value) -> Result<Started, ControlError> {
        let fault = {
            let mut faults = lock(&self.start_faults);
            (!faults.is_empty()).then(|| faults.remove(0))
        };
        if fault == Some(Fault::Fails) {
            return Err(ControlError::Unavailable("start: injected".into()));
        }
        let mut executions = lock(&self.executions);
        let outcome = match executions.get(name) {
            Some((_, ExecutionState::Running)) => Started::AlreadyStarted {
                status: "RUNNING".into(),
            },
            Some((_, ExecutionState::Ended(status))) => Started::AlreadyStarted {
                status: status.clone(),
            },
            _ => {
                executions.insert(name.to_owned(), (input.clone(), ExecutionState::Running));
                Started::Started
            }
        };
        if fault == Some(Fault::AnswerLost) {
            return Err(ControlError::Unavailable(
                "start: answer lost (injected)".into(),
            ));
        }
        Ok(outcome)
    }

    async fn succeed(&self, token: &str, output: &Value) -> Result<Resumed, ControlError> {
        Ok(self.resume(token, Ok(output.clone())))
    }

    async fn fail(&self, token: &str, error: &str, _cause: &str) -> Result<Resumed, ControlError> {
        Ok(self.resume(token, Err(error.to_owned())))
    }

    async fn heartbeat(&self, token: &str) -> Result<Resumed, ControlError> {
        Ok(if lock(&self.open_tokens).iter().any(|t| t == token) {
            Resumed::Resumed
        } else {
            Resumed::TaskEnded
        })
    }

    async fn describe(&self, name: &str) -> Result<ExecutionState, ControlError> {
        Ok(lock(&self.executions)
            .get(name)
            .map_or(ExecutionState::NotFound, |(_, state)| state.clone()))
    }
}

/// The processed-webhook-event log in memory. Clones share the same log.
#[derive(Clone, Default)]
pub struct InMemoryWebhookEventLog {
    events: Arc<Mutex<HashMap<String, bool>>>,
}

impl InMemoryWebhookEventLog {
    /// Whether `event_id` was handled completely.
    pub fn is_done(&self, event_id: &str) -> bool {
        lock(&self.events).get(event_id).copied().unwrap_or(false)
    }
}

impl WebhookEventLog for InMemoryWebhookEventLog {
    async fn claim(
        &self,
        event_id: &str,
        _event_type: &str,
        _now: Timestamp,
    ) -> Result<Claim, EventLogError> {
        let mut events = lock(&self.events);
        Ok(match events.get(event_id) {
            None => {
                events.insert(event_id.to_owned(), false);
                Claim::New
            }
            Some(false) => Claim::Unfinished,
            Some(true) => Claim::Done,
        })
    }

    async fn complete(&self, event_id: &str, _outcome: &str) -> Result<(), EventLogError> {
        lock(&self.events).insert(event_id.to_owned(), true);
        Ok(())
    }
}
