//! The crowd: buyers arrive on the scenario's curve (a burst at the open, then a thinning
//! tail), each runs its behaviour, and the run stops by itself at its time or request bound.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::Api;
use crate::buyer::{self, assign, BuyerContext, BuyerReport};
use crate::scenario::Scenario;
use crate::tokens::TokenSource;

/// When each buyer arrives, as offsets from the open: `burst_share` of them evenly over the
/// burst, the rest over the tail with a density that falls off (offset = tail x u^2 for
/// evenly spaced u), the way interest in a drop fades after the first seconds.
pub fn arrivals(scenario: &Scenario) -> Vec<Duration> {
    let c = &scenario.crowd;
    let n = c.buyers as usize;
    let burst = ((n as f64) * c.burst_share).round() as usize;
    let tail = n - burst;
    let mut times: Vec<Duration> = (0..burst)
        .map(|i| Duration::from_secs_f64(c.burst_seconds * i as f64 / burst.max(1) as f64))
        .collect();
    times.extend((0..tail).map(|j| {
        let u = (j as f64 + 1.0) / tail as f64;
        Duration::from_secs_f64(c.burst_seconds + c.tail_seconds * u * u)
    }));
    times
}

/// Runs the crowd against `sale`; returns every buyer's report, in arrival order. Buyer names
/// are `<run>-<n>` so runs never share an account.
pub async fn run(
    api: &Api,
    tokens: &TokenSource,
    scenario: &Scenario,
    sale: &str,
    run_id: &str,
    settle_timeout: Duration,
) -> anyhow::Result<Vec<BuyerReport>> {
    let behaviours = assign(&scenario.mix.weights(), scenario.crowd.buyers as usize);
    let users: Vec<String> = (0..behaviours.len())
        .map(|i| format!("{run_id}-{i}"))
        .collect();
    let minted = futures::stream::iter(
        users
            .iter()
            .zip(&behaviours)
            .map(|(u, b)| tokens.token(u, false, Some(b.client().account_age()))),
    );
    let token_list: Vec<String> = {
        use futures::StreamExt;
        minted
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?
    };
    let started = Instant::now();
    let ctx = BuyerContext {
        api: api.clone(),
        sale: sale.to_owned(),
        hold: Duration::from_secs(scenario.sale.hold_seconds),
        per_user_limit: scenario.sale.per_user_limit,
        deadline: started + Duration::from_secs(scenario.limits.max_seconds),
        settle_timeout,
    };
    let gate = Arc::new(Semaphore::new(scenario.crowd.max_in_flight));
    let tasks = arrivals(scenario)
        .into_iter()
        .zip(users)
        .zip(token_list)
        .zip(behaviours)
        .map(|(((at, user), token), behaviour)| {
            let ctx = ctx.clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                tokio::time::sleep_until(started + at).await;
                let _permit = gate.acquire_owned().await;
                buyer::run(ctx, user, token, behaviour).await
            })
        });
    let mut reports = Vec::new();
    for joined in join_all(tasks).await {
        reports.push(joined?);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_burst_then_thin_out() {
        let mut s = Scenario::default_demo();
        s.crowd.buyers = 100;
        s.crowd.burst_share = 0.6;
        s.crowd.burst_seconds = 2.0;
        s.crowd.tail_seconds = 20.0;
        let t = arrivals(&s);
        assert_eq!(t.len(), 100);
        assert!(t[..60].iter().all(|d| *d < Duration::from_secs(2)));
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "in order");
        assert_eq!(*t.last().unwrap(), Duration::from_secs(22));
        // the tail's first half of the buyers arrive in its first quarter of the time
        let early = t[60..]
            .iter()
            .filter(|d| **d <= Duration::from_secs(7))
            .count();
        assert!(early >= 20, "{early}");
    }
}
