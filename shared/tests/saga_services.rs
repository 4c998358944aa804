//! The saga's services, branch by branch, on the in-memory fakes of their ports (fast; the
//! same services run end to end on LocalStack in e2e/test_payments.py): the payment intake
//! (PayService), the workflow's steps (SagaSteps) and the webhook intake (WebhookService).
//! Stock runs in memory too ([`InMemoryStockEngine`]), so these need no server.

use std::sync::Arc;
use std::time::Duration;

use flashsale_core::domain::{
    Clock, IdempotencyKey, ManualClock, Quantity, ReservationId, SaleId, Timestamp, UserId,
};
use flashsale_core::payment::memory::{test_cards, InMemoryPaymentProvider};
use flashsale_core::payment::signature::{sign, WebhookSecret};
use flashsale_core::payment::{PaymentError, PaymentIntentId, PaymentStatus};
use flashsale_core::reservation::{Reservation, ReservationStatus};
use flashsale_core::saga::error_types as et;
use flashsale_core::saga::memory::{
    Fault, InMemoryCheckoutRecords, InMemorySagaControl, InMemoryWebhookEventLog,
};
use flashsale_core::saga::pay::{PayCommand, PayError, PayService, PaymentMethod};
use flashsale_core::saga::steps::{ChargeResult, SagaSteps, StepInput, StepKind};
use flashsale_core::saga::webhook::{WebhookError, WebhookOutcome, WebhookService};
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::Sale;
use flashsale_core::stock::memory::InMemoryStockEngine;
use flashsale_core::stock::repair::memory::RecordedRepairs;
use flashsale_core::stock::{ReserveOutcome, ReserveRequest, StockEngine};
use serde_json::json;
use testkit::fixtures::{self, OpenSale};

const NOW: i64 = 1_800_000_000_000;
const PRICE: i64 = 2_500;

struct World {
    clock: ManualClock,
    records: InMemoryCheckoutRecords,
    control: InMemorySagaControl,
    provider: InMemoryPaymentProvider,
    catalog: InMemorySaleCatalog,
    stock: InMemoryStockEngine,
    events: InMemoryWebhookEventLog,
    repairs: Arc<RecordedRepairs>,
    sale: Sale,
}

async fn world() -> World {
    let clock = ManualClock::at(Timestamp::from_millis(NOW));
    let sale = OpenSale::new(SaleId::parse("saga-drop").unwrap(), 10)
        .shards(1)
        .limit(2)
        .price(PRICE)
        .at(Timestamp::from_millis(NOW));
    let catalog = InMemorySaleCatalog::default();
    let stock = InMemoryStockEngine::default();
    fixtures::open(&catalog, &stock, &sale).await;
    World {
        clock,
        records: InMemoryCheckoutRecords::default(),
        control: InMemorySagaControl::default(),
        provider: InMemoryPaymentProvider::new(),
        catalog,
        stock,
        events: InMemoryWebhookEventLog::default(),
        repairs: Arc::default(),
        sale,
    }
}

impl World {
    /// A PENDING reservation with its hold, for `user`.
    async fn reservation(&self, user: &str) -> Reservation {
        let user = UserId::parse(user).unwrap();
        let now = self.clock.now();
        let request = ReserveRequest {
            sale: self.sale.stock(),
            user: user.clone(),
            quantity: Quantity::ONE,
            idempotency_key: IdempotencyKey::parse(format!("k-{user}")).unwrap(),
            reservation_id: ReservationId::new(),
            now,
            expires_at: now.plus(self.sale.hold),
        };
        let ReserveOutcome::Reserved(hold) = self.stock.reserve(&request).await.unwrap() else {
            panic!("no stock")
        };
        let r = Reservation {
            reservation_id: hold.reservation_id,
            sale_id: self.sale.sale_id.clone(),
            user_id: user,
            quantity: Quantity::ONE,
            shard: hold.shard,
            status: ReservationStatus::Pending,
            amount: self.sale.price,
            created_at: now,
            expires_at: hold.expires_at,
        };
        self.records.insert(r.clone());
        r
    }

