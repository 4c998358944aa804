//! An HTTP fault proxy for the AWS JSON protocols (DynamoDB, Step Functions, SQS), on loopback.
//!
//! Tests point an SDK client (or a deployed function, through `AWS_ENDPOINT_URL_DYNAMODB` and
//! friends) at [`FaultProxy::url`]; the proxy forwards everything to the upstream (LocalStack)
//! except calls that match a [`Rule`], which it answers with the fault the rule names:
//! throttling, a cancelled transaction with given reasons, a 5xx, a slow answer, or the worst
//! one — the call reaches the service and commits, then the connection drops before the answer
//! ("committed, answer lost"). Rules match the `X-Amz-Target` header (for example
//! `DynamoDB_20120810.TransactWriteItems`) and fire a bounded number of times, or for a share of
//! calls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What the proxy does with a call that matches a rule. As JSON (the fault-proxy tool's control
/// API): `{"respond": {"status": 400, "body": "..."}}`, `{"delay": 2000}` (ms),
/// `"answer_lost"`, `{"hang": 8000}` (ms), or a named one: `"throttling"`, `"server_error"`,
/// `{"transaction_cancelled": ["None", "ThrottlingError"]}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", from = "FaultSpec")]
pub enum Fault {
    /// Answer this instead of forwarding (the service never sees the call).
    Respond { status: u16, body: String },
    /// Forward after a pause.
    #[serde(serialize_with = "millis")]
    Delay(Duration),
    /// Forward, let the service commit, then drop the connection without an answer.
    AnswerLost,
    /// Hold the call this long, then answer 500 without forwarding: the service never sees it.
    /// Longer than the caller's timeout, it models a caller killed mid-call (a Lambda that
    /// times out between two writes).
    #[serde(serialize_with = "millis")]
    Hang(Duration),
}

