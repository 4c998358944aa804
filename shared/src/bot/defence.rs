//! The bot defence's decision for one request: observe, score, and admit, challenge or block.
//!
//! 1. The watchlist counts the request and says whether the buyer or the address is blocked:
//!    a block answers at once (403 `blocked`, with `Retry-After`).
//! 2. A solution sent with the request is verified whatever the score (a client that solves is
//!    judged on its solution): a valid, unspent one grants a pass and admits; a failed, expired
//!    or replayed one blocks the buyer and the address for [`DefencePolicy::block_for`]
//!    (the seed: one hour); a malformed one is a client error (400), not a block.
//! 3. Otherwise a buyer with a pass is admitted; one scoring at or above the threshold gets a
//!    challenge (403 `challenge-required`); the rest are admitted.
//!
//! The score and its reasons go to the log and to admins, never to the client.

use std::time::Duration;

use super::challenge::{Binding, ChallengeVerifier, Issued, Refusal};
use super::score::{score, Score, Signals, Telemetry, Weights};
use super::watchlist::{Block, Subject, Watchlist, WatchlistError};
use crate::domain::{Clock, Timestamp, UserId};
use crate::rate_limit::RequestId;

/// Durations of the defence's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct DefencePolicy {
    pub weights: Weights,
    /// How long a failed, expired or replayed challenge blocks (seed 004 flow 10: one hour).
    pub block_for: Duration,
    /// How long a solved challenge spares the buyer another (a person is not asked again on
    /// every click).
    pub pass_for: Duration,
    /// Block the source address too, not only the buyer (the seed's rule). Off where every
    /// client shares one address (LocalStack: all calls come from 127.0.0.1).
    pub block_addresses: bool,
}

impl Default for DefencePolicy {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            block_for: Duration::from_secs(3600),
            pass_for: Duration::from_secs(600),
            block_addresses: true,
        }
    }
}

