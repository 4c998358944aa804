//! Where the system under test runs, and how to reach each of its parts.
//!
//! Locally: the stack `./dev up` deployed to LocalStack (its outputs in
//! `.local/stack-outputs.json`), Redis behind the primary endpoint on 127.0.0.1:6379, the
//! payment sandbox on 127.0.0.1:12111. On AWS: the API URL, the stack's outputs file (`cdk
//! deploy --outputs-file`) for the table names, credentials from the usual AWS chain; Redis is
//! inside the VPC and the provider is Stripe, so the ledger reads stock levels through the API
//! and leaves charges to the provider's dashboard.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hyper::Method;
use serde_json::Value;

use crate::http::Http;

/// LocalStack's gateway: the ledger reads DynamoDB here directly, never through the fault
/// proxy (127.0.0.1:4567) the functions use, so an injected fault cannot hide the truth.
pub const LOCALSTACK: &str = "http://127.0.0.1:4566";
pub const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";
pub const LOCAL_SANDBOX: &str = "http://127.0.0.1:12111";

#[derive(Debug, Clone)]
pub struct Target {
    pub api_url: String,
    pub reservations_table: String,
    pub orders_table: String,
    /// Name of the expiry-cleanup function (invoked directly when local).
    pub expiry_function: String,
    pub local: bool,
    /// Redis URL to read stock levels from (local only).
    pub redis_url: Option<String>,
    /// `redis_url` is a node of a Redis Cluster (the chaos suite's cluster fault).
    pub redis_cluster: bool,
    /// The payment sandbox (local only).
    pub sandbox_url: Option<String>,
}

impl Target {
    /// The LocalStack deployment of stage `stage` (`Flashsale-<stage>` in the outputs file).
    pub fn local(repo: &Path, stage: &str) -> anyhow::Result<Self> {
        let path = repo.join(".local/stack-outputs.json");
        let outputs = read_outputs(&path, stage)?;
        let api_id = field(&outputs, "ApiId")?;
        let stage_name = field(&outputs, "StageName")?;
        Ok(Self {
            api_url: format!("{LOCALSTACK}/_aws/execute-api/{api_id}/{stage_name}"),
            reservations_table: field(&outputs, "ReservationsTableName")?,
            orders_table: field(&outputs, "OrdersTableName")?,
            expiry_function: field(&outputs, "ExpiryCleanupFunctionName")?,
            local: true,
            redis_url: Some(LOCAL_REDIS.into()),
            redis_cluster: false,
            sandbox_url: Some(LOCAL_SANDBOX.into()),
        })
    }

    /// A stage on AWS: `api_url` and the outputs file `cdk deploy --outputs-file` wrote.
    pub fn aws(api_url: &str, outputs_file: &Path, stage: &str) -> anyhow::Result<Self> {
        let outputs = read_outputs(outputs_file, stage)?;
        Ok(Self {
            api_url: api_url.trim_end_matches('/').to_owned(),
            reservations_table: field(&outputs, "ReservationsTableName")?,
            orders_table: field(&outputs, "OrdersTableName")?,
            expiry_function: field(&outputs, "ExpiryCleanupFunctionName")?,
            local: false,
            redis_url: None,
            redis_cluster: false,
            sandbox_url: None,
        })
    }

    /// A DynamoDB client for the ledger (LocalStack's own endpoint when local).
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if self.local {
            loader = loader
                .endpoint_url(LOCALSTACK)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "localstack",
                ));
        }
        aws_sdk_dynamodb::Client::new(&loader.load().await)
    }

    /// Runs the expiry cleanup now (what its schedule does every minute), locally through
    /// Lambda's Invoke API on LocalStack (`POST /2015-03-31/functions/<name>/invocations`).
    /// On AWS it does nothing: the schedule runs it.
    pub async fn run_expiry_cleanup(&self, http: &Http) -> anyhow::Result<Option<Value>> {
        if !self.local {
            return Ok(None);
        }
        let path = format!("/2015-03-31/functions/{}/invocations", self.expiry_function);
        let reply = local_lambda(http, Method::POST, &path, Some(&serde_json::json!({}))).await?;
        anyhow::ensure!(
            reply.status == 200 && reply.headers.get("x-amz-function-error").is_none(),
            "expiry cleanup failed: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(Some(reply.json()))
    }
}

