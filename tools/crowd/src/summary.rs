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

/// How the bot defence treated the crowd (seed 004 flow 10's figures: about 90 % of bot traffic
/// blocked, at most 1 % of people challenged).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BotFigures {
    pub bots: u32,
    pub bot_reserve_requests: u32,
    /// Answered 403 by the defence (`challenge-required` or `blocked`): they never reached the
    /// stock.
    pub bot_requests_stopped: u32,
    /// Reservations granted to bots, and units they ended up owning.
    pub bot_reservations: u32,
    pub bot_units_confirmed: u32,
    pub people: u32,
    pub people_reserve_requests: u32,
    /// People asked to solve a challenge (at least once), and people blocked.
    pub people_challenged: u32,
    pub people_blocked: u32,
    /// Shares, 0..=1 (0 when there was nothing to count).
    pub bot_requests_stopped_share: f64,
    pub people_challenged_share: f64,
}

const DEFENCE: [&str; 2] = ["challenge-required", "blocked"];

pub fn bot_figures(reports: &[BuyerReport]) -> BotFigures {
    let mut f = BotFigures::default();
    for r in reports {
        let requests: u32 = r.reserve_answers.values().sum();
        let answered = |slug: &str| r.reserve_answers.get(slug).copied().unwrap_or(0);
        if r.behaviour == Behaviour::Bot {
            f.bots += 1;
            f.bot_reserve_requests += requests;
            f.bot_requests_stopped += DEFENCE.iter().map(|s| answered(s)).sum::<u32>();
            f.bot_reservations += r.reservations.len() as u32;
            f.bot_units_confirmed += r.confirmed.len() as u32;
        } else {
            f.people += 1;
            f.people_reserve_requests += requests;
            f.people_challenged += u32::from(answered("challenge-required") > 0);
            f.people_blocked += u32::from(answered("blocked") > 0);
        }
    }
    let share = |part: u32, whole: u32| {
        if whole == 0 {
            0.0
        } else {
            f64::from(part) / f64::from(whole)
        }
    };
    f.bot_requests_stopped_share = share(f.bot_requests_stopped, f.bot_reserve_requests);
    f.people_challenged_share = share(f.people_challenged, f.people);
    f
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(behaviour: Behaviour, answers: &[(&str, u32)], reserved: usize) -> BuyerReport {
        BuyerReport {
            user: "u".into(),
            behaviour,
            outcome: Outcome::SoldOut,
            reservations: (0..reserved).map(|i| format!("r{i}")).collect(),
            confirmed: Vec::new(),
            greedy: None,
            reserved_at_ms: None,
            confirmed_at_ms: None,
            reserve_answers: answers.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn bot_figures_count_requests_stopped_and_people_challenged() {
        let reports = [
            report(
                Behaviour::Bot,
                &[("challenge-required", 1), ("blocked", 11)],
                0,
            ),
            report(Behaviour::Bot, &[("challenge-required", 1), ("201", 1)], 1),
            report(Behaviour::PayNow, &[("201", 1)], 1),
            report(
                Behaviour::PayNow,
                &[("challenge-required", 1), ("201", 1)],
                1,
            ),
            report(Behaviour::Greedy, &[("201", 1), ("limit-reached", 2)], 1),
            report(Behaviour::Abandon, &[("sold-out", 1)], 0),
        ];
        let f = bot_figures(&reports);
        assert_eq!(
            (f.bots, f.bot_reserve_requests, f.bot_requests_stopped),
            (2, 14, 13)
        );
        assert_eq!(f.bot_reservations, 1);
        assert!((f.bot_requests_stopped_share - 13.0 / 14.0).abs() < 1e-9);
        assert_eq!(
            (f.people, f.people_reserve_requests, f.people_challenged),
            (4, 7, 1)
        );
        assert!((f.people_challenged_share - 0.25).abs() < 1e-9);
        assert_eq!(bot_figures(&[]).bot_requests_stopped_share, 0.0);
    }
}
