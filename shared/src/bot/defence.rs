//! The bot defence's decision for one request: observe, score, and admit, challenge or block.
//!
//! 1. The watchlist counts the request and says whether the buyer or the address is blocked:
//!    a block answers at once (403 `blocked`, with `Retry-After`).
//! 2. A buyer with a pass for this sale is admitted, solution or not: a client that solved and
//!    then retries (after a 429, a 503 or a lost answer) sends the same solution again, and must
//!    not be punished for it.
//! 3. A request scoring under the threshold is admitted; a solution it carries is not judged
//!    (a front end may keep sending an earlier answer: that must not block a person).
//! 4. At or above the threshold, a solution sent with the request is verified: a valid one is
//!    redeemed (single use: the first redemption grants a pass for this sale and admits; a
//!    second copy admits only while that pass stands); the buyer's own answer to another or a
//!    timed-out challenge (a front end that kept it) gets a fresh challenge; a failed (bad
//!    work, another buyer's), expired or replayed one
//!    (redeemed before, no pass standing) blocks the buyer, and the address if
//!    [`DefencePolicy::block_addresses`], for [`DefencePolicy::block_for`] (the seed: one hour);
//!    a malformed one is a client error (400), not a block. The block holds for this request
//!    even if it could not be written. Without a solution the request gets a challenge (403
//!    `challenge-required`).
//!
//! The score and its reasons go to the log and to admins, never to the client.

use std::time::Duration;

use super::challenge::{Binding, ChallengeVerifier, Issued, Refusal};
use super::score::{score, Score, Signals, Telemetry, Weights};
use super::watchlist::{Block, Redeem, Redemption, Subject, Watchlist, WatchlistError};
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
    /// Block the source address too, not only the buyer (the seed's rule). Off by default: any
    /// account can send a wrong solution, so an address block lets one account lock out a
    /// carrier NAT, an office or a proxy in front of the API for an hour. Turn it on only where
    /// clients do not share addresses.
    pub block_addresses: bool,
}

