//! The reservation record's one home: its DynamoDB item (attribute and index names, the
//! buckets that keep indexes free of hot partitions), the projections read from it, and the
//! status transitions with the condition each write puts on them. Every adapter that touches a
//! reservation item (reserve, saga, expiry, reconcile) and the state machine's direct DynamoDB
//! steps use these names; `tests/saga_definition.rs` checks the ASL against [`TRANSITIONS`].
//!
//! ```text
//!            insert (reserve)                 begin_payment (pay intake)
//!   (none) ─────────────────▶ PENDING ───────────────────────────▶ PAYMENT_PROCESSING
//!   (none) ─▶ EXPIRED          │  │ expire (cleanup)                 │         │
//!   (orphan hold, reconciler)  │  └──────────────▶ EXPIRED           │         │ mark_failed
//!                              │ fail_pending (stock lost)   confirm │         ▼ (saga, ASL)
//!                              └──────────────▶ FAILED   CONFIRMED ◀─┘       FAILED
//! ```

use std::time::Duration;

use super::{Reservation, ReservationStatus};
use crate::domain::{Currency, Money, Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::store::item::{self, num, str, Item};

/// Attribute names of the reservations table.
pub mod attr {
    pub const RESERVATION_ID: &str = "reservation_id";
    pub const SALE_ID: &str = "sale_id";
    pub const USER_ID: &str = "user_id";
    pub const QUANTITY: &str = "quantity";
    pub const SHARD: &str = "shard";
    pub const STATUS: &str = "status";
    pub const AMOUNT_MINOR: &str = "amount_minor";
    pub const CURRENCY: &str = "currency";
    /// ms since epoch.
    pub const CREATED_AT: &str = "created_at";
    /// ms since epoch.
    pub const EXPIRES_AT: &str = "expires_at";
    /// seconds since epoch: DynamoDB's TTL deletes the item a while after.
    pub const TTL: &str = "ttl";
    /// Partition key of [`super::index::PENDING_BY_EXPIRY`]; present only while PENDING.
    pub const EXPIRY_BUCKET: &str = "expiry_bucket";
    /// Partition key of [`super::index::BY_SALE`]: `<sale>#<nn>`.
    pub const SALE_BUCKET: &str = "sale_bucket";
    // The payment (saga) attributes.
    pub const PAYMENT_KEY: &str = "payment_key";
    pub const PAYMENT_METHOD: &str = "payment_method";
    /// ms since epoch.
    pub const PAYMENT_STARTED_AT: &str = "payment_started_at";
    /// The saga execution's attempt number (its name is `<reservation id>-<attempt>`).
    pub const SAGA_ATTEMPT: &str = "saga_attempt";
    pub const CHARGE_TOKEN: &str = "charge_token";
    pub const PAYMENT_INTENT_ID: &str = "payment_intent_id";
    pub const ORDER_ID: &str = "order_id";
    pub const CONFIRMED_AT: &str = "confirmed_at";
    pub const FAILURE_REASON: &str = "failure_reason";
    pub const FAILED_AT: &str = "failed_at";
    pub const EXPIRED_AT: &str = "expired_at";
    /// Why a process other than the request's wrote or closed the record (see [`super::reconciled`]).
    pub const RECONCILED: &str = "reconciled";
    /// The buyer's email address, from the identity at reserve (absent when it had none).
    pub const EMAIL: &str = "email";
}

/// Values of the `reconciled` attribute.
pub mod reconciled {
    /// A tombstone: the reserve's durable write failed and its hold was rolled back; the buyer
    /// was answered 503.
    pub const ROLLED_BACK: &str = "rolled_back";
    /// A tombstone: the hold reconciler found a hold no record backed (its reserve died before
    /// writing) and closed its id before releasing it; the buyer was never answered 201.
    pub const ORPHAN_HOLD: &str = "orphan_hold";
    /// Records whose buyer never had a reservation: a replay of their key is refused.
    pub const TOMBSTONES: [&str; 2] = [ROLLED_BACK, ORPHAN_HOLD];
}

/// Index names of the reservations table (see infra/lib/data.ts).
pub mod index {
    /// Sparse: PENDING reservations by expiry (partition `expiry_bucket`, sort `expires_at`).
    pub const PENDING_BY_EXPIRY: &str = "pending-by-expiry";
    /// Every reservation of a sale (partition `sale_bucket`, sort `reservation_id`).
    pub const BY_SALE: &str = "by-sale-bucketed";
}

/// How many index partitions PENDING reservations are spread over.
pub const EXPIRY_BUCKETS: u32 = 16;
/// How many index partitions one sale's reservations are spread over. A DynamoDB partition
/// takes about 1,000 writes per second (developer guide, "Partitions and data distribution"),
/// and a GSI that cannot keep up throttles the table's writes: a flash sale writing thousands
/// of reservations a second under one sale id would throttle reserve itself.
pub const SALE_BUCKETS: u32 = 16;
/// How long a finished record stays before DynamoDB's TTL removes it.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn spread(id: ReservationId, buckets: u32) -> u32 {
    id.to_string()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % buckets
}

