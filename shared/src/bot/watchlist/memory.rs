//! An in-memory [`Watchlist`] for fast tests of the logic that uses it (the Redis adapter is
//! tested against a real redis-server). Times come from the `now` each call is given.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::{
    sliding_minute, Block, BlockList, Observation, Redeem, Redemption, Subject, Watchlist,
    WatchlistError,
};
use crate::domain::{SaleId, Timestamp, UserId};
use crate::rate_limit::RequestId;

#[derive(Default)]
struct State {
    /// (subject, minute) -> request ids seen.
    counts: HashMap<(Subject, i64), HashSet<RequestId>>,
    /// subject -> (reason, until).
    blocks: HashMap<Subject, (String, Timestamp)>,
    passes: HashMap<(UserId, SaleId), Timestamp>,
    /// (buyer, nonce) -> (request, until): per buyer, as in Redis (the buyer's slot).
    spent: HashMap<(UserId, String), (RequestId, Timestamp)>,
}

#[derive(Default)]
pub struct InMemoryWatchlist {
    state: Mutex<State>,
}

impl InMemoryWatchlist {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn count(state: &mut State, subject: &Subject, request: &RequestId, now: Timestamp) -> u32 {
    let minute = now.as_millis().div_euclid(60_000);
    state
        .counts
        .entry((subject.clone(), minute))
        .or_default()
        .insert(request.clone());
    let of = |m: i64| {
        state
            .counts
            .get(&(subject.clone(), m))
            .map_or(0, |s| s.len() as u64)
    };
    let into = Duration::from_millis(now.as_millis().rem_euclid(60_000) as u64);
    sliding_minute(of(minute), of(minute - 1), into)
}

fn active(state: &State, subject: &Subject, now: Timestamp) -> Option<Block> {
    let (reason, until) = state.blocks.get(subject)?;
    (*until > now).then(|| Block {
        subject: subject.clone(),
        reason: reason.clone(),
        remaining: now.until(*until),
    })
}

impl Watchlist for InMemoryWatchlist {
    async fn observe(
        &self,
        buyer: &UserId,
        address: Option<&str>,
        sale: &SaleId,
        request: &RequestId,
        now: Timestamp,
    ) -> Result<Observation, WatchlistError> {
        Ok(self.with(|state| {
            let buyer_subject = Subject::Buyer(buyer.clone());
            let buyer_per_minute = count(state, &buyer_subject, request, now);
            let address_subject = address.map(|a| Subject::Address(a.to_owned()));
            let address_per_minute = address_subject
                .as_ref()
                .map_or(0, |s| count(state, s, request, now));
            let blocked = [Some(&buyer_subject), address_subject.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|s| active(state, s, now))
                .max_by_key(|b| b.remaining);
            let pass = state
                .passes
                .get(&(buyer.clone(), sale.clone()))
                .is_some_and(|until| *until > now);
            Observation {
                buyer_per_minute,
                address_per_minute,
                blocked,
                pass,
            }
        }))
    }

    async fn block(
        &self,
        subject: &Subject,
        reason: &str,
        duration: Duration,
        now: Timestamp,
    ) -> Result<(), WatchlistError> {
        self.with(|state| {
            state
                .blocks
                .insert(subject.clone(), (reason.to_owned(), now.plus(duration)))
        });
        Ok(())
    }

    async fn lift(&self, subject: &Subject) -> Result<bool, WatchlistError> {
        Ok(self.with(|state| state.blocks.remove(subject).is_some()))
    }

    async fn active_blocks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<BlockList, WatchlistError> {
        Ok(self.with(|state| {
            let mut blocks: Vec<Block> = state
                .blocks
                .keys()
                .filter_map(|s| active(state, s, now))
                .collect();
            blocks.sort_by_key(|b| std::cmp::Reverse(b.remaining));
            let total = blocks.len();
            blocks.truncate(limit);
            BlockList { blocks, total }
        }))
    }

    async fn redeem(&self, r: &Redeem<'_>, now: Timestamp) -> Result<Redemption, WatchlistError> {
        Ok(self.with(|state| {
            let pass = (r.buyer.clone(), r.sale.clone());
            let nonce = (r.buyer.clone(), r.nonce.to_owned());
            let first = match state.spent.get(&nonce) {
                Some((first, until)) if *until > now => first == r.request,
                _ => {
                    state
                        .spent
                        .insert(nonce, (r.request.clone(), now.plus(r.nonce_ttl)));
                    true
                }
            };
            if first {
                state.passes.insert(pass, now.plus(r.pass_for));
                return Redemption::Granted;
            }
            let pass_stands = state.passes.get(&pass).is_some_and(|until| *until > now);
            Redemption::AlreadyRedeemed { pass_stands }
        }))
    }
}
