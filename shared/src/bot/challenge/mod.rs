//! The challenge a buyer above the score threshold must solve before the request goes on.
//!
//! The port issues a challenge bound to the buyer, the sale and the action, and verifies a
//! solution for them. Single use is not the verifier's business: the caller spends the
//! challenge on the [`super::watchlist::Watchlist`] after a successful verification.
//!
//! Adapters: [`altcha`], a proof-of-work challenge verified in process (no outbound call: it
//! works in a VPC Lambda without NAT and on LocalStack), the work scaled by the score; and
//! [`turnstile`], Cloudflare's hosted CAPTCHA, checked with its siteverify call. [`Challenges`]
//! is whichever one the configuration picks.

pub mod altcha;
pub mod turnstile;

use std::future::Future;

use crate::domain::{SaleId, Timestamp, UserId};

/// What the challenge is for: it cannot be used for another buyer, sale or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub buyer: UserId,
    pub sale: SaleId,
    /// `reserve`, `join`, ...
    pub action: &'static str,
}

/// A challenge to send to the client (in the 403 problem's `challenge` member).
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// The challenge as the client library reads it (JSON).
    pub challenge: serde_json::Value,
    pub expires_at: Timestamp,
}

/// A verified solution: the nonce to spend and how long it must be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solved {
    pub nonce: String,
    pub expires_at: Timestamp,
}

/// Why a solution was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a solution at all (not base64, not JSON of the right shape, too long): a client
    /// error, answered 400 without a block.
    #[error("the challenge response is malformed: {0}")]
    Malformed(String),
    /// A well-formed solution that does not solve this buyer's challenge (bad work, bad
    /// signature, another buyer's, sale's or action's): answered with a block.
    #[error("the challenge was not solved")]
    Failed,
    /// Solved too late: answered with a block (the seed's rule).
    #[error("the challenge expired")]
    Expired,
    /// This buyer's own answer, but to another challenge: one of ours for another sale or
    /// action, or one whose time is up. What a front end that keeps its last answer sends: the
    /// buyer gets a fresh challenge, not a block (a bot gains nothing from it: a request
    /// without an answer gets a challenge anyway).
    #[error("the answer is for another challenge of this buyer")]
    Stale,
    /// Already redeemed elsewhere, as the verifier itself knows (a hosted CAPTCHA's token is
    /// single use): answered with a block, as a replay.
    #[error("the challenge was already redeemed")]
    Replayed,
    /// The verifier could not judge (a hosted service unreachable, refusing our key, or
    /// failing): neither a pass nor a block; the client retries (503).
    #[error("the challenge verifier is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("could not create a challenge: {0}")]
pub struct IssueError(pub String);

/// The port.
pub trait ChallengeVerifier: Send + Sync {
    /// A new challenge for `binding`, harder for a higher `score` (0-100).
    fn issue(&self, binding: &Binding, score: u8, now: Timestamp) -> Result<Issued, IssueError>;
    /// Checks `response` (what the client sent back) against `binding` at `now`.
    fn verify(
        &self,
        response: &str,
        binding: &Binding,
        now: Timestamp,
    ) -> impl Future<Output = Result<Solved, Refusal>> + Send;
}

/// The adapter the configuration picks (`BOT_CHALLENGE_PROVIDER`).
pub enum Challenges {
    Altcha(altcha::AltchaChallenges),
    /// Boxed: it holds a connection pool.
    Turnstile(Box<turnstile::TurnstileVerifier>),
}

impl ChallengeVerifier for Challenges {
    fn issue(&self, binding: &Binding, score: u8, now: Timestamp) -> Result<Issued, IssueError> {
        match self {
            Challenges::Altcha(a) => a.issue(binding, score, now),
            Challenges::Turnstile(t) => t.issue(binding, score, now),
        }
    }

    async fn verify(
        &self,
        response: &str,
        binding: &Binding,
        now: Timestamp,
    ) -> Result<Solved, Refusal> {
        match self {
            Challenges::Altcha(a) => a.verify(response, binding, now).await,
            Challenges::Turnstile(t) => t.verify(response, binding, now).await,
        }
    }
}
