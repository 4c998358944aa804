//! HTTP for the bot defence: reading what a request says about its client, and answering a
//! verdict. A guarded route calls [`guard`] before its own handler.
//!
//! Headers the client may send:
//! - `X-Challenge-Response`: the solved challenge (base64, as ALTCHA's widget produces it);
//! - `X-Client-Telemetry`: the front end's telemetry, JSON (see [`Telemetry`]), at most
//!   [`MAX_TELEMETRY_BYTES`]; untrusted, it can only raise the score.
//!
//! On AWS, the WAF edge adds one `x-amzn-waf-bot-signal-<slug>: <slug>` header per matched Bot
//! Control label (infra/lib/edge.ts; WAF overwrites same-name headers, hence one name each).
//! Locally there is no WAF and the headers are absent.
//!
//! Answers (problem+json): 403 `challenge-required` with a `challenge` member to solve and
//! send back; 403 `blocked` with `Retry-After` (seconds left of the block); 400
//! `invalid-challenge-response` or `invalid-telemetry`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use super::challenge::{Binding, ChallengeVerifier};
use super::defence::{BotDefence, Suspect, Verdict};
use super::score::Telemetry;
use super::watchlist::{address_group, Watchlist};
use crate::domain::{Clock, SaleId, Timestamp};
use crate::http::request::{gateway_request_id, identity_of};
use crate::http::{problems, Problem};
use crate::rate_limit::RequestId;

pub const CHALLENGE_RESPONSE_HEADER: &str = "x-challenge-response";
pub const TELEMETRY_HEADER: &str = "x-client-telemetry";
/// The prefix of the headers the WAF edge's label rules insert (custom request handling
/// prefixes the rule's header name with `x-amzn-waf-`).
pub const EDGE_SIGNAL_HEADER: &str = "x-amzn-waf-bot-signal";
pub const MAX_TELEMETRY_BYTES: usize = 1024;

fn header<'a>(request: &'a Request, name: &str) -> Result<Option<&'a str>, Problem> {
    match request.headers().get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-header",
                "Invalid header",
                format!("{name} must be visible ASCII"),
            )
        }),
    }
}

/// Reads the suspect from the request: identity (and the account's age, from its creation
/// claim) from the authorizer, the rest from headers.
pub fn suspect_of(
    request: &Request,
    sale: &SaleId,
    action: &'static str,
    now: Timestamp,
) -> Result<Suspect, Problem> {
    let identity = identity_of(request)?;
    let account_age = identity.created_at.map(|created| created.until(now));
    let address = identity.source_ip.as_deref().map(address_group);
    let telemetry = match header(request, TELEMETRY_HEADER)? {
        None => None,
        Some(raw) if raw.len() > MAX_TELEMETRY_BYTES => {
            return Err(invalid_telemetry(format!(
                "longer than {MAX_TELEMETRY_BYTES} bytes"
            )))
        }
        Some(raw) => Some(
            serde_json::from_str::<Telemetry>(raw).map_err(|e| invalid_telemetry(e.to_string()))?,
        ),
    };
    // WAF keeps only the last of several inserted headers of one name, so each label rule
    // inserts its own (`x-amzn-waf-bot-signal-<slug>`); the bare name is read too.
    let mut edge_signals: Vec<String> = request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(EDGE_SIGNAL_HEADER))
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .map(str::to_owned)
        .collect();
    edge_signals.sort();
    edge_signals.dedup();
    edge_signals.truncate(8);
    Ok(Suspect {
        buyer: identity.user_id.clone(),
        address,
        request: RequestId::from_gateway(gateway_request_id(request).as_deref()),
        binding: Binding {
            buyer: identity.user_id,
            sale: sale.clone(),
            action,
        },
        account_age,
        telemetry,
        edge_signals,
        // An empty header is no answer (some client libraries always send it).
        solution: header(request, CHALLENGE_RESPONSE_HEADER)?
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    })
}

fn invalid_telemetry(detail: String) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-telemetry",
        "Invalid client telemetry",
        format!("{TELEMETRY_HEADER}: {detail}"),
    )
}

