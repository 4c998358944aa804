//! A local stand-in for Cloudflare Turnstile's siteverify endpoint
//! (`POST /turnstile/v0/siteverify`, form-encoded or JSON), for tests of the Turnstile adapter
//! without the internet. It honours the documented dummy secret keys
//! (https://developers.cloudflare.com/turnstile/troubleshooting/testing/):
//!
//! - always passes ([`ALWAYS_PASSES`]): success for the dummy token [`DUMMY_TOKEN`] (with no
//!   action or cData), `invalid-input-response` for any other token (dummy secrets reject real
//!   tokens);
//! - always fails ([`ALWAYS_FAILS`]) with `invalid-input-response`;
//! - already spent ([`ALREADY_SPENT`]) with `timeout-or-duplicate`;
//!
//! and behaves like a production key for [`SECRET`]: tokens come from [`TurnstileStandIn::solve`]
//! (what the widget would give a person), are valid for 300 s, and verify once; a second
//! verification answers `timeout-or-duplicate` unless it repeats the first one's
//! `idempotency_key`, which gets the first answer again. Any other secret answers
//! `invalid-input-secret`. [`TurnstileStandIn::fail_next`] makes the next calls answer a 5xx.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const ALWAYS_PASSES: &str = "1x0000000000000000000000000000000AA";
pub const ALWAYS_FAILS: &str = "2x0000000000000000000000000000000AA";
pub const ALREADY_SPENT: &str = "3x0000000000000000000000000000000AA";
/// The token the dummy site keys produce.
pub const DUMMY_TOKEN: &str = "XXXX.DUMMY.TOKEN.XXXX";
/// The stand-in's "production" secret.
pub const SECRET: &str = "0x4AAAAAAAstandin-secret-key";
/// Tokens are valid this long after they were solved.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

struct Minted {
    action: String,
    cdata: String,
    solved_at: SystemTime,
    /// The idempotency key and answer of its first verification.
    verified: Option<(Option<String>, Value)>,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Minted>,
    fail_next: usize,
    calls: usize,
}

pub struct TurnstileStandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TurnstileStandIn {
    /// Listens on 127.0.0.1 at a free port; stops when dropped.
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&state), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// The siteverify URL to configure the adapter with.
    pub fn siteverify_url(&self) -> String {
        format!("http://{}/turnstile/v0/siteverify", self.addr)
    }

    /// What the widget gives a person who passed, rendered with `action` and `cdata`.
    pub fn solve(&self, action: &str, cdata: &str) -> String {
        self.solve_aged(action, cdata, Duration::ZERO)
    }

    /// As [`Self::solve`], solved `age` ago.
    pub fn solve_aged(&self, action: &str, cdata: &str, age: Duration) -> String {
        let token = format!(
            "standin.{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        self.lock().tokens.insert(
            token.clone(),
            Minted {
                action: action.to_owned(),
                cdata: cdata.to_owned(),
                solved_at: SystemTime::now() - age,
                verified: None,
            },
        );
        token
    }

    /// The next `n` calls answer 500 `internal-error`.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for TurnstileStandIn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn failure(code: &str) -> Value {
    json!({ "success": false, "error-codes": [code], "messages": [] })
}

fn success(action: &str, cdata: &str, solved_at: SystemTime) -> Value {
    let ts = chrono::DateTime::<chrono::Utc>::from(solved_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "success": true,
        "challenge_ts": ts,
        "hostname": "shop.example",
        "error-codes": [],
        "action": action,
        "cdata": cdata,
    })
}

fn fields(content_type: &str, body: &[u8]) -> HashMap<String, String> {
    if content_type.starts_with("application/json") {
        serde_json::from_slice::<HashMap<String, Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect()
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    }
}

fn verify(state: &mut State, fields: &HashMap<String, String>) -> Value {
    let Some(secret) = fields.get("secret").filter(|s| !s.is_empty()) else {
        return failure("missing-input-secret");
    };
    let Some(token) = fields.get("response").filter(|s| !s.is_empty()) else {
        return failure("missing-input-response");
    };
    if token.len() > 2048 {
        return failure("invalid-input-response");
    }
    match secret.as_str() {
        ALWAYS_PASSES if token == DUMMY_TOKEN => success("", "", SystemTime::now()),
        ALWAYS_PASSES => failure("invalid-input-response"),
        ALWAYS_FAILS => failure("invalid-input-response"),
        ALREADY_SPENT => failure("timeout-or-duplicate"),
        SECRET => {
            let idempotency_key = fields.get("idempotency_key").cloned();
            let Some(minted) = state.tokens.get_mut(token) else {
                return failure("invalid-input-response");
            };
            if let Some((first_key, first_answer)) = &minted.verified {
                return match (first_key, &idempotency_key) {
                    (Some(a), Some(b)) if a == b => first_answer.clone(),
                    _ => failure("timeout-or-duplicate"),
                };
            }
            let age = minted.solved_at.elapsed().unwrap_or_default();
            let answer = if age > TOKEN_LIFETIME {
                failure("timeout-or-duplicate")
            } else {
                success(&minted.action, &minted.cdata, minted.solved_at)
            };
            minted.verified = Some((idempotency_key, answer.clone()));
            answer
        }
        _ => failure("invalid-input-secret"),
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path_ok = request.uri().path() == "/turnstile/v0/siteverify";
    let post = request.method() == hyper::Method::POST;
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, answer) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        state.calls += 1;
        if !(path_ok && post) {
            (StatusCode::NOT_FOUND, failure("bad-request"))
        } else if state.fail_next > 0 {
            state.fail_next -= 1;
            (StatusCode::INTERNAL_SERVER_ERROR, failure("internal-error"))
        } else {
            (
                StatusCode::OK,
                verify(&mut state, &fields(&content_type, &body)),
            )
        }
    };
    Ok(Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("static response"))
}
