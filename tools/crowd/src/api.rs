//! The flashsale REST API as a client sees it (README "API"; `openapi.yaml`). Every buyer call
//! goes through [`Api`], which spends the run's request budget and records a [`Sample`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::http::{CallError, Http};
use crate::recorder::{Endpoint, OutOfBudget, Recorder, Sample};

/// How long a buyer's client waits for an answer (API Gateway's own limit is 29 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer as a buyer sees it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// None: no answer (timeout, connection refused or reset).
    pub status: Option<u16>,
    pub body: Value,
    /// `Retry-After` in seconds, when the answer carried one.
    pub retry_after: Option<u64>,
}

impl Answer {
    /// `201`, `202`, ... for successes; the problem's slug (`sold-out`, `limit-reached`,
    /// `rate-limited`, ...) for refusals; `http-<status>` for a refusal without a problem body;
    /// `no-answer` when nothing came back.
    pub fn outcome(&self) -> String {
        match self.status {
            None => "no-answer".into(),
            Some(s) if s < 400 => s.to_string(),
            Some(s) => self.body["type"]
                .as_str()
                .and_then(|t| t.rsplit('/').next())
                .filter(|slug| !slug.is_empty())
                .map_or_else(|| format!("http-{s}"), str::to_owned),
        }
    }

    pub fn is(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    /// Worth retrying with the same idempotency key: nothing came back, or the service said
    /// "not now" (429, 5xx).
    pub fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
}

/// The API at `base` (e.g. `http://127.0.0.1:4566/_aws/execute-api/<id>/dev` or
/// `https://<id>.execute-api.<region>.amazonaws.com/prod`).
#[derive(Clone)]
pub struct Api {
    base: String,
    http: Http,
    recorder: Arc<Recorder>,
}

impl Api {
    pub fn new(base: &str, http: Http, recorder: Arc<Recorder>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            recorder,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// `POST /sales/{sale}/reservations` with `{"quantity": n}`: 201 with the reservation.
    /// `client_headers`: what the buyer's client adds (telemetry, a challenge's answer).
    pub async fn reserve(
        &self,
        sale: &str,
        token: &str,
        key: &str,
        quantity: u32,
        client_headers: &[(&str, &str)],
    ) -> Result<Answer, OutOfBudget> {
        let url = format!("{}/sales/{sale}/reservations", self.base);
        let body = json!({ "quantity": quantity });
        let mut headers = vec![("idempotency-key", key)];
        headers.extend_from_slice(client_headers);
        self.send(
            Endpoint::Reserve,
            Method::POST,
            &url,
            token,
            &headers,
            Some(&body),
        )
        .await
    }

    /// `POST /reservations/{id}/payment` with `{"payment_method": pm}`: 202 while the saga runs.
    pub async fn pay(
        &self,
        reservation: &str,
        token: &str,
        key: &str,
        payment_method: &str,
    ) -> Result<Answer, OutOfBudget> {
        let url = format!("{}/reservations/{reservation}/payment", self.base);
        let body = json!({ "payment_method": payment_method });
        self.send(
            Endpoint::Pay,
            Method::POST,
            &url,
            token,
            &[("idempotency-key", key)],
            Some(&body),
        )
        .await
    }

    /// `GET /reservations/{id}`: the buyer's view (`status`: PENDING, PAYMENT_PROCESSING,
    /// CONFIRMED, FAILED, EXPIRED).
    pub async fn reservation(&self, reservation: &str, token: &str) -> Result<Answer, OutOfBudget> {
        let url = format!("{}/reservations/{reservation}", self.base);
        self.send(
            Endpoint::GetReservation,
            Method::GET,
            &url,
            token,
            &[],
            None,
        )
        .await
    }

    /// `PUT /sales/{id}` (admin): creates the sale. Not counted against the budget.
    pub async fn put_sale(
        &self,
        sale: &str,
        admin_token: &str,
        body: &Value,
    ) -> anyhow::Result<()> {
        let url = format!("{}/sales/{sale}", self.base);
        let auth = format!("Bearer {admin_token}");
        let reply = self
            .http
            .call(
                Method::PUT,
                &url,
                &[("authorization", &auth)],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        anyhow::ensure!(
            reply.status == 201 || reply.status == 200,
            "PUT /sales/{sale}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }

    /// `GET /sales/{id}`: the public view (`available`, approximate).
    pub async fn sale(&self, sale: &str) -> anyhow::Result<Value> {
        self.http
            .get_json(&format!("{}/sales/{sale}", self.base))
            .await
    }

    /// One call: the bearer token, then `headers` (the idempotency key, the client's own).
    async fn send(
        &self,
        endpoint: Endpoint,
        method: Method,
        url: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, OutOfBudget> {
        self.recorder.spend()?;
        let auth = format!("Bearer {token}");
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let started = Instant::now();
        let answer = match self.http.call(method, url, &all, body, CALL_TIMEOUT).await {
            Ok(reply) => Answer {
                status: Some(reply.status),
                retry_after: reply
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
                body: reply.json(),
            },
            Err(CallError::Timeout(_) | CallError::Transport(_)) => Answer {
                status: None,
                body: Value::Null,
                retry_after: None,
            },
        };
        let now = Instant::now();
        self.recorder.record(Sample {
            at_ms: self.recorder.ms(now),
            endpoint,
            status: answer.status,
            outcome: answer.outcome(),
            latency_ms: now.duration_since(started).as_secs_f64() * 1000.0,
        });
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>, body: Value) -> Answer {
        Answer {
            status,
            body,
            retry_after: None,
        }
    }

    #[test]
    fn outcomes_are_statuses_problem_slugs_or_no_answer() {
        assert_eq!(answer(Some(201), json!({})).outcome(), "201");
        assert_eq!(
            answer(Some(410), json!({"type": "/problems/sold-out"})).outcome(),
            "sold-out"
        );
        assert_eq!(
            answer(Some(502), json!({"message": "x"})).outcome(),
            "http-502"
        );
        assert_eq!(answer(None, Value::Null).outcome(), "no-answer");
        assert!(answer(None, Value::Null).retryable());
        assert!(answer(Some(503), Value::Null).retryable());
        assert!(answer(Some(429), Value::Null).retryable());
        assert!(!answer(Some(409), Value::Null).retryable());
    }
}
