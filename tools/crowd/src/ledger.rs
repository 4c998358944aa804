//! The ledger of one sale, read back from every place that holds a part of it, and the
//! invariant verdict (`../shared/notes/product.md`): per sale, initial = available + held +
//! sold, Redis agrees with the durable records, no buyer above the limit, no reservation
//! charged twice, every charge an order or refunded, nothing stuck.
//!
//! Sources: Redis (the stock hashes of every shard: `fs:{<sale>:<shard>}:stock`), DynamoDB
//! (the reservations through the `by-sale-bucketed` index, the orders with a consistent
//! BatchGetItem), the payment provider (the sandbox's `/_sandbox/payment_intents`). Held =
//! the quantity of PENDING and PAYMENT_PROCESSING records; sold = the quantity of orders.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use flashsale_core::domain::SaleId;
use flashsale_core::reservation::item::{attr, index, sale_buckets};
use flashsale_core::stock::ShardKeys;
use serde::Serialize;

use crate::http::Http;
use crate::target::Target;

/// One reservation record, as the ledger needs it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub reservation_id: String,
    pub user_id: String,
    pub quantity: u64,
    pub status: String,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub shard: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderRecord {
    pub reservation_id: String,
    pub quantity: u64,
    pub payment_intent_id: String,
}

/// A charge at the provider (a PaymentIntent) for one of the sale's reservations.
#[derive(Debug, Clone, Serialize)]
pub struct Charge {
    pub reservation_id: String,
    pub intent_id: String,
    pub status: String,
    pub amount: u64,
    pub refunded: u64,
}

/// Redis's counters summed over the sale's shards.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Levels {
    pub initial: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// Shards whose hash is missing, paused (a rebuild runs or is due) or fenced.
    pub unavailable_shards: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub sale: String,
    /// The sale's stock as the scenario created it.
    pub stock: u64,
    pub per_user_limit: u32,
    pub levels: Option<Levels>,
    pub reservations: Vec<Record>,
    pub orders: Vec<OrderRecord>,
    /// None when the provider cannot be read from here (Stripe on AWS).
    pub charges: Option<Vec<Charge>>,
    /// When it was read (ms since the epoch).
    pub read_at_ms: i64,
}

/// One named check of the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The numbers the chaos table and the demo print.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub reservations: usize,
    pub orders: usize,
    pub available: i64,
    pub held: u64,
    pub sold: u64,
    /// Units counted beyond the stock (sold, held or still on sale): the units that were or
    /// could be sold twice.
    pub oversold: u64,
    /// Units that are neither on sale, held nor sold.
    pub lost: u64,
    /// Reservations charged more than once, plus charges that are neither an order nor
    /// refunded.
    pub double_charges: u64,
    /// PAYMENT_PROCESSING records, and PENDING ones past their expiry.
    pub stuck: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub pass: bool,
    pub checks: Vec<Check>,
    pub figures: Figures,
}

impl Verdict {
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }
}

/// How long a PENDING record may sit past its expiry before it counts as stuck: the expiry
/// cleanup runs every minute (infra/lib/config.ts expiryEveryMinutes).
pub const EXPIRY_SLACK_MS: i64 = 90_000;