impl Default for DefencePolicy {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            block_for: Duration::from_secs(3600),
            pass_for: Duration::from_secs(600),
            block_addresses: false,
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
    Admitted {
        score: Score,
        by_pass: bool,
    },
    Challenged {
        score: Score,
        challenge: Issued,
    },
    Blocked {
        block: Block,
    },
    /// The solution is not a solution (400, no block).
    Malformed {
        reason: String,
    },
    /// The verifier could not judge the solution (503 with `Retry-After`, no pass, no block:
    /// the client sends it again).
    VerifierUnavailable,
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
            .observe(
                &suspect.buyer,
                suspect.address.as_deref(),
                &suspect.binding.sale,
                &suspect.request,
                now,
            )
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
        if seen.pass {
            return Ok(Verdict::Admitted {
                score,
                by_pass: true,
            });
        }
        if !score.reaches(self.policy.weights.challenge_at) {
            // Below the threshold a solution is not needed, and not judged: a front end that
            // keeps sending the answer of an earlier challenge (on another sale, or after its
            // pass ran out) must not get a person blocked.
            return Ok(Verdict::Admitted {
                score,
                by_pass: false,
            });
        }
        match &suspect.solution {
            Some(response) => self.redeem(suspect, response, score, now).await,
            None => {
                let challenge = self.challenges.issue(&suspect.binding, score.value, now)?;
                Ok(Verdict::Challenged { score, challenge })
            }
        }
    }

    async fn redeem(
        &self,
        suspect: &Suspect,
        response: &str,
        score: Score,
        now: Timestamp,
    ) -> Result<Verdict, DefenceError> {
        let reason = match self
            .challenges
            .verify(response, &suspect.binding, now)
            .await
        {
            Ok(solved) => {
                // The pass and the spent nonce are one write: if its answer is lost, or two
                // copies of the solved request race, the retry or the other copy finds the
                // pass (admitted) rather than a nonce spent by someone else (a replay). The
                // nonce is remembered past the challenge's own end, with room for clock skew
                // between this instance and the one that issued it.
                let redemption = self
                    .watchlist
                    .redeem(
                        &Redeem {
                            buyer: &suspect.buyer,
                            sale: &suspect.binding.sale,
                            nonce: &solved.nonce,
                            request: &suspect.request,
                            nonce_ttl: now.until(solved.expires_at) + Duration::from_secs(60),
                            pass_for: self.policy.pass_for,
                        },
                        now,
                    )
                    .await?;
                match redemption {
                    Redemption::Granted => {
                        return Ok(Verdict::Admitted {
                            score,
                            by_pass: false,
                        })
                    }
                    Redemption::AlreadyRedeemed { pass_stands: true } => {
                        return Ok(Verdict::Admitted {
                            score,
                            by_pass: true,
                        })
                    }
                    // Redeemed before and no pass stands: a replay.
                    Redemption::AlreadyRedeemed { pass_stands: false } => "challenge-replayed",
                }
            }
            Err(Refusal::Malformed(reason)) => return Ok(Verdict::Malformed { reason }),
            Err(Refusal::Stale) => {
                let challenge = self.challenges.issue(&suspect.binding, score.value, now)?;
                return Ok(Verdict::Challenged { score, challenge });
            }
            Err(Refusal::Failed) => "challenge-failed",
            Err(Refusal::Expired) => "challenge-expired",
            Err(Refusal::Replayed) => "challenge-replayed",
            Err(Refusal::Unavailable(reason)) => {
                tracing::error!(%reason, "challenge verifier unavailable");
                return Ok(Verdict::VerifierUnavailable);
            }
        };
        let buyer = Subject::Buyer(suspect.buyer.clone());
        let mut subjects = vec![buyer.clone()];
        if let Some(address) = suspect
            .address
            .as_ref()
            .filter(|_| self.policy.block_addresses)
        {
            subjects.push(Subject::Address(address.clone()));
        }
        for subject in &subjects {
            // This request is refused whatever happens to the write: a store that cannot take
            // the block must not turn a failed challenge into an admission.
            if let Err(error) = self
                .watchlist
                .block(subject, reason, self.policy.block_for, now)
                .await
            {
                tracing::error!(%error, subject = %subject.label(), reason, "could not record a block");
            }
        }
        tracing::warn!(buyer = %suspect.buyer, reason, "blocked");
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
    use crate::bot::watchlist::{BlockList, Observation};
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
        let challenge: altcha::Challenge =
            serde_json::from_value(issued.challenge.clone()).unwrap();
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
            assert!(
                matches!(verdict, Verdict::Admitted { by_pass: false, .. }),
                "{verdict:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_bot_is_challenged_and_a_solution_admits_it_then_its_pass_lasts_on_that_sale() {
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
        assert!(matches!(
            d.judge(&with("b2")).await.unwrap(),
            Verdict::Admitted { by_pass: false, .. }
        ));
        // The client retries with the same solution (its answer was a 429 or got lost): the
        // pass admits it, it is not a replay.
        assert!(matches!(
            d.judge(&with("b3")).await.unwrap(),
            Verdict::Admitted { by_pass: true, .. }
        ));
        // Without a solution, the pass admits.
        assert!(matches!(
            d.judge(&bot("b4")).await.unwrap(),
            Verdict::Admitted { by_pass: true, .. }
        ));
        // On another sale the pass opens nothing.
        let elsewhere = Suspect {
            binding: Binding {
                sale: SaleId::parse("other-drop").unwrap(),
                ..bot("b5").binding
            },
            ..bot("b5")
        };
        assert!(matches!(
            d.judge(&elsewhere).await.unwrap(),
            Verdict::Challenged { .. }
        ));
        // When the pass has run out, the next request is challenged again.
        d.clock.advance(Duration::from_secs(601));
        assert!(matches!(
            d.judge(&bot("b6")).await.unwrap(),
            Verdict::Challenged { .. }
        ));
    }

    #[tokio::test]
    async fn a_solution_spent_by_another_request_with_no_pass_standing_is_a_replay_and_blocks() {
        let d = defence();
        let Verdict::Challenged { challenge, .. } = d.judge(&bot("r1")).await.unwrap() else {
            panic!("not challenged")
        };
        // Redeemed by an earlier request whose pass did not survive.
        let nonce = challenge.challenge["parameters"]["nonce"]
            .as_str()
            .unwrap()
            .to_owned();
        let other = RequestId::from_gateway(Some("someone-else"));
        let buyer = UserId::parse("bot").unwrap();
        let sale = SaleId::parse("drop").unwrap();
        let earlier = Redeem {
            buyer: &buyer,
            sale: &sale,
            nonce: &nonce,
            request: &other,
            nonce_ttl: Duration::from_secs(300),
            pass_for: Duration::from_millis(1),
        };
        assert_eq!(
            d.watchlist.redeem(&earlier, d.clock.now()).await.unwrap(),
            Redemption::Granted
        );
        d.clock.advance(Duration::from_secs(1));
        let replay = Suspect {
            solution: Some(solve(&challenge)),
            ..bot("r2")
        };
        let Verdict::Blocked { block } = d.judge(&replay).await.unwrap() else {
            panic!("a replay was not blocked")
        };
        assert_eq!(
            (block.reason.as_str(), block.remaining),
            ("challenge-replayed", Duration::from_secs(3600))
        );
    }

    #[tokio::test]
    async fn a_failed_solution_blocks_the_buyer_and_with_address_blocks_the_address_for_an_hour() {
        let mut d = defence();
        d.policy.block_addresses = true;
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
        // Every request of the buyer, and of a person behind the same address, is blocked.
        assert!(matches!(
            d.judge(&bot("f3")).await.unwrap(),
            Verdict::Blocked { .. }
        ));
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
    async fn by_default_only_the_buyer_is_blocked_not_the_address() {
        let d = defence();
        assert!(!d.policy.block_addresses);
        let mallory = Binding {
            buyer: UserId::parse("mallory").unwrap(),
            ..bot("x").binding
        };
        let foreign = d.challenges.issue(&mallory, 80, d.clock.now()).unwrap();
        let attempt = Suspect {
            solution: Some(solve(&foreign)),
            ..bot("w1")
        };
        assert!(matches!(
            d.judge(&attempt).await.unwrap(),
            Verdict::Blocked { .. }
        ));
        assert!(matches!(
            d.judge(&bot("w2")).await.unwrap(),
            Verdict::Blocked { .. }
        ));
        // The person behind the same address is not.
        assert!(matches!(
            d.judge(&suspect("neighbour", "n1")).await.unwrap(),
            Verdict::Admitted { .. }
        ));
    }

    /// The in-memory watchlist with faults: block writes that fail, redemptions whose answer is
    /// lost after the write landed, and observations taken before another request's pass was
    /// written (two copies of one request racing).
    #[derive(Default)]
    struct Faulty {
        inner: InMemoryWatchlist,
        fail_blocks: bool,
        lose_redeem_answers: std::sync::atomic::AtomicU32,
        observe_before_passes: bool,
    }

    impl Watchlist for Faulty {
        async fn observe(
            &self,
            buyer: &UserId,
            address: Option<&str>,
            sale: &SaleId,
            request: &RequestId,
            now: Timestamp,
        ) -> Result<Observation, WatchlistError> {
            let mut seen = self
                .inner
                .observe(buyer, address, sale, request, now)
                .await?;
            if self.observe_before_passes {
                seen.pass = false;
            }
            Ok(seen)
        }
        async fn block(
            &self,
            subject: &Subject,
            reason: &str,
            duration: Duration,
            now: Timestamp,
        ) -> Result<(), WatchlistError> {
            if self.fail_blocks {
                return Err(WatchlistError::UnexpectedReply("store down".into()));
            }
            self.inner.block(subject, reason, duration, now).await
        }
        async fn lift(&self, subject: &Subject) -> Result<bool, WatchlistError> {
            self.inner.lift(subject).await
        }
        async fn active_blocks(
            &self,
            now: Timestamp,
            limit: usize,
        ) -> Result<BlockList, WatchlistError> {
            self.inner.active_blocks(now, limit).await
        }
        async fn redeem(
            &self,
            r: &Redeem<'_>,
            now: Timestamp,
        ) -> Result<Redemption, WatchlistError> {
            let redemption = self.inner.redeem(r, now).await?;
            let lost = self
                .lose_redeem_answers
                .load(std::sync::atomic::Ordering::SeqCst);
            if lost > 0 {
                self.lose_redeem_answers
                    .store(lost - 1, std::sync::atomic::Ordering::SeqCst);
                return Err(WatchlistError::UnexpectedReply("answer lost".into()));
            }
            Ok(redemption)
        }
    }

    fn with_watchlist(watchlist: Faulty) -> BotDefence<Faulty, AltchaChallenges, ManualClock> {
        let base = defence();
        BotDefence {
            watchlist,
            challenges: base.challenges,
            clock: base.clock,
            policy: base.policy,
        }
    }

    #[tokio::test]
    async fn a_redemption_whose_answer_is_lost_does_not_turn_the_clients_retry_into_a_replay() {
        let d = with_watchlist(Faulty {
            lose_redeem_answers: 1.into(),
            ..Faulty::default()
        });
        let Verdict::Challenged { challenge, .. } = d.judge(&bot("l1")).await.unwrap() else {
            panic!("not challenged")
        };
        let answer = solve(&challenge);
        let with = |request: &str| Suspect {
            solution: Some(answer.clone()),
            ..bot(request)
        };
        // The redemption landed but its answer was lost: this request fails (the guard lets it
        // through and logs it); the client retries with the same solution.
        assert!(d.judge(&with("l2")).await.is_err());
        assert!(matches!(
            d.judge(&with("l3")).await.unwrap(),
            Verdict::Admitted { by_pass: true, .. }
        ));
    }

    #[tokio::test]
    async fn a_failed_solution_is_refused_even_when_the_block_cannot_be_written() {
        let d = with_watchlist(Faulty {
            fail_blocks: true,
            ..Faulty::default()
        });
        let foreign = Binding {
            buyer: UserId::parse("mallory").unwrap(),
            ..bot("x").binding
        };
        let attempt = Suspect {
            solution: Some(solve(
                &d.challenges.issue(&foreign, 80, d.clock.now()).unwrap(),
            )),
            ..bot("z2")
        };
        assert!(matches!(
            d.judge(&attempt).await.unwrap(),
            Verdict::Blocked { .. }
        ));
    }

    #[tokio::test]
    async fn a_malformed_solution_is_a_client_error_not_a_block_or_a_pass() {
        let d = defence();
        let attempt = Suspect {
            solution: Some("not base64 at all!".into()),
            ..bot("m1")
        };
        assert!(matches!(
            d.judge(&attempt).await.unwrap(),
            Verdict::Malformed { .. }
        ));
        // Not blocked, not passed: the next plain request is challenged again.
        assert!(matches!(
            d.judge(&bot("m2")).await.unwrap(),
            Verdict::Challenged { .. }
        ));
    }

    /// Found by a break attempt: two copies of a solved request (a double click, or a retry
    /// while the first is in flight) both observed no pass; the second found the nonce spent
    /// and blocked the person who had just solved.
    #[tokio::test]
    async fn two_copies_of_a_solved_request_racing_are_both_admitted_and_grant_one_pass() {
        let d = with_watchlist(Faulty {
            observe_before_passes: true,
            ..Faulty::default()
        });
        let Verdict::Challenged { challenge, .. } = d.judge(&bot("c1")).await.unwrap() else {
            panic!("not challenged")
        };
        let answer = solve(&challenge);
        let copy = |request: &str| Suspect {
            solution: Some(answer.clone()),
            ..bot(request)
        };
        assert!(matches!(
            d.judge(&copy("c2")).await.unwrap(),
            Verdict::Admitted { by_pass: false, .. }
        ));
        assert!(matches!(
            d.judge(&copy("c3")).await.unwrap(),
            Verdict::Admitted { by_pass: true, .. }
        ));
    }

    /// Found by a break attempt: a front end that kept an earlier answer got a person (score
    /// 0) blocked for an hour on another sale.
    #[tokio::test]
    async fn a_person_below_the_threshold_is_admitted_whatever_answer_it_carries() {
        let d = defence();
        let Verdict::Challenged { challenge, .. } = d.judge(&bot("s1")).await.unwrap() else {
            panic!("not challenged")
        };
        // The person's own answer on another sale, and a stale one after its lifetime.
        let stale = Suspect {
            binding: Binding {
                sale: SaleId::parse("other-drop").unwrap(),
                ..suspect("alice", "a1").binding
            },
            solution: Some(solve(&challenge)),
            ..suspect("alice", "a1")
        };
        let verdict = d.judge(&stale).await.unwrap();
        assert!(
            matches!(verdict, Verdict::Admitted { by_pass: false, .. }),
            "{verdict:?}"
        );
        d.clock.advance(Duration::from_secs(700));
        let later = Suspect {
            solution: Some("bm90IGV2ZW4gYW4gYW5zd2Vy".into()),
            ..suspect("alice", "a2")
        };
        assert!(matches!(
            d.judge(&later).await.unwrap(),
            Verdict::Admitted { .. }
        ));
    }

    /// Found by a second break attempt: a challenged buyer (still above the threshold) whose
    /// front end kept its answer was blocked on the next sale and after its pass ran out.
    #[tokio::test]
    async fn a_kept_answer_of_this_buyer_gets_a_fresh_challenge_not_a_block() {
        let d = defence();
        let Verdict::Challenged { challenge, .. } = d.judge(&bot("k1")).await.unwrap() else {
            panic!("not challenged")
        };
        let on_sale_b = Suspect {
            binding: Binding {
                sale: SaleId::parse("other-drop").unwrap(),
                ..bot("k2").binding
            },
            solution: Some(solve(&challenge)),
            ..bot("k2")
        };
        assert!(
            matches!(
                d.judge(&on_sale_b).await.unwrap(),
                Verdict::Challenged { .. }
            ),
            "another sale"
        );
        // An answer of this buyer's whose time is up (issued three minutes ago; ALTCHA checks
        // expiry against the system clock): a fresh challenge.
        let old = d
            .challenges
            .issue(
                &bot("k3").binding,
                85,
                d.clock.now().minus(Duration::from_secs(180)),
            )
            .unwrap();
        let late = Suspect {
            solution: Some(solve(&old)),
            ..bot("k3")
        };
        assert!(
            matches!(d.judge(&late).await.unwrap(), Verdict::Challenged { .. }),
            "timed out"
        );
    }
}
