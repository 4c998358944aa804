//! Every DynamoDB and Step Functions adapter under the faults AWS really returns, injected by a
//! fault proxy (testkit::fault_proxy) in front of LocalStack: throttling, transactions cancelled
//! for throttling or conflicts, 5xx, and calls that commit but whose answer is lost (the SDK
//! then retries, and the retry meets its own effect). Only a failed condition is a business
//! outcome; everything else is retried, and a retry that finds its own earlier write succeeds.
//! Compiled only with `--features localstack-tests`.
#![cfg(feature = "localstack-tests")]

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use common::*;
use flashsale_core::domain::{
    Currency, Money, Quantity, ReservationId, SaleId, SystemClock, Timestamp,
};
use flashsale_core::expiry::dynamo::{DynamoExpiryStore, ExpiryWrites};
use flashsale_core::expiry::{ExpireOutcome, ExpiryStore};
use flashsale_core::reconcile::dynamo::DynamoDurableRecords;
use flashsale_core::reconcile::DurableRecords;
use flashsale_core::reservation::dynamo::DynamoReservationStore;
use flashsale_core::reservation::{
    InsertOutcome, Reservation, ReservationStatus, ReservationStore,
};
use flashsale_core::saga::control::{SagaControl, Started};
use flashsale_core::saga::dynamo::{DynamoCheckoutRecords, DynamoWebhookEventLog};
use flashsale_core::saga::records::{BeginPayment, CheckoutRecords, ConfirmOutcome, Order};
use flashsale_core::saga::sfn::StepFunctionsControl;
use flashsale_core::saga::webhook::{Claim, WebhookEventLog};
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::sale::put::put_sale;
use flashsale_core::sale::SaleCatalog;
use flashsale_core::stock::memory::InMemoryStockEngine;
use testkit::dynamo::{localstack_client, Tables, LOCALSTACK};
use testkit::fault_proxy::{Fault, FaultProxy, Rule};
use testkit::fixtures::OpenSale;

async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "faults",
        ))
        .load()
        .await
}

struct World {
    proxy: FaultProxy,
    tables: Tables,
    /// Through the proxy.
    faulty: Client,
}

async fn world(prefix: &str) -> World {
    let direct = localstack_client().await;
    let tables = Tables::create(&direct, prefix).await;
    let proxy = FaultProxy::start(LOCALSTACK).await;
    let faulty = Client::new(&sdk_config(&proxy.url()).await);
    World {
        proxy,
        tables,
        faulty,
    }
}

fn reservation(sale: &SaleId, status: ReservationStatus, expires_in: i64) -> Reservation {
    let now = now();
    Reservation {
        reservation_id: ReservationId::new(),
        sale_id: sale.clone(),
        user_id: user("alice"),
        quantity: Quantity::ONE,
        shard: 0,
        status,
        amount: Money::new(1_500, Currency::parse("EUR").unwrap()).unwrap(),
        created_at: now,
        expires_at: Timestamp::from_millis(now.as_millis() + expires_in),
    }
}

