//! Cloudflare Turnstile, a hosted CAPTCHA, behind the challenge port: for deployments that
//! prefer a widget a person clicks to a proof of work, and can reach the internet (a Lambda in
//! a VPC needs a NAT gateway for it; ALTCHA does not).
//!
//! The challenge tells the client which widget to render and with what: `{"provider":
//! "turnstile", "siteKey", "action", "cData"}`. The widget's token comes back in the
//! challenge-response header and is checked with siteverify
//! (https://developers.cloudflare.com/turnstile/get-started/server-side-validation/):
//! `POST secret, response, idempotency_key` → `{success, challenge_ts, action, cdata,
//! error-codes}`. Tokens are at most 2,048 characters, valid for 300 s, and verify once.
//!
//! Binding: `cData` is a digest of the buyer, the sale and the action, and `action` the action;
//! both are protected by Cloudflare, so a token solved for one buyer's reservation fails for
//! any other buyer, sale or action, even when siteverify says `success`.
//!
//! Retries: the idempotency key is derived from the token, so verifying the same token again
//! (our own retry, or the client's after a lost answer) gets the first answer back instead of
//! `timeout-or-duplicate`. A real replay is still caught: by the binding (another buyer), and by
//! the defence's spent-nonce record (the same buyer, a second request).
//!
//! | siteverify says | [`Refusal`] | the defence does |
//! |---|---|---|
//! | `success` with our action and cData, solved ≤ 300 s ago | (solved) | pass |
//! | `success` for another buyer, sale or action | `Failed` | block |
//! | `success`, solved > 300 s ago | `Expired` | block |
//! | `invalid-input-response` | `Failed` | block |
//! | `timeout-or-duplicate` | `Replayed` | block |
//! | empty or > 2,048 chars (checked before any call) | `Malformed` | 400 |
//! | `missing-input-response`, `bad-request` (our call was malformed), `missing-/invalid-input-secret`, `internal-error`, 5xx, no answer in time | `Unavailable` | 503 |
//!
//! Cloudflare's dummy secret keys (https://developers.cloudflare.com/turnstile/troubleshooting/testing/)
//! accept only the dummy token, which carries no action or cData: a deployment using one would
//! block everyone who solves. They are refused at setup unless
//! [`TurnstileConfig::accept_test_keys`] (`TURNSTILE_TEST_KEYS=on`, for a front end's own
//! tests; the CDK app never sets it), and then their answers are taken without the binding.
//!
//! Single use: Cloudflare's own (a token verifies once) is traded for retries by the
//! idempotency key above; the defence's redemption record makes a solution single use.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Binding, ChallengeVerifier, IssueError, Issued, Refusal, Solved};
use crate::config::Secret;
use crate::domain::Timestamp;
use crate::http::client::{check_endpoint, https_client, EndpointError, HttpsClient};

/// Cloudflare's siteverify endpoint.
pub const SITEVERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// Cloudflare's dummy secret keys: always passes, always fails, already spent.
pub const TEST_SECRET_KEYS: [&str; 3] = [
    "1x0000000000000000000000000000000AA",
    "2x0000000000000000000000000000000AA",
    "3x0000000000000000000000000000000AA",
];