/// The answer for a verdict that stops the request; `None` lets it go on.
pub fn refusal(verdict: &Verdict) -> Option<Problem> {
    match verdict {
        Verdict::Admitted { .. } => None,
        Verdict::Challenged { challenge, .. } => Some(
            Problem::new(
                StatusCode::FORBIDDEN,
                "challenge-required",
                "Challenge required",
                format!(
                    "Solve the challenge and send the request again with the solution in the \
                     {CHALLENGE_RESPONSE_HEADER} header, before {}.",
                    challenge.expires_at.to_rfc3339()
                ),
            )
            .with_extension("challenge", challenge.challenge.clone()),
        ),
        Verdict::Blocked { block } => Some(
            Problem::new(
                StatusCode::FORBIDDEN,
                "blocked",
                "Blocked",
                "Requests from this account or address are refused for a while after a failed \
                 challenge.",
            )
            .with_retry_after(block.remaining.as_secs().max(1)),
        ),
        Verdict::Malformed { reason } => Some(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-challenge-response",
            "Invalid challenge response",
            format!("{CHALLENGE_RESPONSE_HEADER}: {reason}"),
        )),
        Verdict::VerifierUnavailable => Some(problems::dependency_unavailable(
            "The challenge response could not be checked just now; send it again.",
        )),
    }
}

