//! What a run produced, per behaviour: how many buyers, how many got a unit, how many ended as
//! their behaviour should, and the outcomes seen.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::buyer::{Behaviour, BuyerReport, Outcome};
use crate::ledger::Promises;

/// What the buyers were told: every reservation granted (201), every one seen CONFIRMED.
pub fn promises(reports: &[BuyerReport]) -> Promises {
    Promises {
        granted: reports
            .iter()
            .flat_map(|r| r.reservations.iter().cloned())
            .collect(),
        confirmed: reports
            .iter()
            .flat_map(|r| r.confirmed.iter().cloned())
            .collect(),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BehaviourStats {
    pub buyers: u32,
    /// Got at least one reservation.
    pub reserved: u32,
    pub as_expected: u32,
    /// Outcome kind -> buyers.
    pub outcomes: BTreeMap<String, u32>,
}

pub fn by_behaviour(
    reports: &[BuyerReport],
    per_user_limit: u32,
) -> BTreeMap<Behaviour, BehaviourStats> {
    let mut stats: BTreeMap<Behaviour, BehaviourStats> = BTreeMap::new();
    for r in reports {
        let s = stats.entry(r.behaviour).or_default();
        s.buyers += 1;
        s.reserved += u32::from(r.reserved());
        s.as_expected += u32::from(r.as_expected(per_user_limit));
        *s.outcomes.entry(outcome_label(&r.outcome)).or_default() += 1;
    }
    stats
}

pub fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Confirmed => "confirmed".into(),
        Outcome::ConfirmedAfterDecline => "confirmed after decline".into(),
        Outcome::DeclinedThenSoldOut => "declined, then sold out".into(),
        Outcome::Abandoned => "abandoned".into(),
        Outcome::RefusedAfterExpiry => "refused after expiry".into(),
        Outcome::SoldOut => "sold out".into(),
        Outcome::Refused(why) => format!("refused: {why}"),
        Outcome::PaymentFailed(status) => format!("payment ended {status}"),
        Outcome::Unsettled => "unsettled".into(),
        Outcome::Unexpected(what) => format!("unexpected: {what}"),
        Outcome::CutShort => "cut short".into(),
    }
}