/// `b00`..`b15`: the reservation's partition in the expiry index.
pub fn expiry_bucket(id: ReservationId) -> String {
    format!("b{:02}", spread(id, EXPIRY_BUCKETS))
}

/// `<sale>#00`..`<sale>#15`: the reservation's partition in the by-sale index.
pub fn sale_bucket(sale: &SaleId, id: ReservationId) -> String {
    format!("{sale}#{:02}", spread(id, SALE_BUCKETS))
}

/// Every by-sale partition of a sale.
pub fn sale_buckets(sale: &SaleId) -> impl Iterator<Item = String> + '_ {
    (0..SALE_BUCKETS).map(move |b| format!("{sale}#{b:02}"))
}

/// The whole item of a new record.
pub fn to_item(r: &Reservation) -> Item {
    let mut item = Item::from([
        (
            attr::RESERVATION_ID.into(),
            str(r.reservation_id.to_string()),
        ),
        (attr::SALE_ID.into(), str(r.sale_id.as_str())),
        (
            attr::SALE_BUCKET.into(),
            str(sale_bucket(&r.sale_id, r.reservation_id)),
        ),
        (attr::USER_ID.into(), str(r.user_id.as_str())),
        (attr::QUANTITY.into(), num(r.quantity.get())),
        (attr::SHARD.into(), num(r.shard)),
        (attr::STATUS.into(), str(r.status.as_str())),
        (attr::AMOUNT_MINOR.into(), num(r.amount.amount_minor)),
        (attr::CURRENCY.into(), str(r.amount.currency.as_str())),
        (attr::CREATED_AT.into(), num(r.created_at.as_millis())),
        (attr::EXPIRES_AT.into(), num(r.expires_at.as_millis())),
        (
            attr::TTL.into(),
            num(r.expires_at.plus(RETENTION).as_secs()),
        ),
    ]);
    if r.status == ReservationStatus::Pending {
        item.insert(
            attr::EXPIRY_BUCKET.into(),
            str(expiry_bucket(r.reservation_id)),
        );
    }
    item
}

/// The status attribute of an item.
pub fn status_of(item: &Item) -> Result<ReservationStatus, String> {
    let raw = item::s(item, attr::STATUS)?;
    ReservationStatus::parse(&raw).ok_or_else(|| format!("unknown status {raw}"))
}

impl TryFrom<&Item> for Reservation {
    type Error = String;

    fn try_from(item: &Item) -> Result<Self, String> {
        let currency =
            Currency::parse(&item::s(item, attr::CURRENCY)?).map_err(|e| e.to_string())?;
        Ok(Reservation {
            reservation_id: ReservationId::parse(&item::s(item, attr::RESERVATION_ID)?)
                .map_err(|e| e.to_string())?,
            sale_id: SaleId::parse(item::s(item, attr::SALE_ID)?).map_err(|e| e.to_string())?,
            user_id: UserId::parse(item::s(item, attr::USER_ID)?).map_err(|e| e.to_string())?,
            quantity: Quantity::new(item::n(item, attr::QUANTITY)?).map_err(|e| e.to_string())?,
            shard: item::n(item, attr::SHARD)?,
            status: status_of(item)?,
            amount: Money::new(item::n(item, attr::AMOUNT_MINOR)?, currency)
                .map_err(|e| e.to_string())?,
            created_at: Timestamp::from_millis(item::n(item, attr::CREATED_AT)?),
            expires_at: Timestamp::from_millis(item::n(item, attr::EXPIRES_AT)?),
        })
    }
}

/// A reservation as the by-sale index shows it: enough to count it, re-create its hold, and
/// see whether a payment of it is stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationSummary {
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub shard: u16,
    pub status: ReservationStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// While PAYMENT_PROCESSING: when the payment was asked for.
    pub payment_started_at: Option<Timestamp>,
}

impl ReservationSummary {
    /// PENDING or PAYMENT_PROCESSING: the units are held.
    pub fn is_held(&self) -> bool {
        self.status.is_held()
    }

    /// The attributes the by-sale index projects (infra/lib/data.ts `BY_SALE_PROJECTION`).
    pub const PROJECTION: [&'static str; 8] = [
        attr::RESERVATION_ID,
        attr::USER_ID,
        attr::QUANTITY,
        attr::SHARD,
        attr::STATUS,
        attr::CREATED_AT,
        attr::EXPIRES_AT,
        attr::PAYMENT_STARTED_AT,
    ];
}

impl From<&Reservation> for ReservationSummary {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.reservation_id,
            user_id: r.user_id.clone(),
            quantity: r.quantity,
            shard: r.shard,
            status: r.status,
            created_at: r.created_at,
            expires_at: r.expires_at,
            payment_started_at: None,
        }
    }
}