    fn pay_service(&self) -> PayService<InMemoryCheckoutRecords, InMemorySagaControl, ManualClock> {
        PayService {
            records: self.records.clone(),
            saga: self.control.clone(),
            clock: self.clock.clone(),
        }
    }

    fn steps(
        &self,
    ) -> SagaSteps<
        InMemoryCheckoutRecords,
        InMemoryPaymentProvider,
        InMemoryPaymentProvider,
        InMemoryStockEngine,
        InMemorySaleCatalog,
        ManualClock,
        Arc<RecordedRepairs>,
    > {
        SagaSteps {
            records: self.records.clone(),
            charges: self.provider.clone(),
            refunds: self.provider.clone(),
            stock: self.stock.clone(),
            catalog: self.catalog.clone(),
            clock: self.clock.clone(),
            repairs: Arc::clone(&self.repairs),
        }
    }

    fn webhooks(
        &self,
    ) -> WebhookService<
        InMemoryWebhookEventLog,
        InMemoryCheckoutRecords,
        InMemorySagaControl,
        InMemoryPaymentProvider,
        ManualClock,
    > {
        WebhookService {
            events: self.events.clone(),
            records: self.records.clone(),
            saga: self.control.clone(),
            refunds: self.provider.clone(),
            clock: self.clock.clone(),
            secrets: vec![secret()],
        }
    }

    async fn pay(
        &self,
        r: &Reservation,
        key: &str,
        method: &str,
    ) -> Result<ReservationStatus, PayError> {
        self.pay_service()
            .pay(&PayCommand {
                user: r.user_id.clone(),
                reservation_id: r.reservation_id,
                payment_key: IdempotencyKey::parse(key).unwrap(),
                payment_method: PaymentMethod::parse(method).unwrap(),
            })
            .await
            .map(|accepted| accepted.status)
    }

    async fn step(
        &self,
        step: StepKind,
        r: &Reservation,
        method: &str,
        charge: Option<ChargeResult>,
    ) -> Result<serde_json::Value, &'static str> {
        self.steps()
            .run(StepInput {
                step,
                reservation_id: r.reservation_id.to_string(),
                token: Some(format!("token-{}", r.reservation_id)),
                payment_method: Some(method.into()),
                charge,
            })
            .await
            .map_err(|e| e.error_type)
    }

    fn status(&self, r: &Reservation) -> ReservationStatus {
        self.records
            .record(r.reservation_id)
            .unwrap()
            .reservation
            .status
    }

    fn intent_of(&self, r: &Reservation) -> flashsale_core::payment::PaymentIntent {
        let id = self
            .records
            .record(r.reservation_id)
            .unwrap()
            .payment_intent_id
            .unwrap();
        self.provider
            .intents()
            .into_iter()
            .find(|i| i.id.as_str() == id)
            .unwrap()
    }
}

fn secret() -> WebhookSecret {
    WebhookSecret::new("whsec_saga_tests").unwrap()
}

// ---------------------------------------------------------------------------------------------
// PayService.

