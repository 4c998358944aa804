//! The buyers: what each behaviour does through the API, and what it ends with.
//!
//! Cards are the payment sandbox's test payment methods (Stripe's names): `pm_card_visa`
//! succeeds, `pm_card_chargeDeclined` is declined.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::api::{Answer, Api};
use crate::client::{Client, CHALLENGE_RESPONSE_HEADER, TELEMETRY_HEADER};
use crate::recorder::OutOfBudget;

pub const GOOD_CARD: &str = "pm_card_visa";
pub const DECLINED_CARD: &str = "pm_card_chargeDeclined";

/// How a buyer acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Reserves one unit and pays at once.
    PayNow,
    /// Reserves, waits half the hold, then pays (in time).
    PayLate,
    /// Reserves, waits until the hold has run out, then tries to pay: refused, the unit
    /// goes back on sale.
    PayAfterExpiry,
    /// Pays with a card that is declined, then reserves again and pays with another card.
    DeclinedThenRetry,
    /// Reserves and never pays: the unit comes back when the hold expires.
    Abandon,
    /// Fires `per_user_limit + 2` reservations at once (distinct keys), then pays for what
    /// it got: never more than the limit.
    Greedy,
    /// Retries every "not now" (no answer, 429, 5xx) with the same idempotency key, honouring
    /// `Retry-After`, as a careful client does. The others give up at the first one.
    #[serde(rename = "retry_after_503")]
    RetryAfter503,
    /// Reserves, then pays right at the hold's expiry (sent between 3.5 s before and 0.5 s
    /// after it), racing the expiry cleanup: it must end CONFIRMED or refused (410), never both
    /// or neither.
    PayAtDeadline,
    /// A scripted bot (seed 004 flow 10): a fresh account, a headless browser's telemetry,
    /// [`BOT_ATTEMPTS`] reservations back to back with new keys, a guessed answer to a
    /// challenge. It should get nothing: challenged, then blocked.
    Bot,
}

/// Reserve calls a scripted bot makes (a person makes one or two).
pub const BOT_ATTEMPTS: u32 = 12;

impl Behaviour {
    pub fn label(self) -> &'static str {
        match self {
            Behaviour::PayNow => "pay now",
            Behaviour::PayLate => "pay late (in time)",
            Behaviour::PayAfterExpiry => "pay after expiry",
            Behaviour::DeclinedThenRetry => "declined, retry other card",
            Behaviour::Abandon => "abandon",
            Behaviour::Greedy => "greedy (parallel)",
            Behaviour::RetryAfter503 => "retry after 503",
            Behaviour::PayAtDeadline => "pay at the deadline",
            Behaviour::Bot => "scripted bot",
        }
    }

    /// What its client looks like to the bot defence.
    pub fn client(self) -> Client {
        match self {
            Behaviour::Bot => Client::Bot,
            _ => Client::Person,
        }
    }

    fn retries(self) -> u32 {
        match self {
            Behaviour::RetryAfter503 => 12,
            _ => 0,
        }
    }
}

/// Spreads behaviours by weight so that any run of buyers has the mix in its proportions
/// (smooth weighted round-robin, as nginx balances upstreams): with weights 3:1 the order is
/// a a b a, a a b a, ...
pub fn assign(weights: &[(Behaviour, u32)], buyers: usize) -> Vec<Behaviour> {
    let total: i64 = weights.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut current: Vec<i64> = vec![0; weights.len()];
    (0..buyers)
        .map(|_| {
            for (c, (_, w)) in current.iter_mut().zip(weights) {
                *c += i64::from(*w);
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, -(*i as i64)))
                .expect("at least one behaviour");
            current[best] -= total;
            weights[best].0
        })
        .collect()
}

