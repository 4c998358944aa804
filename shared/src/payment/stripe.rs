//! The Stripe adapter of [`PaymentProvider`]: a thin typed client for the four calls we make.
//!
//! # Why not a Stripe crate
//! `async-stripe` is generated from Stripe's whole OpenAPI spec: its 0.x releases need minutes
//! of compilation (its own README: ~4 min for a clean release build of its examples, 75 s for
//! the binary alone) and bring their own HTTP stack; the 1.0 line is still alpha. Every Lambda
//! that charges or refunds links this module, on a 2-core build machine where the AWS SDK
//! already takes minutes. Four endpoints, a form encoder and an error mapping are a few
//! hundred lines, so the adapter speaks HTTP itself, over hyper 1 + hyper-util + rustls
//! (aws-lc-rs, webpki roots): the stack the AWS SDK already links, so it adds no crate to the
//! build.
//!
//! # Requests (Stripe API, version [`STRIPE_VERSION`])
//! - charge: `POST /v1/payment_intents` with `amount`, `currency` (lower case),
//!   `payment_method`, `confirm=true`, `automatic_payment_methods[enabled]=true`,
//!   `automatic_payment_methods[allow_redirects]=never` (we confirm server-side with no buyer
//!   to redirect; without it Stripe asks for a `return_url`) and `metadata[reservation_id]`.
//! - retrieve: `GET /v1/payment_intents/{id}`.
//! - refund: `POST /v1/refunds` with `payment_intent` (no amount: the whole remainder).
//! - cancel: `POST /v1/payment_intents/{id}/cancel`.
//!
//! Every POST carries `Idempotency-Key`, so a retry of any of them is safe: Stripe replays the
//! first answer. That is also why a transport failure (a stale pooled connection after the
//! Lambda was frozen, a reset) is retried once at once, within the same timeout budget.
//!
//! # Answers
//! | Stripe answers | we return |
//! |---|---|
//! | 2xx | the object |
//! | 402 `card_error` on a charge | [`ChargeOutcome::Declined`], with the intent from the error |
//! | 5xx, 409 (key in use), 429, `api_error`, `rate_limit_error`, `Stripe-Should-Retry: true`, network error, timeout, unreadable 2xx | [`PaymentError::Transient`] |
//! | refund: `charge_already_refunded` | [`RefundOutcome::AlreadyRefunded`] |
//! | refund: other 400 (`payment_intent_unexpected_state`) and the intent is not succeeded | [`RefundOutcome::NotCharged`] |
//! | cancel: 400 `payment_intent_unexpected_state` | the intent as it is (canceled, or succeeded) |
//! | any other 4xx (401 wrong key, 404, invalid parameter, idempotency key reused) | [`PaymentError::Rejected`] |

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{
    ChargeOutcome, ChargeRequest, Decline, PaymentError, PaymentIntent, PaymentIntentId,
    PaymentProvider, PaymentStatus, RefundOutcome,
};
use crate::config::{ConfigError, Env};
use crate::http::client::{check_endpoint, https_client, EndpointError, HttpsClient};

/// The API version every request pins (`Stripe-Version`), so a change of the account's default
/// version never changes the shapes this module parses.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// Stripe's production API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// The longest answer read; Stripe's objects are a few KiB.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The API key's type (it lives with the configuration).
pub use crate::config::Secret;

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a stand-in such as the local payment sandbox.
    pub api_base: String,
    pub secret_key: Secret,
    /// The budget of one call, connection and retry included.
    pub timeout: Duration,
}

