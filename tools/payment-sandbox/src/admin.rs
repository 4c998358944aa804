//! `/_sandbox`: the switches tests flip and the views they assert on. JSON in and out, no
//! auth (the server listens on loopback only), no latency.
//!
//! - `GET /_sandbox/switches`, `POST /_sandbox/switches` with a partial object, e.g.
//!   `{"outage": true}`; answers the full new state. Keys: `webhook_url` (string or null),
//!   `duplicate_webhooks`, `reorder_webhooks`, `reorder_window_ms`, `webhook_delay_ms`,
//!   `drop_webhooks`, `outage`, `latency_ms` (`[min, max]`), `slow_ms`. Unknown keys are a 400.
//! - `GET /_sandbox/payment_intents[?metadata.<key>=<value>][&status=<status>]` ->
//!   `{"object":"list","data":[<PaymentIntent> + "charge", "refunds": [..], "create_calls": n]}`,
//!   oldest first. `create_calls` counts the create requests that reached the intent (the
//!   first plus idempotent replays).
//! - `GET /_sandbox/events[?payment_intent=<id>][&type=<type>]` ->
//!   `{"object":"list","data":[<Event> + "payment_intent", "attempts", "delivered",
//!   "last_status", "last_error", "dropped", "no_endpoint"]}`, oldest first;
//!   `GET /_sandbox/events/{id}` -> one of those.
//! - `POST /_sandbox/events/{id}/resend` -> one attempt now:
//!   `{"id", "delivered": bool, "status": <http status>|null, "error": <string>|null}`; if it
//!   failed, the remaining attempts continue in the background.
//! - `GET /_sandbox/stats` -> counters (see `state::Stats`).

use std::sync::Arc;

use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::http::{json_response, Body, Req};
use crate::model::Intent;
use crate::params::Params;
use crate::state::{Shared, State, Switches};
use crate::webhook::{self, Attempt};

pub async fn handle(shared: &Arc<Shared>, req: Req) -> Response<Body> {
    let rest = req.path.strip_prefix("/_sandbox/").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').collect();
    let response = match (&req.method, segments.as_slice()) {
        (&Method::GET, ["switches"]) => {
            json_response(StatusCode::OK, &switches_json(&shared.lock().switches))
        }
        (&Method::POST, ["switches"]) => {
            let mut st = shared.lock();
            match update_switches(&st.switches, &req.body) {
                Ok(next) => {
                    st.switches = next;
                    tracing::info!(switches = ?st.switches, "switches changed");
                    json_response(StatusCode::OK, &switches_json(&st.switches))
                }
                Err(message) => bad_request(&message),
            }
        }
        (&Method::GET, ["payment_intents"]) => {
            let params = Params::parse(req.query.as_deref(), b"");
            match list_intents(&shared.lock(), &params) {
                Ok(list) => json_response(StatusCode::OK, &list),
                Err(message) => bad_request(&message),
            }
        }
        (&Method::GET, ["events"]) => {
            let params = Params::parse(req.query.as_deref(), b"");
            match list_events(&shared.lock(), &params) {
                Ok(list) => json_response(StatusCode::OK, &list),
                Err(message) => bad_request(&message),
            }
        }
        (&Method::GET, ["events", id]) => match shared.lock().event(id) {
            Some(event) => json_response(StatusCode::OK, &event.to_json()),
            None => not_found(&format!("No such event: '{id}'")),
        },
        (&Method::POST, ["events", id, "resend"]) => match webhook::resend(shared, id).await {
            Attempt::Gone => not_found(&format!("No such event: '{id}'")),
            Attempt::NoEndpoint => bad_request("No webhook_url is configured."),
            Attempt::Delivered { status } => json_response(
                StatusCode::OK,
                &json!({"id": id, "delivered": true, "status": status, "error": null}),
            ),
            Attempt::Failed { status, error } => json_response(
                StatusCode::OK,
                &json!({"id": id, "delivered": false, "status": status, "error": error}),
            ),
        },
        (&Method::GET, ["stats"]) => {
            json_response(StatusCode::OK, &json!(shared.lock().stats.clone()))
        }
        _ => not_found(&format!(
            "Unrecognized sandbox URL ({}: {}).",
            req.method, req.path
        )),
    };
    tracing::debug!(method = %req.method, path = %req.path, status = response.status().as_u16(), "sandbox call");
    response
}

fn bad_request(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"type": "invalid_request_error", "message": message}}),
    )
}

fn not_found(message: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {"type": "invalid_request_error", "message": message}}),
    )
}

fn switches_json(switches: &Switches) -> Value {
    json!(switches)
}

