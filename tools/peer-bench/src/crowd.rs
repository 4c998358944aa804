//! The crowd every design meets: distinct buyers, a stock much smaller than the crowd, a share
//! who ask for two units, a share who retry the same request (their first answer was lost), and
//! a share of greedy buyers who ask again, for more, with a new request.
//!
//! The crowd is drawn once from a seed, so every design meets exactly the same buyers in the
//! same order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::designs::{Answer, Attempt, Design};

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
    /// idempotency key), as a client does when the answer is lost.
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
                quantity: if rng.f64() < spec.two_unit_share { 2 } else { 1 },
                retries: rng.f64() < spec.retry_share,
                greedy: rng.f64() < spec.greedy_share,
            })
            .collect();
        Self {
            spec,
            buyers: Arc::new(buyers),
        }
    }

    /// Units the crowd asks for on first requests: far more than the stock.
    pub fn demand(&self) -> u64 {
        self.buyers.iter().map(|b| u64::from(b.quantity)).sum()
    }

    fn attempts_of(&self, buyer: &Buyer) -> Vec<Attempt> {
        let first = Attempt {
            buyer: buyer.id,
            request: 0,
            quantity: buyer.quantity,
        };
        let mut attempts = vec![first];
        if buyer.retries {
            attempts.push(first);
        }
        if buyer.greedy {
            attempts.push(Attempt {
                buyer: buyer.id,
                request: 1,
                quantity: self.spec.per_user_limit,
            });
        }
        attempts
    }

    /// Sends the whole crowd at `design` over `concurrency` callers (each takes the next buyer
    /// and plays that buyer's requests in order), then reads what the store says is left.
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
                let (design, next, crowd, run_id) =
                    (design.clone(), next.clone(), self.clone(), run_id.to_string());
                tokio::spawn(async move {
                    let mut tally = Tally::new()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(buyer) = crowd.buyers.get(i) else {
                            break;
                        };
                        let mut granted_requests: Vec<u32> = Vec::new();
                        let mut units = 0u32;
                        for attempt in crowd.attempts_of(buyer) {
                            let begun = Instant::now();
                            let answer = design.attempt(&run_id, worker, &attempt).await?;
                            let ended = Instant::now();
                            tally.latency.record((ended - begun).as_nanos().max(1) as u64)?;
                            tally.answered_at.push(ended);
                            tally.attempts += 1;
                            match answer {
                                Answer::Granted => {
                                    if granted_requests.contains(&attempt.request) {
                                        // The same request granted twice: the retry bought
                                        // the units again.
                                        tally.duplicate_grants += 1;
                                    }
                                    granted_requests.push(attempt.request);
                                    units += attempt.quantity;
                                    tally.grants.push((begun, attempt.quantity));
                                    tally.last_grant = tally.last_grant.max(Some(ended));
                                }
                                Answer::Replayed => tally.replayed += 1,
                                Answer::SoldOut => {
                                    tally.sold_out += 1;
                                    tally.sold_out_answers.push((ended, attempt.quantity));
                                }
                                Answer::LimitReached => tally.limit_reached += 1,
                                Answer::GaveUp => {
                                    // Turned away as a sold-out buyer is: judged the same way.
                                    tally.gave_up += 1;
                                    tally.sold_out_answers.push((ended, attempt.quantity));
                                }
                            }
                        }
                        tally.granted_units += u64::from(units);
                        if units > crowd.spec.per_user_limit {
                            tally.limit_violations += 1;
                        }
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
        let selling_per_sec = total.last_grant.map(|last| {
            let answered = total.answered_at.iter().filter(|at| **at <= last).count();
            answered as f64 / (last - started).as_secs_f64()
        });
        let left_in_store = design.left(run_id).await?;
        let mut result =
            RunResult::from_tally(design.name(), &self.spec, total, elapsed, left_in_store);
        result.selling_per_sec = selling_per_sec;
        Ok(result)
    }
}

struct Tally {
    attempts: u64,
    latency: Histogram<u64>,
    granted_units: u64,
    duplicate_grants: u64,
    limit_violations: u64,
    replayed: u64,
    sold_out: u64,
    limit_reached: u64,
    gave_up: u64,
    /// When each attempt's answer arrived.
    answered_at: Vec<Instant>,
    /// When the last granted request's answer arrived.
    last_grant: Option<Instant>,
    /// When each granted request started, and its units.
    grants: Vec<(Instant, u32)>,
    /// When each "sold out" (or "gave up") answer arrived, and the units asked for.
    sold_out_answers: Vec<(Instant, u32)>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            attempts: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
            granted_units: 0,
            duplicate_grants: 0,
            limit_violations: 0,
            replayed: 0,
            sold_out: 0,
            limit_reached: 0,
            gave_up: 0,
            answered_at: Vec::new(),
            last_grant: None,
            grants: Vec::new(),
            sold_out_answers: Vec::new(),
        })
    }

    fn add(&mut self, other: Tally) -> anyhow::Result<()> {
        self.attempts += other.attempts;
        self.latency.add(other.latency)?;
        self.granted_units += other.granted_units;
        self.duplicate_grants += other.duplicate_grants;
        self.limit_violations += other.limit_violations;
        self.replayed += other.replayed;
        self.sold_out += other.sold_out;
        self.limit_reached += other.limit_reached;
        self.gave_up += other.gave_up;
        self.answered_at.extend(other.answered_at);
        self.last_grant = self.last_grant.max(other.last_grant);
        self.grants.extend(other.grants);
        self.sold_out_answers.extend(other.sold_out_answers);
        Ok(())
    }
}