/// How a buyer's story ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Outcome {
    /// Bought (every reservation it paid for is CONFIRMED).
    Confirmed,
    /// The first card was declined (FAILED), the second purchase CONFIRMED.
    ConfirmedAfterDecline,
    /// The first card was declined; by the retry the stock was gone.
    DeclinedThenSoldOut,
    /// Reserved and walked away.
    Abandoned,
    /// Paid after the hold ran out and was refused (410 reservation-expired).
    RefusedAfterExpiry,
    /// Never got a unit: sold out.
    SoldOut,
    /// Never got a unit for another reason (the outcome slug: `limit-reached`,
    /// `temporarily-unavailable`, `no-answer`, ...).
    Refused(String),
    /// Paid but the reservation ended FAILED or EXPIRED.
    PaymentFailed(String),
    /// Paid but no final status came before the buyer's deadline.
    Unsettled,
    /// Something this behaviour should never see (what it was).
    Unexpected(String),
    /// The run's request budget or time ran out first.
    CutShort,
}

/// One buyer's record.
#[derive(Debug, Clone, Serialize)]
pub struct BuyerReport {
    pub user: String,
    pub behaviour: Behaviour,
    pub outcome: Outcome,
    /// Every reservation it was granted (201), in order.
    pub reservations: Vec<String>,
    /// The ones it paid for and saw CONFIRMED.
    pub confirmed: Vec<String>,
    /// Reserve answers of a greedy buyer's parallel burst: granted, refused.
    pub greedy: Option<(u32, u32)>,
    /// ms since the run started: reserved (first 201) and confirmed (seen CONFIRMED).
    pub reserved_at_ms: Option<u64>,
    pub confirmed_at_ms: Option<u64>,
    /// Every reserve answer it got, by outcome (`201`, `challenge-required`, `blocked`, ...).
    pub reserve_answers: BTreeMap<String, u32>,
}

impl BuyerReport {
    /// The outcome this behaviour should end with when nothing is broken (a demo without
    /// faults): sold out is always acceptable.
    pub fn as_expected(&self, per_user_limit: u32) -> bool {
        use Outcome::*;
        match (self.behaviour, &self.outcome) {
            (_, SoldOut) => true,
            (Behaviour::PayNow | Behaviour::PayLate | Behaviour::RetryAfter503, Confirmed) => true,
            (Behaviour::Greedy, Confirmed) => self
                .greedy
                .is_some_and(|(granted, _)| granted >= 1 && granted <= per_user_limit),
            (Behaviour::PayAfterExpiry, RefusedAfterExpiry) => true,
            (Behaviour::DeclinedThenRetry, ConfirmedAfterDecline | DeclinedThenSoldOut) => true,
            (Behaviour::Abandon, Abandoned) => true,
            (Behaviour::PayAtDeadline, Confirmed | RefusedAfterExpiry) => true,
            // Nothing for a bot, and the defence (not the stock) is what stopped it.
            (Behaviour::Bot, Refused(why)) => {
                self.reservations.is_empty()
                    && matches!(why.as_str(), "blocked" | "challenge-required")
            }
            _ => false,
        }
    }

    /// It got at least one reservation (the behaviour was exercised past the reserve).
    pub fn reserved(&self) -> bool {
        !self.reservations.is_empty()
    }
}

/// What a buyer needs to act.
#[derive(Clone)]
pub struct BuyerContext {
    pub api: Api,
    pub sale: String,
    pub hold: Duration,
    pub per_user_limit: u32,
    /// The buyer stops (CutShort) past this instant.
    pub deadline: Instant,
    /// How long a paid reservation may take to reach CONFIRMED or FAILED before the buyer
    /// calls it Unsettled (the saga's charge timeout is 50 s locally).
    pub settle_timeout: Duration,
}

struct Buyer {
    ctx: BuyerContext,
    token: String,
    /// The telemetry its client sends with every reservation.
    telemetry: String,
    /// The last granted reservation's `expires_at` (ms since the epoch).
    expires_at: Option<i64>,
    behaviour: Behaviour,
    report: BuyerReport,
}

enum Reserved {
    Granted { id: String },
    Refused(Answer),
}

/// Why a step stopped early.
enum Stop {
    Budget,
    Time,
}

impl From<OutOfBudget> for Stop {
    fn from(_: OutOfBudget) -> Self {
        Stop::Budget
    }
}

