//! The crowd every design meets: distinct buyers, a share who ask for two units, a share who
//! resend their request (half of them while the first copy is still in flight, half after its
//! answer: a lost answer), and a share of greedy buyers who then ask again, for the limit, with
//! a new request.
//!
//! The crowd is drawn once from a seed, so every design meets exactly the same buyers in the
//! same order. Each caller yields to the runtime after every answer, so a design that answers
//! from memory cannot starve the others' callers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::designs::{Answer, Attempt, Design};

/// The longest one attempt may take before the run is abandoned as hung.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the crowd looks like. Shares are in [0, 1].
#[derive(Debug, Clone)]
pub struct CrowdSpec {
    pub buyers: u32,
    pub stock: u64,
    /// Units one buyer may hold in total (ours enforces it; a design without a per-user
    /// record cannot).
    pub per_user_limit: u32,
    /// Share of buyers whose first request asks for 2 units.
    pub two_unit_share: f64,
    /// Share of buyers who send their first request a second time, unchanged (same
    /// idempotency key): half of them at once (two copies in flight), half after the answer.
    pub retry_share: f64,
    /// Share of buyers who then send a new request for `per_user_limit` more units.
    pub greedy_share: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Buyer {
    id: u32,
    quantity: u32,
    retries: bool,
    /// The resend goes out while the first copy is still in flight.
    retries_at_once: bool,
    greedy: bool,
}

/// The buyers, drawn from the spec's seed.
#[derive(Debug, Clone)]
pub struct Crowd {
    pub spec: CrowdSpec,
    buyers: Arc<Vec<Buyer>>,
}

impl Crowd {
    pub fn draw(spec: CrowdSpec) -> Self {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let buyers = (0..spec.buyers)
            .map(|id| Buyer {
                id,
                quantity: if rng.f64() < spec.two_unit_share {
                    2
                } else {
                    1
                },
                retries: rng.f64() < spec.retry_share,
                retries_at_once: rng.bool(),
                greedy: rng.f64() < spec.greedy_share,
            })
            .collect();
        Self {
            spec,
            buyers: Arc::new(buyers),
        }
    }

    /// The same buyers with another stock (the selling-only run: stock for everyone).
    pub fn with_stock(&self, stock: u64) -> Self {
        Self {
            spec: CrowdSpec {
                stock,
                ..self.spec.clone()
            },
            buyers: self.buyers.clone(),
        }
    }

    /// Units the crowd asks for on first requests.
    pub fn demand(&self) -> u64 {
        self.buyers.iter().map(|b| u64::from(b.quantity)).sum()
    }

    /// Sends the whole crowd at `design` over `concurrency` callers (each takes the next buyer
    /// and plays that buyer's requests), then reads what the store says is left.
    pub async fn run(
        &self,
        design: Arc<dyn Design>,
        run_id: &str,
        concurrency: usize,
    ) -> anyhow::Result<RunResult> {
        design.setup(run_id, self).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|worker| {
                let (design, next, crowd, run_id) = (
                    design.clone(),
                    next.clone(),
                    self.clone(),
                    run_id.to_string(),
                );
                tokio::spawn(async move {
                    let caller = Caller {
                        design: design.as_ref(),
                        run_id: &run_id,
                        worker,
                    };
                    let mut tally = Tally::new()?;
                    while let Some(buyer) = crowd.buyers.get(next.fetch_add(1, Ordering::Relaxed)) {
                        crowd.play(&caller, buyer, &mut tally).await?;
                    }
                    anyhow::Ok(tally)
                })
            })
            .collect();
        let mut total = Tally::new()?;
        for worker in workers {
            total.add(worker.await??)?;
        }
        let elapsed = started.elapsed();
        let left_in_store = design.left(run_id).await?;
        Ok(RunResult::from_tally(
            design.name(),
            &self.spec,
            total,
            elapsed,
            left_in_store,
        ))
    }