#[tokio::test]
async fn a_reservation_insert_survives_throttling_5xx_and_a_lost_answer() {
    let w = world("flt-insert").await;
    let store = DynamoReservationStore::new(w.faulty.clone(), &w.tables.reservations);
    let sale = unique_sale("flt");
    // Throttled twice, then a 500: retried until it lands.
    w.proxy
        .add(Rule::next("PutItem", 2, Fault::dynamodb_throttling()));
    w.proxy
        .add(Rule::next("PutItem", 1, Fault::dynamodb_server_error()));
    let r = reservation(&sale, ReservationStatus::Pending, 600_000);
    assert_eq!(
        store.insert_pending(&r).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(w.proxy.calls("PutItem"), (4, 3));
    // Committed but the answer lost: the retry finds its own record (never an error, never two).
    w.proxy.add(Rule::next("PutItem", 1, Fault::AnswerLost));
    let r2 = reservation(&sale, ReservationStatus::Pending, 600_000);
    assert_eq!(
        store.insert_pending(&r2).await.unwrap(),
        InsertOutcome::AlreadyExists
    );
    assert_eq!(store.get(r2.reservation_id).await.unwrap(), Some(r2));
    w.tables.delete().await;
}

#[tokio::test]
async fn the_order_transaction_is_retried_when_throttled_or_conflicting_and_never_read_as_refused()
{
    let w = world("flt-order").await;
    let records =
        DynamoCheckoutRecords::new(w.faulty.clone(), &w.tables.reservations, &w.tables.orders);
    let store = DynamoReservationStore::new(w.faulty.clone(), &w.tables.reservations);
    let sale = unique_sale("flt");
    let mut confirmed = Vec::new();
    for reasons in [
        &["None", "ThrottlingError"][..],
        &["TransactionConflict", "None"][..],
        &["ProvisionedThroughputExceeded", "None"][..],
    ] {
        let r = reservation(&sale, ReservationStatus::Pending, 600_000);
        store.insert_pending(&r).await.unwrap();
        assert_eq!(
            records
                .begin_payment(r.reservation_id, &r.user_id, "k", "pm_card_visa", now())
                .await
                .unwrap(),
            BeginPayment::Started
        );
        let record = records.get(r.reservation_id).await.unwrap().unwrap();
        let order = Order {
            order_id: format!("ord_{}", r.reservation_id),
            reservation_id: r.reservation_id,
            payment_intent_id: "pi_1".into(),
            amount: r.amount,
            created_at: now(),
        };
        // WHEN the transaction is cancelled twice for this reason, then goes through
        w.proxy.add(Rule::next(
            "TransactWriteItems",
            2,
            Fault::transaction_cancelled(reasons),
        ));
        // THEN it is confirmed, not "no longer being paid" (which would refund a good payment)
        assert_eq!(
            records.confirm_with_order(&record, &order).await.unwrap(),
            ConfirmOutcome::Confirmed,
            "{reasons:?}"
        );
        confirmed.push((record, order));
    }
    // Six cancellations were injected and every one was retried.
    let (calls, faulted) = w.proxy.calls("TransactWriteItems");
    assert_eq!((calls, faulted), (9, 6));
    // A failed condition is the business outcome: a reservation no longer PAYMENT_PROCESSING.
    let (record, order) = &confirmed[0];
    w.proxy.add(Rule::next(
        "TransactWriteItems",
        1,
        Fault::transaction_cancelled(&["None", "ConditionalCheckFailed"]),
    ));
    // (It is CONFIRMED already, so the re-read says which.)
    assert_eq!(
        records.confirm_with_order(record, order).await.unwrap(),
        ConfirmOutcome::AlreadyConfirmed
    );
    // Committed, answer lost: the retry (with the same ClientRequestToken and parameters) is
    // answered as the first call's success or meets its own order.
    let r = reservation(&sale, ReservationStatus::Pending, 600_000);
    store.insert_pending(&r).await.unwrap();
    records
        .begin_payment(r.reservation_id, &r.user_id, "k", "pm_card_visa", now())
        .await
        .unwrap();
    let record = records.get(r.reservation_id).await.unwrap().unwrap();
    let order = Order {
        order_id: format!("ord_{}", r.reservation_id),
        reservation_id: r.reservation_id,
        payment_intent_id: "pi_2".into(),
        amount: r.amount,
        created_at: now(),
    };
    w.proxy
        .add(Rule::next("TransactWriteItems", 1, Fault::AnswerLost));
    let outcome = records.confirm_with_order(&record, &order).await.unwrap();
    assert!(
        matches!(
            outcome,
            ConfirmOutcome::Confirmed | ConfirmOutcome::AlreadyConfirmed
        ),
        "{outcome:?}"
    );
    assert_eq!(
        records
            .get(r.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .reservation
            .status,
        ReservationStatus::Confirmed
    );
    w.tables.delete().await;
}

#[tokio::test]
async fn begin_payment_whose_answer_was_lost_leaves_the_buyers_own_payment_in_place() {
    let w = world("flt-begin").await;
    let records =
        DynamoCheckoutRecords::new(w.faulty.clone(), &w.tables.reservations, &w.tables.orders);
    let store = DynamoReservationStore::new(w.faulty.clone(), &w.tables.reservations);
    let r = reservation(&unique_sale("flt"), ReservationStatus::Pending, 600_000);
    store.insert_pending(&r).await.unwrap();
    w.proxy.add(Rule::next("UpdateItem", 1, Fault::AnswerLost));
    // The retried conditional write fails its condition (the first one committed)...
    let begun = records
        .begin_payment(
            r.reservation_id,
            &r.user_id,
            "pay-key",
            "pm_card_visa",
            now(),
        )
        .await
        .unwrap();
    assert_eq!(begun, BeginPayment::Refused);
    // ...and the record shows the buyer's own key, which the intake recognises as its own.
    let record = records.get(r.reservation_id).await.unwrap().unwrap();
    assert_eq!(
        record.reservation.status,
        ReservationStatus::PaymentProcessing
    );
    assert_eq!(record.payment_key.as_deref(), Some("pay-key"));
    assert_eq!(record.saga_attempt, 1);
    w.tables.delete().await;
}

#[tokio::test]
async fn expiry_writes_whose_answer_was_lost_still_release_the_units() {
    let w = world("flt-expiry").await;
    let store = DynamoReservationStore::new(w.faulty.clone(), &w.tables.reservations);
    let sale = unique_sale("flt");
    for writes in [
        ExpiryWrites::PerItem,
        ExpiryWrites::Transact(100),
        ExpiryWrites::Partiql(25),
    ] {
        let expiry = DynamoExpiryStore::new(w.faulty.clone(), &w.tables.reservations, writes);
        let due: Vec<Reservation> = (0..3)
            .map(|_| reservation(&sale, ReservationStatus::Pending, -1_000))
            .collect();
        for r in &due {
            store.insert_pending(r).await.unwrap();
        }
        let ids: Vec<ReservationId> = due.iter().map(|r| r.reservation_id).collect();
        for target in ["UpdateItem", "TransactWriteItems", "BatchExecuteStatement"] {
            w.proxy.add(Rule::next(target, 1, Fault::AnswerLost));
        }
        let outcomes = expiry.expire(&ids, now()).await;
        w.proxy.heal();
        assert!(
            ["UpdateItem", "TransactWriteItems", "BatchExecuteStatement"]
                .iter()
                .map(|t| w.proxy.calls(t).1)
                .sum::<usize>()
                >= 1,
            "no fault reached the store"
        );
        // Every write committed once; the retries meet EXPIRED records and count them expired,
        // so the cleanup releases their units now rather than leaving them to the reconciler.
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(ExpireOutcome::Expired))),
            "{writes:?}: {outcomes:?}"
        );
        // And throttling is retried, not read as "a payment claimed it".
        let more: Vec<Reservation> = (0..2)
            .map(|_| reservation(&sale, ReservationStatus::Pending, -1_000))
            .collect();
        for r in &more {
            store.insert_pending(r).await.unwrap();
        }
        for target in ["UpdateItem", "TransactWriteItems", "BatchExecuteStatement"] {
            w.proxy
                .add(Rule::next(target, 1, Fault::dynamodb_throttling()));
        }
        let ids: Vec<ReservationId> = more.iter().map(|r| r.reservation_id).collect();
        let outcomes = expiry.expire(&ids, now()).await;
        w.proxy.heal();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(ExpireOutcome::Expired))),
            "{writes:?}: {outcomes:?}"
        );
    }
    w.tables.delete().await;
}

