//! The watchlist: what the bot defence remembers between requests, shared by every Lambda
//! instance. Per buyer and per source address: requests in the last minute, an active block,
//! and (buyers only) a pass granted by a solved challenge; and the challenges already spent.
//!
//! Requests are counted per request id (a re-sent call counts once) in a sliding minute
//! estimated from two fixed minutes, the way Cloudflare's rate limiting estimates a sliding
//! window ("How we built rate limiting capable of scaling to millions of domains", Cloudflare
//! blog, 2017): `current + previous × (share of the previous minute still in the window)`.

pub mod memory;
pub mod redis;

use std::future::Future;
use std::time::Duration;

use crate::domain::{SaleId, Timestamp, UserId};
use crate::rate_limit::RequestId;

/// Who a block applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "kebab-case")]
pub enum Subject {
    Buyer(UserId),
    Address(String),
}

impl Subject {
    /// The form used in the block index and the admin API: `buyer:<id>` or `address:<ip>`.
    pub fn label(&self) -> String {
        match self {
            Subject::Buyer(id) => format!("buyer:{id}"),
            Subject::Address(ip) => format!("address:{ip}"),
        }
    }

    /// The inverse of [`Subject::label`]. An address may be given as the client's own (an
    /// IPv6 address is read as the /64 it is counted and blocked by, an IPv4-mapped one as its
    /// IPv4 address), or as listed.
    pub fn parse_label(label: &str) -> Option<Self> {
        match label.split_once(':')? {
            ("buyer", id) => UserId::parse(id).ok().map(Subject::Buyer),
            ("address", ip) if !ip.is_empty() => Some(Subject::Address(address_group(ip))),
            _ => None,
        }
    }
}

/// One active block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    pub subject: Subject,
    /// Why, for admins (`challenge-failed`, `challenge-replayed`, ...).
    pub reason: String,
    /// How long it still lasts.
    #[serde(rename = "remainingSeconds", serialize_with = "seconds")]
    pub remaining: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A page of active blocks (see [`Watchlist::active_blocks`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct BlockList {
    pub blocks: Vec<Block>,
    /// Entries in the block index (the page may hold fewer). An upper bound: a block whose key
    /// write failed after its index entry is counted until its time is up, never listed.
    pub total: usize,
}

/// What the watchlist knew about one request's buyer and address when it was counted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// Requests in the last minute (estimated), this one included.
    pub buyer_per_minute: u32,
    pub address_per_minute: u32,
    /// The longest active block on the buyer or the address, if any.
    pub blocked: Option<Block>,
    /// The buyer solved a challenge for this sale recently: do not ask again while the pass
    /// lasts.
    pub pass: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchlistError {
    #[error("watchlist store unavailable")]
    Store(#[from] ::redis::RedisError),
    #[error("unexpected reply from the watchlist: {0}")]
    UnexpectedReply(String),
}

/// The port.
pub trait Watchlist: Send + Sync {
    /// Counts `request` for the buyer and the address (once, however often it is re-sent) and
    /// reads their blocks and the buyer's pass for `sale`.
    fn observe(
        &self,
        buyer: &UserId,
        address: Option<&str>,
        sale: &SaleId,
        request: &RequestId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Observation, WatchlistError>> + Send;

    /// Blocks `subject` for `duration` (a new block replaces a shorter or longer one).
    fn block(
        &self,
        subject: &Subject,
        reason: &str,
        duration: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), WatchlistError>> + Send;

    /// Lifts a block; `false` if there was none.
    fn lift(&self, subject: &Subject) -> impl Future<Output = Result<bool, WatchlistError>> + Send;

    /// The active blocks, longest remaining first, at most `limit` of them, and how many there
    /// are in all.
    fn active_blocks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<BlockList, WatchlistError>> + Send;

    /// Redeems a solved challenge: the first redemption of its nonce (and the same request
    /// again) grants the buyer a pass on the sale; the pass and the spent nonce are written in
    /// one step, so a lost answer or a concurrent duplicate leaves the pass standing for the
    /// client's retry. A solution is single use: redeemed again by another request it grants
    /// nothing new ([`Redemption::AlreadyRedeemed`]).
    fn redeem(
        &self,
        redeem: &Redeem<'_>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Redemption, WatchlistError>> + Send;
}

/// What to redeem (see [`Watchlist::redeem`]).
#[derive(Debug, Clone)]
pub struct Redeem<'a> {
    pub buyer: &'a UserId,
    pub sale: &'a SaleId,
    /// The solved challenge's nonce.
    pub nonce: &'a str,
    pub request: &'a RequestId,
    /// How long the nonce is remembered (at least the challenge's remaining lifetime).
    pub nonce_ttl: Duration,
    /// How long the pass spares the buyer another challenge on this sale.
    pub pass_for: Duration,
}

/// The answer of [`Watchlist::redeem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// Redeemed now; the pass is granted.
    Granted,
    /// Redeemed before by another request. `pass_stands`: the buyer's pass on the sale is
    /// still there (a double submit, or the retry of a call whose answer was lost); without
    /// it, this is a replay.
    AlreadyRedeemed { pass_stands: bool },
}

/// The address as counted and blocked: an IPv4 address as it is, an IPv6 address by its /64
/// (one subscriber's whole prefix: an IPv6 client can change addresses inside it at will), an
/// IPv4-mapped IPv6 address as its IPv4 address; a /64 as listed stays as it is.
pub fn address_group(raw: &str) -> String {
    let raw = raw.trim();
    let bare = raw.strip_suffix("/64").unwrap_or(raw);
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => raw.to_owned(),
    }
}

/// The sliding-minute estimate from two fixed minutes. `into_minute`: how far into the current
/// minute `now` is.
pub(crate) fn sliding_minute(current: u64, previous: u64, into_minute: Duration) -> u32 {
    let left_of_previous = 1.0 - (into_minute.as_secs_f64() / 60.0).clamp(0.0, 1.0);
    (current as f64 + previous as f64 * left_of_previous)
        .round()
        .min(u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sliding_minute_weighs_the_previous_minute_by_what_is_left_of_it() {
        assert_eq!(sliding_minute(10, 60, Duration::ZERO), 70);
        assert_eq!(sliding_minute(10, 60, Duration::from_secs(30)), 40);
        assert_eq!(sliding_minute(10, 60, Duration::from_secs(60)), 10);
    }

    #[test]
    fn labels_round_trip_and_refuse_strangers() {
        for subject in [
            Subject::Buyer(UserId::parse("alice").unwrap()),
            Subject::Address("203.0.113.9".into()),
            Subject::Address("2001:db8:0:0::/64".into()),
        ] {
            assert_eq!(Subject::parse_label(&subject.label()), Some(subject));
        }
        // The client's own address finds the block it is counted under.
        assert_eq!(
            Subject::parse_label("address:2001:db8:1:2:aaaa::1"),
            Some(Subject::Address("2001:db8:1:2::/64".into()))
        );
        assert_eq!(
            Subject::parse_label("address:::ffff:198.51.100.4"),
            Some(Subject::Address("198.51.100.4".into()))
        );
        assert_eq!(Subject::parse_label("robot:x"), None);
        assert_eq!(Subject::parse_label("address:"), None);
        assert_eq!(Subject::parse_label("nocolon"), None);
    }
}