/// Runs one buyer to the end of its story.
pub async fn run(
    ctx: BuyerContext,
    user: String,
    token: String,
    behaviour: Behaviour,
) -> BuyerReport {
    let report = BuyerReport {
        user,
        behaviour,
        outcome: Outcome::CutShort,
        reservations: Vec::new(),
        confirmed: Vec::new(),
        greedy: None,
        reserved_at_ms: None,
        confirmed_at_ms: None,
        reserve_answers: BTreeMap::new(),
    };
    let mut buyer = Buyer {
        ctx,
        token,
        telemetry: behaviour.client().telemetry(),
        expires_at: None,
        behaviour,
        report,
    };
    let outcome = match buyer.act().await {
        Ok(outcome) => outcome,
        Err(Stop::Budget | Stop::Time) => Outcome::CutShort,
    };
    if matches!(outcome, Outcome::CutShort) {
        buyer
            .ctx
            .api
            .recorder()
            .counters
            .gave_up
            .fetch_add(1, Ordering::Relaxed);
    }
    buyer.report.outcome = outcome;
    buyer
        .ctx
        .api
        .recorder()
        .counters
        .buyers_done
        .fetch_add(1, Ordering::Relaxed);
    buyer.report
}

impl Buyer {
    async fn act(&mut self) -> Result<Outcome, Stop> {
        match self.behaviour {
            Behaviour::PayNow | Behaviour::RetryAfter503 => {
                let id = match self.reserve(&new_key()).await? {
                    Reserved::Granted { id } => id,
                    Reserved::Refused(a) => return Ok(refused(&a)),
                };
                self.pay_and_settle(&id, GOOD_CARD).await
            }
            Behaviour::PayLate => {
                let id = match self.reserve(&new_key()).await? {
                    Reserved::Granted { id } => id,
                    Reserved::Refused(a) => return Ok(refused(&a)),
                };
                self.sleep(self.ctx.hold / 2).await?;
                self.pay_and_settle(&id, GOOD_CARD).await
            }
            Behaviour::PayAfterExpiry => {
                let id = match self.reserve(&new_key()).await? {
                    Reserved::Granted { id } => id,
                    Reserved::Refused(a) => return Ok(refused(&a)),
                };
                self.sleep(self.ctx.hold + Duration::from_secs(3)).await?;
                let answer = self.pay(&id, GOOD_CARD, &new_key()).await?;
                match answer.status {
                    Some(410) => Ok(Outcome::RefusedAfterExpiry),
                    _ => Ok(Outcome::Unexpected(format!(
                        "pay after expiry: {}",
                        answer.outcome()
                    ))),
                }
            }
            Behaviour::DeclinedThenRetry => {
                let first = match self.reserve(&new_key()).await? {
                    Reserved::Granted { id } => id,
                    Reserved::Refused(a) => return Ok(refused(&a)),
                };
                match self.pay_and_settle(&first, DECLINED_CARD).await? {
                    Outcome::PaymentFailed(status) if status == "FAILED" => {}
                    other => return Ok(Outcome::Unexpected(format!("declined card: {other:?}"))),
                }
                // The reservation shows FAILED a moment before its compensation gives the unit
                // and the buyer's allowance back: a person told "you hold 1 of 1" tries again.
                let mut tries = 0;
                let second = loop {
                    match self.reserve(&new_key()).await? {
                        Reserved::Granted { id } => break id,
                        Reserved::Refused(a) if a.outcome() == "sold-out" => {
                            return Ok(Outcome::DeclinedThenSoldOut)
                        }
                        Reserved::Refused(a) if a.outcome() == "limit-reached" && tries < 10 => {
                            tries += 1;
                            self.sleep(Duration::from_millis(1500)).await?;
                        }
                        Reserved::Refused(a) => return Ok(refused(&a)),
                    }
                };
                Ok(match self.pay_and_settle(&second, GOOD_CARD).await? {
                    Outcome::Confirmed => Outcome::ConfirmedAfterDecline,
                    other => other,
                })
            }
            Behaviour::Abandon => match self.reserve(&new_key()).await? {
                Reserved::Granted { .. } => Ok(Outcome::Abandoned),
                Reserved::Refused(a) => Ok(refused(&a)),
            },
            Behaviour::Greedy => self.greedy().await,
            Behaviour::Bot => self.bot().await,
            Behaviour::PayAtDeadline => {
                let (id, expires_at) = match self.reserve(&new_key()).await? {
                    Reserved::Granted { id } => {
                        let expires = self.expires_at.take();
                        (id, expires)
                    }
                    Reserved::Refused(a) => return Ok(refused(&a)),
                };
                let Some(expires_at) = expires_at else {
                    return Ok(Outcome::Unexpected(
                        "no expires_at in the reservation".into(),
                    ));
                };
                // Sent up to 3.5 s early (a call through the API takes seconds locally), so
                // the requests reach the handler on both sides of the deadline.
                let jitter_ms = fastrand::i64(-3500..=500);
                let wait_ms = expires_at - chrono::Utc::now().timestamp_millis() + jitter_ms;
                self.sleep(Duration::from_millis(wait_ms.max(0) as u64))
                    .await?;
                let answer = self.pay(&id, GOOD_CARD, &new_key()).await?;
                match answer.status {
                    Some(410) => Ok(Outcome::RefusedAfterExpiry),
                    Some(202 | 200) => self.follow(&id).await,
                    _ => Ok(Outcome::Unexpected(format!(
                        "pay at the deadline: {}",
                        answer.outcome()
                    ))),
                }
            }
        }
    }

