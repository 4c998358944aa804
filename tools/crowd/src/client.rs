//! What a buyer's client looks like to the bot defence (shared/src/bot), and what it does when
//! challenged: a person's browser sends the shop's telemetry and, if ever challenged, solves the
//! challenge; a scripted bot (seed 004 flow 10: fast, headless, a fresh account) sends what a
//! headless browser reports and, when challenged, answers with a guess.
//!
//! A proof of work can be solved by a script too, at the cost of CPU time: the bots here stand
//! for the ones that do not pay it (most of a flood); a bot that solves is a customer paying in
//! CPU, which the work scaled by the score makes expensive (README, "Bot defence").

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// The header the shop's front end fills (shared/src/bot/http.rs).
pub const TELEMETRY_HEADER: &str = "x-client-telemetry";
/// The header that carries a challenge's answer.
pub const CHALLENGE_RESPONSE_HEADER: &str = "x-challenge-response";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Person,
    Bot,
}

impl Client {
    /// How old the buyer's account is: a person's is a year old, a bot's ten minutes (made for
    /// the drop).
    pub fn account_age(self) -> Duration {
        match self {
            Client::Person => Duration::from_secs(365 * 24 * 3600),
            Client::Bot => Duration::from_secs(600),
        }
    }

    /// The telemetry its page sends (JSON): a person's browser has WebGL and a canvas, moves the
    /// pointer and clicks seconds after the page appears; the bot's is headless and instant.
    pub fn telemetry(self) -> String {
        match self {
            Client::Person => json!({
                "webdriver": false,
                "headless": false,
                "webgl": true,
                "canvas": true,
                "pointerEvents": fastrand::u32(12..90),
                "clickAfterMs": fastrand::u32(1_200..7_000),
            }),
            Client::Bot => json!({
                "webdriver": true,
                "headless": true,
                "webgl": false,
                "canvas": false,
                "pointerEvents": 0,
                "clickAfterMs": fastrand::u32(5..40),
            }),
        }
        .to_string()
    }

    /// The answer to a `challenge-required` problem's `challenge` member, if this client gives
    /// one: a person solves an ALTCHA challenge (as its widget would); the bot answers with a
    /// well-formed guess. `None` for a challenge it cannot answer (a hosted widget's).
    pub fn answer(self, challenge: &Value) -> Option<String> {
        let parsed: altcha::Challenge = serde_json::from_value(challenge.clone()).ok()?;
        let solution = match self {
            Client::Person => serde_json::to_value(
                altcha::solve_challenge(altcha::SolveChallengeOptions::new(&parsed))
                    .ok()
                    .flatten()?,
            )
            .ok()?,
            Client::Bot => {
                json!({ "counter": fastrand::u32(..1000), "derivedKey": "00".repeat(32) })
            }
        };
        let payload = json!({ "challenge": challenge, "solution": solution });
        Some(base64::engine::general_purpose::STANDARD.encode(payload.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashsale_core::bot::challenge::altcha::{AltchaChallenges, AltchaConfig};
    use flashsale_core::bot::challenge::{Binding, ChallengeVerifier, Refusal};
    use flashsale_core::domain::{Clock, SaleId, SystemClock, UserId};

    #[test]
    fn a_person_solves_and_a_bot_guesses_wrong() {
        let challenges = AltchaChallenges::new(AltchaConfig {
            signature_secret: "sig".into(),
            key_secret: "key".into(),
            ttl: Duration::from_secs(120),
            base_work: 500,
            threshold: 80,
        });
        let binding = Binding {
            buyer: UserId::parse("ann").unwrap(),
            sale: SaleId::parse("drop").unwrap(),
            action: "reserve",
        };
        let issued = challenges
            .issue(&binding, 85, SystemClock.now())
            .unwrap()
            .challenge;
        let person = Client::Person.answer(&issued).unwrap();
        assert!(challenges.check(&person, &binding).is_ok());
        let bot = Client::Bot.answer(&issued).unwrap();
        assert_eq!(challenges.check(&bot, &binding), Err(Refusal::Failed));
        assert_eq!(
            Client::Person.answer(&json!({"provider": "turnstile"})),
            None
        );
    }

    #[test]
    fn telemetry_is_json_the_defence_reads() {
        for client in [Client::Person, Client::Bot] {
            let t: flashsale_core::bot::score::Telemetry =
                serde_json::from_str(&client.telemetry()).unwrap();
            assert_eq!(t.webdriver, client == Client::Bot);
        }
    }
}