    /// One buyer's requests, and the checks that need the buyer's whole story.
    async fn play(
        &self,
        caller: &Caller<'_>,
        buyer: &Buyer,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let first = Attempt {
            buyer: buyer.id,
            request: 0,
            quantity: buyer.quantity,
        };
        // Answers to request 0, in the order they arrived.
        let answers: Vec<(Answer, Instant, Instant)> = if buyer.retries && buyer.retries_at_once {
            let (a, b) = futures::future::join(caller.send(&first), caller.send(&first)).await;
            vec![a?, b?]
        } else if buyer.retries {
            vec![caller.send(&first).await?, caller.send(&first).await?]
        } else {
            vec![caller.send(&first).await?]
        };
        let mut units = 0u32;
        let grants = answers
            .iter()
            .filter(|(a, ..)| *a == Answer::Granted)
            .count() as u64;
        // A request granted twice: the resend bought the units again.
        tally.duplicate_grants += grants.saturating_sub(1);
        // A resend of a granted request must hear "that was granted" (or, if both copies raced,
        // be the grant): any other answer misinforms the buyer; a replay of a request that was
        // never granted invents one.
        if answers.len() == 2 {
            let replays = answers.iter().any(|(a, ..)| *a == Answer::Replayed);
            let refused = answers
                .iter()
                .any(|(a, ..)| !matches!(a, Answer::Granted | Answer::Replayed));
            if (grants > 0 && refused) || (grants == 0 && replays) {
                tally.misanswered_resends += 1;
            }
        }
        for (answer, begun, ended) in &answers {
            tally.record(*answer, first.quantity, *begun, *ended);
            if *answer == Answer::Granted {
                units += first.quantity;
            }
        }
        if buyer.greedy {
            let again = Attempt {
                buyer: buyer.id,
                request: 1,
                quantity: self.spec.per_user_limit,
            };
            let (answer, begun, ended) = caller.send(&again).await?;
            tally.record(answer, again.quantity, begun, ended);
            if answer == Answer::Granted {
                units += again.quantity;
            }
        }
        tally.granted_units += u64::from(units);
        if units > self.spec.per_user_limit {
            tally.limit_violations += 1;
        }
        Ok(())
    }
}

/// One caller of a design (a task of the run).
struct Caller<'a> {
    design: &'a dyn Design,
    run_id: &'a str,
    worker: usize,
}

impl Caller<'_> {
    /// Sends an attempt until it has an answer other than "in progress" (a copy of it is
    /// still running: the client waits a moment and asks again, as it would on 409).
    async fn send(&self, attempt: &Attempt) -> anyhow::Result<(Answer, Instant, Instant)> {
        let begun = Instant::now();
        loop {
            let answer = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                self.design.attempt(self.run_id, self.worker, attempt),
            )
            .await
            .map_err(|_| anyhow::anyhow!("an attempt took longer than {ATTEMPT_TIMEOUT:?}"))??;
            tokio::task::yield_now().await;
            if answer != Answer::InProgress {
                return Ok((answer, begun, Instant::now()));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

struct Tally {
    attempts: u64,
    latency: Histogram<u64>,
    granted_units: u64,
    duplicate_grants: u64,
    misanswered_resends: u64,
    limit_violations: u64,
    replayed: u64,
    sold_out: u64,
    insufficient: u64,
    limit_reached: u64,
    gave_up: u64,
    /// When each granted request started, and its units.
    grants: Vec<(Instant, u32)>,
    /// When each refusal for want of stock ("sold out", "insufficient", "gave up") arrived,
    /// and the units asked for.
    refusals: Vec<(Instant, u32)>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            attempts: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
            granted_units: 0,
            duplicate_grants: 0,
            misanswered_resends: 0,
            limit_violations: 0,
            replayed: 0,
            sold_out: 0,
            insufficient: 0,
            limit_reached: 0,
            gave_up: 0,
            grants: Vec::new(),
            refusals: Vec::new(),
        })
    }

    fn record(&mut self, answer: Answer, quantity: u32, begun: Instant, ended: Instant) {
        self.attempts += 1;
        let _ = self
            .latency
            .record((ended - begun).as_nanos().max(1) as u64);
        match answer {
            Answer::Granted => self.grants.push((begun, quantity)),
            Answer::Replayed => self.replayed += 1,
            Answer::SoldOut => self.sold_out += 1,
            Answer::Insufficient => self.insufficient += 1,
            Answer::LimitReached => self.limit_reached += 1,
            Answer::GaveUp => self.gave_up += 1,
            Answer::InProgress => unreachable!("send() retries until another answer"),
        }
        if matches!(
            answer,
            Answer::SoldOut | Answer::Insufficient | Answer::GaveUp
        ) {
            self.refusals.push((ended, quantity));
        }
    }

    fn add(&mut self, other: Tally) -> anyhow::Result<()> {
        self.attempts += other.attempts;
        self.latency.add(other.latency)?;
        self.granted_units += other.granted_units;
        self.duplicate_grants += other.duplicate_grants;
        self.misanswered_resends += other.misanswered_resends;
        self.limit_violations += other.limit_violations;
        self.replayed += other.replayed;
        self.sold_out += other.sold_out;
        self.insufficient += other.insufficient;
        self.limit_reached += other.limit_reached;
        self.gave_up += other.gave_up;
        self.grants.extend(other.grants);
        self.refusals.extend(other.refusals);
        Ok(())
    }
}