    /// Reservation after reservation with new keys, as fast as the answers come; a challenge is
    /// answered with a guess (in [`Self::reserve`]). Whatever it gets, it pays for.
    async fn bot(&mut self) -> Result<Outcome, Stop> {
        let mut last = None;
        for _ in 0..BOT_ATTEMPTS {
            match self.reserve(&new_key()).await? {
                Reserved::Granted { id } => return self.pay_and_settle(&id, GOOD_CARD).await,
                Reserved::Refused(a) if a.outcome() == "sold-out" => return Ok(Outcome::SoldOut),
                Reserved::Refused(a) => last = Some(a),
            }
        }
        Ok(last.map_or(Outcome::CutShort, |a| refused(&a)))
    }

    async fn greedy(&mut self) -> Result<Outcome, Stop> {
        let n = self.ctx.per_user_limit + 2;
        let attempts = (0..n).map(|_| {
            let api = self.ctx.api.clone();
            let (sale, token) = (self.ctx.sale.clone(), self.token.clone());
            let telemetry = self.telemetry.clone();
            async move {
                api.reserve(
                    &sale,
                    &token,
                    &new_key(),
                    1,
                    &[(TELEMETRY_HEADER, &telemetry)],
                )
                .await
            }
        });
        let answers = futures::future::join_all(attempts).await;
        let mut granted = Vec::new();
        let mut refusals = Vec::new();
        for answer in answers {
            let answer = answer?;
            *self
                .report
                .reserve_answers
                .entry(answer.outcome())
                .or_default() += 1;
            match reservation_id(&answer) {
                Some(id) => granted.push(id),
                None => refusals.push(answer),
            }
        }
        self.report.greedy = Some((granted.len() as u32, refusals.len() as u32));
        if granted.is_empty() {
            let sold_out = refusals.iter().any(|a| a.outcome() == "sold-out");
            return Ok(if sold_out {
                Outcome::SoldOut
            } else {
                refused(&refusals[0])
            });
        }
        for id in &granted {
            self.granted(id);
        }
        let mut outcome = Outcome::Confirmed;
        for id in granted {
            let paid = self.pay_and_settle(&id, GOOD_CARD).await?;
            if paid != Outcome::Confirmed {
                outcome = paid;
            }
        }
        Ok(outcome)
    }