impl TryFrom<&Item> for ReservationSummary {
    type Error = String;

    fn try_from(raw: &Item) -> Result<Self, String> {
        Ok(Self {
            reservation_id: ReservationId::parse(&item::s(raw, attr::RESERVATION_ID)?)
                .map_err(|e| e.to_string())?,
            user_id: UserId::parse(item::s(raw, attr::USER_ID)?).map_err(|e| e.to_string())?,
            quantity: Quantity::new(item::n(raw, attr::QUANTITY)?).map_err(|e| e.to_string())?,
            shard: item::n(raw, attr::SHARD)?,
            status: status_of(raw)?,
            created_at: Timestamp::from_millis(item::n(raw, attr::CREATED_AT)?),
            expires_at: Timestamp::from_millis(item::n(raw, attr::EXPIRES_AT)?),
            payment_started_at: item::n::<i64>(raw, attr::PAYMENT_STARTED_AT)
                .ok()
                .map(Timestamp::from_millis),
        })
    }
}

/// One allowed change of a reservation's status, and who makes it. Every such write is
/// conditional on `from` (DynamoDB `ConditionExpression "#s = :from"`), so two actors racing
/// for one record (the expiry worker and a payment, say) cannot both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub name: &'static str,
    pub from: ReservationStatus,
    pub to: ReservationStatus,
    pub by: &'static str,
}

pub const TRANSITIONS: [Transition; 6] = {
    use ReservationStatus::*;
    [
        Transition {
            name: "begin_payment",
            from: Pending,
            to: PaymentProcessing,
            by: "pay intake (saga/dynamo.rs), also requires now < expires_at",
        },
        Transition {
            name: "expire",
            from: Pending,
            to: Expired,
            by: "expiry cleanup (expiry/dynamo.rs), also requires expires_at <= now",
        },
        Transition {
            name: "fail_pending",
            from: Pending,
            to: Failed,
            by: "hold reconciler when a lost hold has no unit left (reconcile/dynamo.rs)",
        },
        Transition {
            name: "confirm",
            from: PaymentProcessing,
            to: Confirmed,
            by: "saga CreateOrder, one transaction with the order (saga/dynamo.rs)",
        },
        Transition {
            name: "mark_failed",
            from: PaymentProcessing,
            to: Failed,
            by: "saga MarkFailed, a direct DynamoDB step (statemachines/checkout-saga.asl.json)",
        },
        Transition {
            name: "settle_stuck",
            from: PaymentProcessing,
            to: PaymentProcessing,
            by: "hold reconciler restarting a saga that is not running (saga_attempt + 1)",
        },
    ]
};

/// The transition called `name` (a programming error if it does not exist).
pub fn transition(name: &str) -> Transition {
    TRANSITIONS
        .iter()
        .copied()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no transition {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(status: ReservationStatus) -> Reservation {
        Reservation {
            reservation_id: ReservationId::new(),
            sale_id: SaleId::parse("drop").unwrap(),
            user_id: UserId::parse("user|1").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            shard: 3,
            status,
            amount: Money::new(1_000, Currency::parse("USD").unwrap()).unwrap(),
            created_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(601_000),
        }
    }

    #[test]
    fn a_reservation_round_trips_through_its_item() {
        let r = reservation(ReservationStatus::Pending);
        assert_eq!(Reservation::try_from(&to_item(&r)), Ok(r.clone()));
        let summary = ReservationSummary::try_from(&to_item(&r)).unwrap();
        assert_eq!(summary, ReservationSummary::from(&r));
    }

    #[test]
    fn only_pending_reservations_are_in_the_expiry_index() {
        assert!(to_item(&reservation(ReservationStatus::Pending)).contains_key(attr::EXPIRY_BUCKET));
        assert!(
            !to_item(&reservation(ReservationStatus::Confirmed)).contains_key(attr::EXPIRY_BUCKET)
        );
    }

    #[test]
    fn buckets_spread_reservations_over_every_partition() {
        let sale = SaleId::parse("drop").unwrap();
        let mut expiry = std::collections::HashSet::new();
        let mut by_sale = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let id = ReservationId::new();
            expiry.insert(expiry_bucket(id));
            by_sale.insert(sale_bucket(&sale, id));
        }
        assert_eq!(expiry.len(), EXPIRY_BUCKETS as usize);
        assert_eq!(by_sale.len(), SALE_BUCKETS as usize);
        let all: std::collections::HashSet<String> = sale_buckets(&sale).collect();
        assert_eq!(all, by_sale);
    }

    #[test]
    fn every_transition_starts_from_a_live_status() {
        for t in TRANSITIONS {
            assert!(t.from.is_held(), "{} starts from {:?}", t.name, t.from);
        }
    }
}
