//! The ledger of one sale, read back from every place that holds a part of it, and the
//! invariant verdict (`../shared/notes/product.md`): per sale and per shard, initial =
//! available + held + sold, Redis agrees with the durable records, no shard in debt, no buyer
//! above the limit, no reservation charged twice, every charge an order or refunded, every
//! order paid, nothing stuck, and what the buyers were told is what the ledger holds.
//!
//! Sources: Redis (the stock hashes of every shard: `fs:{<sale>:<shard>}:stock`), DynamoDB
//! (the reservations through the `by-sale-bucketed` index, the orders with a consistent
//! BatchGetItem and through their `by-sale` index, the reservations the buyers were answered
//! about by key), the payment provider (the sandbox's `/_sandbox/payment_intents`). Held =
//! the quantity of PENDING and PAYMENT_PROCESSING records; sold = the quantity of orders.
//! The indexes are eventually consistent: the ledger is read at a quiescent moment, and
//! `settle` reads it again until it passes or times out.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use flashsale_core::domain::SaleId;
use flashsale_core::reservation::item::{attr, index, reconciled, sale_buckets};
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
    /// Refunded so far (succeeded refunds only).
    pub refunded: u64,
}

impl Charge {
    /// Money taken and kept: succeeded and not fully refunded.
    fn kept(&self) -> bool {
        self.status == "succeeded" && self.refunded < self.amount
    }

    /// Not settled yet (`processing`, `requires_*`): it may still take money.
    fn in_flight(&self) -> bool {
        !matches!(self.status.as_str(), "succeeded" | "canceled")
    }
}

/// One shard's counters in Redis.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardLevel {
    pub shard: u16,
    pub initial: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// The stock hash is missing, or paused (a rebuild runs or is due), or fenced.
    pub unavailable: bool,
}

/// Redis's counters, per shard and summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Levels {
    pub initial: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// Shards whose hash is missing, paused or fenced.
    pub unavailable_shards: u32,
    pub shards: Vec<ShardLevel>,
}

/// What the buyers were answered, to hold against the ledger.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Promises {
    /// Reservation ids the API answered 201 for.
    pub granted: Vec<String>,
    /// Reservation ids a buyer saw CONFIRMED.
    pub confirmed: Vec<String>,
}

