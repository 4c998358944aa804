//! Structured JSON logs for CloudWatch. The Lambda runtime opens a span per invocation carrying
//! the request id, so every line logged while handling a request names it.

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber; `RUST_LOG` sets the level (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line
        .try_init();
}