/// Judges the request; `Err(response)` when it must stop here. The score and its reasons are
/// logged (never sent). A watchlist that cannot be reached lets the request through (the rate
/// limits and the stock engine still guard the sale) and logs it: failing closed would turn a
/// Redis hiccup into a sale nobody can enter.
pub async fn guard<W, V, K>(
    defence: &BotDefence<W, V, K>,
    request: &Request,
    sale: &SaleId,
    action: &'static str,
) -> Result<(), Response<Body>>
where
    W: Watchlist,
    V: ChallengeVerifier,
    K: Clock,
{
    let suspect =
        suspect_of(request, sale, action, defence.clock.now()).map_err(Problem::into_response)?;
    match defence.judge(&suspect).await {
        Ok(verdict) => {
            if let Verdict::Admitted { score, .. } | Verdict::Challenged { score, .. } = &verdict {
                if score.value > 0 {
                    tracing::info!(
                        buyer = %suspect.buyer,
                        score = score.value,
                        reasons = %serde_json::to_string(&score.reasons).unwrap_or_default(),
                        "bot score"
                    );
                }
            }
            match refusal(&verdict) {
                None => Ok(()),
                Some(problem) => Err(problem.into_response()),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "bot defence unavailable; request let through");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::RequestExt;

    use super::*;
    use crate::bot::challenge::Issued;
    use crate::bot::score::Score;
    use std::time::Duration;

    use crate::bot::watchlist::{Block, Subject};
    use crate::domain::UserId;
    use crate::identity::context_for;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/x");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Body::Empty)
            .unwrap()
            .with_request_context(context_for("alice", &[], "198.51.100.4"))
    }

    fn sale() -> SaleId {
        SaleId::parse("drop").unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000)
    }

    #[test]
    fn the_suspect_comes_from_the_authorizer_and_the_headers() {
        let r = request(&[
            (TELEMETRY_HEADER, r#"{"webdriver":true,"pointerEvents":0}"#),
            (
                EDGE_SIGNAL_HEADER,
                "automated-browser, known-bot-data-center",
            ),
            (CHALLENGE_RESPONSE_HEADER, "c29sdXRpb24="),
        ]);
        let s = suspect_of(&r, &sale(), "reserve", Timestamp::from_millis(0)).unwrap();
        assert_eq!(s.buyer.as_str(), "alice");
        assert_eq!(s.address.as_deref(), Some("198.51.100.4"));
        let t = s.telemetry.unwrap();
        assert!(t.webdriver && t.pointer_events == Some(0));
        assert_eq!(
            s.edge_signals,
            ["automated-browser", "known-bot-data-center"]
        );
        assert_eq!(s.solution.as_deref(), Some("c29sdXRpb24="));
        assert_eq!(s.binding.action, "reserve");
        assert_eq!(s.account_age, None);

        // As the WAF edge sends them: one header per label rule (a same-name insert would
        // overwrite the previous one), each read, repeats counted once.
        let r = request(&[
            ("x-amzn-waf-bot-signal-unverified-bot", "unverified-bot"),
            (
                "x-amzn-waf-bot-signal-non-browser-user-agent",
                "non-browser-user-agent",
            ),
            (EDGE_SIGNAL_HEADER, "unverified-bot"),
            ("x-amzn-waf-other", "not-a-bot-signal"),
        ]);
        let s = suspect_of(&r, &sale(), "reserve", now()).unwrap();
        assert_eq!(s.edge_signals, ["non-browser-user-agent", "unverified-bot"]);

        // An account created an hour before `now`.
        let mut context = context_for("alice", &[], "198.51.100.4");
        if let lambda_http::request::RequestContext::ApiGatewayV1(c) = &mut context {
            let created = (now().as_secs() - 3600).to_string();
            c.authorizer
                .fields
                .insert("createdAt".into(), created.into());
        }
        let r = lambda_http::http::Request::builder()
            .body(Body::Empty)
            .unwrap()
            .with_request_context(context);
        let s = suspect_of(&r, &sale(), "reserve", now()).unwrap();
        assert_eq!(s.account_age, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn ipv6_addresses_are_counted_by_their_64_prefix() {
        assert_eq!(address_group("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(address_group("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
        assert_eq!(address_group("::ffff:198.51.100.4"), "198.51.100.4");
        assert_eq!(address_group("198.51.100.4"), "198.51.100.4");
    }

    #[test]
    fn an_empty_challenge_response_header_is_no_answer() {
        for empty in ["", "   "] {
            let r = request(&[(CHALLENGE_RESPONSE_HEADER, empty)]);
            let s = suspect_of(&r, &sale(), "reserve", now()).unwrap();
            assert_eq!(s.solution, None);
        }
    }

    #[test]
    fn bad_telemetry_is_a_400_and_no_identity_is_a_401() {
        // (Unknown fields are ignored, not refused: see score::tests.)
        for bad in [r#"{"webdriver":"yes"}"#, "not json", "[1]"] {
            let problem = suspect_of(
                &request(&[(TELEMETRY_HEADER, bad)]),
                &sale(),
                "reserve",
                now(),
            )
            .unwrap_err();
            assert_eq!(
                (problem.status, problem.type_uri.as_str()),
                (400, "/problems/invalid-telemetry")
            );
        }
        let long = format!(
            r#"{{"headless":true,"x":"{}"}}"#,
            "a".repeat(MAX_TELEMETRY_BYTES)
        );
        let problem = suspect_of(
            &request(&[(TELEMETRY_HEADER, &long)]),
            &sale(),
            "reserve",
            now(),
        )
        .unwrap_err();
        assert_eq!(problem.status, 400);
        let anonymous = lambda_http::http::Request::builder()
            .body(Body::Empty)
            .unwrap();
        assert_eq!(
            suspect_of(&anonymous, &sale(), "reserve", now())
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn verdicts_map_to_their_problems() {
        let score = Score {
            value: 90,
            reasons: Vec::new(),
        };
        assert!(refusal(&Verdict::Admitted {
            score: score.clone(),
            by_pass: false
        })
        .is_none());
        let challenged = refusal(&Verdict::Challenged {
            score,
            challenge: Issued {
                challenge: serde_json::json!({"parameters": {}, "signature": "s"}),
                expires_at: Timestamp::from_millis(0),
            },
        })
        .unwrap();
        assert_eq!(
            (challenged.status, challenged.type_uri.as_str()),
            (403, "/problems/challenge-required")
        );
        let body: serde_json::Value = serde_json::to_value(&challenged).unwrap();
        assert_eq!(body["challenge"]["signature"], "s");
        assert!(body.get("score").is_none() && body.get("reasons").is_none());

        let blocked = refusal(&Verdict::Blocked {
            block: Block {
                subject: Subject::Buyer(UserId::parse("alice").unwrap()),
                reason: "challenge-failed".into(),
                remaining: Duration::from_secs(3599),
            },
        })
        .unwrap();
        assert_eq!((blocked.status, blocked.retry_after), (403, Some(3599)));
        // The reason is for admins: not in the answer.
        assert!(!serde_json::to_string(&blocked)
            .unwrap()
            .contains("challenge-failed"));
        let malformed = refusal(&Verdict::Malformed {
            reason: "not base64".into(),
        })
        .unwrap();
        assert_eq!(malformed.status, 400);
        let unavailable = refusal(&Verdict::VerifierUnavailable).unwrap();
        assert_eq!(
            (
                unavailable.status,
                unavailable.retry_after,
                unavailable.type_uri.as_str()
            ),
            (503, Some(1), "/problems/dependency-unavailable")
        );
    }
}