/// The longest token Turnstile issues (its docs: 2,048 characters).
pub const MAX_TOKEN_CHARS: usize = 2048;
/// How long a token is valid after it was solved (its docs: 300 s).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
const MAX_ANSWER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct TurnstileConfig {
    /// The widget's public site key (sent to the client).
    pub site_key: String,
    /// The secret key for siteverify; never logged.
    pub secret: Secret,
    /// [`SITEVERIFY_URL`], or a local stand-in (http to this machine only).
    pub siteverify_url: String,
    /// The budget of one verification, connection and one retry included.
    pub timeout: Duration,
    /// Allow Cloudflare's dummy secret keys (see the module doc). Off in every deployment.
    pub accept_test_keys: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TurnstileSetupError {
    #[error("TURNSTILE_SITEVERIFY_URL: {0}")]
    Endpoint(#[from] EndpointError),
    #[error("the Turnstile site key and secret key must not be empty")]
    EmptyKey,
    #[error("TURNSTILE_SECRET_KEY is one of Cloudflare's dummy keys, which accept only the dummy token (no binding): set TURNSTILE_TEST_KEYS=on only for a front end's tests")]
    TestKey,
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The adapter. Build it once per cold start (it keeps a pool of connections).
pub struct TurnstileVerifier {
    client: HttpsClient,
    url: String,
    site_key: String,
    secret: Secret,
    timeout: Duration,
    /// The secret is a dummy key (only with `accept_test_keys`): answers carry no binding.
    test_key: bool,
}

#[derive(Deserialize)]
struct Answer {
    success: bool,
    #[serde(default)]
    challenge_ts: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    cdata: Option<String>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

impl TurnstileVerifier {
    pub fn new(config: TurnstileConfig) -> Result<Self, TurnstileSetupError> {
        if config.site_key.trim().is_empty() || config.secret.expose().trim().is_empty() {
            return Err(TurnstileSetupError::EmptyKey);
        }
        let test_key = TEST_SECRET_KEYS.contains(&config.secret.expose().trim());
        if test_key && !config.accept_test_keys {
            return Err(TurnstileSetupError::TestKey);
        }
        if test_key {
            tracing::warn!(
                "Turnstile runs with a dummy secret key: answers are not bound to buyers"
            );
        }
        Ok(Self {
            client: https_client(config.timeout)?,
            url: check_endpoint(&config.siteverify_url, false)?,
            site_key: config.site_key.trim().to_owned(),
            secret: Secret::new(config.secret.expose().trim()),
            timeout: config.timeout,
            test_key,
        })
    }

    /// The widget's `cData` for a binding: 32 hex digits of SHA-256 over buyer, sale and action
    /// (Turnstile allows 255 characters of `[A-Za-z0-9_-]`; ids may be longer or use others).
    pub fn cdata(binding: &Binding) -> String {
        let digest = Sha256::new()
            .chain_update(binding.buyer.as_str())
            .chain_update([0])
            .chain_update(binding.sale.as_str())
            .chain_update([0])
            .chain_update(binding.action)
            .finalize();
        hex::encode(&digest[..16])
    }

    /// One siteverify call, retried once at once after a transport failure within the budget
    /// (safe: the idempotency key makes a second verification of the token repeat the first).
    async fn siteverify(&self, token: &str, idempotency_key: &str) -> Result<Answer, Refusal> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("secret", self.secret.expose())
            .append_pair("response", token)
            .append_pair("idempotency_key", idempotency_key)
            .finish();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = Request::builder()
                .method(Method::POST)
                .uri(&self.url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .header(USER_AGENT, concat!("flashsale/", env!("CARGO_PKG_VERSION")))
                .body(Full::new(Bytes::from(form.clone())))
                .map_err(|e| Refusal::Unavailable(format!("cannot build the request: {e}")))?;
            let exchange = async {
                let response = self
                    .client
                    .request(request)
                    .await
                    .map_err(|e| format!("transport: {e}"))?;
                let status = response.status();
                let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, body))
            };
            match tokio::time::timeout_at(deadline, exchange).await {
                Err(_) => {
                    return Err(Refusal::Unavailable(format!(
                        "siteverify: no answer within {:?}",
                        self.timeout
                    )))
                }
                Ok(Err(error)) if attempt < 2 => {
                    tracing::info!(%error, "siteverify transport error, retrying once");
                }
                Ok(Err(error)) => return Err(Refusal::Unavailable(format!("siteverify: {error}"))),
                Ok(Ok((status, _))) if status.is_server_error() => {
                    return Err(Refusal::Unavailable(format!(
                        "siteverify answered {status}"
                    )))
                }
                Ok(Ok((status, body))) => {
                    return serde_json::from_slice(&body).map_err(|e| {
                        Refusal::Unavailable(format!(
                            "siteverify answered {status}, unreadable: {e}"
                        ))
                    })
                }
            }
        }
    }
}

/// A UUID derived from the token, so every verification of one token shares its key.
fn idempotency_key(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl ChallengeVerifier for TurnstileVerifier {
    fn issue(&self, binding: &Binding, _score: u8, now: Timestamp) -> Result<Issued, IssueError> {
        Ok(Issued {
            challenge: serde_json::json!({
                "provider": "turnstile",
                "siteKey": self.site_key,
                "action": binding.action,
                "cData": Self::cdata(binding),
            }),
            expires_at: now.plus(TOKEN_LIFETIME),
        })
    }

    async fn verify(
        &self,
        response: &str,
        binding: &Binding,
        now: Timestamp,
    ) -> Result<Solved, Refusal> {
        let token = response.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Err(Refusal::Malformed(format!(
                "a Turnstile token is 1 to {MAX_TOKEN_CHARS} characters"
            )));
        }
        let answer = self.siteverify(token, &idempotency_key(token)).await?;
        if !answer.success {
            let code = |c: &str| answer.error_codes.iter().any(|e| e == c);
            return Err(if code("timeout-or-duplicate") {
                Refusal::Replayed
            } else if code("invalid-input-response") {
                Refusal::Failed
            } else {
                // Our call malformed or our key refused, or Cloudflare failing: not the
                // client's doing, and nothing it can fix.
                Refusal::Unavailable(format!("siteverify: {:?}", answer.error_codes))
            });
        }
        let bound = answer.action.as_deref() == Some(binding.action)
            && answer.cdata.as_deref() == Some(Self::cdata(binding).as_str());
        if !bound && !self.test_key {
            return Err(Refusal::Failed);
        }
        let solved_at = answer
            .challenge_ts
            .as_deref()
            .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
            .map(|ts| Timestamp::from(ts.with_timezone(&chrono::Utc)))
            .ok_or_else(|| Refusal::Unavailable("siteverify: no challenge_ts".into()))?;
        let expires_at = solved_at.plus(TOKEN_LIFETIME);
        if expires_at <= now {
            return Err(Refusal::Expired);
        }
        Ok(Solved {
            nonce: format!("turnstile:{}", &idempotency_key(token)),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SaleId, UserId};

    fn binding(buyer: &str) -> Binding {
        Binding {
            buyer: UserId::parse(buyer).unwrap(),
            sale: SaleId::parse("drop").unwrap(),
            action: "reserve",
        }
    }

    #[test]
    fn cdata_fits_turnstiles_limits_and_differs_per_binding() {
        let a = TurnstileVerifier::cdata(&binding("alice"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, TurnstileVerifier::cdata(&binding("mallory")));
        let join = Binding {
            action: "join",
            ..binding("alice")
        };
        assert_ne!(a, TurnstileVerifier::cdata(&join));
    }

    #[test]
    fn one_token_one_idempotency_key() {
        assert_eq!(idempotency_key("t1"), idempotency_key("t1"));
        assert_ne!(idempotency_key("t1"), idempotency_key("t2"));
        assert!(uuid::Uuid::parse_str(&idempotency_key("t1")).is_ok());
    }

    #[test]
    fn setup_refuses_empty_keys_and_plain_http_elsewhere() {
        let config = |site: &str, url: &str| TurnstileConfig {
            site_key: site.into(),
            secret: Secret::new("s"),
            siteverify_url: url.into(),
            timeout: Duration::from_secs(1),
            accept_test_keys: false,
        };
        assert!(matches!(
            TurnstileVerifier::new(config("", SITEVERIFY_URL)),
            Err(TurnstileSetupError::EmptyKey)
        ));
        assert!(matches!(
            TurnstileVerifier::new(config("k", "http://challenges.example/siteverify")),
            Err(TurnstileSetupError::Endpoint(EndpointError::PlainHttp(_)))
        ));
        let dummy = TurnstileConfig {
            secret: Secret::new(TEST_SECRET_KEYS[0]),
            ..config("k", SITEVERIFY_URL)
        };
        assert!(matches!(
            TurnstileVerifier::new(dummy.clone()),
            Err(TurnstileSetupError::TestKey)
        ));
        assert!(TurnstileVerifier::new(TurnstileConfig {
            accept_test_keys: true,
            ..dummy
        })
        .is_ok());
    }
}