    /// Reserve one unit with `key`, retrying "not now" answers with the same key when the
    /// behaviour does. A challenge is answered once (solved by a person, guessed by a bot) and
    /// the request sent again with the answer.
    async fn reserve(&mut self, key: &str) -> Result<Reserved, Stop> {
        let mut attempt = 0;
        let mut challenge_answer: Option<String> = None;
        loop {
            self.check_time()?;
            let mut headers = vec![(TELEMETRY_HEADER, self.telemetry.as_str())];
            if let Some(answer) = &challenge_answer {
                headers.push((CHALLENGE_RESPONSE_HEADER, answer.as_str()));
            }
            let answer = self
                .ctx
                .api
                .reserve(&self.ctx.sale, &self.token, key, 1, &headers)
                .await?;
            *self
                .report
                .reserve_answers
                .entry(answer.outcome())
                .or_default() += 1;
            if answer.outcome() == "challenge-required" && challenge_answer.is_none() {
                challenge_answer = self.behaviour.client().answer(&answer.body["challenge"]);
                if challenge_answer.is_some() {
                    continue;
                }
            }
            if let Some(id) = reservation_id(&answer) {
                self.expires_at = answer.body["expires_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis());
                self.granted(&id);
                return Ok(Reserved::Granted { id });
            }
            // 409 request-in-progress: the first attempt with this key is still running (or
            // died mid-way); the API says to retry shortly with the same key.
            let in_progress = answer.outcome() == "request-in-progress";
            if !(answer.retryable() || in_progress) || attempt >= self.behaviour.retries() {
                return Ok(Reserved::Refused(answer));
            }
            attempt += 1;
            self.sleep(backoff(attempt, answer.retry_after)).await?;
        }
    }

    fn granted(&mut self, id: &str) {
        if self.report.reserved_at_ms.is_none() {
            let rec = self.ctx.api.recorder();
            self.report.reserved_at_ms = Some(rec.ms(std::time::Instant::now()));
        }
        self.report.reservations.push(id.to_owned());
        self.ctx
            .api
            .recorder()
            .counters
            .reserved
            .fetch_add(1, Ordering::Relaxed);
    }

    async fn pay(&mut self, id: &str, card: &str, key: &str) -> Result<Answer, Stop> {
        let mut attempt = 0;
        loop {
            self.check_time()?;
            let answer = self.ctx.api.pay(id, &self.token, key, card).await?;
            // Every buyer retries a lost or refused-for-now payment with the same key: paying
            // twice is what the key exists to prevent, and a buyer who paid wants the unit.
            let in_progress = answer.outcome() == "payment-in-progress";
            if !(answer.retryable() || in_progress) || attempt >= self.behaviour.retries().max(4) {
                return Ok(answer);
            }
            attempt += 1;
            self.sleep(backoff(attempt, answer.retry_after)).await?;
        }
    }

    /// Pays and follows the reservation until it is CONFIRMED or FAILED.
    async fn pay_and_settle(&mut self, id: &str, card: &str) -> Result<Outcome, Stop> {
        let answer = self.pay(id, card, &new_key()).await?;
        if !answer.is(202) && !answer.is(200) {
            return Ok(Outcome::Unexpected(format!("pay: {}", answer.outcome())));
        }
        self.follow(id).await
    }

    /// Follows a paid reservation until it is CONFIRMED or FAILED (or EXPIRED).
    async fn follow(&mut self, id: &str) -> Result<Outcome, Stop> {
        let counters = &self.ctx.api.recorder().counters;
        counters.payments_accepted.fetch_add(1, Ordering::Relaxed);
        let give_up = Instant::now() + self.ctx.settle_timeout;
        let mut wait = Duration::from_millis(1000);
        loop {
            self.sleep(wait).await?;
            wait = (wait + Duration::from_millis(500)).min(Duration::from_secs(3));
            let view = self.ctx.api.reservation(id, &self.token).await?;
            let status = view.body["status"].as_str().unwrap_or_default().to_owned();
            let counters = &self.ctx.api.recorder().counters;
            match status.as_str() {
                "CONFIRMED" => {
                    counters.confirmed.fetch_add(1, Ordering::Relaxed);
                    self.report.confirmed.push(id.to_owned());
                    self.report.confirmed_at_ms =
                        Some(self.ctx.api.recorder().ms(std::time::Instant::now()));
                    return Ok(Outcome::Confirmed);
                }
                "FAILED" => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome::PaymentFailed(status));
                }
                "EXPIRED" => {
                    counters.expired.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome::PaymentFailed(status));
                }
                _ if Instant::now() >= give_up => return Ok(Outcome::Unsettled),
                _ => {}
            }
        }
    }

    async fn sleep(&self, d: Duration) -> Result<(), Stop> {
        let until = Instant::now() + d;
        if until > self.ctx.deadline {
            tokio::time::sleep_until(self.ctx.deadline).await;
            return Err(Stop::Time);
        }
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    fn check_time(&self) -> Result<(), Stop> {
        if Instant::now() >= self.ctx.deadline {
            Err(Stop::Time)
        } else {
            Ok(())
        }
    }
}