/// One call of Lambda's REST API on LocalStack (`path` from `/2015-03-31/...`). LocalStack does
/// not check signatures; it reads the region and service from the credential scope.
pub async fn local_lambda(
    http: &Http,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<crate::http::Reply> {
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, \
                SignedHeaders=host, Signature=0";
    Ok(http
        .call(
            method,
            &format!("{LOCALSTACK}{path}"),
            &[("authorization", auth)],
            body,
            Duration::from_secs(90),
        )
        .await?)
}

/// The Redis settings of every function of the local stack that talks to Redis, and a way to
/// point them all elsewhere (the chaos suite's cluster fault) and back.
pub struct RedisEnv {
    /// function name -> its environment variables as they were.
    saved: Vec<(String, serde_json::Map<String, Value>)>,
}

impl RedisEnv {
    /// Every function of stack `Flashsale-<stage>` with a REDIS_URL.
    pub async fn read(http: &Http, stage: &str) -> anyhow::Result<Self> {
        let reply = local_lambda(
            http,
            Method::GET,
            "/2015-03-31/functions/?MaxItems=200",
            None,
        )
        .await?;
        anyhow::ensure!(reply.status == 200, "ListFunctions: {}", reply.status);
        let prefix = format!("Flashsale-{stage}-");
        let mut saved = Vec::new();
        for f in reply.json()["Functions"].as_array().into_iter().flatten() {
            let name = f["FunctionName"].as_str().unwrap_or_default();
            let vars = f["Environment"]["Variables"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if name.starts_with(&prefix) && vars.contains_key("REDIS_URL") {
                saved.push((name.to_owned(), vars));
            }
        }
        anyhow::ensure!(
            !saved.is_empty(),
            "no function of Flashsale-{stage} reads REDIS_URL"
        );
        Ok(Self { saved })
    }

    /// Points every one of them at `url` in `mode` (`standalone` | `cluster`); returns when
    /// LocalStack has applied it (new invocations start new processes with it).
    pub async fn point_all(&self, http: &Http, url: &str, mode: &str) -> anyhow::Result<()> {
        for (name, vars) in &self.saved {
            let mut vars = vars.clone();
            vars.insert("REDIS_URL".into(), Value::String(url.into()));
            vars.insert("REDIS_MODE".into(), Value::String(mode.into()));
            update(http, name, vars).await?;
        }
        Ok(())
    }

    /// Puts every function's variables back as they were read.
    pub async fn restore(&self, http: &Http) -> anyhow::Result<()> {
        for (name, vars) in &self.saved {
            update(http, name, vars.clone()).await?;
        }
        Ok(())
    }

    /// True if some function is not in standalone mode on `url` (a run that died while the
    /// functions pointed elsewhere).
    pub fn drifted_from(&self, url: &str) -> bool {
        self.saved.iter().any(|(_, vars)| {
            vars.get("REDIS_URL").and_then(Value::as_str) != Some(url)
                || vars
                    .get("REDIS_MODE")
                    .and_then(Value::as_str)
                    .unwrap_or("standalone")
                    != "standalone"
        })
    }
}

async fn update(
    http: &Http,
    name: &str,
    vars: serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let path = format!("/2015-03-31/functions/{name}/configuration");
    let body = serde_json::json!({ "Environment": { "Variables": vars } });
    let reply = local_lambda(http, Method::PUT, &path, Some(&body)).await?;
    anyhow::ensure!(
        reply.status == 200,
        "UpdateFunctionConfiguration {name}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    for _ in 0..120 {
        let now = local_lambda(http, Method::GET, &path, None).await?.json();
        match now["LastUpdateStatus"].as_str() {
            Some("Successful") | None => return Ok(()),
            Some("Failed") => {
                anyhow::bail!("updating {name} failed: {}", now["LastUpdateStatusReason"])
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    anyhow::bail!("{name} did not finish updating in 30 s")
}

fn read_outputs(path: &Path, stage: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{} is missing: deploy the stack first (./dev up)",
            path.display()
        )
    })?;
    let all: Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let stack = format!("Flashsale-{stage}");
    all.get(&stack)
        .cloned()
        .with_context(|| format!("{} has no outputs for {stack}", path.display()))
}

fn field(outputs: &Value, name: &str) -> anyhow::Result<String> {
    outputs[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the stack outputs lack {name}"))
}

/// The repository root (the nearest ancestor of the working directory holding `.local` or
/// `Cargo.toml` with the workspace).
pub fn repo_root() -> PathBuf {
    let mut dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    loop {
        if dir.join("infra").is_dir() && dir.join("Cargo.toml").is_file() {
            return dir;
        }
        if !dir.pop() {
            return PathBuf::from(".");
        }
    }
}