/// What is known about the request, besides the watchlist's counts.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub buyer: UserId,
    pub address: Option<String>,
    pub request: RequestId,
    pub binding: Binding,
    pub account_age: Option<Duration>,
    pub telemetry: Option<Telemetry>,
    pub edge_signals: Vec<String>,
    /// The client's answer to an earlier challenge, if it sent one.
    pub solution: Option<String>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Admitted { score: Score, by_pass: bool },
    Challenged { score: Score, challenge: Issued },
    Blocked { block: Block },
    /// The solution is not a solution (400, no block).
    Malformed { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DefenceError {
    #[error(transparent)]
    Watchlist(#[from] WatchlistError),
    #[error(transparent)]
    Issue(#[from] super::challenge::IssueError),
}

pub struct BotDefence<W, V, K> {
    pub watchlist: W,
    pub challenges: V,
    pub clock: K,
    pub policy: DefencePolicy,
}

impl<W: Watchlist, V: ChallengeVerifier, K: Clock> BotDefence<W, V, K> {
    pub async fn judge(&self, suspect: &Suspect) -> Result<Verdict, DefenceError> {
        let now = self.clock.now();
        let seen = self
            .watchlist
            .observe(&suspect.buyer, suspect.address.as_deref(), &suspect.request, now)
            .await?;
        if let Some(block) = seen.blocked {
            return Ok(Verdict::Blocked { block });
        }
        let score = score(
            &Signals {
                user_per_minute: seen.buyer_per_minute,
                ip_per_minute: seen.address_per_minute,
                account_age: suspect.account_age,
                telemetry: suspect.telemetry.clone(),
                edge_signals: suspect.edge_signals.clone(),
            },
            &self.policy.weights,
        );
        if let Some(response) = &suspect.solution {
            return self.redeem(suspect, response, score, now).await;
        }
        if seen.pass {
            return Ok(Verdict::Admitted {
                score,
                by_pass: true,
            });
        }
        if score.reaches(self.policy.weights.challenge_at) {
            let challenge = self.challenges.issue(&suspect.binding, score.value, now)?;
            return Ok(Verdict::Challenged { score, challenge });
        }
        Ok(Verdict::Admitted {
            score,
            by_pass: false,
        })
    }

    async fn redeem(
        &self,
        suspect: &Suspect,
        response: &str,
        score: Score,
        now: Timestamp,
    ) -> Result<Verdict, DefenceError> {
        let reason = match self.challenges.verify(response, &suspect.binding) {
            Ok(solved) => {
                // Remember the nonce a little past the challenge's own end.
                let ttl = now.until(solved.expires_at) + Duration::from_secs(5);
                if self
                    .watchlist
                    .spend(&solved.nonce, &suspect.request, ttl, now)
                    .await?
                {
                    self.watchlist
                        .grant_pass(&suspect.buyer, self.policy.pass_for, now)
                        .await?;
                    return Ok(Verdict::Admitted {
                        score,
                        by_pass: false,
                    });
                }
                "challenge-replayed"
            }
            Err(Refusal::Malformed(reason)) => return Ok(Verdict::Malformed { reason }),
            Err(Refusal::Failed) => "challenge-failed",
            Err(Refusal::Expired) => "challenge-expired",
        };
        let buyer = Subject::Buyer(suspect.buyer.clone());
        self.watchlist
            .block(&buyer, reason, self.policy.block_for, now)
            .await?;
        if let Some(address) = suspect.address.as_ref().filter(|_| self.policy.block_addresses) {
            self.watchlist
                .block(
                    &Subject::Address(address.clone()),
                    reason,
                    self.policy.block_for,
                    now,
                )
                .await?;
        }
        Ok(Verdict::Blocked {
            block: Block {
                subject: buyer,
                reason: reason.to_owned(),
                remaining: self.policy.block_for,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::bot::challenge::altcha::{AltchaChallenges, AltchaConfig};
    use crate::bot::watchlist::memory::InMemoryWatchlist;
    use crate::domain::{ManualClock, SaleId};

    fn defence() -> BotDefence<InMemoryWatchlist, AltchaChallenges, ManualClock> {
        BotDefence {
            watchlist: InMemoryWatchlist::default(),
            challenges: AltchaChallenges::new(AltchaConfig {
                signature_secret: "sig".into(),
                key_secret: "key".into(),
                ttl: Duration::from_secs(120),
                base_work: 100,
                threshold: 80,
            }),
            clock: ManualClock::at(crate::domain::SystemClock.now()),
            policy: DefencePolicy::default(),
        }
    }

    fn suspect(buyer: &str, request: &str) -> Suspect {
        Suspect {
            buyer: UserId::parse(buyer).unwrap(),
            address: Some("198.51.100.20".into()),
            request: RequestId::from_gateway(Some(request)),
            binding: Binding {
                buyer: UserId::parse(buyer).unwrap(),
                sale: SaleId::parse("drop").unwrap(),
                action: "reserve",
            },
            account_age: Some(Duration::from_secs(30 * 24 * 3600)),
            telemetry: None,
            edge_signals: Vec::new(),
            solution: None,
        }
    }

    /// The seed's bot: a fresh account, headless, no pointer.
    fn bot(request: &str) -> Suspect {
        Suspect {
            account_age: Some(Duration::from_secs(600)),
            telemetry: Some(Telemetry {
                webdriver: true,
                headless: true,
                webgl: Some(false),
                canvas: Some(false),
                pointer_events: Some(0),
                click_after_ms: Some(20),
            }),
            edge_signals: vec!["automated-browser".into()],
            ..suspect("bot", request)
        }
    }

    fn solve(issued: &Issued) -> String {
        let challenge: altcha::Challenge = serde_json::from_value(issued.challenge.clone()).unwrap();
        let solution = altcha::solve_challenge(altcha::SolveChallengeOptions::new(&challenge))
            .unwrap()
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::json!({"challenge": challenge, "solution": solution}).to_string())
    }

    #[tokio::test]
    async fn a_person_is_admitted_and_never_challenged() {
        let d = defence();
        for i in 0..5 {
            let verdict = d.judge(&suspect("alice", &format!("a{i}"))).await.unwrap();
            assert!(matches!(verdict, Verdict::Admitted { by_pass: false, .. }), "{verdict:?}");
        }
    }

    #[tokio::test]
    async fn a_bot_is_challenged_and_a_solution_admits_it_once_then_its_pass_lasts() {
        let d = defence();
        let Verdict::Challenged { challenge, score } = d.judge(&bot("b1")).await.unwrap() else {
            panic!("not challenged")
        };
        assert!(score.value >= 80);
        let answer = solve(&challenge);
        let with = |request: &str| Suspect {
            solution: Some(answer.clone()),
            ..bot(request)
        };
        assert!(matches!(d.judge(&with("b2")).await.unwrap(), Verdict::Admitted { .. }));
        // The same request re-sent is still admitted (not a replay).
        assert!(matches!(d.judge(&with("b2")).await.unwrap(), Verdict::Admitted { .. }));
        // Without a solution, the pass admits.
        assert!(matches!(
            d.judge(&bot("b3")).await.unwrap(),
            Verdict::Admitted { by_pass: true, .. }
        ));
        // The same solution on another request: a replay, blocked for an hour.
        let Verdict::Blocked { block } = d.judge(&with("b4")).await.unwrap() else {
            panic!("a replay was not blocked")
        };
        assert_eq!(block.reason, "challenge-replayed");
        assert_eq!(block.remaining, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn a_failed_solution_blocks_the_buyer_and_the_address_for_an_hour_then_it_ends() {
        let d = defence();
        let Verdict::Challenged { challenge, .. } = d.judge(&bot("f1")).await.unwrap() else {
            panic!("not challenged")
        };
        // Another buyer's solution is a failed one for this buyer.
        let mallory = Binding {
            buyer: UserId::parse("mallory").unwrap(),
            ..bot("x").binding
        };
        let foreign = d.challenges.issue(&mallory, 80, d.clock.now()).unwrap();
        let attempt = Suspect {
            solution: Some(solve(&foreign)),
            ..bot("f2")
        };
        let Verdict::Blocked { block } = d.judge(&attempt).await.unwrap() else {
            panic!("not blocked")
        };
        assert_eq!(block.reason, "challenge-failed");
        drop(challenge);
        // Every request of the buyer, and of a person behind the same address, is blocked.
        assert!(matches!(d.judge(&bot("f3")).await.unwrap(), Verdict::Blocked { .. }));
        assert!(matches!(
            d.judge(&suspect("neighbour", "n1")).await.unwrap(),
            Verdict::Blocked { .. }
        ));
        // An hour and a second later, the person is admitted again.
        d.clock.advance(Duration::from_secs(3601));
        assert!(matches!(
            d.judge(&suspect("neighbour", "n2")).await.unwrap(),
            Verdict::Admitted { .. }
        ));
    }

    #[tokio::test]
    async fn without_address_blocks_only_the_buyer_is_blocked() {
        let mut d = defence();
        d.policy.block_addresses = false;
        let attempt = Suspect {
            solution: Some(solve(&d.challenges.issue(&bot("x").binding, 80, d.clock.now()).unwrap())),
            ..bot("w1")
        };
        // A valid solution of the bot's own challenge, replayed on another request.
        assert!(matches!(d.judge(&attempt).await.unwrap(), Verdict::Admitted { .. }));
        let replay = Suspect {
            request: RequestId::from_gateway(Some("w2")),
            ..attempt
        };
        assert!(matches!(d.judge(&replay).await.unwrap(), Verdict::Blocked { .. }));
        assert!(matches!(d.judge(&bot("w3")).await.unwrap(), Verdict::Blocked { .. }));
        // The person behind the same address is not.
        assert!(matches!(
            d.judge(&suspect("neighbour", "n1")).await.unwrap(),
            Verdict::Admitted { .. }
        ));
    }

    #[tokio::test]
    async fn a_malformed_solution_is_a_client_error_not_a_block_or_a_pass() {
        let d = defence();
        let attempt = Suspect {
            solution: Some("not base64 at all!".into()),
            ..bot("m1")
        };
        assert!(matches!(d.judge(&attempt).await.unwrap(), Verdict::Malformed { .. }));
        // Not blocked, not passed: the next plain request is challenged again.
        assert!(matches!(d.judge(&bot("m2")).await.unwrap(), Verdict::Challenged { .. }));
    }
}