impl Ledger {
    /// Reads every source. `shards` is the sale's shard count.
    pub async fn read(
        target: &Target,
        dynamodb: &aws_sdk_dynamodb::Client,
        http: &Http,
        sale: &str,
        shards: u16,
        stock: u64,
        per_user_limit: u32,
    ) -> anyhow::Result<Self> {
        let levels = match &target.redis_url {
            Some(url) => Some(read_levels(url, sale, shards).await?),
            None => None,
        };
        let reservations = read_reservations(dynamodb, &target.reservations_table, sale).await?;
        let orders = read_orders(dynamodb, &target.orders_table, &reservations).await?;
        let charges = match &target.sandbox_url {
            Some(url) => Some(read_charges(http, url, &reservations).await?),
            None => None,
        };
        Ok(Self {
            sale: sale.to_owned(),
            stock,
            per_user_limit,
            levels,
            reservations,
            orders,
            charges,
            read_at_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    pub fn count(&self, status: &str) -> usize {
        self.reservations.iter().filter(|r| r.status == status).count()
    }

    pub fn held(&self) -> u64 {
        self.reservations
            .iter()
            .filter(|r| r.status == "PENDING" || r.status == "PAYMENT_PROCESSING")
            .map(|r| r.quantity)
            .sum()
    }

    pub fn sold(&self) -> u64 {
        self.orders.iter().map(|o| o.quantity).sum()
    }

    /// The verdict at a quiescent moment (no request in flight).
    pub fn verdict(&self) -> Verdict {
        let mut checks = Vec::new();
        let mut check = |name: &'static str, ok: bool, detail: String| {
            checks.push(Check { name, ok, detail })
        };
        let held = self.held();
        let sold = self.sold();
        let stock = self.stock as i64;
        let mut figures = Figures {
            reservations: self.reservations.len(),
            orders: self.orders.len(),
            held,
            sold,
            ..Figures::default()
        };

        match &self.levels {
            Some(l) => {
                figures.available = l.available;
                let counted = l.available + held as i64 + sold as i64;
                figures.oversold = (counted - stock).max(0) as u64 + (sold as i64 - stock).max(0) as u64;
                figures.lost = (stock - counted).max(0) as u64;
                check(
                    "units conserved (stock = available + held + sold)",
                    counted == stock,
                    format!("{stock} = {} + {held} + {sold} ({counted})", l.available),
                );
                check(
                    "Redis agrees with the records",
                    l.initial == stock && l.held == held as i64 && l.sold == sold as i64 && l.unavailable_shards == 0,
                    format!(
                        "Redis initial {} held {} sold {}, {} shard(s) paused or missing; records held {held}, orders {sold}",
                        l.initial, l.held, l.sold, l.unavailable_shards
                    ),
                );
            }
            None => {
                figures.oversold = (sold as i64 - stock).max(0) as u64;
                check(
                    "no oversell (orders within stock)",
                    sold as i64 <= stock,
                    format!("{sold} sold of {stock}"),
                );
            }
        }

        let confirmed: HashSet<&str> = self
            .reservations
            .iter()
            .filter(|r| r.status == "CONFIRMED")
            .map(|r| r.reservation_id.as_str())
            .collect();
        let ordered: HashSet<&str> = self.orders.iter().map(|o| o.reservation_id.as_str()).collect();
        let unmatched: Vec<_> = confirmed.symmetric_difference(&ordered).collect();
        check(
            "every CONFIRMED reservation has its order and no order lacks one",
            unmatched.is_empty(),
            if unmatched.is_empty() {
                format!("{} orders", ordered.len())
            } else {
                format!("mismatched: {:?}", unmatched.iter().take(5).collect::<Vec<_>>())
            },
        );

        let mut per_user: BTreeMap<&str, u64> = BTreeMap::new();
        for r in self
            .reservations
            .iter()
            .filter(|r| matches!(r.status.as_str(), "PENDING" | "PAYMENT_PROCESSING" | "CONFIRMED"))
        {
            *per_user.entry(r.user_id.as_str()).or_default() += r.quantity;
        }
        let above: Vec<_> = per_user
            .iter()
            .filter(|(_, q)| **q > u64::from(self.per_user_limit))
            .collect();
        check(
            "no buyer above the per-user limit",
            above.is_empty(),
            if above.is_empty() {
                format!("{} buyers hold or own units, limit {}", per_user.len(), self.per_user_limit)
            } else {
                format!("above {}: {:?}", self.per_user_limit, above.iter().take(5).collect::<Vec<_>>())
            },
        );

        if let Some(charges) = &self.charges {
            let orders: HashMap<&str, &OrderRecord> =
                self.orders.iter().map(|o| (o.reservation_id.as_str(), o)).collect();
            let mut by_reservation: HashMap<&str, Vec<&Charge>> = HashMap::new();
            for c in charges {
                by_reservation.entry(c.reservation_id.as_str()).or_default().push(c);
            }
            let mut twice = Vec::new();
            let mut orphans = Vec::new();
            for (rid, list) in &by_reservation {
                let kept: Vec<&&Charge> = list
                    .iter()
                    .filter(|c| c.status == "succeeded" && c.refunded < c.amount)
                    .collect();
                if list.len() > 1 || kept.len() > 1 {
                    twice.push(*rid);
                }
                for c in kept {
                    let matches_order = orders
                        .get(rid)
                        .is_some_and(|o| o.payment_intent_id == c.intent_id && c.refunded == 0);
                    if !matches_order {
                        orphans.push(c.intent_id.as_str());
                    }
                }
            }
            figures.double_charges = (twice.len() + orphans.len()) as u64;
            check(
                "no reservation charged twice",
                twice.is_empty(),
                format!("{} charges for {} reservations; twice: {:?}", charges.len(), by_reservation.len(), twice.iter().take(5).collect::<Vec<_>>()),
            );
            check(
                "every charge is an order or fully refunded",
                orphans.is_empty(),
                format!("neither: {:?}", orphans.iter().take(5).collect::<Vec<_>>()),
            );
        }

        let processing = self.count("PAYMENT_PROCESSING");
        let overdue = self
            .reservations
            .iter()
            .filter(|r| r.status == "PENDING" && r.expires_at_ms + EXPIRY_SLACK_MS < self.read_at_ms)
            .count();
        figures.stuck = (processing + overdue) as u64;
        check(
            "nothing stuck (no payment in progress, no PENDING long past its expiry)",
            figures.stuck == 0,
            format!("{processing} PAYMENT_PROCESSING, {overdue} PENDING more than {} s past expiry", EXPIRY_SLACK_MS / 1000),
        );

        Verdict {
            pass: checks.iter().all(|c| c.ok),
            checks,
            figures,
        }
    }
}

/// Sums the stock hashes of the sale's shards.
pub async fn read_levels(redis_url: &str, sale: &str, shards: u16) -> anyhow::Result<Levels> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("connecting to Redis")??;
    let sale_id = SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut levels = Levels::default();
    for shard in 0..shards {
        let key = ShardKeys::new(&sale_id, shard).stock();
        let (initial, available, held, sold, paused, fenced): (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        ) = redis::cmd("HMGET")
            .arg(&key)
            .arg(&["initial", "available", "held", "sold", "paused", "fenced"])
            .query_async(&mut conn)
            .await?;
        levels.initial += initial.unwrap_or(0);
        levels.available += available.unwrap_or(0);
        levels.held += held.unwrap_or(0);
        levels.sold += sold.unwrap_or(0);
        let paused = paused.is_some_and(|p| p != "0") || fenced.is_some_and(|f| f != "0");
        if initial.is_none() || paused {
            levels.unavailable_shards += 1;
        }
    }
    Ok(levels)
}

/// Every reservation record of the sale (through the by-sale index).
pub async fn read_reservations(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    sale: &str,
) -> anyhow::Result<Vec<Record>> {
    let sale_id = SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut records = Vec::new();
    for bucket in sale_buckets(&sale_id) {
        let mut start = None;
        loop {
            let page = dynamodb
                .query()
                .table_name(table)
                .index_name(index::BY_SALE)
                .key_condition_expression("#b = :b")
                .expression_attribute_names("#b", attr::SALE_BUCKET)
                .expression_attribute_values(":b", AttributeValue::S(bucket.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("querying {table} for {bucket}"))?;
            for item in page.items() {
                records.push(Record {
                    reservation_id: s(item, attr::RESERVATION_ID),
                    user_id: s(item, attr::USER_ID),
                    quantity: n(item, attr::QUANTITY) as u64,
                    status: s(item, attr::STATUS),
                    expires_at_ms: n(item, attr::EXPIRES_AT),
                    created_at_ms: n(item, attr::CREATED_AT),
                    shard: n(item, attr::SHARD) as u16,
                });
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
    }
    Ok(records)
}

/// The orders of the sale's reservations, read consistently by key (100 per BatchGetItem).
async fn read_orders(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    reservations: &[Record],
) -> anyhow::Result<Vec<OrderRecord>> {
    let mut orders = Vec::new();
    for chunk in reservations.chunks(100) {
        let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|r| {
                HashMap::from([(
                    attr::RESERVATION_ID.to_owned(),
                    AttributeValue::S(r.reservation_id.clone()),
                )])
            })
            .collect();
        let mut rounds = 0;
        while !keys.is_empty() {
            rounds += 1;
            anyhow::ensure!(rounds <= 20, "BatchGetItem on {table} keeps leaving keys unprocessed");
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()?;
            let answer = dynamodb
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .with_context(|| format!("reading orders from {table}"))?;
            for item in answer.responses().and_then(|r| r.get(table)).into_iter().flatten() {
                orders.push(OrderRecord {
                    reservation_id: s(item, attr::RESERVATION_ID),
                    quantity: n(item, attr::QUANTITY) as u64,
                    payment_intent_id: s(item, "payment_intent_id"),
                });
            }
            keys = answer
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if !keys.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(100 * rounds)).await;
            }
        }
    }
    Ok(orders)
}

/// The sandbox's PaymentIntents whose `metadata.reservation_id` is one of the sale's.
async fn read_charges(http: &Http, sandbox: &str, reservations: &[Record]) -> anyhow::Result<Vec<Charge>> {
    let ours: HashSet<&str> = reservations.iter().map(|r| r.reservation_id.as_str()).collect();
    let list = http
        .get_json(&format!("{sandbox}/_sandbox/payment_intents"))
        .await
        .context("reading the payment sandbox")?;
    let mut charges = Vec::new();
    for intent in list["data"].as_array().into_iter().flatten() {
        let Some(rid) = intent["metadata"]["reservation_id"].as_str() else {
            continue;
        };
        if !ours.contains(rid) {
            continue;
        }
        let refunded = intent["refunds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["status"].as_str() != Some("failed"))
            .filter_map(|r| r["amount"].as_u64())
            .sum();
        charges.push(Charge {
            reservation_id: rid.to_owned(),
            intent_id: intent["id"].as_str().unwrap_or_default().to_owned(),
            status: intent["status"].as_str().unwrap_or_default().to_owned(),
            amount: intent["amount"].as_u64().unwrap_or(0),
            refunded,
        });
    }
    Ok(charges)
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, user: &str, status: &str) -> Record {
        Record {
            reservation_id: id.into(),
            user_id: user.into(),
            quantity: 1,
            status: status.into(),
            expires_at_ms: 1_000_000,
            created_at_ms: 0,
            shard: 0,
        }
    }

    fn ledger() -> Ledger {
        Ledger {
            sale: "s".into(),
            stock: 5,
            per_user_limit: 1,
            levels: Some(Levels {
                initial: 5,
                available: 2,
                held: 1,
                sold: 2,
                unavailable_shards: 0,
            }),
            reservations: vec![
                record("r1", "a", "CONFIRMED"),
                record("r2", "b", "CONFIRMED"),
                record("r3", "c", "PENDING"),
                record("r4", "d", "EXPIRED"),
            ],
            orders: vec![
                OrderRecord { reservation_id: "r1".into(), quantity: 1, payment_intent_id: "pi_1".into() },
                OrderRecord { reservation_id: "r2".into(), quantity: 1, payment_intent_id: "pi_2".into() },
            ],
            charges: Some(vec![
                Charge { reservation_id: "r1".into(), intent_id: "pi_1".into(), status: "succeeded".into(), amount: 100, refunded: 0 },
                Charge { reservation_id: "r2".into(), intent_id: "pi_2".into(), status: "succeeded".into(), amount: 100, refunded: 0 },
                Charge { reservation_id: "r4".into(), intent_id: "pi_4".into(), status: "succeeded".into(), amount: 100, refunded: 100 },
            ]),
            read_at_ms: 1_000_000,
        }
    }

    #[test]
    fn a_consistent_ledger_passes() {
        let v = ledger().verdict();
        assert!(v.pass, "{:?}", v.failures());
        assert_eq!((v.figures.held, v.figures.sold, v.figures.oversold, v.figures.lost), (1, 2, 0, 0));
    }

    #[test]
    fn every_kind_of_break_fails_its_check() {
        let failing = |l: Ledger| -> Vec<&'static str> { l.verdict().failures().iter().map(|c| c.name).collect() };

        let mut lost = ledger();
        lost.levels.as_mut().unwrap().available = 1;
        let v = lost.clone().verdict();
        assert_eq!(v.figures.lost, 1);
        assert!(failing(lost)[0].starts_with("units conserved"));

        let mut oversold = ledger();
        oversold.levels.as_mut().unwrap().available = 3;
        assert_eq!(oversold.clone().verdict().figures.oversold, 1);

        let mut drift = ledger();
        drift.levels.as_mut().unwrap().held = 0;
        assert_eq!(failing(drift), vec!["Redis agrees with the records"]);

        let mut greedy = ledger();
        greedy.reservations[2].user_id = "a".into();
        assert_eq!(failing(greedy), vec!["no buyer above the per-user limit"]);

        let mut twice = ledger();
        twice.charges.as_mut().unwrap().push(Charge {
            reservation_id: "r1".into(),
            intent_id: "pi_9".into(),
            status: "succeeded".into(),
            amount: 100,
            refunded: 0,
        });
        let names = failing(twice.clone());
        assert!(names.contains(&"no reservation charged twice"), "{names:?}");
        assert_eq!(twice.verdict().figures.double_charges, 2);

        let mut orphan = ledger();
        orphan.charges.as_mut().unwrap()[2].refunded = 0;
        assert_eq!(failing(orphan), vec!["every charge is an order or fully refunded"]);

        let mut no_order = ledger();
        no_order.orders.pop();
        assert!(failing(no_order).contains(&"every CONFIRMED reservation has its order and no order lacks one"));

        let mut stuck = ledger();
        stuck.read_at_ms = 1_000_000 + EXPIRY_SLACK_MS + 1;
        assert_eq!(stuck.clone().verdict().figures.stuck, 1);
        assert_eq!(failing(stuck).len(), 1);
    }
}