#[tokio::test]
async fn the_reconcilers_writes_recognise_their_own_lost_answers() {
    let w = world("flt-reconcile").await;
    let store = DynamoReservationStore::new(w.faulty.clone(), &w.tables.reservations);
    let records =
        DynamoDurableRecords::new(w.faulty.clone(), &w.tables.reservations, &w.tables.orders);
    let r = reservation(&unique_sale("flt"), ReservationStatus::Pending, 600_000);
    store.insert_pending(&r).await.unwrap();
    w.proxy.add(Rule::next("UpdateItem", 1, Fault::AnswerLost));
    assert!(records
        .fail_pending(r.reservation_id, "stock_lost", now())
        .await
        .unwrap());
    // A second call is a genuine "not PENDING any more" (another reason).
    assert!(!records
        .fail_pending(r.reservation_id, "other", now())
        .await
        .unwrap());
    let orphan = reservation(&unique_sale("flt"), ReservationStatus::Expired, 0);
    w.proxy.add(Rule::next("PutItem", 1, Fault::AnswerLost));
    assert_eq!(
        records.record_orphan(&orphan, now()).await.unwrap(),
        InsertOutcome::AlreadyExists
    );
    w.tables.delete().await;
}

#[tokio::test]
async fn the_webhook_event_log_and_the_sale_catalog_retry_and_recognise_their_writes() {
    let w = world("flt-misc").await;
    let direct = localstack_client().await;
    // The webhook-events table (key event_id).
    let events_table = format!("{}-events", w.tables.sales);
    direct
        .create_table()
        .table_name(&events_table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("event_id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("event_id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let log = DynamoWebhookEventLog::new(w.faulty.clone(), &events_table);
    w.proxy
        .add(Rule::next("PutItem", 2, Fault::dynamodb_server_error()));
    assert_eq!(
        log.claim("evt_1", "payment_intent.succeeded", now())
            .await
            .unwrap(),
        Claim::New
    );
    // A claim whose answer was lost reads back as unfinished (handled again, idempotently).
    w.proxy.add(Rule::next("PutItem", 1, Fault::AnswerLost));
    assert_eq!(
        log.claim("evt_2", "payment_intent.succeeded", now())
            .await
            .unwrap(),
        Claim::Unfinished
    );
    log.complete("evt_2", "handled").await.unwrap();
    assert_eq!(log.claim("evt_2", "x", now()).await.unwrap(), Claim::Done);

    // A new sale whose create answer was lost is recognised as created by the same PUT.
    let catalog = DynamoSaleCatalog::new(w.faulty.clone(), &w.tables.sales);
    let stock = InMemoryStockEngine::default();
    let now = now();
    let sale = OpenSale::new(unique_sale("flt-sale"), 10)
        .shards(2)
        .price(900)
        .opened_ago(Duration::ZERO)
        .at(now);
    w.proxy.add(Rule::next("PutItem", 1, Fault::AnswerLost));
    let outcome = put_sale(&catalog, &stock, &SystemClock, sale.clone())
        .await
        .unwrap();
    assert!(outcome.created);
    assert_eq!(
        catalog
            .get(&sale.sale_id)
            .await
            .unwrap()
            .unwrap()
            .total_stock,
        10
    );
    let _ = direct.delete_table().table_name(&events_table).send().await;
    w.tables.delete().await;
}

#[tokio::test]
async fn starting_a_saga_survives_a_5xx_and_a_lost_answer_without_a_second_execution() {
    let direct = aws_sdk_sfn::Client::new(&sdk_config(LOCALSTACK).await);
    let name = format!("flt-{}", uuid::Uuid::now_v7().simple());
    let machine = direct
        .create_state_machine()
        .name(&name)
        .role_arn("arn:aws:iam::000000000000:role/flt")
        .definition(
            r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":30,"End":true}}}"#,
        )
        .send()
        .await
        .unwrap();
    let proxy = FaultProxy::start(LOCALSTACK).await;
    let control = StepFunctionsControl::new(
        aws_sdk_sfn::Client::new(&sdk_config(&proxy.url()).await),
        machine.state_machine_arn(),
    );
    let input = serde_json::json!({"reservation_id": "r"});
    proxy.add(Rule::next(
        "StartExecution",
        1,
        Fault::states_server_error(),
    ));
    assert_eq!(
        control.start("exec-1", &input).await.unwrap(),
        Started::Started
    );
    // The call starts the execution but its answer is lost: the SDK's retry meets the
    // execution by name, which the adapter reports as already started (never two).
    proxy.add(Rule::next("StartExecution", 1, Fault::AnswerLost));
    let again = control.start("exec-2", &input).await.unwrap();
    assert!(
        matches!(&again, Started::Started | Started::AlreadyStarted { .. }),
        "{again:?}"
    );
    let executions = direct
        .list_executions()
        .state_machine_arn(machine.state_machine_arn())
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = executions.executions().iter().map(|e| e.name()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "exec-2").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        control.describe("exec-2").await.unwrap(),
        flashsale_core::saga::control::ExecutionState::Running
    );
    assert_eq!(
        control.describe("never-started").await.unwrap(),
        flashsale_core::saga::control::ExecutionState::NotFound
    );
    let _ = direct
        .delete_state_machine()
        .state_machine_arn(machine.state_machine_arn())
        .send()
        .await;
}

/// The notifications log's writes (claim, attempt, release, finish) on LocalStack's DynamoDB
/// behind the fault proxy: each run twice, with its answer lost, or cut half-way by a lease
/// that ran out, leaves one notification sent at most once.
#[tokio::test]
async fn the_notifications_log_holds_when_a_write_runs_twice_or_loses_its_answer() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    use flashsale_core::notify::dynamo::DynamoNotificationLog;
    use flashsale_core::notify::{Claim as Notice, Finished, NotificationLog};

    let w = world("flt-notify").await;
    let direct = localstack_client().await;
    let table = format!("flt-notifications-{}", uuid::Uuid::now_v7().simple());
    direct
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("notification_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("notification_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let log = DynamoNotificationLog::new(w.faulty.clone(), &table);
    let lease = Duration::from_secs(60);
    let t0 = now();

    // A claim whose answer is lost: the retry finds its own claim (by token), not a rival's.
    w.proxy.add(Rule::next("PutItem", 1, Fault::AnswerLost));
    assert_eq!(
        log.claim("e1#email", "a", t0, lease).await.unwrap(),
        Notice::Claimed
    );
    // Another delivery meanwhile: busy; the same claim again: still ours.
    assert_eq!(
        log.claim("e1#email", "b", t0, lease).await.unwrap(),
        Notice::Busy
    );
    assert_eq!(
        log.claim("e1#email", "a", t0, lease).await.unwrap(),
        Notice::Claimed
    );
    // The attempt's answer is lost: the retry reads back that it is ours to send.
    w.proxy.add(Rule::next("UpdateItem", 1, Fault::AnswerLost));
    assert!(log.attempt("e1#email", "a").await.unwrap());
    // Attempted: never claimed again, not even after the lease (at most once).
    let later = t0.plus(lease * 3);
    assert_eq!(
        log.claim("e1#email", "b", later, lease).await.unwrap(),
        Notice::Done
    );
    // Finishing twice, the first answer lost: sent, once.
    w.proxy.add(Rule::next("UpdateItem", 1, Fault::AnswerLost));
    log.finish("e1#email", "a", Finished::Sent).await.unwrap();
    log.finish("e1#email", "a", Finished::Sent).await.unwrap();
    assert_eq!(
        log.claim("e1#email", "c", later, lease).await.unwrap(),
        Notice::Done
    );

    // Cut half-way: a claim whose holder died before its attempt is taken over once the lease
    // ran out, and the dead holder can no longer attempt or finish it.
    assert_eq!(
        log.claim("e2#email", "dead", t0, lease).await.unwrap(),
        Notice::Claimed
    );
    assert_eq!(
        log.claim("e2#email", "next", later, lease).await.unwrap(),
        Notice::Claimed
    );
    assert!(!log.attempt("e2#email", "dead").await.unwrap());
    log.finish("e2#email", "dead", Finished::Sent)
        .await
        .unwrap();
    assert!(log.attempt("e2#email", "next").await.unwrap());

    // A release (the provider refused for now) run twice, the first answer lost: the next
    // delivery claims at once.
    assert_eq!(
        log.claim("e3#email", "a", t0, lease).await.unwrap(),
        Notice::Claimed
    );
    assert!(log.attempt("e3#email", "a").await.unwrap());
    w.proxy.add(Rule::next("DeleteItem", 1, Fault::AnswerLost));
    log.release("e3#email", "a").await.unwrap();
    log.release("e3#email", "a").await.unwrap();
    assert_eq!(
        log.claim("e3#email", "b", t0, lease).await.unwrap(),
        Notice::Claimed
    );

    let _ = direct.delete_table().table_name(&table).send().await;
    w.tables.delete().await;
}

/// A reservation written with its buyer's email, the answer lost: the retry finds its own
/// record, email and all.
#[tokio::test]
async fn a_reservation_with_an_email_survives_a_lost_answer() {
    let w = world("flt-email").await;
    let store = DynamoReservationStore::new(w.faulty.clone(), &w.tables.reservations);
    let r = reservation(&unique_sale("flt"), ReservationStatus::Pending, 600_000);
    w.proxy.add(Rule::next("PutItem", 1, Fault::AnswerLost));
    assert_eq!(
        store
            .insert_pending_with_email(&r, Some("ann@buyers.flashsale.test"))
            .await
            .unwrap(),
        InsertOutcome::AlreadyExists
    );
    let item = localstack_client()
        .await
        .get_item()
        .table_name(&w.tables.reservations)
        .key(
            "reservation_id",
            aws_sdk_dynamodb::types::AttributeValue::S(r.reservation_id.to_string()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let item = item.item().unwrap();
    assert_eq!(item["email"].as_s().unwrap(), "ann@buyers.flashsale.test");
    w.tables.delete().await;
}
