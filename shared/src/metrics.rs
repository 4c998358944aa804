//! CloudWatch Embedded Metric Format: one JSON log line per event, which CloudWatch turns into
//! metrics without an API call on the request path.

use serde_json::json;

use crate::domain::{Clock, SystemClock};

pub const NAMESPACE: &str = "Flashsale";

/// Emits counters (unit Count) and one latency (unit Milliseconds) under `function`.
pub fn emit(function: &str, counters: &[(&str, u64)], latency_ms: f64) {
    emit_ms(function, counters, &[("Latency", latency_ms)]);
}

/// Emits counters (unit Count) and measurements in milliseconds (a request's latency, a
/// consumer's lag) under `function`: one EMF line.
pub fn emit_ms(function: &str, counters: &[(&str, u64)], millis: &[(&str, f64)]) {
    let mut metrics = Vec::new();
    let mut line = serde_json::Map::new();
    for (name, value) in counters {
        metrics.push(json!({ "Name": name, "Unit": "Count" }));
        line.insert((*name).to_owned(), json!(value));
    }
    for (name, value) in millis {
        metrics.push(json!({ "Name": name, "Unit": "Milliseconds" }));
        line.insert((*name).to_owned(), json!(value));
    }
    line.insert("function".into(), json!(function));
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": SystemClock.now().as_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function"]],
                "Metrics": metrics,
            }],
        }),
    );
    println!("{}", serde_json::Value::Object(line));
}