/// The granted reservations as their records say (read by key, consistently).
#[derive(Debug, Clone, Serialize)]
pub struct GrantedRecord {
    pub reservation_id: String,
    /// None: no record with this id.
    pub status: Option<String>,
    /// `rolled_back` / `orphan_hold` for a tombstone (the buyer should never have had it).
    pub reconciled: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub sale: String,
    /// The sale's stock as the scenario created it, and its shard count.
    pub stock: u64,
    pub shards: u16,
    pub per_user_limit: u32,
    pub levels: Option<Levels>,
    pub reservations: Vec<Record>,
    pub orders: Vec<OrderRecord>,
    /// Reservation ids the orders' `by-sale` index shows (an order whose reservation the
    /// reservations' index lacks would otherwise go unseen).
    pub indexed_orders: Vec<String>,
    /// None when the provider cannot be read from here (Stripe on AWS).
    pub charges: Option<Vec<Charge>>,
    pub promises: Promises,
    pub granted: Vec<GrantedRecord>,
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
    /// Units beyond a shard's stock, summed over shards: sold or held beyond it (a shard in
    /// debt), or counted beyond it (units on sale that do not exist, which would sell twice).
    pub oversold: u64,
    /// Units that are neither on sale, held nor sold, summed over shards.
    pub lost: u64,
    /// Reservations with more than one charge that took money, plus money kept that is
    /// neither an order nor refunded.
    pub double_charges: u64,
    /// PAYMENT_PROCESSING records, PENDING ones long past their expiry, and charges still in
    /// flight at the provider.
    pub stuck: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub pass: bool,
    pub checks: Vec<Check>,
    pub figures: Figures,
    /// Checks that could not be made from here (e.g. Redis and the provider on AWS).
    pub not_checked: Vec<&'static str>,
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
    /// Reads every source. `shards` is the sale's shard count; `promises`, what the buyers
    /// were answered.
    #[allow(clippy::too_many_arguments)]
    pub async fn read(
        target: &Target,
        dynamodb: &aws_sdk_dynamodb::Client,
        http: &Http,
        sale: &str,
        shards: u16,
        stock: u64,
        per_user_limit: u32,
        promises: &Promises,
    ) -> anyhow::Result<Self> {
        let levels = match &target.redis_url {
            Some(url) => Some(read_levels(url, target.redis_cluster, sale, shards).await?),
            None => None,
        };
        let reservations = read_reservations(dynamodb, &target.reservations_table, sale).await?;
        let ids: Vec<String> = reservations
            .iter()
            .map(|r| r.reservation_id.clone())
            .collect();
        let orders = read_orders(dynamodb, &target.orders_table, &ids).await?;
        let indexed_orders = read_indexed_orders(dynamodb, &target.orders_table, sale).await?;
        let granted = read_granted(dynamodb, &target.reservations_table, &promises.granted).await?;
        let charges = match &target.sandbox_url {
            Some(url) => Some(read_charges(http, url, &reservations).await?),
            None => None,
        };
        Ok(Self {
            sale: sale.to_owned(),
            stock,
            shards,
            per_user_limit,
            levels,
            reservations,
            orders,
            indexed_orders,
            charges,
            promises: promises.clone(),
            granted,
            read_at_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    pub fn count(&self, status: &str) -> usize {
        self.reservations
            .iter()
            .filter(|r| r.status == status)
            .count()
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

    /// Charges at the provider that have not settled yet.
    pub fn charges_in_flight(&self) -> usize {
        self.charges
            .as_ref()
            .map_or(0, |c| c.iter().filter(|c| c.in_flight()).count())
    }

    /// Held and sold units per shard, from the records (an order counts on its reservation's
    /// shard).
    fn per_shard_records(&self) -> (Vec<u64>, Vec<u64>) {
        let n = usize::from(self.shards);
        let mut held = vec![0u64; n];
        let mut sold = vec![0u64; n];
        let shard_of: HashMap<&str, u16> = self
            .reservations
            .iter()
            .map(|r| (r.reservation_id.as_str(), r.shard))
            .collect();
        for r in &self.reservations {
            if (r.status == "PENDING" || r.status == "PAYMENT_PROCESSING")
                && usize::from(r.shard) < n
            {
                held[usize::from(r.shard)] += r.quantity;
            }
        }
        for o in &self.orders {
            if let Some(&s) = shard_of.get(o.reservation_id.as_str()) {
                if usize::from(s) < n {
                    sold[usize::from(s)] += o.quantity;
                }
            }
        }
        (held, sold)
    }

    /// The verdict at a quiescent moment (no request in flight).
    pub fn verdict(&self) -> Verdict {
        let mut checks = Vec::new();
        let mut not_checked = Vec::new();
        let mut check =
            |name: &'static str, ok: bool, detail: String| checks.push(Check { name, ok, detail });
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
                let (held_i, sold_i) = self.per_shard_records();
                let mut unbalanced = Vec::new();
                let mut in_debt = Vec::new();
                let mut disagree = Vec::new();
                for s in &l.shards {
                    let i = usize::from(s.shard);
                    let (h, so) = (
                        held_i.get(i).copied().unwrap_or(0) as i64,
                        sold_i.get(i).copied().unwrap_or(0) as i64,
                    );
                    let counted = s.available + h + so;
                    figures.oversold += (so + h - s.initial).max(0).max(counted - s.initial) as u64;
                    figures.lost += (s.initial - counted).max(0) as u64;
                    if counted != s.initial {
                        unbalanced.push(format!(
                            "shard {}: {} != {} + {h} + {so}",
                            s.shard, s.initial, s.available
                        ));
                    }
                    if s.available < 0 {
                        in_debt.push(format!("shard {}: available {}", s.shard, s.available));
                    }
                    if s.held != h || s.sold != so || s.unavailable {
                        disagree.push(format!(
                            "shard {}: Redis held {} sold {}{}, records held {h} sold {so}",
                            s.shard,
                            s.held,
                            s.sold,
                            if s.unavailable {
                                " (paused or missing)"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                let initial_total: i64 = l.shards.iter().map(|s| s.initial).sum();
                check(
                    "units conserved on every shard (initial = available + held + sold)",
                    unbalanced.is_empty() && initial_total == stock,
                    if unbalanced.is_empty() {
                        format!(
                            "{stock} = {} + {held} + {sold} over {} shards",
                            l.available,
                            l.shards.len()
                        )
                    } else {
                        format!(
                            "{} (stock {stock}, Redis initial {initial_total})",
                            unbalanced.join("; ")
                        )
                    },
                );
                check(
                    "no shard in debt (available >= 0: nothing sold beyond a shard's stock)",
                    in_debt.is_empty(),
                    if in_debt.is_empty() {
                        "none".into()
                    } else {
                        in_debt.join("; ")
                    },
                );
                check(
                    "Redis agrees with the records on every shard",
                    disagree.is_empty(),
                    if disagree.is_empty() {
                        format!("held {held}, sold {sold}")
                    } else {
                        disagree.join("; ")
                    },
                );
            }
            None => {
                figures.oversold = (sold as i64 - stock).max(0) as u64;
                not_checked.push("units conserved per shard (no access to Redis from here)");
                not_checked.push("Redis agrees with the records (no access to Redis from here)");
            }
        }
        check(
            "no oversell (orders within stock)",
            sold as i64 <= stock,
            format!("{sold} sold of {stock}"),
        );

        let confirmed: HashSet<&str> = self
            .reservations
            .iter()
            .filter(|r| r.status == "CONFIRMED")
            .map(|r| r.reservation_id.as_str())
            .collect();
        let ordered: HashSet<&str> = self
            .orders
            .iter()
            .map(|o| o.reservation_id.as_str())
            .collect();
        let known: HashSet<&str> = self
            .reservations
            .iter()
            .map(|r| r.reservation_id.as_str())
            .collect();
        let mut unmatched: Vec<String> = confirmed
            .symmetric_difference(&ordered)
            .map(|s| s.to_string())
            .collect();
        unmatched.extend(
            self.indexed_orders
                .iter()
                .filter(|id| !known.contains(id.as_str()))
                .map(|id| format!("order without a reservation: {id}")),
        );
        check(
            "every CONFIRMED reservation has its order, and every order its reservation",
            unmatched.is_empty(),
            if unmatched.is_empty() {
                format!("{} orders", ordered.len())
            } else {
                format!(
                    "mismatched: {:?}",
                    unmatched.iter().take(5).collect::<Vec<_>>()
                )
            },
        );

        let mut per_user: BTreeMap<&str, u64> = BTreeMap::new();
        for r in self.reservations.iter().filter(|r| {
            matches!(
                r.status.as_str(),
                "PENDING" | "PAYMENT_PROCESSING" | "CONFIRMED"
            )
        }) {
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
                format!(
                    "{} buyers hold or own units, limit {}",
                    per_user.len(),
                    self.per_user_limit
                )
            } else {
                format!(
                    "above {}: {:?}",
                    self.per_user_limit,
                    above.iter().take(5).collect::<Vec<_>>()
                )
            },
        );

        let mut in_flight = 0;
        match &self.charges {
            Some(charges) => {
                let orders: HashMap<&str, &OrderRecord> = self
                    .orders
                    .iter()
                    .map(|o| (o.reservation_id.as_str(), o))
                    .collect();
                let mut by_reservation: HashMap<&str, Vec<&Charge>> = HashMap::new();
                for c in charges {
                    by_reservation
                        .entry(c.reservation_id.as_str())
                        .or_default()
                        .push(c);
                }
                let mut twice = Vec::new();
                let mut orphans = Vec::new();
                for (rid, list) in &by_reservation {
                    let kept: Vec<&&Charge> = list.iter().filter(|c| c.kept()).collect();
                    // More than one charge that took money (or may still take it).
                    if list.iter().filter(|c| c.kept() || c.in_flight()).count() > 1 {
                        twice.push(*rid);
                    }
                    for c in kept {
                        let is_the_order = orders
                            .get(rid)
                            .is_some_and(|o| o.payment_intent_id == c.intent_id && c.refunded == 0);
                        if !is_the_order {
                            orphans.push(c.intent_id.as_str());
                        }
                    }
                }
                in_flight = charges.iter().filter(|c| c.in_flight()).count();
                figures.double_charges = (twice.len() + orphans.len()) as u64;
                let paid: HashSet<&str> = charges
                    .iter()
                    .filter(|c| c.kept())
                    .map(|c| c.intent_id.as_str())
                    .collect();
                let unpaid: Vec<&str> = self
                    .orders
                    .iter()
                    .filter(|o| !paid.contains(o.payment_intent_id.as_str()))
                    .map(|o| o.reservation_id.as_str())
                    .collect();
                check(
                    "no reservation charged twice",
                    twice.is_empty(),
                    format!(
                        "{} charges for {} reservations; twice: {:?}",
                        charges.len(),
                        by_reservation.len(),
                        twice.iter().take(5).collect::<Vec<_>>()
                    ),
                );
                check(
                    "every charge is an order or fully refunded",
                    orphans.is_empty(),
                    format!("neither: {:?}", orphans.iter().take(5).collect::<Vec<_>>()),
                );
                check(
                    "every order is paid (its charge succeeded and was kept)",
                    unpaid.is_empty(),
                    format!(
                        "unpaid orders: {:?}",
                        unpaid.iter().take(5).collect::<Vec<_>>()
                    ),
                );
            }
            None => {
                not_checked.push("charges: no reservation charged twice, every charge an order or refunded, every order paid (the provider's dashboard on AWS)");
            }
        }

        let granted_bad: Vec<String> = self
            .granted
            .iter()
            .filter_map(|g| match (&g.status, &g.reconciled) {
                (None, _) => Some(format!("{}: no record", g.reservation_id)),
                (Some(_), Some(r)) if reconciled::TOMBSTONES.contains(&r.as_str()) => {
                    Some(format!("{}: a tombstone ({r})", g.reservation_id))
                }
                _ => None,
            })
            .collect();
        check(
            "every reservation a buyer was answered 201 for is real (a record, not a tombstone)",
            granted_bad.is_empty(),
            if granted_bad.is_empty() {
                format!("{} granted", self.granted.len())
            } else {
                granted_bad
                    .into_iter()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        );
        let seen_unordered: Vec<&str> = self
            .promises
            .confirmed
            .iter()
            .filter(|id| !ordered.contains(id.as_str()))
            .map(String::as_str)
            .collect();
        check(
            "every reservation a buyer saw CONFIRMED has its order",
            seen_unordered.is_empty(),
            format!(
                "{} seen CONFIRMED; without an order: {:?}",
                self.promises.confirmed.len(),
                seen_unordered.iter().take(5).collect::<Vec<_>>()
            ),
        );

        let processing = self.count("PAYMENT_PROCESSING");
        let overdue = self
            .reservations
            .iter()
            .filter(|r| {
                r.status == "PENDING" && r.expires_at_ms + EXPIRY_SLACK_MS < self.read_at_ms
            })
            .count();
        figures.stuck = (processing + overdue + in_flight) as u64;
        check(
            "nothing stuck (no payment in progress, no PENDING long past its expiry, no charge in flight)",
            figures.stuck == 0,
            format!(
                "{processing} PAYMENT_PROCESSING, {overdue} PENDING more than {} s past expiry, {in_flight} charges in flight",
                EXPIRY_SLACK_MS / 1000
            ),
        );

        Verdict {
            pass: checks.iter().all(|c| c.ok),
            checks,
            figures,
            not_checked,
        }
    }
}

/// Reads the stock hashes of the sale's shards. `redis_url` is one node (standalone, or any
/// node of a cluster when `cluster`).
pub async fn read_levels(
    redis_url: &str,
    cluster: bool,
    sale: &str,
    shards: u16,
) -> anyhow::Result<Levels> {
    let sale_id = SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeout = std::time::Duration::from_secs(5);
    let fields = ["initial", "available", "held", "sold", "paused", "fenced"];
    type Row = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let mut rows: Vec<Row> = Vec::new();
    if cluster {
        let client = redis::cluster::ClusterClient::new(vec![redis_url])?;
        let mut conn = tokio::time::timeout(timeout, client.get_async_connection())
            .await
            .context("connecting to the Redis cluster")??;
        for shard in 0..shards {
            let key = ShardKeys::new(&sale_id, shard).stock();
            rows.push(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&fields)
                    .query_async(&mut conn)
                    .await?,
            );
        }
    } else {
        let client = redis::Client::open(redis_url)?;
        let mut conn = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
            .await
            .context("connecting to Redis")??;
        for shard in 0..shards {
            let key = ShardKeys::new(&sale_id, shard).stock();
            rows.push(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&fields)
                    .query_async(&mut conn)
                    .await?,
            );
        }
    }
    let mut levels = Levels::default();
    for (shard, (initial, available, held, sold, paused, fenced)) in rows.into_iter().enumerate() {
        let paused = paused.is_some_and(|p| p != "0") || fenced.is_some_and(|f| f != "0");
        let level = ShardLevel {
            shard: shard as u16,
            initial: initial.unwrap_or(0),
            available: available.unwrap_or(0),
            held: held.unwrap_or(0),
            sold: sold.unwrap_or(0),
            unavailable: initial.is_none() || paused,
        };
        levels.initial += level.initial;
        levels.available += level.available;
        levels.held += level.held;
        levels.sold += level.sold;
        levels.unavailable_shards += u32::from(level.unavailable);
        levels.shards.push(level);
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

/// Items of `table` by `reservation_id`, read consistently (100 per BatchGetItem, unprocessed
/// keys retried).
async fn batch_get(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    ids: &[String],
) -> anyhow::Result<Vec<HashMap<String, AttributeValue>>> {
    let mut items = Vec::new();
    let unique: Vec<&String> = ids.iter().collect::<HashSet<_>>().into_iter().collect();
    for chunk in unique.chunks(100) {
        let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|id| {
                HashMap::from([(
                    attr::RESERVATION_ID.to_owned(),
                    AttributeValue::S((*id).clone()),
                )])
            })
            .collect();
        let mut rounds = 0;
        while !keys.is_empty() {
            rounds += 1;
            anyhow::ensure!(
                rounds <= 20,
                "BatchGetItem on {table} keeps leaving keys unprocessed"
            );
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()?;
            let answer = dynamodb
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .with_context(|| format!("reading {table} by key"))?;
            items.extend(
                answer
                    .responses()
                    .and_then(|r| r.get(table))
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
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
    Ok(items)
}

/// The orders of these reservations, read consistently by key.
async fn read_orders(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    ids: &[String],
) -> anyhow::Result<Vec<OrderRecord>> {
    Ok(batch_get(dynamodb, table, ids)
        .await?
        .iter()
        .map(|item| OrderRecord {
            reservation_id: s(item, attr::RESERVATION_ID),
            quantity: n(item, attr::QUANTITY) as u64,
            payment_intent_id: s(item, "payment_intent_id"),
        })
        .collect())
}

/// The reservation ids the orders table's `by-sale` index shows for the sale.
async fn read_indexed_orders(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    sale: &str,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let page = dynamodb
            .query()
            .table_name(table)
            .index_name("by-sale")
            .key_condition_expression("sale_id = :s")
            .expression_attribute_values(":s", AttributeValue::S(sale.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .with_context(|| format!("querying {table} by sale"))?;
        ids.extend(
            page.items()
                .iter()
                .map(|item| s(item, attr::RESERVATION_ID)),
        );
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(ids);
        }
    }
}

/// The records of the reservations the buyers were answered 201 for, by key.
async fn read_granted(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    ids: &[String],
) -> anyhow::Result<Vec<GrantedRecord>> {
    let found: HashMap<String, HashMap<String, AttributeValue>> = batch_get(dynamodb, table, ids)
        .await?
        .into_iter()
        .map(|item| (s(&item, attr::RESERVATION_ID), item))
        .collect();
    Ok(ids
        .iter()
        .map(|id| GrantedRecord {
            reservation_id: id.clone(),
            status: found.get(id).map(|item| s(item, attr::STATUS)),
            reconciled: found
                .get(id)
                .and_then(|item| item.get(attr::RECONCILED))
                .and_then(|v| v.as_s().ok())
                .cloned(),
        })
        .collect())
}

/// The sandbox's PaymentIntents whose `metadata.reservation_id` is one of the sale's.
async fn read_charges(
    http: &Http,
    sandbox: &str,
    reservations: &[Record],
) -> anyhow::Result<Vec<Charge>> {
    let ours: HashSet<&str> = reservations
        .iter()
        .map(|r| r.reservation_id.as_str())
        .collect();
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
            .filter(|r| r["status"].as_str().is_none_or(|s| s == "succeeded"))
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

    fn record(id: &str, user: &str, status: &str, shard: u16) -> Record {
        Record {
            reservation_id: id.into(),
            user_id: user.into(),
            quantity: 1,
            status: status.into(),
            expires_at_ms: 1_000_000,
            created_at_ms: 0,
            shard,
        }
    }

    fn shard(shard: u16, initial: i64, available: i64, held: i64, sold: i64) -> ShardLevel {
        ShardLevel {
            shard,
            initial,
            available,
            held,
            sold,
            unavailable: false,
        }
    }

    fn charge(rid: &str, pi: &str, status: &str, refunded: u64) -> Charge {
        Charge {
            reservation_id: rid.into(),
            intent_id: pi.into(),
            status: status.into(),
            amount: 100,
            refunded,
        }
    }

    /// Stock 6 on two shards: shard 0 holds r3 and sold r1; shard 1 sold r2; r4 expired.
    fn ledger() -> Ledger {
        let shards = vec![shard(0, 3, 1, 1, 1), shard(1, 3, 2, 0, 1)];
        Ledger {
            sale: "s".into(),
            stock: 6,
            shards: 2,
            per_user_limit: 1,
            levels: Some(Levels {
                initial: 6,
                available: 3,
                held: 1,
                sold: 2,
                unavailable_shards: 0,
                shards,
            }),
            reservations: vec![
                record("r1", "a", "CONFIRMED", 0),
                record("r2", "b", "CONFIRMED", 1),
                record("r3", "c", "PENDING", 0),
                record("r4", "d", "EXPIRED", 1),
            ],
            orders: vec![
                OrderRecord {
                    reservation_id: "r1".into(),
                    quantity: 1,
                    payment_intent_id: "pi_1".into(),
                },
                OrderRecord {
                    reservation_id: "r2".into(),
                    quantity: 1,
                    payment_intent_id: "pi_2".into(),
                },
            ],
            indexed_orders: vec!["r1".into(), "r2".into()],
            charges: Some(vec![
                charge("r1", "pi_1", "succeeded", 0),
                charge("r2", "pi_2", "succeeded", 0),
                charge("r4", "pi_4", "succeeded", 100),
            ]),
            promises: Promises {
                granted: vec!["r1".into(), "r3".into()],
                confirmed: vec!["r1".into()],
            },
            granted: vec![
                GrantedRecord {
                    reservation_id: "r1".into(),
                    status: Some("CONFIRMED".into()),
                    reconciled: None,
                },
                GrantedRecord {
                    reservation_id: "r3".into(),
                    status: Some("PENDING".into()),
                    reconciled: None,
                },
            ],
            read_at_ms: 1_000_000,
        }
    }

    fn failing(l: Ledger) -> Vec<&'static str> {
        l.verdict().failures().iter().map(|c| c.name).collect()
    }

    #[test]
    fn a_consistent_ledger_passes() {
        let v = ledger().verdict();
        assert!(v.pass, "{:?}", v.failures());
        assert_eq!(
            (
                v.figures.held,
                v.figures.sold,
                v.figures.oversold,
                v.figures.lost
            ),
            (1, 2, 0, 0)
        );
        assert!(v.not_checked.is_empty());
    }

    #[test]
    fn a_shard_in_debt_is_oversold_even_when_the_totals_balance() {
        // Shard 0 sold 2 of its 3 units too many (available -1), shard 1 has a unit too few on
        // sale: the sums balance (6 = 3 + 1 + 2 ...), the shards do not.
        let mut l = ledger();
        let levels = l.levels.as_mut().unwrap();
        levels.shards[0] = shard(0, 3, -1, 1, 3);
        levels.shards[1] = shard(1, 3, 4, 0, 1);
        l.orders.push(OrderRecord {
            reservation_id: "r5".into(),
            quantity: 2,
            payment_intent_id: "pi_5".into(),
        });
        l.reservations.push(Record {
            quantity: 2,
            ..record("r5", "e", "CONFIRMED", 0)
        });
        l.indexed_orders.push("r5".into());
        l.charges.as_mut().unwrap().push(Charge {
            amount: 200,
            ..charge("r5", "pi_5", "succeeded", 0)
        });
        let v = l.clone().verdict();
        assert!(v.figures.oversold >= 1, "{:?}", v.figures);
        let names = failing(l);
        assert!(
            names.contains(
                &"no shard in debt (available >= 0: nothing sold beyond a shard's stock)"
            ),
            "{names:?}"
        );
        assert!(
            names.contains(&"units conserved on every shard (initial = available + held + sold)"),
            "{names:?}"
        );
    }

    #[test]
    fn every_kind_of_break_fails_its_check() {
        let mut lost = ledger();
        lost.levels.as_mut().unwrap().shards[1].available = 1;
        assert_eq!(lost.clone().verdict().figures.lost, 1);
        assert!(failing(lost)[0].starts_with("units conserved"));

        let mut phantom = ledger();
        phantom.levels.as_mut().unwrap().shards[1].available = 3;
        assert_eq!(phantom.verdict().figures.oversold, 1);

        let mut drift = ledger();
        drift.levels.as_mut().unwrap().shards[0].held = 0;
        assert_eq!(
            failing(drift),
            vec!["Redis agrees with the records on every shard"]
        );

        let mut greedy = ledger();
        greedy.reservations[2].user_id = "a".into();
        assert_eq!(failing(greedy), vec!["no buyer above the per-user limit"]);

        let mut twice = ledger();
        twice
            .charges
            .as_mut()
            .unwrap()
            .push(charge("r1", "pi_9", "succeeded", 0));
        let names = failing(twice.clone());
        assert!(names.contains(&"no reservation charged twice"), "{names:?}");
        assert_eq!(twice.verdict().figures.double_charges, 2);

        let mut declined_then_paid = ledger();
        declined_then_paid
            .charges
            .as_mut()
            .unwrap()
            .push(charge("r1", "pi_0", "canceled", 0));
        assert!(
            declined_then_paid.verdict().pass,
            "a canceled earlier intent is not a second charge"
        );

        let mut orphan = ledger();
        orphan.charges.as_mut().unwrap()[2].refunded = 0;
        assert_eq!(
            failing(orphan),
            vec!["every charge is an order or fully refunded"]
        );

        let mut unpaid = ledger();
        unpaid.charges.as_mut().unwrap().remove(1);
        assert_eq!(
            failing(unpaid),
            vec!["every order is paid (its charge succeeded and was kept)"]
        );

        let mut no_order = ledger();
        no_order.orders.pop();
        let names = failing(no_order);
        assert!(
            names.contains(
                &"every CONFIRMED reservation has its order, and every order its reservation"
            ),
            "{names:?}"
        );

        let mut stray_order = ledger();
        stray_order.indexed_orders.push("r9".into());
        assert_eq!(
            failing(stray_order),
            vec!["every CONFIRMED reservation has its order, and every order its reservation"]
        );

        let mut tombstone = ledger();
        tombstone.granted[1].reconciled = Some("rolled_back".into());
        assert_eq!(failing(tombstone), vec!["every reservation a buyer was answered 201 for is real (a record, not a tombstone)"]);

        let mut vanished = ledger();
        vanished.granted[1].status = None;
        assert_eq!(failing(vanished).len(), 1);

        let mut seen = ledger();
        seen.promises.confirmed.push("r3".into());
        assert_eq!(
            failing(seen),
            vec!["every reservation a buyer saw CONFIRMED has its order"]
        );

        let mut stuck = ledger();
        stuck.read_at_ms = 1_000_000 + EXPIRY_SLACK_MS + 1;
        assert_eq!(stuck.clone().verdict().figures.stuck, 1);
        assert_eq!(failing(stuck).len(), 1);

        let mut in_flight = ledger();
        in_flight
            .charges
            .as_mut()
            .unwrap()
            .push(charge("r4", "pi_8", "processing", 0));
        assert_eq!(in_flight.verdict().figures.stuck, 1);
    }

    #[test]
    fn without_redis_or_the_provider_the_verdict_says_what_it_did_not_check() {
        let mut l = ledger();
        l.levels = None;
        l.charges = None;
        let v = l.verdict();
        assert!(v.pass);
        assert_eq!(v.not_checked.len(), 3, "{:?}", v.not_checked);
    }
}