#[tokio::test]
async fn pay_intake_answers_every_state_of_the_reservation() {
    let w = world().await;
    let visa = test_cards::VISA;
    // PENDING and unexpired: PAYMENT_PROCESSING, and the saga named after the reservation.
    let r = w.reservation("p1").await;
    assert_eq!(
        w.pay(&r, "k1", visa).await.unwrap(),
        ReservationStatus::PaymentProcessing
    );
    assert_eq!(w.control.executions(), vec![r.reservation_id.to_string()]);
    // The same key and body again: the status, no second execution.
    assert_eq!(
        w.pay(&r, "k1", visa).await.unwrap(),
        ReservationStatus::PaymentProcessing
    );
    assert_eq!(w.control.executions().len(), 1);
    // Another key while a payment runs: in progress.
    assert!(matches!(
        w.pay(&r, "k2", visa).await,
        Err(PayError::InProgress)
    ));
    // The same key with another payment method: refused (422).
    assert!(matches!(
        w.pay(&r, "k1", test_cards::DECLINED).await,
        Err(PayError::KeyReused)
    ));
    // Someone else's reservation reads as not found.
    let mut stranger = r.clone();
    stranger.user_id = UserId::parse("stranger").unwrap();
    assert!(matches!(
        w.pay(&stranger, "k9", visa).await,
        Err(PayError::NotFound)
    ));
    // Expired before paying.
    let late = w.reservation("p2").await;
    w.clock.advance(Duration::from_secs(601));
    assert!(matches!(
        w.pay(&late, "k", visa).await,
        Err(PayError::Expired)
    ));
    // CONFIRMED: the same key gets the status, another key "already paid".
    w.records.insert(Reservation {
        status: ReservationStatus::Confirmed,
        ..r.clone()
    });
    // (insert resets the payment key; a confirmed record without it answers AlreadyPaid)
    assert!(matches!(
        w.pay(&r, "k3", visa).await,
        Err(PayError::AlreadyPaid)
    ));
    // FAILED: another key hears why.
    let failed = w.reservation("p3").await;
    w.clock.set(Timestamp::from_millis(NOW));
    let failed = Reservation {
        expires_at: w.clock.now().plus(Duration::from_secs(600)),
        ..failed
    };
    w.records.insert(failed.clone());
    w.pay(&failed, "f1", visa).await.unwrap();
    assert!(w
        .records
        .mark_failed(failed.reservation_id, "PaymentDeclined"));
    assert_eq!(
        w.pay(&failed, "f1", visa).await.unwrap(),
        ReservationStatus::Failed
    );
    assert!(matches!(
        w.pay(&failed, "f2", visa).await,
        Err(PayError::PaymentFailed { reason }) if reason == "PaymentDeclined"
    ));
}

#[tokio::test]
async fn pay_intake_survives_a_store_that_fails_or_loses_its_answer() {
    let w = world().await;
    let r = w.reservation("p-store").await;
    w.records.inject("begin_payment", &[Fault::Fails]);
    assert!(matches!(
        w.pay(&r, "k", test_cards::VISA).await,
        Err(PayError::Unavailable(_))
    ));
    assert_eq!(w.status(&r), ReservationStatus::Pending);
    // The write commits but its answer is lost: the retry recognises its own payment.
    w.records.inject("begin_payment", &[Fault::AnswerLost]);
    assert!(w.pay(&r, "k", test_cards::VISA).await.is_err());
    assert_eq!(w.status(&r), ReservationStatus::PaymentProcessing);
    assert_eq!(
        w.pay(&r, "k", test_cards::VISA).await.unwrap(),
        ReservationStatus::PaymentProcessing
    );
    assert_eq!(w.control.executions(), vec![r.reservation_id.to_string()]);
}

// ---------------------------------------------------------------------------------------------
// SagaSteps.