impl StripeConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(secret_key: Secret) -> Self {
        Self {
            api_base: DEFAULT_API_BASE.to_owned(),
            secret_key,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// `STRIPE_SECRET_KEY` (required), `STRIPE_API_BASE` (default `https://api.stripe.com`),
    /// `STRIPE_TIMEOUT_MS` (default 10000).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let secret_key = Secret::new(env.required("STRIPE_SECRET_KEY")?.trim());
        let api_base = env.parsed_or("STRIPE_API_BASE", DEFAULT_API_BASE.to_owned())?;
        let timeout_ms: u64 = env.parsed_or("STRIPE_TIMEOUT_MS", 10_000)?;
        if timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                name: "STRIPE_TIMEOUT_MS",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            api_base,
            secret_key,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StripeSetupError {
    #[error("STRIPE_API_BASE {0:?} is not an http(s) URL without path, query or fragment")]
    BadApiBase(String),
    #[error("STRIPE_API_BASE must use https unless it points at this machine (127.0.0.1, ::1, localhost): the API key travels in every request")]
    PlainHttp,
    #[error("the secret key is empty")]
    EmptyKey,
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The Stripe adapter. Build it once per cold start: it keeps a pool of connections.
#[derive(Clone)]
pub struct StripeProvider {
    client: HttpsClient,
    base: String,
    authorization: HeaderValue,
    timeout: Duration,
}

impl fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeProvider")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    pub fn new(config: StripeConfig) -> Result<Self, StripeSetupError> {
        let base = check_endpoint(&config.api_base, true).map_err(|error| match error {
            EndpointError::PlainHttp(_) => StripeSetupError::PlainHttp,
            _ => StripeSetupError::BadApiBase(config.api_base.trim().to_owned()),
        })?;
        let key = config.secret_key.expose().trim();
        if key.is_empty() {
            return Err(StripeSetupError::EmptyKey);
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| StripeSetupError::EmptyKey)?;
        authorization.set_sensitive(true);

        // Stripe closes idle keep-alive connections; the shared client drops ours after 30 s.
        let client = https_client(config.timeout)?;
        Ok(Self {
            client,
            base,
            authorization,
            timeout: config.timeout,
        })
    }

    /// One API call, with at most one immediate retry after a transport failure. Every call we
    /// make is idempotent (GET, or POST with an idempotency key), so the retry is safe.
    async fn send(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<RawResponse, PaymentError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.request(&method, path, form.clone(), idempotency_key)?;
            let started = std::time::Instant::now();
            match tokio::time::timeout_at(deadline, self.exchange(request)).await {
                Err(_) => {
                    tracing::warn!(%method, path, attempt, "stripe call timed out");
                    return Err(PaymentError::Transient(format!(
                        "{method} {path}: no answer within {:?}",
                        self.timeout
                    )));
                }
                Ok(Ok(response)) => {
                    tracing::debug!(
                        %method, path, attempt,
                        status = response.status,
                        request_id = response.request_id.as_deref().unwrap_or(""),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "stripe call"
                    );
                    return Ok(response);
                }
                Ok(Err(error)) if attempt < 2 => {
                    tracing::info!(%method, path, %error, "stripe transport error, retrying once");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%method, path, %error, "stripe transport error");
                    return Err(PaymentError::Transient(format!("{method} {path}: {error}")));
                }
            }
        }
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, PaymentError> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.authorization.clone())
            .header("Stripe-Version", STRIPE_VERSION)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("flashsale/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err(bad_request("idempotency key must be 1 to 255 characters"));
            }
            let value = HeaderValue::from_str(key)
                .map_err(|_| bad_request("idempotency key must be printable ASCII"))?;
            builder = builder.header("Idempotency-Key", value);
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(form)
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(body))
            .map_err(|e| bad_request(&format!("cannot build the request: {e}")))
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<RawResponse, String> {
        let response = self.client.request(request).await.map_err(|e| {
            let kind = if e.is_connect() { "connect" } else { "request" };
            format!("{kind} error: {e}")
        })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("request-id");
        let should_retry = header("stripe-should-retry").map(|v| v == "true");
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(RawResponse {
            status,
            should_retry,
            request_id,
            body,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Result<T, ApiError>, PaymentError> {
        let what = format!("{method} {path}");
        let response = self.send(method, path, form, idempotency_key).await?;
        interpret(&what, &response)
    }
}

fn bad_request(message: &str) -> PaymentError {
    PaymentError::Rejected {
        code: Some("invalid_request".into()),
        message: message.to_owned(),
    }
}

/// An HTTP answer, before interpretation.
#[derive(Debug, Clone)]
struct RawResponse {
    status: u16,
    /// `Stripe-Should-Retry`, when present.
    should_retry: Option<bool>,
    /// `Request-Id`, for support tickets and logs.
    request_id: Option<String>,
    body: Bytes,
}

/// A Stripe error answer that is not worth a retry; each operation decides what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError {
    status: u16,
    kind: String,
    code: Option<String>,
    decline_code: Option<String>,
    message: String,
    payment_intent: Option<PaymentIntentJson>,
}

impl ApiError {
    fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    fn rejected(self) -> PaymentError {
        PaymentError::Rejected {
            code: self.code.or(Some(self.kind).filter(|k| !k.is_empty())),
            message: format!("HTTP {}: {}", self.status, self.message),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorJson,
}

#[derive(Debug, Deserialize)]
struct ErrorJson {
    #[serde(rename = "type", default)]
    kind: String,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    payment_intent: Option<PaymentIntentJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct PaymentIntentJson {
    id: String,
    status: String,
    amount: u64,
    currency: String,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
    last_payment_error: Option<LastPaymentErrorJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct LastPaymentErrorJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundJson {
    id: String,
    amount: u64,
    status: Option<String>,
}

/// Sorts an answer into the object, a final API error, or a transient failure.
fn interpret<T: DeserializeOwned>(
    what: &str,
    response: &RawResponse,
) -> Result<Result<T, ApiError>, PaymentError> {
    let status = response.status;
    let request_id = response.request_id.as_deref().unwrap_or("-");
    if (200..300).contains(&status) {
        return serde_json::from_slice(&response.body).map(Ok).map_err(|e| {
            // Unreadable but maybe done: a retry with the same key replays the answer.
            PaymentError::Transient(format!(
                "{what}: unreadable HTTP {status} answer (request {request_id}): {e}"
            ))
        });
    }
    let error = match serde_json::from_slice::<ErrorEnvelope>(&response.body) {
        Ok(envelope) => envelope.error,
        Err(_) => ErrorJson {
            kind: String::new(),
            code: None,
            decline_code: None,
            message: Some(snippet(&response.body)),
            payment_intent: None,
        },
    };
    let message = error.message.unwrap_or_default();
    let transient = status >= 500
        || status == 409
        || status == 429
        || response.should_retry == Some(true)
        || matches!(error.kind.as_str(), "api_error" | "rate_limit_error");
    if transient {
        return Err(PaymentError::Transient(format!(
            "{what}: HTTP {status} {} (request {request_id}): {message}",
            error.code.as_deref().unwrap_or(&error.kind),
        )));
    }
    Ok(Err(ApiError {
        status,
        kind: error.kind,
        code: error.code,
        decline_code: error.decline_code,
        message,
        payment_intent: error.payment_intent,
    }))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}

fn unreadable(what: &str, detail: impl fmt::Display) -> PaymentError {
    PaymentError::Transient(format!("{what}: unexpected answer: {detail}"))
}

impl PaymentIntentJson {
    fn into_intent(self) -> Result<PaymentIntent, PaymentError> {
        let id = PaymentIntentId::parse(self.id).map_err(|e| unreadable("payment intent", e))?;
        let reservation_id = self
            .metadata
            .get("reservation_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(PaymentIntent {
            id,
            status: PaymentStatus::parse(&self.status),
            amount_minor: self.amount,
            currency: self.currency.to_ascii_uppercase(),
            reservation_id,
            decline: self
                .last_payment_error
                .map(LastPaymentErrorJson::into_decline),
        })
    }
}

impl LastPaymentErrorJson {
    fn into_decline(self) -> Decline {
        Decline {
            code: self
                .code
                .or(self.kind)
                .unwrap_or_else(|| "payment_failed".into()),
            decline_code: self.decline_code,
            message: self.message.unwrap_or_default(),
        }
    }
}

/// A 200 to a confirming create: succeeded and processing are accepted; any other status
/// means confirmation stopped (a failed attempt, or an action only a present buyer could take)
/// and is a decline, with the intent so that it can be canceled.
fn charge_accepted(intent: PaymentIntent) -> ChargeOutcome {
    match intent.status {
        PaymentStatus::Succeeded | PaymentStatus::Processing => ChargeOutcome::Accepted(intent),
        ref status => {
            let decline = intent.decline.clone().unwrap_or_else(|| Decline {
                code: status.as_str().to_owned(),
                decline_code: None,
                message: format!("the payment intent is {status} after confirmation"),
            });
            ChargeOutcome::Declined {
                intent: Some(intent),
                decline,
            }
        }
    }
}

fn charge_refused(error: ApiError) -> Result<ChargeOutcome, PaymentError> {
    if error.status != 402 || error.kind != "card_error" {
        return Err(error.rejected());
    }
    let intent = error
        .payment_intent
        .map(PaymentIntentJson::into_intent)
        .transpose()?;
    Ok(ChargeOutcome::Declined {
        intent,
        decline: Decline {
            code: error.code.unwrap_or_else(|| "card_declined".into()),
            decline_code: error.decline_code,
            message: error.message,
        },
    })
}

fn charge_form(request: &ChargeRequest) -> Result<String, PaymentError> {
    let amount = request.amount.amount_minor;
    if amount <= 0 {
        return Err(PaymentError::Rejected {
            code: Some("amount_not_positive".into()),
            message: format!("cannot charge {amount} minor units"),
        });
    }
    if request.payment_method.trim().is_empty() {
        return Err(bad_request("payment method must not be empty"));
    }
    Ok(form_urlencoded::Serializer::new(String::new())
        .append_pair("amount", &amount.to_string())
        .append_pair(
            "currency",
            &request.amount.currency.as_str().to_ascii_lowercase(),
        )
        .append_pair("payment_method", &request.payment_method)
        .append_pair("confirm", "true")
        .append_pair("automatic_payment_methods[enabled]", "true")
        .append_pair("automatic_payment_methods[allow_redirects]", "never")
        .append_pair(
            "metadata[reservation_id]",
            &request.reservation_id.to_string(),
        )
        .finish())
}

fn refund_created(refund: RefundJson) -> Result<RefundOutcome, PaymentError> {
    match refund.status.as_deref() {
        Some("failed") | Some("canceled") => Err(PaymentError::Rejected {
            code: Some("refund_failed".into()),
            message: format!(
                "refund {} is {}",
                refund.id,
                refund.status.unwrap_or_default()
            ),
        }),
        // succeeded, pending (the bank has it), requires_action (rare for cards)
        _ => Ok(RefundOutcome::Refunded {
            refund_id: refund.id,
            amount_minor: refund.amount,
        }),
    }
}

impl PaymentProvider for StripeProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, PaymentError> {
        let form = charge_form(request)?;
        match self
            .call::<PaymentIntentJson>(
                Method::POST,
                "/v1/payment_intents",
                Some(form),
                Some(&request.idempotency_key),
            )
            .await?
        {
            Ok(intent) => Ok(charge_accepted(intent.into_intent()?)),
            Err(error) => charge_refused(error),
        }
    }

    async fn retrieve(&self, id: &PaymentIntentId) -> Result<PaymentIntent, PaymentError> {
        let path = format!("/v1/payment_intents/{id}");
        self.call::<PaymentIntentJson>(Method::GET, &path, None, None)
            .await?
            .map_err(ApiError::rejected)?
            .into_intent()
    }

    async fn refund(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> Result<RefundOutcome, PaymentError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("payment_intent", id.as_str())
            .finish();
        let error = match self
            .call::<RefundJson>(
                Method::POST,
                "/v1/refunds",
                Some(form),
                Some(idempotency_key),
            )
            .await?
        {
            Ok(refund) => return refund_created(refund),
            Err(error) => error,
        };
        if error.code_is("charge_already_refunded") {
            return Ok(RefundOutcome::AlreadyRefunded);
        }
        if error.status == 400 && error.kind == "invalid_request_error" {
            // Stripe's answer to refunding an intent without a successful charge
            // (payment_intent_unexpected_state): ask the intent where it is.
            let intent = self.retrieve(id).await?;
            if intent.status != PaymentStatus::Succeeded {
                return Ok(RefundOutcome::NotCharged(intent.status));
            }
        }
        Err(error.rejected())
    }

    async fn cancel(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        let path = format!("/v1/payment_intents/{id}/cancel");
        match self
            .call::<PaymentIntentJson>(
                Method::POST,
                &path,
                Some(String::new()),
                Some(idempotency_key),
            )
            .await?
        {
            Ok(intent) => intent.into_intent(),
            // Already canceled, or succeeded: nothing to cancel; report where it is.
            Err(error) if error.code_is("payment_intent_unexpected_state") => {
                match error.payment_intent {
                    Some(intent) => intent.into_intent(),
                    None => self.retrieve(id).await,
                }
            }
            Err(error) => Err(error.rejected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, Money, ReservationId};

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            should_retry: None,
            request_id: Some("req_123".into()),
            body: Bytes::from(body.to_owned()),
        }
    }

    fn pi_json(status: &str, last_error: &str) -> String {
        format!(
            r#"{{"id":"pi_3MtwBwLkdIwHu7ix28a3tqPa","object":"payment_intent","amount":2000,
            "amount_received":0,"currency":"eur","status":"{status}","payment_method":"pm_card_visa",
            "metadata":{{"reservation_id":"0190b2c4-0000-7000-8000-000000000001","other":"x"}},
            "latest_charge":null,"last_payment_error":{last_error},"created":1700000000,
            "livemode":false}}"#
        )
    }

    const DECLINED_ERROR: &str = r#"{"type":"card_error","code":"card_declined",
        "decline_code":"insufficient_funds","message":"Your card has insufficient funds."}"#;

    fn charge_answer(response: RawResponse) -> Result<ChargeOutcome, PaymentError> {
        match interpret::<PaymentIntentJson>("charge", &response)? {
            Ok(intent) => Ok(charge_accepted(intent.into_intent()?)),
            Err(error) => charge_refused(error),
        }
    }

    #[test]
    fn a_succeeded_or_processing_intent_is_accepted_with_its_metadata() {
        for status in ["succeeded", "processing"] {
            let outcome = charge_answer(raw(200, &pi_json(status, "null"))).unwrap();
            let ChargeOutcome::Accepted(intent) = outcome else {
                panic!("{status}: {outcome:?}")
            };
            assert_eq!(intent.id.as_str(), "pi_3MtwBwLkdIwHu7ix28a3tqPa");
            assert_eq!(intent.status, PaymentStatus::parse(status));
            assert_eq!(
                (intent.amount_minor, intent.currency.as_str()),
                (2000, "EUR")
            );
            assert_eq!(
                intent.reservation_id.as_deref(),
                Some("0190b2c4-0000-7000-8000-000000000001")
            );
            assert_eq!(intent.decline, None);
        }
    }

    #[test]
    fn a_card_error_is_a_decline_carrying_the_intent_from_the_error_body() {
        let body = format!(
            r#"{{"error":{{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds",
            "message":"Your card has insufficient funds.","payment_intent":{}}}}}"#,
            pi_json("requires_payment_method", DECLINED_ERROR)
        );
        let outcome = charge_answer(raw(402, &body)).unwrap();
        let ChargeOutcome::Declined { intent, decline } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(decline.code, "card_declined");
        assert_eq!(decline.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(decline.message, "Your card has insufficient funds.");
        let intent = intent.expect("the intent travels in the error");
        assert_eq!(intent.status, PaymentStatus::RequiresPaymentMethod);
        assert_eq!(intent.decline.as_ref(), Some(&decline));
    }

    #[test]
    fn a_card_error_without_an_intent_is_still_a_decline() {
        let body = r#"{"error":{"type":"card_error","code":"expired_card","message":"Your card has expired."}}"#;
        let outcome = charge_answer(raw(402, body)).unwrap();
        assert!(matches!(
            outcome,
            ChargeOutcome::Declined { intent: None, ref decline } if decline.code == "expired_card"
        ));
    }

    #[test]
    fn an_intent_that_stops_in_another_status_is_a_decline_to_cancel() {
        let outcome = charge_answer(raw(200, &pi_json("requires_action", "null"))).unwrap();
        let ChargeOutcome::Declined { intent, decline } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(decline.code, "requires_action");
        assert_eq!(intent.unwrap().status, PaymentStatus::RequiresAction);
    }

    #[test]
    fn provider_trouble_is_transient() {
        let api_error = r#"{"error":{"type":"api_error","message":"Stripe is down"}}"#;
        let cases = [
            raw(500, api_error),
            raw(503, api_error),
            raw(502, "<html>bad gateway</html>"),
            raw(
                429,
                r#"{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}"#,
            ),
            raw(
                409,
                r#"{"error":{"type":"idempotency_error","code":"idempotency_key_in_use","message":"in use"}}"#,
            ),
            raw(
                400,
                r#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#,
            ),
            // Unreadable success: the charge may have happened; a retry replays it.
            raw(200, "{\"id\":"),
            RawResponse {
                should_retry: Some(true),
                ..raw(
                    400,
                    r#"{"error":{"type":"invalid_request_error","code":"lock_timeout","message":"x"}}"#,
                )
            },
        ];
        for case in cases {
            let result = charge_answer(case.clone());
            assert!(
                matches!(result, Err(PaymentError::Transient(_))),
                "HTTP {}: {result:?}",
                case.status
            );
        }
        let Err(PaymentError::Transient(message)) = charge_answer(raw(503, api_error)) else {
            unreachable!()
        };
        assert!(
            message.contains("req_123") && message.contains("Stripe is down"),
            "{message}"
        );
    }

    #[test]
    fn other_client_errors_are_rejected_with_their_code() {
        let cases = [
            (
                401,
                r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_****"}}"#,
                Some("invalid_request_error"),
            ),
            (
                400,
                r#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"payment_method","message":"No such PaymentMethod"}}"#,
                Some("resource_missing"),
            ),
            (
                400,
                r#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}"#,
                Some("idempotency_error"),
            ),
            (404, "not json", None),
            (
                402,
                r#"{"error":{"type":"invalid_request_error","code":"account_invalid","message":"x"}}"#,
                Some("account_invalid"),
            ),
        ];
        for (status, body, code) in cases {
            match charge_answer(raw(status, body)) {
                Err(PaymentError::Rejected { code: got, message }) => {
                    assert_eq!(got.as_deref(), code, "{status} {body}");
                    assert!(message.starts_with(&format!("HTTP {status}")), "{message}");
                }
                other => panic!("{status} {body}: {other:?}"),
            }
        }
    }

    #[test]
    fn refunds_map_created_and_failed() {
        let ok = interpret::<RefundJson>(
            "refund",
            &raw(200, r#"{"id":"re_1","object":"refund","amount":2000,"currency":"eur","payment_intent":"pi_1","status":"succeeded","created":1}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            refund_created(ok).unwrap(),
            RefundOutcome::Refunded {
                refund_id: "re_1".into(),
                amount_minor: 2000
            }
        );
        let failed = RefundJson {
            id: "re_2".into(),
            amount: 5,
            status: Some("failed".into()),
        };
        assert!(matches!(
            refund_created(failed),
            Err(PaymentError::Rejected { code: Some(c), .. }) if c == "refund_failed"
        ));
        let already = interpret::<RefundJson>(
            "refund",
            &raw(400, r#"{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"Charge ch_1 has already been refunded."}}"#),
        )
        .unwrap()
        .unwrap_err();
        assert!(already.code_is("charge_already_refunded"));
    }

    #[test]
    fn the_charge_form_is_what_stripe_expects() {
        let request = ChargeRequest {
            reservation_id: ReservationId::parse("0190b2c4-0000-7000-8000-000000000001").unwrap(),
            amount: Money::new(1999, Currency::parse("EUR").unwrap()).unwrap(),
            payment_method: "pm_card_visa".into(),
            idempotency_key: "charge-1".into(),
        };
        assert_eq!(
            charge_form(&request).unwrap(),
            "amount=1999&currency=eur&payment_method=pm_card_visa&confirm=true\
             &automatic_payment_methods%5Benabled%5D=true\
             &automatic_payment_methods%5Ballow_redirects%5D=never\
             &metadata%5Breservation_id%5D=0190b2c4-0000-7000-8000-000000000001"
        );
        let free = ChargeRequest {
            amount: Money::new(0, Currency::parse("EUR").unwrap()).unwrap(),
            ..request
        };
        assert!(matches!(
            charge_form(&free),
            Err(PaymentError::Rejected { .. })
        ));
    }

    #[test]
    fn the_secret_never_prints() {
        let config = StripeConfig::new(Secret::new("sk_live_supersecret"));
        assert!(!format!("{config:?}").contains("supersecret"));
        let provider = StripeProvider::new(config).unwrap();
        assert!(!format!("{provider:?}").contains("supersecret"));
    }

    #[test]
    fn plain_http_is_allowed_only_to_this_machine() {
        let with_base = |base: &str| {
            StripeProvider::new(StripeConfig {
                api_base: base.into(),
                ..StripeConfig::new(Secret::new("sk_test_x"))
            })
        };
        assert!(with_base("https://api.stripe.com").is_ok());
        assert!(with_base("https://api.stripe.com/").is_ok());
        assert!(with_base("http://127.0.0.1:12111").is_ok());
        assert!(with_base("http://localhost:12111").is_ok());
        assert!(matches!(
            with_base("http://api.stripe.com"),
            Err(StripeSetupError::PlainHttp)
        ));
        for bad in ["api.stripe.com", "ftp://x", "https://api.stripe.com/v1", ""] {
            assert!(
                matches!(with_base(bad), Err(StripeSetupError::BadApiBase(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            StripeProvider::new(StripeConfig::new(Secret::new(" "))),
            Err(StripeSetupError::EmptyKey)
        ));
    }
}
