//! fault-proxy: the local environment's two fault points, each a process with a small control
//! API on 127.0.0.1 (the chaos suite drives them; with no fault set they only forward).
//!
//! ```text
//! fault-proxy redis --listen 6379 --target 127.0.0.1:6390 \
//!                   [--sentinels 127.0.0.1:26390,127.0.0.1:26391] --control 6398
//! fault-proxy aws   --listen 4567 --upstream http://127.0.0.1:4566 --control 6397
//! ```
//!
//! `redis` is the primary endpoint the functions' `REDIS_URL` names, as ElastiCache Multi-AZ
//! gives one: it follows Sentinel to the current primary (testkit::sentinel::follow). Control:
//! `POST /mode` `{"mode": "pass" | "refuse" | "stall" | "latency", "latency_ms": n}`,
//! `POST /drop-replies` `{"n": k}` (the next k replies close their connection: the command ran,
//! its answer is lost), `POST /cut` (close every connection), `GET /state`.
//!
//! `aws` sits between the functions and LocalStack for the services whose faults matter
//! (DynamoDB, Step Functions): `POST /rules` with a JSON list of rules
//! (testkit::fault_proxy::Rule: `{"target": "TransactWriteItems", "times": {"share": 0.2},
//! "fault": "throttling"}`), `POST /heal`, `GET /calls?target=X`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use testkit::fault_proxy::{FaultProxy, Rule};
use testkit::tcp_proxy::{Mode, TcpProxy};
use tokio::net::TcpListener;

enum Proxy {
    Redis(Arc<TcpProxy>),
    Aws(Arc<FaultProxy>),
}

struct Args {
    kind: String,
    listen: u16,
    target: String,
    sentinels: Vec<String>,
    control: u16,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let kind = it
        .next()
        .context("usage: fault-proxy redis|aws --listen P ... --control P")?;
    let mut args = Args {
        kind,
        listen: 0,
        target: String::new(),
        sentinels: Vec::new(),
        control: 0,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value.parse()?,
            "--target" | "--upstream" => args.target = value,
            "--sentinels" => {
                args.sentinels = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("redis://{s}"))
                    .collect()
            }
            "--control" => args.control = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.listen == 0 || args.control == 0 || args.target.is_empty() {
        bail!("--listen, --control and --target/--upstream are required");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let proxy = match args.kind.as_str() {
        "redis" => {
            let target: SocketAddr = args.target.parse().context("--target host:port")?;
            let endpoint = Arc::new(TcpProxy::start_on(args.listen, target).await);
            if !args.sentinels.is_empty() {
                tokio::spawn(testkit::sentinel::follow(
                    args.sentinels.clone(),
                    Arc::clone(&endpoint),
                    Arc::new(Mutex::new(None)),
                ));
            }
            Proxy::Redis(endpoint)
        }
        "aws" => Proxy::Aws(Arc::new(
            FaultProxy::start_on(args.listen, &args.target).await,
        )),
        other => bail!("unknown kind {other} (redis or aws)"),
    };
    let proxy = Arc::new(proxy);
    let control = TcpListener::bind(("127.0.0.1", args.control))
        .await
        .context("bind the control port on 127.0.0.1")?;
    println!(
        "fault-proxy {} on 127.0.0.1:{} -> {}, control on 127.0.0.1:{}",
        args.kind, args.listen, args.target, args.control
    );
    loop {
        tokio::select! {
            accepted = control.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let proxy = Arc::clone(&proxy);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let proxy = Arc::clone(&proxy);
                        async move { Ok::<_, std::convert::Infallible>(handle(&proxy, request).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
    #[serde(default)]
    latency_ms: u64,
}

#[derive(Deserialize)]
struct DropBody {
    n: u32,
}

async fn handle(proxy: &Proxy, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (method, path, query) = (
        request.method().clone(),
        request.uri().path().to_owned(),
        request.uri().query().unwrap_or_default().to_owned(),
    );
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let bad = |e: String| reply(StatusCode::BAD_REQUEST, json!({ "error": e }));
    match (proxy, method, path.as_str()) {
        (Proxy::Redis(p), Method::POST, "/mode") => {
            let Ok(m) = serde_json::from_slice::<ModeBody>(&body) else {
                return bad("expected {\"mode\": ...}".into());
            };
            let mode = match m.mode.as_str() {
                "pass" => Mode::Pass,
                "refuse" => Mode::Refuse,
                "stall" => Mode::Stall,
                "latency" => Mode::Latency(std::time::Duration::from_millis(m.latency_ms)),
                other => return bad(format!("unknown mode {other}")),
            };
            p.set_mode(mode);
            reply(StatusCode::OK, json!({ "mode": m.mode }))
        }
        (Proxy::Redis(p), Method::POST, "/drop-replies") => {
            let Ok(d) = serde_json::from_slice::<DropBody>(&body) else {
                return bad("expected {\"n\": k}".into());
            };
            p.drop_next_replies(d.n);
            reply(StatusCode::OK, json!({ "dropping": d.n }))
        }
        (Proxy::Redis(p), Method::POST, "/cut") => {
            p.cut_connections();
            reply(StatusCode::OK, json!({ "cut": true }))
        }
        (Proxy::Redis(p), Method::GET, "/state") => reply(
            StatusCode::OK,
            json!({
                "target": p.target().to_string(),
                "connections": p.connections(),
                "dropped_replies": p.dropped_replies(),
            }),
        ),
        (Proxy::Aws(p), Method::POST, "/rules") => match serde_json::from_slice::<Vec<Rule>>(&body)
        {
            Ok(rules) => {
                let n = rules.len();
                for rule in rules {
                    p.add(rule);
                }
                reply(StatusCode::OK, json!({ "added": n }))
            }
            Err(e) => bad(e.to_string()),
        },
        (Proxy::Aws(p), Method::POST, "/heal") => {
            p.heal();
            reply(StatusCode::OK, json!({ "healed": true }))
        }
        (Proxy::Aws(p), Method::GET, "/calls") => {
            let target = query.strip_prefix("target=").unwrap_or_default();
            let (calls, faulted) = p.calls(target);
            reply(
                StatusCode::OK,
                json!({ "calls": calls, "faulted": faulted }),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, json!({ "error": "unknown route" })),
    }
}