#[tokio::test]
async fn the_charge_step_for_each_card_and_state() {
    let w = world().await;
    // A visa succeeds at once: the intent recorded, nothing to wait for (AlreadyCharged sends
    // the definition to ReadCharge), and ReadCharge gives what the webhook would have.
    let ok = w.reservation("c-ok").await;
    w.pay(&ok, "k", test_cards::VISA).await.unwrap();
    assert_eq!(
        w.step(StepKind::Charge, &ok, test_cards::VISA, None).await,
        Err(et::ALREADY_CHARGED)
    );
    assert_eq!(w.intent_of(&ok).status, PaymentStatus::Succeeded);
    let read = w.step(StepKind::ReadCharge, &ok, "", None).await.unwrap();
    assert_eq!(read["amount_received"], PRICE);
    let token = w.records.record(ok.reservation_id).unwrap().charge_token;
    assert_eq!(token, Some(format!("token-{}", ok.reservation_id)));
    // A card still processing: the task waits for the webhook.
    let slow = w.reservation("c-slow").await;
    w.pay(&slow, "k", test_cards::SLOW).await.unwrap();
    let out = w
        .step(StepKind::Charge, &slow, test_cards::SLOW, None)
        .await
        .unwrap();
    assert_eq!(out["waiting_for"], "webhook");
    // ReadCharge of a charge that did not succeed is a decline, never an order.
    assert_eq!(
        w.step(StepKind::ReadCharge, &slow, "", None).await,
        Err(et::PAYMENT_DECLINED)
    );
    // A declined card: PaymentDeclined, the intent still recorded (for the compensation).
    let declined = w.reservation("c-declined").await;
    w.pay(&declined, "k", test_cards::DECLINED).await.unwrap();
    assert_eq!(
        w.step(StepKind::Charge, &declined, test_cards::DECLINED, None)
            .await,
        Err(et::PAYMENT_DECLINED)
    );
    assert!(w
        .records
        .record(declined.reservation_id)
        .unwrap()
        .payment_intent_id
        .is_some());
    // A reservation not being paid: not payable.
    let pending = w.reservation("c-pending").await;
    assert_eq!(
        w.step(StepKind::Charge, &pending, test_cards::VISA, None)
            .await,
        Err(et::RESERVATION_NOT_PAYABLE)
    );
    // The provider down: transient, retried by the definition.
    w.records.insert(Reservation {
        status: ReservationStatus::PaymentProcessing,
        ..pending.clone()
    });
    w.provider
        .fail_with(Some(PaymentError::Transient("down".into())));
    assert_eq!(
        w.step(StepKind::Charge, &pending, test_cards::VISA, None)
            .await,
        Err(et::PROVIDER_UNAVAILABLE)
    );
    w.provider.fail_with(None);
    // No token: a bug in the input, never retried.
    let bad = w
        .steps()
        .run(StepInput {
            step: StepKind::Charge,
            reservation_id: pending.reservation_id.to_string(),
            token: None,
            payment_method: None,
            charge: None,
        })
        .await;
    assert_eq!(bad.unwrap_err().error_type, et::INVALID_INPUT);
    // An unknown reservation or a malformed id: invalid input.
    let unknown = w
        .steps()
        .run(StepInput {
            step: StepKind::CommitHold,
            reservation_id: "not-a-uuid".into(),
            token: None,
            payment_method: None,
            charge: None,
        })
        .await;
    assert_eq!(unknown.unwrap_err().error_type, et::INVALID_INPUT);
}