/// Applies a partial update; all-or-nothing, so a bad key leaves every switch unchanged.
fn update_switches(current: &Switches, body: &[u8]) -> Result<Switches, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(current.clone());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("switches: invalid JSON: {e}"))?;
    let Value::Object(changes) = value else {
        return Err("switches: expected a JSON object".to_owned());
    };
    let mut next = current.clone();
    for (key, value) in changes {
        let boolean = || {
            value
                .as_bool()
                .ok_or_else(|| format!("switches: {key} must be a boolean"))
        };
        let millis = || {
            value
                .as_u64()
                .ok_or_else(|| format!("switches: {key} must be a non-negative integer (ms)"))
        };
        match key.as_str() {
            "webhook_url" => {
                next.webhook_url = match &value {
                    Value::Null => None,
                    Value::String(url) => {
                        webhook::validate_url(url)?;
                        Some(url.clone())
                    }
                    _ => return Err("switches: webhook_url must be a string or null".to_owned()),
                }
            }
            "duplicate_webhooks" => next.duplicate_webhooks = boolean()?,
            "reorder_webhooks" => next.reorder_webhooks = boolean()?,
            "drop_webhooks" => next.drop_webhooks = boolean()?,
            "outage" => next.outage = boolean()?,
            "reorder_window_ms" => next.reorder_window_ms = millis()?,
            "webhook_delay_ms" => next.webhook_delay_ms = millis()?,
            "slow_ms" => next.slow_ms = millis()?,
            "latency_ms" => {
                let range = value
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
                    .filter(|(min, max)| min <= max)
                    .ok_or("switches: latency_ms must be [min, max] with 0 <= min <= max")?;
                next.latency_ms = range;
            }
            other => return Err(format!("switches: unknown switch '{other}'")),
        }
    }
    Ok(next)
}

fn list_intents(st: &State, params: &Params) -> Result<Value, String> {
    let mut filters: Vec<(&str, &str)> = Vec::new();
    for (key, value) in params.pairs() {
        if key != "status" && !key.starts_with("metadata.") {
            return Err(format!(
                "unknown filter '{key}' (use metadata.<key>=<value> or status=<status>)"
            ));
        }
        filters.push((key, value));
    }
    let matches = |intent: &Intent| {
        filters
            .iter()
            .all(|(key, value)| match key.strip_prefix("metadata.") {
                Some(meta) => intent.metadata.get(meta).map(String::as_str) == Some(*value),
                None => intent.status.as_str() == *value,
            })
    };
    let mut intents: Vec<&Intent> = st.intents.values().filter(|i| matches(i)).collect();
    intents.sort_by_key(|i| i.seq);
    let data: Vec<Value> = intents
        .into_iter()
        .map(|intent| {
            let mut view = intent.to_json();
            let refunds: Vec<Value> = st
                .refunds
                .iter()
                .filter(|r| r.payment_intent == intent.id)
                .map(|r| r.to_json())
                .collect();
            view["charge"] = intent.charge_json().unwrap_or(Value::Null);
            view["refunds"] = json!(refunds);
            view["create_calls"] = json!(intent.create_calls);
            view
        })
        .collect();
    Ok(json!({"object": "list", "data": data}))
}

fn list_events(st: &State, params: &Params) -> Result<Value, String> {
    if let Some(name) = params.unknown(&["payment_intent", "type"]) {
        return Err(format!(
            "unknown filter '{name}' (use payment_intent=<id> or type=<type>)"
        ));
    }
    let data: Vec<Value> = st
        .events
        .iter()
        .filter(|e| {
            params
                .get("payment_intent")
                .is_none_or(|pi| e.payment_intent == pi)
        })
        .filter(|e| params.get("type").is_none_or(|t| e.kind == t))
        .map(|e| e.to_json())
        .collect();
    Ok(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_switch_update_is_all_or_nothing() {
        let current = Switches::default();
        let next = update_switches(&current, br#"{"outage": true, "latency_ms": [0, 5]}"#)
            .expect("valid update");
        assert!(next.outage);
        assert_eq!(next.latency_ms, (0, 5));
        assert_eq!(next.slow_ms, current.slow_ms);

        assert!(update_switches(&current, br#"{"outage": true, "outgae": true}"#).is_err());
        assert!(update_switches(&current, br#"{"latency_ms": [5, 1]}"#).is_err());
        assert!(update_switches(&current, br#"{"webhook_url": "https://x"}"#).is_err());
        assert!(update_switches(&current, br#"{"slow_ms": -1}"#).is_err());
        let cleared = update_switches(
            &Switches {
                webhook_url: Some("http://127.0.0.1:1/".into()),
                ..Switches::default()
            },
            br#"{"webhook_url": null}"#,
        )
        .expect("null clears the url");
        assert_eq!(cleared.webhook_url, None);
    }
}
