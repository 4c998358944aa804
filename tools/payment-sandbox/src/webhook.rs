//! Webhook signing and delivery, Stripe's way: `Stripe-Signature: t=<unix>,v1=<hex>` where
//! v1 = HMAC-SHA256(secret, "<t>.<raw body>"), recomputed at every attempt; non-2xx answers
//! and connection errors are retried with exponential backoff. Each delivery (and each
//! duplicate copy) runs in its own task, so one slow or failing receiver call never holds up
//! another event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use sha2::Sha256;

use crate::state::{unix_now, Shared};

/// Stripe gives receivers a few seconds; a hung receiver must not pin a task forever.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// `duplicate_webhooks`: the copy follows the original this much later.
const DUPLICATE_GAP: Duration = Duration::from_millis(100);
/// `reorder_webhooks`: held events start this far apart, newest first, so the receiver sees
/// them in that order even though each delivery is independent.
const REORDER_STAGGER: Duration = Duration::from_millis(50);
/// Receivers' answers are read (so the connection can be reused) up to this size.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Hex HMAC-SHA256 of `"<timestamp>.<payload>"` keyed with the whole secret (`whsec_...`
/// included), i.e. the `v1` value of a `Stripe-Signature` header.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Stripe-Signature` header value: `t=<timestamp>,v1=<signature>`.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, payload))
}

/// Webhook URLs must be plain `http://host[:port]/path` (receivers run locally).
pub fn validate_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid webhook_url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!(
            "invalid webhook_url {url:?}: expected http://host[:port]/path"
        ));
    }
    Ok(())
}

/// Sends freshly recorded events according to the switches of this moment: dropped,
/// held for reordering, or scheduled (after `webhook_delay_ms`, twice if duplicating).
pub fn dispatch(shared: &Arc<Shared>, events: Vec<String>) {
    if events.is_empty() {
        return;
    }
    let mut st = shared.lock();
    let switches = st.switches.clone();
    if switches.drop_webhooks {
        for id in &events {
            if let Some(event) = st.event_mut(id) {
                event.dropped = true;
            }
        }
        drop(st);
        for id in &events {
            tracing::info!(event = %id, "webhook dropped (drop_webhooks switch)");
        }
        return;
    }
    if switches.reorder_webhooks {
        st.reorder_pending.extend(events);
        if !st.reorder_flush_scheduled {
            st.reorder_flush_scheduled = true;
            drop(st);
            shared.spawn(flush_reordered(
                Arc::clone(shared),
                switches.reorder_window_ms,
            ));
        }
        return;
    }
    drop(st);
    let delay = Duration::from_millis(switches.webhook_delay_ms);
    for id in events {
        schedule(shared, id, delay, switches.duplicate_webhooks);
    }
}

fn schedule(shared: &Arc<Shared>, id: String, delay: Duration, duplicate: bool) {
    if duplicate {
        shared.spawn(deliver(
            Arc::clone(shared),
            id.clone(),
            delay + DUPLICATE_GAP,
            0,
        ));
    }
    shared.spawn(deliver(Arc::clone(shared), id, delay, 0));
}

/// Releases the events held during the reorder window, newest first.
async fn flush_reordered(shared: Arc<Shared>, window_ms: u64) {
    tokio::time::sleep(Duration::from_millis(window_ms)).await;
    let (held, switches) = {
        let mut st = shared.lock();
        st.reorder_flush_scheduled = false;
        (std::mem::take(&mut st.reorder_pending), st.switches.clone())
    };
    let base = Duration::from_millis(switches.webhook_delay_ms);
    for (i, id) in held.into_iter().rev().enumerate() {
        let stagger = REORDER_STAGGER * u32::try_from(i).unwrap_or(u32::MAX);
        schedule(&shared, id, base + stagger, switches.duplicate_webhooks);
    }
}

/// Attempts `first..max_delivery_attempts` of one delivery, backing off between them.
async fn deliver(shared: Arc<Shared>, id: String, delay: Duration, first: u32) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let max = shared.max_delivery_attempts;
    for number in first..max {
        if number > 0 {
            tokio::time::sleep(backoff(shared.retry_base_ms, number - 1)).await;
        }
        match attempt(&shared, &id, number).await {
            Attempt::Failed { .. } => continue,
            Attempt::Delivered { .. } | Attempt::NoEndpoint | Attempt::Gone => return,
        }
    }
    tracing::warn!(event = %id, attempts = max, "webhook delivery gave up");
}