#[tokio::test]
async fn the_order_step_confirms_once_and_refuses_what_does_not_add_up() {
    let w = world().await;
    let r = w.reservation("o1").await;
    w.pay(&r, "k", test_cards::VISA).await.unwrap();
    let _already = w.step(StepKind::Charge, &r, test_cards::VISA, None).await;
    let intent = w.intent_of(&r);
    let charge = |amount: u64| ChargeResult {
        payment_intent_id: intent.id.as_str().to_owned(),
        amount_received: amount,
    };
    // A charge of another amount is refused.
    assert_eq!(
        w.step(StepKind::CreateOrder, &r, "", Some(charge(1))).await,
        Err(et::ORDER_REJECTED)
    );
    // The store down: transient.
    w.records.inject("confirm_with_order", &[Fault::Fails]);
    assert_eq!(
        w.step(StepKind::CreateOrder, &r, "", Some(charge(PRICE as u64)))
            .await,
        Err(et::STORE_UNAVAILABLE)
    );
    // Committed but the answer lost, then retried: one order, the retry succeeds.
    w.records.inject("confirm_with_order", &[Fault::AnswerLost]);
    assert_eq!(
        w.step(StepKind::CreateOrder, &r, "", Some(charge(PRICE as u64)))
            .await,
        Err(et::STORE_UNAVAILABLE)
    );
    let out = w
        .step(StepKind::CreateOrder, &r, "", Some(charge(PRICE as u64)))
        .await
        .unwrap();
    assert_eq!(out["order_id"], format!("ord_{}", r.reservation_id));
    assert_eq!(w.records.orders().len(), 1);
    assert_eq!(w.status(&r), ReservationStatus::Confirmed);
    // A compensated reservation never gets an order.
    let failed = w.reservation("o2").await;
    w.pay(&failed, "k", test_cards::VISA).await.unwrap();
    w.records
        .mark_failed(failed.reservation_id, "States.Timeout");
    assert_eq!(
        w.step(
            StepKind::CreateOrder,
            &failed,
            "",
            Some(charge(PRICE as u64))
        )
        .await,
        Err(et::ORDER_REJECTED)
    );
    // CommitHold, twice (a retried step).
    for _ in 0..2 {
        assert_eq!(
            w.step(StepKind::CommitHold, &r, "", None).await.unwrap()["committed"],
            true
        );
    }
    let levels = w.stock.levels(&w.sale.stock()).await.unwrap();
    assert_eq!((levels.sold(), levels.held()), (1, 1));
}

#[tokio::test]
async fn the_compensations_refund_cancel_or_leave_to_the_webhook_and_release_once() {
    let w = world().await;
    let cases = [
        ("nothing", None, "nothing was charged"),
        ("succeeded", Some(test_cards::VISA), "refunded"),
        ("slow", Some(test_cards::SLOW), "still processing"),
        ("declined", Some(test_cards::DECLINED), "canceled now"),
    ];
    for (user, card, expect) in cases {
        let r = w.reservation(user).await;
        w.pay(&r, "k", card.unwrap_or(test_cards::VISA))
            .await
            .unwrap();
        if let Some(card) = card {
            // Visa ends AlreadyCharged, the decline PaymentDeclined, the slow card waits.
            let charged = w.step(StepKind::Charge, &r, card, None).await;
            let expected = match card {
                test_cards::VISA => Err(et::ALREADY_CHARGED),
                test_cards::DECLINED => Err(et::PAYMENT_DECLINED),
                _ => Ok(()),
            };
            assert_eq!(charged.map(|_| ()), expected, "{user}");
        }
        assert!(w.records.mark_failed(r.reservation_id, "PaymentDeclined"));
        let refunds_before = w.provider.refunds();
        let out = w.step(StepKind::Refund, &r, "", None).await.unwrap();
        let text = out.to_string();
        match expect {
            "refunded" => assert_eq!(out["refunded"], true, "{user}: {text}"),
            other => assert!(text.contains(other), "{user}: {text}"),
        }
        // Twice: the second refund answers the same and refunds nothing more.
        let again = w.step(StepKind::Refund, &r, "", None).await.unwrap();
        assert_eq!(again["refunded"], out["refunded"], "{user}: {again}");
        let expected_refunds = usize::from(expect == "refunded");
        assert_eq!(
            w.provider.refunds() - refunds_before,
            expected_refunds,
            "{user}"
        );
        // ReleaseHold, twice: the unit goes back once.
        for _ in 0..2 {
            w.step(StepKind::ReleaseHold, &r, "", None).await.unwrap();
        }
        if card == Some(test_cards::VISA) {
            assert!(w.provider.is_refunded(&w.intent_of(&r).id), "{user}");
        }
        let levels = w.stock.levels(&w.sale.stock()).await.unwrap();
        assert_eq!(levels.held(), 0, "{user}");
        assert_eq!(levels.available(), 10, "{user}");
    }
    // A CONFIRMED reservation's unit is never released.
    let kept = w.reservation("kept").await;
    w.records.insert(Reservation {
        status: ReservationStatus::Confirmed,
        ..kept.clone()
    });
    assert_eq!(
        w.step(StepKind::ReleaseHold, &kept, "", None).await,
        Err(et::HOLD_LOST)
    );
}

