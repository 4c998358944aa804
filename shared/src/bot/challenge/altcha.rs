//! ALTCHA's proof-of-work challenge (the `altcha` crate, v2 protocol), verified in process.
//!
//! Deterministic mode: the server picks the counter the client must find, so the work is
//! predictable and verification is one HMAC (the derived key's signature). The work grows with
//! the score: `base_work` counters at the threshold, four times that at 100. The challenge
//! carries the buyer, sale and action in its signed `data`, and expires after `ttl`.
//!
//! The client sends back base64 of the JSON `{"challenge": ..., "solution": {"counter",
//! "derivedKey"}}`, as ALTCHA's widget does (https://altcha.org/docs/v2/server-integration).

use std::collections::BTreeMap;
use std::time::Duration;

use altcha::{
    create_challenge, verify_solution, CreateChallengeOptions, Payload, VerifySolutionOptions,
};
use base64::Engine;

use super::{Binding, ChallengeVerifier, IssueError, Issued, Refusal, Solved};
use crate::domain::Timestamp;

/// The longest response accepted (a v2 payload is about 600 bytes; base64 adds a third).
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// Settings. The two secrets sign the challenge and the derived key (HMAC-SHA-256); they come
/// from the function's configuration (Secrets Manager on AWS) and are never logged.
#[derive(Clone)]
pub struct AltchaConfig {
    pub signature_secret: String,
    pub key_secret: String,
    /// How long a challenge may be answered.
    pub ttl: Duration,
    /// Counters to try at the threshold score (SHA-256, one hash each: about 50 ms in a
    /// browser at 100,000).
    pub base_work: u32,
    /// The score at which challenges start (the work is scaled from there).
    pub threshold: u8,
}

impl std::fmt::Debug for AltchaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AltchaConfig")
            .field("ttl", &self.ttl)
            .field("base_work", &self.base_work)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

pub struct AltchaChallenges {
    config: AltchaConfig,
}

impl AltchaChallenges {
    pub fn new(config: AltchaConfig) -> Self {
        Self { config }
    }

    /// The counter band for `score`: linear from `base_work` at the threshold to four times
    /// it at 100; the counter itself is drawn from the upper half of the band.
    fn work_for(&self, score: u8) -> u32 {
        let threshold = u32::from(self.config.threshold.min(99));
        let above = u32::from(score.max(self.config.threshold)) - threshold;
        let span = 100 - threshold;
        let base = u64::from(self.config.base_work.max(2));
        (base + base * 3 * u64::from(above) / u64::from(span)).min(u64::from(u32::MAX)) as u32
    }

    fn binding_data(binding: &Binding) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("buyer".to_string(), binding.buyer.as_str().into()),
            ("sale".to_string(), binding.sale.as_str().into()),
            ("action".to_string(), binding.action.into()),
        ])
    }
}

impl ChallengeVerifier for AltchaChallenges {
    fn issue(&self, binding: &Binding, score: u8, now: Timestamp) -> Result<Issued, IssueError> {
        let work = self.work_for(score);
        let expires_at = now.plus(self.config.ttl);
        let challenge = create_challenge(CreateChallengeOptions {
            algorithm: "SHA-256".into(),
            cost: 1,
            counter: Some(fastrand::u32(work / 2..=work)),
            data: Some(Self::binding_data(binding)),
            expires_at: Some(expires_at.as_secs()),
            hmac_signature_secret: Some(self.config.signature_secret.clone()),
            hmac_key_signature_secret: Some(self.config.key_secret.clone()),
            ..CreateChallengeOptions::default()
        })
        .map_err(|e| IssueError(e.to_string()))?;
        Ok(Issued {
            challenge: serde_json::to_value(&challenge).map_err(|e| IssueError(e.to_string()))?,
            expires_at,
        })
    }

    async fn verify(
        &self,
        response: &str,
        binding: &Binding,
        _now: Timestamp,
    ) -> Result<Solved, Refusal> {
        self.check(response, binding)
    }
}