fn refused(answer: &Answer) -> Outcome {
    match answer.outcome().as_str() {
        "sold-out" => Outcome::SoldOut,
        other => Outcome::Refused(other.to_owned()),
    }
}

fn reservation_id(answer: &Answer) -> Option<String> {
    if !answer.is(201) && !answer.is(200) {
        return None;
    }
    answer.body["reservation_id"].as_str().map(str::to_owned)
}

/// Full-jitter exponential backoff (base 200 ms, cap 5 s), or the server's Retry-After.
fn backoff(attempt: u32, retry_after: Option<u64>) -> Duration {
    if let Some(secs) = retry_after {
        return Duration::from_secs(secs.min(10)) + Duration::from_millis(fastrand::u64(0..250));
    }
    let cap = (200u64 << attempt.min(5)).min(5_000);
    Duration::from_millis(fastrand::u64(0..=cap))
}

fn new_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_follows_the_weights_and_interleaves() {
        let w = [(Behaviour::PayNow, 3), (Behaviour::Abandon, 1)];
        let order = assign(&w, 8);
        assert_eq!(
            order.iter().filter(|b| **b == Behaviour::Abandon).count(),
            2
        );
        assert_ne!(
            order[0..4],
            order[4..8].iter().rev().copied().collect::<Vec<_>>()[..]
        );
        // every behaviour appears within the first `sum of weights` buyers
        let all = crate::scenario::Mix::default().weights();
        let total: u32 = all.iter().map(|(_, w)| w).sum();
        let first = assign(&all, total as usize);
        for (b, w) in &all {
            assert_eq!(first.iter().filter(|x| *x == b).count() as u32, *w, "{b:?}");
        }
    }

    #[test]
    fn expectations_per_behaviour() {
        let report = |behaviour, outcome, greedy| BuyerReport {
            user: "u".into(),
            behaviour,
            outcome,
            reservations: vec![],
            confirmed: vec![],
            greedy,
            reserved_at_ms: None,
            confirmed_at_ms: None,
            reserve_answers: BTreeMap::new(),
        };
        assert!(report(Behaviour::PayNow, Outcome::Confirmed, None).as_expected(1));
        assert!(report(Behaviour::Abandon, Outcome::SoldOut, None).as_expected(1));
        assert!(!report(Behaviour::PayNow, Outcome::Unsettled, None).as_expected(1));
        assert!(report(Behaviour::Greedy, Outcome::Confirmed, Some((2, 2))).as_expected(2));
        assert!(!report(Behaviour::Greedy, Outcome::Confirmed, Some((3, 1))).as_expected(2));
        assert!(!report(Behaviour::Abandon, Outcome::Confirmed, None).as_expected(1));
        assert!(
            report(Behaviour::PayAfterExpiry, Outcome::RefusedAfterExpiry, None).as_expected(1)
        );
        // A bot is as expected only when the defence stopped it, with nothing reserved.
        assert!(report(Behaviour::Bot, Outcome::Refused("blocked".into()), None).as_expected(1));
        assert!(!report(
            Behaviour::Bot,
            Outcome::Refused("rate-limited".into()),
            None
        )
        .as_expected(1));
        assert!(!report(Behaviour::Bot, Outcome::Confirmed, None).as_expected(1));
    }

    #[test]
    fn backoff_honours_retry_after_and_is_capped() {
        assert!(backoff(1, Some(2)) >= Duration::from_secs(2));
        for attempt in 0..20 {
            assert!(backoff(attempt, None) <= Duration::from_secs(5));
        }
    }
}