// ---------------------------------------------------------------------------------------------
// WebhookService.

fn event(id: &str, kind: &str, intent: &str, reservation: ReservationId, amount: i64) -> Vec<u8> {
    json!({
        "id": id,
        "type": kind,
        "data": { "object": {
            "id": intent,
            "object": "payment_intent",
            "amount_received": amount,
            "metadata": { "reservation_id": reservation.to_string() },
            "last_payment_error": { "code": "card_declined", "decline_code": "generic_decline" }
        }}
    })
    .to_string()
    .into_bytes()
}

async fn deliver(w: &World, body: &[u8]) -> Result<WebhookOutcome, WebhookError> {
    let header = sign(&secret(), w.clock.now().as_secs(), body);
    w.webhooks().receive(Some(&header), body).await
}

#[tokio::test]
async fn the_webhook_resumes_the_waiting_charge_once_and_refunds_a_late_success() {
    let w = world().await;
    // A charge still processing: the task waits for the webhook; then the money arrives.
    let r = w.reservation("wh1").await;
    w.pay(&r, "k", test_cards::SLOW).await.unwrap();
    w.step(StepKind::Charge, &r, test_cards::SLOW, None)
        .await
        .unwrap();
    w.provider
        .settle(&w.intent_of(&r).id, PaymentStatus::Succeeded);
    let token = w
        .records
        .record(r.reservation_id)
        .unwrap()
        .charge_token
        .unwrap();
    w.control.open_task(&token);
    let intent = w.intent_of(&r);
    let succeeded = event(
        "evt_1",
        "payment_intent.succeeded",
        intent.id.as_str(),
        r.reservation_id,
        PRICE,
    );
    // Resumes the task with what CreateOrder needs.
    assert_eq!(
        deliver(&w, &succeeded).await.unwrap(),
        WebhookOutcome::Handled("saga resumed")
    );
    let resumed = w.control.resumed();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].1.as_ref().unwrap()["amount_received"], PRICE);
    // A duplicate delivery is acknowledged and changes nothing.
    assert_eq!(
        deliver(&w, &succeeded).await.unwrap(),
        WebhookOutcome::Duplicate
    );
    assert_eq!(w.control.resumed().len(), 1);
    // A success for a reservation the saga already compensated is refunded.
    let late = w.reservation("wh2").await;
    w.pay(&late, "k", test_cards::SLOW).await.unwrap();
    w.step(StepKind::Charge, &late, test_cards::SLOW, None)
        .await
        .unwrap();
    w.records.mark_failed(late.reservation_id, "States.Timeout");
    w.provider
        .settle(&w.intent_of(&late).id, PaymentStatus::Succeeded);
    let late_intent = w.intent_of(&late);
    let body = event(
        "evt_2",
        "payment_intent.succeeded",
        late_intent.id.as_str(),
        late.reservation_id,
        PRICE,
    );
    assert_eq!(
        deliver(&w, &body).await.unwrap(),
        WebhookOutcome::Handled("late charge refunded")
    );
    let id = PaymentIntentId::parse(late_intent.id.as_str()).unwrap();
    assert!(w.provider.is_refunded(&id));
    // Delivered again: refunded once, not twice.
    let again = event(
        "evt_2b",
        "payment_intent.succeeded",
        late_intent.id.as_str(),
        late.reservation_id,
        PRICE,
    );
    deliver(&w, &again).await.unwrap();
    assert_eq!(w.provider.refunds(), 1);
}

