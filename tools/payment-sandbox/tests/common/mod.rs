//! Test helpers: a webhook receiver on loopback that records every request (and can answer
//! 500 to the first N), a tiny HTTP client for the sandbox, and an independent
//! Stripe-Signature check (written here, not borrowed from the crate under test).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use payment_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const KEY: &str = "sk_test_itest";
pub const WEBHOOK_SECRET: &str = "whsec_itest";

/// A sandbox for one test: fast latency, short slow-card and retry delays.
pub fn config(webhook_url: Option<String>) -> SandboxConfig {
    SandboxConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret_key: KEY.to_owned(),
        webhook_url,
        webhook_secret: WEBHOOK_SECRET.to_owned(),
        latency_ms: (0, 5),
        slow_ms: 300,
        max_delivery_attempts: 8,
        retry_base_ms: 20,
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: Instant,
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
    pub json: Value,
    pub answered: u16,
}

impl Delivery {
    pub fn event_type(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
    pub fn event_id(&self) -> &str {
        self.json["id"].as_str().unwrap_or("")
    }
}

struct ReceiverState {
    deliveries: Mutex<Vec<Delivery>>,
    fail_first: AtomicU32,
}

/// Records webhook POSTs; answers 500 to the first `fail_first`, 200 afterwards.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(fail_first: u32) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            deliveries: Mutex::new(Vec::new()),
            fail_first: AtomicU32::new(fail_first),
        });
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&accept_state);
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let state = Arc::clone(&state);
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let fail = state
                                .fail_first
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            let status = if fail { 500 } else { 200 };
                            let header = |name: &str| {
                                parts
                                    .headers
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            state.deliveries.lock().unwrap().push(Delivery {
                                at: Instant::now(),
                                signature: header("stripe-signature"),
                                content_type: header("content-type"),
                                json: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                body,
                                answered: status,
                            });
                            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks/stripe", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} webhook requests within {timeout:?}, got {}: {:?}",
                got.len(),
                got.iter()
                    .map(|d| d.event_type().to_owned())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks `t=<ts>,v1=<hex>` against HMAC-SHA256(secret, "<ts>.<body>"); returns the timestamp.
pub fn verify_signature(header: &str, body: &[u8], secret: &str) -> Result<i64, String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|e| e.to_string())?),
            Some(("v1", sig)) => signatures.push(hex::decode(sig).map_err(|e| e.to_string())?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("no t=")?;
    let matches = signatures.iter().any(|sig| {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if matches {
        Ok(timestamp)
    } else {
        Err(format!("no v1 signature matches: {header}"))
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client for one sandbox: `/v1` calls with a key, `/_sandbox` calls without.
pub struct Api {
    pub base: String,
    pub key: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub fn new(sandbox: &Sandbox) -> Api {
        Api {
            base: sandbox.base_url(),
            key: KEY.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn with_key(&self, key: &str) -> Api {
        Api {
            base: self.base.clone(),
            key: key.to_owned(),
            client: self.client.clone(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .expect("sandbox answered within 10 s")
            .expect("sandbox reachable");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            json,
        }
    }

    /// A form-encoded Stripe call, authenticated with `Bearer <key>`.
    pub async fn post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(key) = idempotency_key {
            headers.push(("idempotency-key", key));
        }
        self.send(
            Method::POST,
            path,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            &headers,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        let auth = format!("Bearer {}", self.key);
        self.send(
            Method::GET,
            path,
            "application/x-www-form-urlencoded",
            Vec::new(),
            &[("authorization", auth.as_str())],
        )
        .await
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let reply = self
            .send(Method::GET, path, "application/json", Vec::new(), &[])
            .await;
        assert_eq!(reply.status, 200, "{path}: {:?}", reply.json);
        reply.json
    }

    pub async fn switches(&self, changes: Value) -> Value {
        let reply = self
            .send(
                Method::POST,
                "/_sandbox/switches",
                "application/json",
                serde_json::to_vec(&changes).unwrap(),
                &[],
            )
            .await;
        assert_eq!(reply.status, 200, "switches {changes}: {:?}", reply.json);
        reply.json
    }

    pub async fn stats(&self) -> Value {
        self.admin_get("/_sandbox/stats").await
    }

    pub async fn events(&self, payment_intent: &str) -> Vec<Value> {
        let list = self
            .admin_get(&format!("/_sandbox/events?payment_intent={payment_intent}"))
            .await;
        list["data"].as_array().cloned().unwrap_or_default()
    }

    /// A confirmed PaymentIntent for 2500 usd with `metadata[reservation_id]`.
    pub async fn charge(
        &self,
        payment_method: &str,
        reservation: &str,
        idempotency_key: Option<&str>,
    ) -> Reply {
        self.post(
            "/v1/payment_intents",
            &[
                ("amount", "2500"),
                ("currency", "usd"),
                ("payment_method", payment_method),
                ("confirm", "true"),
                ("metadata[reservation_id]", reservation),
            ],
            idempotency_key,
        )
        .await
    }
}
