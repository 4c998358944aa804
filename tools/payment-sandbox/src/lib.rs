//! A local stand-in for Stripe: the slice of Stripe's HTTP API our Stripe adapter uses, with
//! signed webhooks and switches to inject the faults a real provider produces (outages, slow
//! or missing callbacks, duplicate and out-of-order deliveries).
//!
//! Stripe cannot be reached from the development machines, and its test mode cannot be made to
//! fail on demand. The adapter is written against Stripe's real API reference and pointed here
//! by base URL and secret key only, so the shapes below follow Stripe, not our adapter.
//!
//! # API subset (`/v1`, form-encoded requests, JSON responses)
//! - `POST /v1/payment_intents` (`amount`, `currency`, `payment_method`, `confirm`,
//!   `metadata[..]`, `description`; other real Stripe parameters are accepted and ignored,
//!   unknown ones are refused with `parameter_unknown` like Stripe does),
//!   `GET /v1/payment_intents/{id}`, `POST /v1/payment_intents/{id}/cancel`,
//!   `POST /v1/refunds`, `GET /v1/refunds?payment_intent=..`, `GET /v1/refunds/{id}`.
//! - Auth: `Authorization: Bearer <secret_key>` (HTTP Basic with the key as user name, the
//!   other form Stripe accepts, works too).
//! - `Idempotency-Key` on every POST: a replay returns the stored status and body with
//!   `Idempotent-Replayed: true`; the same key with other parameters or on another endpoint is
//!   a 400 `idempotency_error`. Like Stripe, only requests that started executing are stored
//!   (parameter validation errors, 401 and 503 are not), and keys expire after 24 h.
//! - Every `/v1` call first sleeps a latency drawn uniformly from `latency_ms`.
//!
//! # Test payment methods
//! | payment_method | result |
//! |---|---|
//! | `pm_card_visa`, `pm_card_mastercard` | 200 `succeeded`; `charge.succeeded` + `payment_intent.succeeded` |
//! | `pm_card_chargeDeclined` | 402 `card_error`/`card_declined`/`generic_decline`; `charge.failed` + `payment_intent.payment_failed` |
//! | `pm_card_chargeDeclinedInsufficientFunds` | as above with decline code `insufficient_funds` |
//! | `pm_card_sandbox_slow` (sandbox only) | 200 `processing` + `payment_intent.processing`; after `slow_ms` it becomes `succeeded` (`charge.succeeded` + `payment_intent.succeeded`) unless canceled first |
//! | anything else | 400 `resource_missing` (param `payment_method`) |
//!
//! A refund sends `charge.refunded` (the Charge, as Stripe does) and `refund.created` (the
//! Refund); a cancel sends `payment_intent.canceled`.
//!
//! # Webhooks
//! Events are POSTed to the webhook URL with `Stripe-Signature: t=<now>,v1=<hex hmac>` (signed
//! again at every attempt), retried with exponential backoff on non-2xx or connection errors,
//! each delivery in its own task. Plain `http://` only (receivers are local).
//!
//! # Switches and inspection (`/_sandbox`, JSON, no auth; the server listens on loopback only)
//! `GET|POST /_sandbox/switches`, `GET /_sandbox/payment_intents?metadata.<key>=<value>`,
//! `GET /_sandbox/events?payment_intent=<id>`, `POST /_sandbox/events/{id}/resend`,
//! `GET /_sandbox/stats`. The exact shapes are documented at the top of `src/admin.rs`.

mod admin;
mod api;
mod http;
mod model;
mod params;
mod state;
mod webhook;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use state::Shared;

pub use webhook::{sign, signature_header};

/// Configuration of one sandbox instance. The latency, slow-card delay and webhook URL are
/// only starting values: `POST /_sandbox/switches` changes them at runtime.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Must be a loopback address (`127.0.0.1:<port>`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// The API key expected in `Authorization: Bearer <key>`.
    pub secret_key: String,
    /// Where events are POSTed; `None` records events without delivering them.
    pub webhook_url: Option<String>,
    /// The `whsec_...` secret the `Stripe-Signature` header is computed with.
    pub webhook_secret: String,
    /// Every `/v1` call sleeps a uniform random time in `[min, max]` ms first.
    pub latency_ms: (u64, u64),
    /// How long `pm_card_sandbox_slow` stays `processing`.
    pub slow_ms: u64,
    /// Delivery attempts per event (the first one included).
    pub max_delivery_attempts: u32,
    /// Delay before the first retry; doubled for each further retry, plus up to 20% jitter.
    pub retry_base_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 12111)),
            secret_key: "sk_test_sandbox".to_owned(),
            webhook_url: None,
            webhook_secret: "whsec_sandbox".to_owned(),
            latency_ms: (500, 2000),
            slow_ms: 5000,
            max_delivery_attempts: 8,
            retry_base_ms: 500,
        }
    }
}

/// Secrets never reach logs or panic messages.
impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("listen", &self.listen)
            .field("secret_key", &"***")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"***")
            .field("latency_ms", &self.latency_ms)
            .field("slow_ms", &self.slow_ms)
            .field("max_delivery_attempts", &self.max_delivery_attempts)
            .field("retry_base_ms", &self.retry_base_ms)
            .finish()
    }
}

/// A running sandbox. Dropping it stops accepting connections and aborts every connection,
/// webhook delivery and pending slow-card task.
pub struct Sandbox {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Sandbox {
    /// Binds the listener and starts serving. Refuses a non-loopback address, an invalid
    /// webhook URL, or a latency range with min > max (`InvalidInput`).
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        if !config.listen.ip().is_loopback() {
            return Err(invalid_input(format!(
                "the sandbox listens on loopback only, not {}",
                config.listen.ip()
            )));
        }
        if config.latency_ms.0 > config.latency_ms.1 {
            return Err(invalid_input(
                "latency_ms: min must not exceed max".to_owned(),
            ));
        }
        if let Some(url) = &config.webhook_url {
            webhook::validate_url(url).map_err(invalid_input)?;
        }
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config));
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        tracing::info!(%addr, "payment sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            stop,
            accept,
        })
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash: the adapter's API base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
        self.shared.close();
    }
}

fn invalid_input(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let conn_shared = Arc::clone(&shared);
        shared.spawn(async move {
            let service = service_fn(move |request| {
                let shared = Arc::clone(&conn_shared);
                async move { Ok::<_, std::convert::Infallible>(http::route(shared, request).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