/// Delay after failed attempt `n` (0-based): `base * 2^n` plus up to 20% jitter.
fn backoff(base_ms: u64, n: u32) -> Duration {
    let delay = base_ms.saturating_mul(1u64 << n.min(30));
    Duration::from_millis(delay.saturating_add(fastrand::u64(0..=delay / 5)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    Failed {
        status: Option<u16>,
        error: Option<String>,
    },
    /// No webhook URL is configured: nothing to retry.
    NoEndpoint,
    /// Unknown event id.
    Gone,
}

/// One signed POST of the event to the current webhook URL, recorded on the event.
pub async fn attempt(shared: &Shared, id: &str, number: u32) -> Attempt {
    let (url, body, kind) = {
        let st = shared.lock();
        let Some(event) = st.event(id) else {
            return Attempt::Gone;
        };
        (
            st.switches.webhook_url.clone(),
            event.body.clone(),
            event.kind.clone(),
        )
    };
    let Some(url) = url else {
        if let Some(event) = shared.lock().event_mut(id) {
            event.no_endpoint = true;
        }
        tracing::info!(event = %id, kind = %kind, "webhook not sent: no webhook_url");
        return Attempt::NoEndpoint;
    };
    let signature = signature_header(&shared.webhook_secret, unix_now(), &body);
    let started = Instant::now();
    let result = post(&shared.client, &url, signature, body).await;
    let ms = started.elapsed().as_millis() as u64;
    let outcome = match result {
        Ok(status) if (200..300).contains(&status) => Attempt::Delivered { status },
        Ok(status) => Attempt::Failed {
            status: Some(status),
            error: None,
        },
        Err(error) => Attempt::Failed {
            status: None,
            error: Some(error),
        },
    };
    {
        let mut st = shared.lock();
        match &outcome {
            Attempt::Delivered { .. } => st.stats.deliveries_ok += 1,
            _ => st.stats.deliveries_failed += 1,
        }
        if let Some(event) = st.event_mut(id) {
            event.attempts += 1;
            match &outcome {
                Attempt::Delivered { status } => {
                    event.delivered += 1;
                    event.last_status = Some(*status);
                    event.last_error = None;
                }
                Attempt::Failed { status, error } => {
                    event.last_status = *status;
                    event.last_error = error.clone();
                }
                Attempt::NoEndpoint | Attempt::Gone => {}
            }
        }
    }
    match &outcome {
        Attempt::Delivered { status } => tracing::info!(
            event = %id, kind = %kind, attempt = number + 1, status, ms, "webhook delivered"
        ),
        Attempt::Failed { status, error } => tracing::warn!(
            event = %id, kind = %kind, attempt = number + 1, status = ?status,
            error = error.as_deref().unwrap_or("-"), ms, "webhook delivery failed"
        ),
        Attempt::NoEndpoint | Attempt::Gone => {}
    }
    outcome
}

/// `POST /_sandbox/events/{id}/resend`: one attempt now, answered to the caller; if it
/// fails, the remaining attempts continue in the background.
pub async fn resend(shared: &Arc<Shared>, id: &str) -> Attempt {
    let outcome = attempt(shared, id, 0).await;
    if matches!(outcome, Attempt::Failed { .. }) && shared.max_delivery_attempts > 1 {
        shared.spawn(deliver(
            Arc::clone(shared),
            id.to_owned(),
            Duration::ZERO,
            1,
        ));
    }
    outcome
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    signature: String,
    body: Bytes,
) -> Result<u16, String> {
    let request = Request::post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("stripe-signature", signature)
        .header(USER_AGENT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
        .body(Full::new(body))
        .map_err(|e| format!("invalid webhook url: {e}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        Ok(status)
    };
    match tokio::time::timeout(DELIVERY_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {} s", DELIVERY_TIMEOUT.as_secs())),
    }
}

/// hyper's client errors say little at the top level ("client error (Connect)"); the cause
/// ("Connection refused") is further down the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stripe's published example (stripe-node's webhook tests).
    #[test]
    fn signature_matches_the_known_vector() {
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        assert_eq!(
            sign("whsec_test_secret", 1492774577, body),
            "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a"
        );
        assert_eq!(
            signature_header("whsec_test_secret", 1492774577, body),
            "t=1492774577,v1=88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a"
        );
        assert_ne!(
            sign("whsec_other", 1492774577, body),
            sign("whsec_test_secret", 1492774577, body)
        );
        assert_ne!(
            sign("whsec_test_secret", 1492774578, body),
            sign("whsec_test_secret", 1492774577, body)
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for n in 0..5 {
            let expected = 100u64 << n;
            let got = backoff(100, n).as_millis() as u64;
            assert!(
                got >= expected && got <= expected + expected / 5,
                "n={n}: {got}"
            );
        }
        // No overflow for absurd attempt numbers.
        assert!(backoff(u64::MAX, 40) >= Duration::from_millis(u64::MAX / 2));
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(validate_url("http://127.0.0.1:9000/webhooks/stripe").is_ok());
        assert!(validate_url("https://example.com/hook").is_err());
        assert!(validate_url("not a url").is_err());
        assert!(validate_url("/relative").is_err());
    }
}
