//! Everything the sandbox knows, behind one mutex. Handlers take the lock once, do all their
//! checks and writes, and release it before any await: a request is atomic, so two
//! concurrent requests with the same idempotency key can never both execute.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::model::{Intent, Refund};
use crate::SandboxConfig;

/// Stripe keeps idempotency keys for 24 hours.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Expired idempotency entries are swept every this many inserts (not on every insert: a load
/// test can store many thousands of keys).
const IDEMPOTENCY_SWEEP_EVERY: u64 = 1024;
/// The API version stamped on events (Stripe puts the account's version there).
pub const API_VERSION: &str = "2024-06-20";

pub struct Shared {
    pub secret_key: String,
    pub webhook_secret: String,
    pub max_delivery_attempts: u32,
    pub retry_base_ms: u64,
    pub client: Client<HttpConnector, Full<Bytes>>,
    state: Mutex<State>,
    tasks: Mutex<Tasks>,
}

/// Connection, delivery and timer tasks. Owned here so that dropping the sandbox aborts them
/// all; `closed` stops tasks that are still running from spawning new ones afterwards.
struct Tasks {
    set: JoinSet<()>,
    closed: bool,
}

impl Shared {
    pub fn new(config: &SandboxConfig) -> Self {
        let switches = Switches {
            webhook_url: config.webhook_url.clone(),
            latency_ms: config.latency_ms,
            slow_ms: config.slow_ms,
            ..Switches::default()
        };
        Self {
            secret_key: config.secret_key.clone(),
            webhook_secret: config.webhook_secret.clone(),
            max_delivery_attempts: config.max_delivery_attempts.max(1),
            retry_base_ms: config.retry_base_ms,
            client: Client::builder(TokioExecutor::new()).build_http(),
            state: Mutex::new(State {
                switches,
                ..State::default()
            }),
            tasks: Mutex::new(Tasks {
                set: JoinSet::new(),
                closed: false,
            }),
        }
    }

    /// The state lock. A panic while holding it cannot leave half-written data that matters
    /// more than keeping the sandbox serving, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.closed {
            return;
        }
        // Reap finished tasks so the set does not grow with every request served.
        while tasks.set.try_join_next().is_some() {}
        tasks.set.spawn(task);
    }

    pub fn close(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.closed = true;
        tasks.set.abort_all();
    }
}

/// Fault switches, changed at runtime through `POST /_sandbox/switches`.
#[derive(Debug, Clone, Serialize)]
pub struct Switches {
    pub webhook_url: Option<String>,
    pub duplicate_webhooks: bool,
    pub reorder_webhooks: bool,
    pub reorder_window_ms: u64,
    pub webhook_delay_ms: u64,
    pub drop_webhooks: bool,
    pub outage: bool,
    pub latency_ms: (u64, u64),
    pub slow_ms: u64,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            webhook_url: None,
            duplicate_webhooks: false,
            reorder_webhooks: false,
            reorder_window_ms: 1500,
            webhook_delay_ms: 0,
            drop_webhooks: false,
            outage: false,
            latency_ms: (500, 2000),
            slow_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Every request under `/v1`, whatever its outcome (401, 503 and replays included).
    pub api_calls: u64,
    /// PaymentIntents created (replays do not count).
    pub payment_intents: u64,
    pub succeeded: u64,
    pub declined: u64,
    pub canceled: u64,
    pub refunds: u64,
    pub events: u64,
    pub deliveries_ok: u64,
    pub deliveries_failed: u64,
    pub idempotent_replays: u64,
    pub outage_rejections: u64,
    pub auth_failures: u64,
}

/// One stored idempotent result: what Stripe stores, the status and body of the first run.
pub struct IdempotentResult {
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub status: u16,
    pub body: Bytes,
    /// The first run's `Request-Id`, sent back as `Original-Request` on replays.
    pub request_id: String,
    /// The PaymentIntent the first run created, so replays count as create calls reaching it.
    pub intent: Option<String>,
    pub stored_at: Instant,
}