#[tokio::test]
async fn the_webhook_tells_declines_asks_for_redelivery_when_early_and_refuses_bad_signatures() {
    let w = world().await;
    let r = w.reservation("wh3").await;
    w.pay(&r, "k", test_cards::SLOW).await.unwrap();
    // Before the Charge step stored its token: retry later (the provider redelivers).
    let early = event(
        "evt_3",
        "payment_intent.succeeded",
        "pi_x",
        r.reservation_id,
        PRICE,
    );
    assert!(matches!(
        deliver(&w, &early).await,
        Err(WebhookError::RetryLater(_))
    ));
    // A decline fails the waiting task.
    w.step(StepKind::Charge, &r, test_cards::SLOW, None)
        .await
        .unwrap();
    let token = w
        .records
        .record(r.reservation_id)
        .unwrap()
        .charge_token
        .unwrap();
    w.control.open_task(&token);
    let failed = event(
        "evt_4",
        "payment_intent.payment_failed",
        "pi_x",
        r.reservation_id,
        0,
    );
    assert_eq!(
        deliver(&w, &failed).await.unwrap(),
        WebhookOutcome::Handled("saga told: declined")
    );
    assert_eq!(
        w.control.resumed()[0].1,
        Err(et::PAYMENT_DECLINED.to_owned())
    );
    // Unknown event types and foreign payments are acknowledged, never acted on.
    let other = event("evt_5", "charge.refunded", "pi_x", r.reservation_id, 0);
    assert!(matches!(
        deliver(&w, &other).await.unwrap(),
        WebhookOutcome::Ignored(_)
    ));
    // A wrong signature is refused; a missing one too.
    let header = sign(
        &WebhookSecret::new("whsec_other").unwrap(),
        w.clock.now().as_secs(),
        &other,
    );
    assert!(matches!(
        w.webhooks().receive(Some(&header), &other).await,
        Err(WebhookError::Signature(_))
    ));
    assert!(matches!(
        w.webhooks().receive(None, &other).await,
        Err(WebhookError::Signature(_))
    ));
}

#[tokio::test]
async fn a_charge_still_processing_at_compensation_is_rechecked_until_it_settles_then_refunded() {
    // GIVEN a payment whose charge is still processing when the saga gives up on it (timeout)
    let w = world().await;
    let r = w.reservation("slowpoke").await;
    w.pay(&r, "k", test_cards::SLOW).await.unwrap();
    w.step(StepKind::Charge, &r, test_cards::SLOW, None)
        .await
        .unwrap();
    w.records.mark_failed(r.reservation_id, "States.Timeout");
    // WHEN the compensation's Refund step runs while it is still processing
    let first = w
        .step(StepKind::Refund, &r, test_cards::SLOW, None)
        .await
        .unwrap();
    // THEN it says so (the definition waits and asks again: ChargeStillProcessing)
    assert_eq!(first["pending"], true, "{first}");
    assert_eq!(w.provider.refunds(), 0);
    // AND once it has succeeded (its webhook lost for good), the recheck refunds it
    let intent = w.intent_of(&r).id;
    w.provider.settle(&intent, PaymentStatus::Succeeded);
    let again = w
        .step(StepKind::Refund, &r, test_cards::SLOW, None)
        .await
        .unwrap();
    assert_eq!(again["refunded"], true, "{again}");
    assert!(w.provider.is_refunded(&intent));
    assert!(again.get("pending").is_none());
}

#[tokio::test]
async fn a_charge_processing_past_the_settle_limit_is_handed_to_a_person() {
    let w = world().await;
    let r = w.reservation("forever").await;
    w.pay(&r, "k", test_cards::SLOW).await.unwrap();
    w.step(StepKind::Charge, &r, test_cards::SLOW, None)
        .await
        .unwrap();
    w.records.mark_failed(r.reservation_id, "States.Timeout");
    w.clock
        .advance(flashsale_core::saga::steps::CHARGE_SETTLE_LIMIT + Duration::from_secs(1));
    let gave_up = w.step(StepKind::Refund, &r, test_cards::SLOW, None).await;
    assert_eq!(gave_up.unwrap_err(), et::CHARGE_UNSETTLED);
}
