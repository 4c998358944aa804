//! The checkout saga's ASL (statemachines/checkout-saga.asl.json) against the code it drives:
//! every error type a step can raise is handled (transient ones retried with backoff and jitter,
//! the others not retried, all of them caught into compensation or a reported path), every
//! step the definition invokes exists, and the graph is well formed. (The CDK tests validate
//! the same file with asl-validator.)

use std::collections::{BTreeSet, HashMap};

use flashsale_core::saga::steps::StepKind;
use serde_json::Value;

fn definition() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../statemachines/checkout-saga.asl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read ASL")).expect("ASL is JSON")
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().expect("States")
}

fn error_lists<'a>(state: &'a Value, field: &str) -> Vec<(&'a Value, BTreeSet<&'a str>)> {
    state[field]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|rule| {
                    let names = rule["ErrorEquals"]
                        .as_array()
                        .expect("ErrorEquals")
                        .iter()
                        .map(|v| v.as_str().expect("error name"))
                        .collect();
                    (rule, names)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The Lambda task states, by the step they invoke.
fn step_states(asl: &Value) -> HashMap<StepKind, Vec<(&str, &Value)>> {
    let mut by_step: HashMap<StepKind, Vec<(&str, &Value)>> = HashMap::new();
    for (name, state) in states(asl) {
        if let Some(step) = state.pointer("/Parameters/Payload/step") {
            let kind: StepKind = serde_json::from_value(step.clone())
                .unwrap_or_else(|_| panic!("{name} invokes an unknown step {step}"));
            by_step
                .entry(kind)
                .or_default()
                .push((name.as_str(), state));
        }
    }
    by_step
}

#[test]
fn every_step_of_the_code_is_used_by_the_definition() {
    let asl = definition();
    let used = step_states(&asl);
    for step in StepKind::ALL {
        assert!(used.contains_key(&step), "no state invokes {step:?}");
    }
}

#[test]
fn every_error_a_step_can_raise_is_retried_if_transient_and_caught() {
    let asl = definition();
    for (step, states) in step_states(&asl) {
        for (name, state) in states {
            let retries = error_lists(state, "Retry");
            let catches = error_lists(state, "Catch");
            for &(error, transient) in step.errors() {
                let retried_by = retries.iter().find(|(_, names)| names.contains(error));
                if transient {
                    let (rule, _) = retried_by
                        .unwrap_or_else(|| panic!("{name}: transient {error} is not retried"));
                    assert!(
                        rule["BackoffRate"].as_f64().unwrap_or(1.0) > 1.0,
                        "{name}: {error} retried without exponential backoff"
                    );
                    assert_eq!(
                        rule["JitterStrategy"], "FULL",
                        "{name}: {error} without jitter"
                    );
                    let attempts = rule["MaxAttempts"].as_u64().unwrap_or(3);
                    assert!(
                        (1..=8).contains(&attempts),
                        "{name}: {error} retries unbounded"
                    );
                } else {
                    assert!(
                        retried_by.is_none(),
                        "{name}: {error} is permanent but retried"
                    );
                    assert!(
                        !retries
                            .iter()
                            .any(|(_, names)| names.contains("States.ALL")),
                        "{name}: a States.ALL retry would retry the permanent {error}"
                    );
                }
                // Caught by name, so a change of name in the code breaks this test.
                assert!(
                    catches.iter().any(|(_, names)| names.contains(error)),
                    "{name}: {error} is not caught by name"
                );
            }
        }
    }
}

#[test]
fn the_charge_waits_for_the_webhook_with_timeout_and_heartbeat_and_compensates() {
    let asl = definition();
    let charge = &states(&asl)["Charge"];
    assert_eq!(
        charge["Resource"],
        "arn:aws:states:::lambda:invoke.waitForTaskToken"
    );
    assert_eq!(
        charge.pointer("/Parameters/Payload/token.$").unwrap(),
        "$$.Task.Token"
    );
    assert!(charge.get("TimeoutSecondsPath").is_some() || charge.get("TimeoutSeconds").is_some());
    assert!(
        charge.get("HeartbeatSecondsPath").is_some() || charge.get("HeartbeatSeconds").is_some()
    );
    let catches = error_lists(charge, "Catch");
    for error in [
        "States.Timeout",
        "States.HeartbeatTimeout",
        "PaymentDeclined",
        "CircuitOpen",
    ] {
        let (rule, _) = catches
            .iter()
            .find(|(_, names)| names.contains(error))
            .unwrap_or_else(|| panic!("Charge does not catch {error}"));
        assert_eq!(
            rule["Next"], "MarkFailed",
            "{error} must start the compensation"
        );
    }
}

/// The longest a retrier keeps trying: the sum of its capped delays (full jitter waits between
/// 0 and each, so this is the upper bound; about half of it on average).
fn retry_budget_seconds(retrier: &Value) -> f64 {
    let interval = retrier["IntervalSeconds"].as_f64().unwrap_or(1.0);
    let rate = retrier["BackoffRate"].as_f64().unwrap_or(2.0);
    let cap = retrier["MaxDelaySeconds"].as_f64().unwrap_or(f64::MAX);
    let attempts = retrier["MaxAttempts"].as_i64().unwrap_or(3) as i32;
    (0..attempts)
        .map(|n| (interval * rate.powi(n)).min(cap))
        .sum()
}

#[test]
fn a_charge_that_finds_the_stock_being_rebuilt_waits_long_enough_for_the_rebuild() {
    // A failover fences the sale; the rebuild it triggers takes its settle pause plus the reads
    // (seconds), or up to the sweep's minute if the request is lost. A valid reservation paid
    // meanwhile must not be failed by a retry budget of a few seconds.
    let asl = definition();
    let charge = &states(&asl)["Charge"];
    let (retrier, _) = error_lists(charge, "Retry")
        .into_iter()
        .find(|(_, names)| names.contains("StockUnavailable"))
        .expect("Charge retries StockUnavailable");
    let budget = retry_budget_seconds(retrier);
    assert!(
        budget >= 90.0,
        "StockUnavailable is retried for at most {budget} s"
    );
    assert_eq!(retrier["JitterStrategy"], "FULL");
}

#[test]
fn compensations_end_in_the_dead_letter_path_when_they_keep_failing() {
    let asl = definition();
    let all = states(&asl);
    for name in [
        "MarkFailed",
        "Refund",
        "ReleaseHold",
        "NotifyFailed",
        "ReadOutcome",
    ] {
        let catches = error_lists(&all[name], "Catch");
        let (rule, _) = catches
            .iter()
            .find(|(_, names)| names.contains("States.ALL"))
            .unwrap_or_else(|| panic!("{name} has no catch-all"));
        assert_eq!(rule["Next"], "CompensationFailed", "{name}");
    }
    let dlq = &all["CompensationFailed"];
    assert_eq!(dlq["Resource"], "arn:aws:states:::sqs:sendMessage");
    assert_eq!(
        dlq.pointer("/Parameters/QueueUrl").unwrap(),
        "${SagaDlqUrl}"
    );
    assert_eq!(all[dlq["Next"].as_str().unwrap()]["Type"], "Fail");
}

#[test]
fn single_call_steps_use_direct_service_integrations() {
    let asl = definition();
    let all = states(&asl);
    for (name, resource) in [
        ("Validate", "arn:aws:states:::dynamodb:getItem"),
        ("MarkFailed", "arn:aws:states:::dynamodb:updateItem"),
        ("NotifyConfirmed", "arn:aws:states:::sqs:sendMessage"),
        ("NotifyFailed", "arn:aws:states:::sqs:sendMessage"),
    ] {
        assert_eq!(all[name]["Resource"], resource, "{name}");
    }
}

#[test]
fn the_graph_is_closed_and_every_state_is_reachable() {
    let asl = definition();
    let all = states(&asl);
    let mut targets = vec![asl["StartAt"].as_str().unwrap()];
    for state in all.values() {
        targets.extend(state["Next"].as_str());
        targets.extend(state["Default"].as_str());
        for list in ["Catch", "Choices"] {
            for rule in state[list].as_array().into_iter().flatten() {
                targets.extend(rule["Next"].as_str());
            }
        }
    }
    for target in &targets {
        assert!(
            all.contains_key(*target),
            "transition to unknown state {target}"
        );
    }
    for name in all.keys() {
        assert!(targets.contains(&name.as_str()), "{name} is unreachable");
    }
}

#[test]
fn the_definitions_direct_writes_use_the_records_statuses_and_transitions() {
    use flashsale_core::reservation::item::{attr, transition};
    use flashsale_core::reservation::ReservationStatus;
    let asl = definition();
    let all = states(&asl);

    let mark = &all["MarkFailed"]["Parameters"];
    let t = transition("mark_failed");
    assert_eq!(mark["ExpressionAttributeNames"]["#s"], attr::STATUS);
    assert_eq!(
        mark["ExpressionAttributeValues"][":failed"]["S"],
        t.to.as_str()
    );
    assert_eq!(
        mark["ExpressionAttributeValues"][":processing"]["S"],
        t.from.as_str()
    );
    assert_eq!(mark["ConditionExpression"], "#s = :processing");
    let update = mark["UpdateExpression"].as_str().unwrap();
    assert!(update.contains(attr::FAILURE_REASON) && update.contains(attr::CHARGE_TOKEN));
    assert_eq!(mark["Key"][attr::RESERVATION_ID]["S.$"], "$.reservation_id");

    // Validate charges only what begin_payment produced.
    let payable = &all["IsPayable"]["Choices"][0]["And"][1];
    assert_eq!(
        payable["Variable"],
        format!("$.record.Item.{}.S", attr::STATUS)
    );
    assert_eq!(
        payable["StringEquals"],
        transition("begin_payment").to.as_str()
    );
    // Every status the definition compares with is one the code writes.
    for choice in all["AfterMark"]["Choices"].as_array().unwrap() {
        let status = choice["And"][1]["StringEquals"].as_str().unwrap();
        assert!(ReservationStatus::parse(status).is_some(), "{status}");
    }
}