impl AltchaChallenges {
    /// The verification itself: no I/O (the expiry is checked against the system clock by the
    /// `altcha` crate).
    pub fn check(&self, response: &str, binding: &Binding) -> Result<Solved, Refusal> {
        if response.len() > MAX_RESPONSE_BYTES {
            return Err(Refusal::Malformed(format!(
                "longer than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(response.trim())
            .map_err(|_| Refusal::Malformed("not base64".into()))?;
        let payload: Payload = serde_json::from_slice(&bytes)
            .map_err(|e| Refusal::Malformed(format!("not an ALTCHA payload: {e}")))?;
        let params = &payload.challenge.parameters;
        let result = verify_solution(VerifySolutionOptions {
            hmac_key_signature_secret: Some(self.config.key_secret.clone()),
            ..VerifySolutionOptions::new(
                &payload.challenge,
                &payload.solution,
                self.config.signature_secret.as_str(),
            )
        })
        // Errors come from parameters that fail to parse (non-hex values): malformed.
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
        // The signature covers `data` and the expiry, so a verified challenge's binding is
        // ours to compare. This buyer's own answer to another (or a timed-out) challenge is
        // stale, not a failure; anyone else's, or bad work, fails.
        let data = params.data.as_ref();
        let buyers_own = data.and_then(|d| d.get("buyer")).and_then(|b| b.as_str())
            == Some(binding.buyer.as_str());
        if result.expired {
            return Err(if buyers_own {
                Refusal::Stale
            } else {
                Refusal::Expired
            });
        }
        if !result.verified {
            return Err(Refusal::Failed);
        }
        if data != Some(&Self::binding_data(binding)) {
            return Err(if buyers_own {
                Refusal::Stale
            } else {
                Refusal::Failed
            });
        }
        let expires_at =
            Timestamp::from_millis(params.expires_at.unwrap_or(0).saturating_mul(1000));
        Ok(Solved {
            nonce: params.nonce.clone(),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use altcha::{solve_challenge, Challenge, SolveChallengeOptions};

    use super::*;
    use crate::domain::{Clock, SaleId, SystemClock, UserId};

    fn verifier() -> AltchaChallenges {
        AltchaChallenges::new(AltchaConfig {
            signature_secret: "test-signature-secret".into(),
            key_secret: "test-key-secret".into(),
            ttl: Duration::from_secs(120),
            base_work: 200,
            threshold: 80,
        })
    }

    fn binding(buyer: &str, sale: &str) -> Binding {
        Binding {
            buyer: UserId::parse(buyer).unwrap(),
            sale: SaleId::parse(sale).unwrap(),
            action: "reserve",
        }
    }

    /// Solves an issued challenge as a client does and encodes the answer.
    fn solve(issued: &Issued) -> String {
        let challenge: Challenge = serde_json::from_value(issued.challenge.clone()).unwrap();
        let solution = solve_challenge(SolveChallengeOptions::new(&challenge))
            .unwrap()
            .expect("solved");
        let payload = serde_json::json!({ "challenge": challenge, "solution": solution });
        base64::engine::general_purpose::STANDARD.encode(payload.to_string())
    }

    #[test]
    fn a_solved_challenge_verifies_for_its_buyer_sale_and_action_only() {
        let v = verifier();
        let now = SystemClock.now();
        let mine = binding("alice", "drop-1");
        let issued = v.issue(&mine, 85, now).unwrap();
        let answer = solve(&issued);
        let solved = v.check(&answer, &mine).unwrap();
        assert_eq!(solved.expires_at.as_secs(), issued.expires_at.as_secs());
        assert!(!solved.nonce.is_empty());
        assert_eq!(
            v.check(&answer, &binding("mallory", "drop-1")),
            Err(Refusal::Failed)
        );
        // Alice's own answer on another sale or action: stale (a fresh challenge), not failed.
        assert_eq!(
            v.check(&answer, &binding("alice", "drop-2")),
            Err(Refusal::Stale)
        );
        let join = Binding {
            action: "join",
            ..mine.clone()
        };
        assert_eq!(v.check(&answer, &join), Err(Refusal::Stale));
    }

    #[test]
    fn tampered_expired_and_foreign_solutions_fail() {
        let v = verifier();
        let now = SystemClock.now();
        let mine = binding("alice", "drop-1");
        // Tampered: the solution's counter changed, or the work made easier.
        let issued = v.issue(&mine, 80, now).unwrap();
        let answer = solve(&issued);
        let mut payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&answer)
                .unwrap(),
        )
        .unwrap();
        payload["solution"]["derivedKey"] = "00".repeat(32).into();
        let tampered = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
        assert_eq!(v.check(&tampered, &mine), Err(Refusal::Failed));
        // Expired: issued three minutes ago with a two-minute lifetime. The buyer's own is
        // stale (answered with a fresh challenge); another buyer's is expired.
        let old = v
            .issue(&mine, 80, now.minus(Duration::from_secs(180)))
            .unwrap();
        assert_eq!(v.check(&solve(&old), &mine), Err(Refusal::Stale));
        assert_eq!(
            v.check(&solve(&old), &binding("mallory", "drop-1")),
            Err(Refusal::Expired)
        );
        // Foreign: signed with another secret.
        let other = AltchaChallenges::new(AltchaConfig {
            signature_secret: "someone-else".into(),
            ..verifier().config
        });
        let foreign = other.issue(&mine, 80, now).unwrap();
        assert_eq!(v.check(&solve(&foreign), &mine), Err(Refusal::Failed));
    }

    #[test]
    fn malformed_and_oversized_responses_are_client_errors() {
        let v = verifier();
        let mine = binding("alice", "drop-1");
        for bad in ["", "%%%", "aGVsbG8=", &"A".repeat(MAX_RESPONSE_BYTES + 1)] {
            assert!(
                matches!(v.check(bad, &mine), Err(Refusal::Malformed(_))),
                "{bad:.20}"
            );
        }
        // Valid JSON, wrong shape.
        let wrong = base64::engine::general_purpose::STANDARD.encode(r#"{"challenge": 1}"#);
        assert!(matches!(v.check(&wrong, &mine), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn the_work_grows_with_the_score() {
        let v = verifier();
        assert_eq!(v.work_for(0), 200);
        assert_eq!(v.work_for(80), 200);
        assert_eq!(v.work_for(90), 500);
        assert_eq!(v.work_for(100), 800);
    }
}