/// The JSON forms a fault can be given in (named faults expand to [`Fault`]).
#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultSpec {
    Respond { status: u16, body: String },
    Delay(u64),
    AnswerLost,
    Hang(u64),
    Throttling,
    ServerError,
    TransactionCancelled(Vec<String>),
    StatesServerError,
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Self {
        match spec {
            FaultSpec::Respond { status, body } => Fault::Respond { status, body },
            FaultSpec::Delay(ms) => Fault::Delay(Duration::from_millis(ms)),
            FaultSpec::AnswerLost => Fault::AnswerLost,
            FaultSpec::Hang(ms) => Fault::Hang(Duration::from_millis(ms)),
            FaultSpec::Throttling => Fault::dynamodb_throttling(),
            FaultSpec::ServerError => Fault::dynamodb_server_error(),
            FaultSpec::TransactionCancelled(reasons) => Fault::transaction_cancelled(
                &reasons.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
            FaultSpec::StatesServerError => Fault::states_server_error(),
        }
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Fault {
    /// DynamoDB's `ThrottlingException` (HTTP 400, retryable).
    pub fn dynamodb_throttling() -> Self {
        Self::dynamodb_error(
            400,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        )
    }

    /// DynamoDB's `InternalServerError` (HTTP 500).
    pub fn dynamodb_server_error() -> Self {
        Self::dynamodb_error(500, "InternalServerError", "Internal server error")
    }

    /// A `TransactionCanceledException` with one reason code per action (`None`,
    /// `ThrottlingError`, `TransactionConflict`, `ConditionalCheckFailed`, ...).
    pub fn transaction_cancelled(reasons: &[&str]) -> Self {
        let list: Vec<String> = reasons
            .iter()
            .map(|code| format!(r#"{{"Code":"{code}","Message":"injected"}}"#))
            .collect();
        Self::Respond {
            status: 400,
            body: format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [{}]","CancellationReasons":[{}]}}"#,
                reasons.join(", "),
                list.join(",")
            ),
        }
    }

    /// A JSON-protocol error with this `__type` (DynamoDB's namespace).
    pub fn dynamodb_error(status: u16, code: &str, message: &str) -> Self {
        Self::Respond {
            status,
            body: format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}"#
            ),
        }
    }

    /// Step Functions answering 500 (`ServiceUnavailable`-like).
    pub fn states_server_error() -> Self {
        Self::Respond {
            status: 500,
            body: r#"{"__type":"InternalFailure","message":"injected"}"#.into(),
        }
    }
}

/// When a rule fires. JSON: `{"next": 3}` or `{"share": 0.2}`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Times {
    /// The next `n` matching calls.
    Next(u32),
    /// Each matching call with this probability (0..=1), until the rule is removed.
    Share(f64),
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Rule {
    /// A substring of `X-Amz-Target`, e.g. `TransactWriteItems` or `StartExecution`.
    pub target: String,
    /// When set, only calls whose request body contains it (a table name, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    pub times: Times,
    pub fault: Fault,
}

impl Rule {
    pub fn next(target: &str, n: u32, fault: Fault) -> Self {
        Self {
            target: target.into(),
            body_contains: None,
            times: Times::Next(n),
            fault,
        }
    }

    pub fn share(target: &str, p: f64, fault: Fault) -> Self {
        Self {
            target: target.into(),
            body_contains: None,
            times: Times::Share(p),
            fault,
        }
    }

    /// Only for calls whose body contains `needle`.
    pub fn when_body_contains(mut self, needle: &str) -> Self {
        self.body_contains = Some(needle.into());
        self
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Per target: calls seen, and how many of them got a fault (counts only: the proxy of the
    /// local environment lives for days).
    calls: std::collections::HashMap<String, (usize, usize)>,
}

/// The proxy. Listens on 127.0.0.1 at a free port; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (e.g. `http://127.0.0.1:4566`).
    pub async fn start(upstream: &str) -> Self {
        Self::start_on(0, upstream).await
    }

    /// As [`FaultProxy::start`], on `port` of 127.0.0.1 (0: any free port).
    pub async fn start_on(port: u16, upstream: &str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(Mutex::new(State::default()));
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let state = Arc::clone(&accept_state);
                let upstream = Arc::clone(&upstream);
                let client = client.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(
                            Arc::clone(&state),
                            Arc::clone(&upstream),
                            client.clone(),
                            request,
                        )
                    });
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

    /// `http://127.0.0.1:<port>`: the endpoint URL to give an SDK client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule: from now on everything is forwarded.
    pub fn heal(&self) {
        self.lock().rules.clear();
    }

    /// Calls whose target contains `target`, and how many of them got a fault.
    pub fn calls(&self, target: &str) -> (usize, usize) {
        self.lock()
            .calls
            .iter()
            .filter(|(t, _)| t.contains(target))
            .fold((0, 0), |(calls, faulted), (_, (c, f))| {
                (calls + c, faulted + f)
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Picks the fault for a call to `target`, if a rule fires, and records the call.
fn pick(state: &Mutex<State>, target: &str, body: &[u8]) -> Option<Fault> {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut fault = None;
    for rule in state.rules.iter_mut() {
        if !target.contains(rule.target.as_str()) {
            continue;
        }
        if let Some(needle) = &rule.body_contains {
            if !body
                .windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes())
            {
                continue;
            }
        }
        let fires = match &mut rule.times {
            Times::Next(n) if *n > 0 => {
                *n -= 1;
                true
            }
            Times::Next(_) => false,
            Times::Share(p) => fastrand::f64() < *p,
        };
        if fires {
            fault = Some(rule.fault.clone());
            break;
        }
    }
    let counts = state.calls.entry(target.to_owned()).or_default();
    counts.0 += 1;
    counts.1 += usize::from(fault.is_some());
    fault
}

fn answer(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (answer lost)")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    state: Arc<Mutex<State>>,
    upstream: Arc<str>,
    client: Client<HttpConnector, Full<Bytes>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let fault = pick(&state, &target, &body);
    match fault {
        Some(Fault::Respond { status, body }) => return Ok(answer(status, body)),
        Some(Fault::Delay(pause)) => tokio::time::sleep(pause).await,
        Some(Fault::Hang(pause)) => {
            tokio::time::sleep(pause).await;
            return Ok(answer(
                500,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the call hung"}"#.into(),
            ));
        }
        _ => {}
    }
    let uri = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forward = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let forward = forward.body(Full::new(body)).map_err(|_| Dropped)?;
    let answer = match client.request(forward).await {
        Ok(answer) => answer,
        Err(_) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Full::new(Bytes::from_static(b"upstream unreachable")))
                .unwrap_or_default())
        }
    };
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if fault == Some(Fault::AnswerLost) {
        // The service committed; the caller never hears of it.
        return Err(Dropped);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_the_control_api_json() {
        let rules: Vec<Rule> = serde_json::from_str(
            r#"[{"target": "PutItem", "body_contains": "Reservations", "times": {"share": 0.5}, "fault": {"hang": 8000}},
                {"target": "StartExecution", "times": {"next": 2}, "fault": "states_server_error"},
                {"target": "TransactWriteItems", "times": {"next": 1}, "fault": "answer_lost"}]"#,
        )
        .expect("valid rules");
        assert_eq!(rules[0].fault, Fault::Hang(Duration::from_secs(8)));
        assert_eq!(rules[0].body_contains.as_deref(), Some("Reservations"));
        assert_eq!(rules[1].fault, Fault::states_server_error());
        assert_eq!(rules[1].times, Times::Next(2));
        assert_eq!(rules[2].fault, Fault::AnswerLost);
        assert!(serde_json::from_str::<Vec<Rule>>(
            r#"[{"target": "X", "times": {"next": 1}, "fault": "nap"}]"#
        )
        .is_err());
    }

    #[test]
    fn a_rule_with_body_contains_fires_only_on_matching_bodies_and_calls_are_counted() {
        let state = Mutex::new(State::default());
        state
            .lock()
            .unwrap()
            .rules
            .push(Rule::next("PutItem", 5, Fault::AnswerLost).when_body_contains("Reservations"));
        let target = "DynamoDB_20120810.PutItem";
        assert_eq!(pick(&state, target, br#"{"TableName":"Orders"}"#), None);
        assert_eq!(
            pick(&state, target, br#"{"TableName":"Reservations-x"}"#),
            Some(Fault::AnswerLost)
        );
        let state = state.lock().unwrap();
        assert_eq!(state.calls.get(target), Some(&(2, 1)));
        assert_eq!(state.rules[0].times, Times::Next(4));
    }
}