/// A webhook event and what happened to its deliveries.
pub struct EventRecord {
    pub kind: String,
    pub payment_intent: String,
    /// The serialized event, fixed at creation: every attempt and copy sends the same bytes.
    pub body: Bytes,
    pub attempts: u32,
    pub delivered: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub dropped: bool,
    pub no_endpoint: bool,
}

impl EventRecord {
    pub fn to_json(&self) -> Value {
        let event: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let mut view = match event {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        view.insert("payment_intent".into(), json!(self.payment_intent));
        view.insert("attempts".into(), json!(self.attempts));
        view.insert("delivered".into(), json!(self.delivered));
        view.insert("last_status".into(), json!(self.last_status));
        view.insert("last_error".into(), json!(self.last_error));
        view.insert("dropped".into(), json!(self.dropped));
        view.insert("no_endpoint".into(), json!(self.no_endpoint));
        Value::Object(view)
    }
}

#[derive(Default)]
pub struct State {
    pub switches: Switches,
    pub intents: HashMap<String, Intent>,
    pub refunds: Vec<Refund>,
    pub events: Vec<EventRecord>,
    event_index: HashMap<String, usize>,
    pub idempotency: HashMap<(String, String), IdempotentResult>,
    idempotency_inserts: u64,
    pub stats: Stats,
    /// Events held back while `reorder_webhooks` is on, oldest first.
    pub reorder_pending: Vec<String>,
    pub reorder_flush_scheduled: bool,
    seq: u64,
}

impl State {
    /// A creation sequence number: lists are ordered by it (timestamps tie within a second).
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records an event (`data.object` = `object` as of now) and returns its id; the caller
    /// hands the id to `webhook::dispatch` once the lock is released.
    pub fn emit(
        &mut self,
        kind: &str,
        object: Value,
        payment_intent: &str,
        request: &RequestInfo,
    ) -> String {
        let id = new_id("evt");
        let created = unix_now();
        let event = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": request.id, "idempotency_key": request.idempotency_key },
            "type": kind,
        });
        let body = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
        self.event_index.insert(id.clone(), self.events.len());
        self.events.push(EventRecord {
            kind: kind.to_owned(),
            payment_intent: payment_intent.to_owned(),
            body,
            attempts: 0,
            delivered: 0,
            last_status: None,
            last_error: None,
            dropped: false,
            no_endpoint: false,
        });
        self.stats.events += 1;
        id
    }

    pub fn event(&self, id: &str) -> Option<&EventRecord> {
        self.event_index.get(id).and_then(|&i| self.events.get(i))
    }

    pub fn event_mut(&mut self, id: &str) -> Option<&mut EventRecord> {
        let i = *self.event_index.get(id)?;
        self.events.get_mut(i)
    }

    /// The stored result for this key, if it has not expired.
    pub fn idempotent(&self, scope: &str, key: &str) -> Option<&IdempotentResult> {
        self.idempotency
            .get(&(scope.to_owned(), key.to_owned()))
            .filter(|stored| stored.stored_at.elapsed() < IDEMPOTENCY_TTL)
    }

    pub fn store_idempotent(&mut self, scope: &str, key: &str, result: IdempotentResult) {
        self.idempotency_inserts += 1;
        if self.idempotency_inserts >= IDEMPOTENCY_SWEEP_EVERY {
            self.idempotency_inserts = 0;
            self.idempotency
                .retain(|_, stored| stored.stored_at.elapsed() < IDEMPOTENCY_TTL);
        }
        self.idempotency
            .insert((scope.to_owned(), key.to_owned()), result);
    }
}

/// The API request that caused an event (Stripe's `event.request`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A Stripe-style object id: prefix, underscore, 24 random alphanumerics.
pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 25);
    id.push_str(prefix);
    id.push('_');
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