/// One design's run of the crowd: speed and the correctness columns.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub design: &'static str,
    pub attempts: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// Units the buyers were told they got (a duplicate grant counts again: the store sold it).
    pub granted_units: u64,
    /// Units granted beyond the stock.
    pub oversold: u64,
    /// Units left unsold after every buyer had asked and gone.
    pub unsold: u64,
    /// Refusals for want of stock ("sold out", "insufficient", "gave up") although requests
    /// that *started after* the refusal arrived were later granted at least the units asked
    /// for: those units were in the store, or on their way back to it (a DECR/INCR rollback),
    /// when the buyer was turned away. A lower bound: grants to requests already in flight
    /// are not counted against a refusal. Counts answers, not buyers.
    pub refusals_with_stock_left: u64,
    /// Buyers holding more than the per-user limit.
    pub limit_violations: u64,
    /// Resends of a granted request that were granted again.
    pub duplicate_grants: u64,
    /// Resends answered wrongly: a granted request's copy refused, or a replay of a request
    /// that was never granted.
    pub misanswered_resends: u64,
    pub replayed: u64,
    pub sold_out: u64,
    pub insufficient: u64,
    pub limit_reached: u64,
    pub gave_up: u64,
    /// What the store's own counters say is left at the end.
    pub left_in_store: i64,
}

impl RunResult {
    fn from_tally(
        design: &'static str,
        spec: &CrowdSpec,
        tally: Tally,
        elapsed: Duration,
        left_in_store: i64,
    ) -> Self {
        Self {
            design,
            attempts: tally.attempts,
            elapsed,
            refusals_with_stock_left: refusals_with_stock_left(&tally.grants, &tally.refusals),
            latency: tally.latency,
            granted_units: tally.granted_units,
            oversold: tally.granted_units.saturating_sub(spec.stock),
            unsold: spec.stock.saturating_sub(tally.granted_units),
            limit_violations: tally.limit_violations,
            duplicate_grants: tally.duplicate_grants,
            misanswered_resends: tally.misanswered_resends,
            replayed: tally.replayed,
            sold_out: tally.sold_out,
            insufficient: tally.insufficient,
            limit_reached: tally.limit_reached,
            gave_up: tally.gave_up,
            left_in_store,
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.attempts as f64 / self.elapsed.as_secs_f64()
    }

    /// Microseconds at quantile `q`.
    pub fn micros(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Counts the refusals after which at least the asked units were granted to requests that
/// started later (see [`RunResult::refusals_with_stock_left`]).
fn refusals_with_stock_left(grants: &[(Instant, u32)], refusals: &[(Instant, u32)]) -> u64 {
    let mut starts: Vec<(Instant, u32)> = grants.to_vec();
    starts.sort_by_key(|(at, _)| *at);
    // units_from[i]: units granted to requests started at or after starts[i].
    let mut units_from = vec![0u64; starts.len() + 1];
    for i in (0..starts.len()).rev() {
        units_from[i] = units_from[i + 1] + u64::from(starts[i].1);
    }
    refusals
        .iter()
        .filter(|(answered, asked)| {
            let first_later = starts.partition_point(|(at, _)| at <= answered);
            units_from[first_later] >= u64::from(*asked)
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CrowdSpec {
        CrowdSpec {
            buyers: 1000,
            stock: 10,
            per_user_limit: 2,
            two_unit_share: 0.2,
            retry_share: 0.3,
            greedy_share: 0.1,
            seed: 7,
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_crowd_and_shares_come_out_near_the_spec() {
        let (a, b) = (Crowd::draw(spec()), Crowd::draw(spec()));
        let key = |c: &Crowd| {
            c.buyers
                .iter()
                .map(|b| (b.quantity, b.retries, b.retries_at_once, b.greedy))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        let twos = a.buyers.iter().filter(|b| b.quantity == 2).count();
        let retries = a.buyers.iter().filter(|b| b.retries).count();
        let at_once = a
            .buyers
            .iter()
            .filter(|b| b.retries && b.retries_at_once)
            .count();
        assert!((150..250).contains(&twos), "{twos}");
        assert!((250..350).contains(&retries), "{retries}");
        assert!(
            at_once > retries / 3 && at_once < retries * 2 / 3,
            "{at_once}"
        );
        assert_eq!(a.demand(), 1000 + twos as u64);
        assert_eq!(a.with_stock(5).spec.stock, 5);
        assert_eq!(key(&a.with_stock(5)), key(&a));
    }

    #[test]
    fn a_refusal_counts_only_if_enough_units_went_to_later_requests() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Refused at 10 ms for 1 unit and at 10 ms for 2 units; 1 unit granted to a request
        // that started at 20 ms; refused at 30 ms for 1 with nothing granted later.
        let grants = [(at(0), 1), (at(20), 1)];
        let refusals = [(at(10), 1), (at(10), 2), (at(30), 1)];
        assert_eq!(refusals_with_stock_left(&grants, &refusals), 1);
        // A grant that started before the refusal arrived does not count against it.
        assert_eq!(refusals_with_stock_left(&[(at(5), 1)], &[(at(10), 1)]), 0);
    }
}
