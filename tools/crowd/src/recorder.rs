//! What the crowd saw: every API call with its outcome and latency (for the ledger's percentiles
//! and the report's plots), live counters (for the progress display) and the request budget.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The API operations the crowd calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /sales/{id}/reservations`
    Reserve,
    /// `POST /reservations/{id}/payment`
    Pay,
    /// `GET /reservations/{id}`
    GetReservation,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Reserve, Endpoint::Pay, Endpoint::GetReservation];

    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Reserve => "POST /sales/{id}/reservations",
            Endpoint::Pay => "POST /reservations/{id}/payment",
            Endpoint::GetReservation => "GET /reservations/{id}",
        }
    }
}

/// One call.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When the answer came (or the call gave up), ms since the run started.
    pub at_ms: u64,
    pub endpoint: Endpoint,
    /// HTTP status; None when no answer came (timeout, connection refused or reset).
    pub status: Option<u16>,
    /// `201`, or the problem's slug (`sold-out`, `limit-reached`, ...), or `no-answer`.
    pub outcome: String,
    pub latency_ms: f64,
}

impl Sample {
    /// The system answered with a decision (a success or a refusal on the merits), not a
    /// "cannot serve now" (429, 5xx, no answer).
    pub fn served(&self) -> bool {
        matches!(self.status, Some(s) if s < 500 && s != 429)
    }
}

/// Live counters (read by the progress display while buyers run).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub reserved: AtomicU64,
    pub payments_accepted: AtomicU64,
    pub confirmed: AtomicU64,
    pub failed: AtomicU64,
    pub expired: AtomicU64,
    pub gave_up: AtomicU64,
    pub buyers_done: AtomicU64,
}

/// The run's record. Shared by every buyer (`Arc<Recorder>`).
pub struct Recorder {
    started: Instant,
    samples: Mutex<Vec<Sample>>,
    refusals: Mutex<BTreeMap<String, u64>>,
    budget_left: AtomicU64,
    pub counters: Counters,
}

/// The request budget of the run is spent.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the run's request budget is spent")]
pub struct OutOfBudget;

impl Recorder {
    pub fn new(max_requests: u64) -> Self {
        Self {
            started: Instant::now(),
            samples: Mutex::new(Vec::new()),
            refusals: Mutex::new(BTreeMap::new()),
            budget_left: AtomicU64::new(max_requests),
            counters: Counters::default(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Takes one request from the budget.
    pub fn spend(&self) -> Result<(), OutOfBudget> {
        self.budget_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| OutOfBudget)
    }

    pub fn record(&self, sample: Sample) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if sample.status.is_none_or(|s| s >= 400) {
            *lock(&self.refusals)
                .entry(sample.outcome.clone())
                .or_default() += 1;
        }
        lock(&self.samples).push(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }

    /// Refusals and failures by outcome (`sold-out`, `rate-limited`, `no-answer`, ...).
    pub fn refusals(&self) -> BTreeMap<String, u64> {
        lock(&self.refusals).clone()
    }

    pub fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Latency percentiles of one endpoint (ms).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub endpoint: Endpoint,
    /// Answered calls (the percentiles are over these).
    pub count: u64,
    /// Calls that got no answer (timeout, refused or reset connection): not in the percentiles.
    pub no_answer: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Percentiles per endpoint over the answered calls (calls without an answer have no latency
/// worth the name: they are counted as `no-answer` instead).
pub fn latencies(samples: &[Sample]) -> Vec<Latency> {
    Endpoint::ALL
        .iter()
        .filter_map(|&endpoint| {
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).ok()?;
            for s in samples
                .iter()
                .filter(|s| s.endpoint == endpoint && s.status.is_some())
            {
                let _ = h.record((s.latency_ms * 1000.0).max(1.0) as u64);
            }
            let no_answer = samples
                .iter()
                .filter(|s| s.endpoint == endpoint && s.status.is_none())
                .count() as u64;
            (h.len() > 0).then(|| Latency {
                endpoint,
                count: h.len(),
                no_answer,
                p50: h.value_at_quantile(0.50) as f64 / 1000.0,
                p95: h.value_at_quantile(0.95) as f64 / 1000.0,
                p99: h.value_at_quantile(0.99) as f64 / 1000.0,
                max: h.max() as f64 / 1000.0,
            })
        })
        .collect()
}

/// The longest time reserve could not serve: over every run of consecutive unserved reserve
/// answers (429, 5xx, no answer), from the last served answer before it to the first after
/// it (or to the run's last answer). Zero when every reserve call was served.
pub fn longest_unavailability(samples: &[Sample]) -> Duration {
    let mut reserves: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.endpoint == Endpoint::Reserve)
        .collect();
    reserves.sort_by_key(|s| s.at_ms);
    let mut longest = 0u64;
    let mut last_served: Option<u64> = None;
    let mut outage_since: Option<u64> = None;
    for s in &reserves {
        if s.served() {
            if let Some(since) = outage_since.take() {
                longest = longest.max(s.at_ms - since);
            }
            last_served = Some(s.at_ms);
        } else if outage_since.is_none() {
            let latency = s.latency_ms as u64;
            outage_since = Some(last_served.unwrap_or(s.at_ms.saturating_sub(latency)));
        }
    }
    if let (Some(since), Some(last)) = (outage_since, reserves.last()) {
        longest = longest.max(last.at_ms - since);
    }
    Duration::from_millis(longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, status: Option<u16>) -> Sample {
        Sample {
            at_ms,
            endpoint: Endpoint::Reserve,
            status,
            outcome: String::new(),
            latency_ms: 10.0,
        }
    }

    #[test]
    fn unavailability_spans_from_the_last_served_answer_to_the_next() {
        let samples = vec![
            sample(100, Some(201)),
            sample(200, Some(503)),
            sample(900, None),
            sample(1_300, Some(410)),
            sample(1_400, Some(503)),
            sample(1_500, Some(201)),
        ];
        assert_eq!(
            longest_unavailability(&samples),
            Duration::from_millis(1_200)
        );
        assert_eq!(longest_unavailability(&samples[..1]), Duration::ZERO);
        // an outage still going at the end counts up to the last answer
        let open = vec![
            sample(100, Some(201)),
            sample(400, Some(503)),
            sample(2_100, Some(503)),
        ];
        assert_eq!(longest_unavailability(&open), Duration::from_millis(2_000));
    }

    #[test]
    fn the_budget_stops_at_zero() {
        let r = Recorder::new(2);
        assert!(r.spend().is_ok() && r.spend().is_ok());
        assert!(r.spend().is_err());
    }

    #[test]
    fn percentiles_ignore_unanswered_calls() {
        let mut samples: Vec<Sample> = (1..=100)
            .map(|i| Sample {
                latency_ms: i as f64,
                ..sample(i, Some(201))
            })
            .collect();
        samples.push(Sample {
            latency_ms: 30_000.0,
            ..sample(101, None)
        });
        let l = &latencies(&samples)[0];
        assert_eq!(l.count, 100);
        assert!((l.p50 - 50.0).abs() < 0.5, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.5, "{l:?}");
    }
}