/// One design's run of the crowd: speed and the correctness columns.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub design: &'static str,
    pub attempts: u64,
    pub elapsed: Duration,
    /// Attempts answered per second from the start until the last unit was granted: the
    /// selling phase, before the crowd meets only "sold out". `None` if nothing was granted.
    pub selling_per_sec: Option<f64>,
    pub latency: Histogram<u64>,
    /// Units the buyers were told they got (a duplicate grant counts again: the store sold it).
    pub granted_units: u64,
    /// Units granted beyond the stock.
    pub oversold: u64,
    /// Units the crowd left unsold although every buyer had asked and given up: false
    /// sold-outs (a bucket said "sold out" while another had stock, a rollback's window, a
    /// transaction that gave up).
    pub unsold: u64,
    /// What the store's own counters say is left at the end.
    pub left_in_store: i64,
    /// Buyers turned away ("sold out", or a design that gave up) while the units asked for
    /// were still there: requests that *started*
    /// after the answer arrived were later granted at least that many units. No design here
    /// returns units during a run, so those units were in stock when the buyer was turned away
    /// (a bucket was empty while another was not, a rollback had the counter below zero).
    pub false_sold_outs: u64,
    /// Buyers holding more than the per-user limit.
    pub limit_violations: u64,
    /// Retries of a granted request that were granted again.
    pub duplicate_grants: u64,
    pub replayed: u64,
    pub sold_out: u64,
    pub limit_reached: u64,
    pub gave_up: u64,
}

impl RunResult {
    fn from_tally(
        design: &'static str,
        spec: &CrowdSpec,
        tally: Tally,
        elapsed: Duration,
        left_in_store: i64,
    ) -> Self {
        let false_sold_outs = false_sold_outs(&tally.grants, &tally.sold_out_answers);
        Self {
            design,
            attempts: tally.attempts,
            false_sold_outs,
            selling_per_sec: None,
            elapsed,
            latency: tally.latency,
            granted_units: tally.granted_units,
            oversold: tally.granted_units.saturating_sub(spec.stock),
            unsold: spec.stock.saturating_sub(tally.granted_units),
            left_in_store,
            limit_violations: tally.limit_violations,
            duplicate_grants: tally.duplicate_grants,
            replayed: tally.replayed,
            sold_out: tally.sold_out,
            limit_reached: tally.limit_reached,
            gave_up: tally.gave_up,
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

/// Counts the "sold out" answers after which at least the asked units were granted to requests
/// that started later (see [`RunResult::false_sold_outs`]).
fn false_sold_outs(grants: &[(Instant, u32)], sold_out_answers: &[(Instant, u32)]) -> u64 {
    let mut starts: Vec<(Instant, u32)> = grants.to_vec();
    starts.sort_by_key(|(at, _)| *at);
    // units_from[i]: units granted to requests started at or after starts[i].
    let mut units_from = vec![0u64; starts.len() + 1];
    for i in (0..starts.len()).rev() {
        units_from[i] = units_from[i + 1] + u64::from(starts[i].1);
    }
    sold_out_answers
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
                .map(|b| (b.quantity, b.retries, b.greedy))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        let twos = a.buyers.iter().filter(|b| b.quantity == 2).count();
        let retries = a.buyers.iter().filter(|b| b.retries).count();
        assert!((150..250).contains(&twos), "{twos}");
        assert!((250..350).contains(&retries), "{retries}");
        assert_eq!(a.demand(), 1000 + twos as u64);
    }

    #[test]
    fn a_sold_out_answer_is_false_only_if_enough_units_went_to_later_requests() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Sold out at 10 ms for 1 unit and at 10 ms for 2 units; 1 unit granted to a request
        // that started at 20 ms; at 30 ms sold out for 1 with nothing granted later.
        let grants = [(at(0), 1), (at(20), 1)];
        let answers = [(at(10), 1), (at(10), 2), (at(30), 1)];
        assert_eq!(false_sold_outs(&grants, &answers), 1);
        // A grant that started before the answer arrived does not count against it.
        assert_eq!(false_sold_outs(&[(at(5), 1)], &[(at(10), 1)]), 0);
    }

    #[test]
    fn a_retry_repeats_the_first_request_and_a_greedy_buyer_asks_for_the_limit_anew() {
        let crowd = Crowd::draw(spec());
        let buyer = Buyer {
            id: 3,
            quantity: 2,
            retries: true,
            greedy: true,
        };
        let attempts = crowd.attempts_of(&buyer);
        assert_eq!(attempts.len(), 3);
        assert_eq!(attempts[0], attempts[1]);
        assert_eq!((attempts[2].request, attempts[2].quantity), (1, 2));
    }
}
