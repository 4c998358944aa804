//! Liveness and readiness (seed 000 §9). Liveness says the process runs and touches nothing.
//! Readiness checks each dependency cheaply, all at once, each under a short timeout, so a
//! hung dependency makes the check fail fast instead of hanging the caller.

mod probes;

use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

pub use probes::{DynamoTableProbe, RedisProbe};

/// Why a dependency check failed. Only this category reaches the client; the underlying error
/// is logged by the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailure {
    Timeout,
    Error,
}

/// The port: one dependency that can be checked.
pub trait Probe: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'_, Result<(), ProbeFailure>>;
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<ProbeFailure>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct HealthReport {
    pub status: &'static str,
    pub checks: Vec<CheckResult>,
}

/// Runs every probe concurrently, each bounded by `timeout`.
pub async fn readiness(probes: &[Box<dyn Probe>], timeout: Duration) -> HealthReport {
    let checks = join_all(probes.iter().map(|probe| async move {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, probe.check()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeFailure::Timeout),
        };
        CheckResult {
            name: probe.name(),
            ok: result.is_ok(),
            latency_ms: started.elapsed().as_millis() as u64,
            failure: result.err(),
        }
    }))
    .await;
    let status = if checks.iter().all(|c| c.ok) {
        "ok"
    } else {
        "unavailable"
    };
    HealthReport { status, checks }
}

/// `GET /health` (readiness: 200 or 503 with the report) and `GET /health/live` (liveness).
pub async fn handle(
    probes: &[Box<dyn Probe>],
    timeout: Duration,
    request: Request,
) -> Response<Body> {
    if request
        .uri()
        .path()
        .trim_end_matches('/')
        .ends_with("/live")
    {
        return crate::http::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
    }
    let report = readiness(probes, timeout).await;
    let status = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    crate::http::json(status, &report)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Option<Duration>, bool);

    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self) -> BoxFuture<'_, Result<(), ProbeFailure>> {
            Box::pin(async move {
                if let Some(delay) = self.1 {
                    tokio::time::sleep(delay).await;
                }
                if self.2 {
                    Ok(())
                } else {
                    Err(ProbeFailure::Error)
                }
            })
        }
    }

    #[tokio::test]
    async fn readiness_is_ok_only_when_every_probe_is() {
        let probes: Vec<Box<dyn Probe>> = vec![
            Box::new(Fixed("redis", None, true)),
            Box::new(Fixed("dynamodb", None, false)),
        ];
        let report = readiness(&probes, Duration::from_secs(1)).await;
        assert_eq!(report.status, "unavailable");
        assert!(report.checks[0].ok);
        assert_eq!(report.checks[1].failure, Some(ProbeFailure::Error));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_dependency_times_out_instead_of_hanging_the_check() {
        let probes: Vec<Box<dyn Probe>> =
            vec![Box::new(Fixed("slow", Some(Duration::from_secs(60)), true))];
        let report = readiness(&probes, Duration::from_millis(300)).await;
        assert_eq!(report.checks[0].failure, Some(ProbeFailure::Timeout));
    }

    #[tokio::test]
    async fn liveness_answers_without_touching_dependencies() {
        let probes: Vec<Box<dyn Probe>> = vec![Box::new(Fixed("down", None, false))];
        let request = lambda_http::http::Request::get("/health/live")
            .body(Body::Empty)
            .unwrap();
        let response = handle(&probes, Duration::from_secs(1), request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let request = lambda_http::http::Request::get("/health")
            .body(Body::Empty)
            .unwrap();
        let response = handle(&probes, Duration::from_secs(1), request).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
