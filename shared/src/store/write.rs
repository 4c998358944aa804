//! How every DynamoDB write in the code base reads a failure, and retries it.
//!
//! A conditional write or a transaction can fail for two very different reasons, and only one
//! of them is a business outcome:
//!
//! | failure                                                | meaning                         |
//! |--------------------------------------------------------|---------------------------------|
//! | `ConditionalCheckFailedException`, or a transaction    | [`WriteFailure::ConditionFailed`]: |
//! | cancelled with any `ConditionalCheckFailed` reason      | the state was not what we expected |
//! | throttling (`ThrottlingException`,                     | [`WriteFailure::Transient`]:    |
//! | `ProvisionedThroughputExceededException`,              | retry with backoff              |
//! | `RequestLimitExceeded`), `TransactionConflictException`, |                               |
//! | a transaction cancelled only for `ThrottlingError`,    |                                 |
//! | `TransactionConflict` or `ProvisionedThroughputExceeded`, |                              |
//! | any 5xx, a timeout, a dropped connection               |                                 |
//! | anything else (validation, access denied, ...)         | [`WriteFailure::Permanent`]     |
//!
//! Reading every cancellation as "the condition failed" would refund a good payment because a
//! transaction was throttled; reading a throttle as a failed condition would skip work that
//! must be done. (AWS documents the cancellation reasons in the `TransactWriteItems` API
//! reference, "CancellationReasons"; throttling and conflicts are retryable per the DynamoDB
//! developer guide, "Error handling".)
//!
//! A timeout or a dropped connection is ambiguous: the write may have committed and only the
//! answer was lost. Retrying it is safe only because every write here is conditional or
//! idempotent; a retried conditional write that finds its own earlier effect fails its
//! condition, and each adapter says how it recognises its own effect (an item id it chose, an
//! old image returned with `ReturnValuesOnConditionCheckFailure`, a re-read).

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::CancellationReason;

use super::item::Item;
use super::StoreError;

/// A failed call as the adapters' store error (for reads and final failures).
pub fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteFailure {
    /// A condition failed: the business outcome "the state is not what this write expects".
    /// The old item when the write asked for it (`ReturnValuesOnConditionCheckFailure`), and,
    /// for a transaction, the index of the first action whose condition failed.
    ConditionFailed {
        old: Option<Item>,
        action: Option<usize>,
    },
    /// Throttling, a conflict with another transaction, a 5xx, a timeout: try again.
    Transient(String),
    /// Anything else: retrying would fail the same way.
    Permanent(String),
}

impl WriteFailure {
    /// A failure that is not a business outcome, as the adapters' store error.
    pub fn into_store_error(self) -> StoreError {
        StoreError::Unavailable(format!("{self:?}"))
    }
}

const TRANSIENT_CODES: [&str; 8] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Cancellation reason codes that mean "try again" (the others but `None` mean "no").
const TRANSIENT_REASONS: [&str; 3] = [
    "ThrottlingError",
    "TransactionConflict",
    "ProvisionedThroughputExceeded",
];

/// Classifies a failed call of any DynamoDB operation.
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> WriteFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = || DisplayErrorContext(error).to_string();
    match error {
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("");
            if code == "ConditionalCheckFailedException" {
                return WriteFailure::ConditionFailed {
                    old: None,
                    action: None,
                };
            }
            if TRANSIENT_CODES.contains(&code) || context.raw().status().is_server_error() {
                WriteFailure::Transient(text())
            } else {
                WriteFailure::Permanent(text())
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            WriteFailure::Transient(text())
        }
        _ => WriteFailure::Permanent(text()),
    }
}

/// Classifies a failed `UpdateItem`, keeping the old item a failed condition returns (with
/// `ReturnValuesOnConditionCheckFailure::AllOld`).
pub fn classify_update(error: &SdkError<UpdateItemError, HttpResponse>) -> WriteFailure {
    if let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = error.as_service_error()
    {
        return WriteFailure::ConditionFailed {
            old: failed.item().cloned(),
            action: None,
        };
    }
    classify(error)
}

/// Classifies a failed `TransactWriteItems` by its cancellation reasons.
pub fn classify_transaction(
    error: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> WriteFailure {
    if let SdkError::ServiceError(context) = error {
        if let TransactWriteItemsError::TransactionCanceledException(cancelled) = context.err() {
            return classify_reasons(cancelled.cancellation_reasons(), || {
                DisplayErrorContext(error).to_string()
            });
        }
        if let TransactWriteItemsError::IdempotentParameterMismatchException(_) = context.err() {
            // The same ClientRequestToken with other parameters: a bug in the caller, never
            // fixed by retrying.
            return WriteFailure::Permanent(DisplayErrorContext(error).to_string());
        }
    }
    classify(error)
}

/// The rule for a cancelled transaction: any failed condition makes it a business outcome;
/// otherwise it is transient if every reason is `None` or a transient one.
pub fn classify_reasons(reasons: &[CancellationReason], text: impl Fn() -> String) -> WriteFailure {
    if let Some((action, reason)) = reasons
        .iter()
        .enumerate()
        .find(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
    {
        return WriteFailure::ConditionFailed {
            old: reason.item().cloned(),
            action: Some(action),
        };
    }
    let transient = reasons.iter().all(|r| {
        let code = r.code().unwrap_or("None");
        code == "None" || TRANSIENT_REASONS.contains(&code)
    });
    if transient {
        WriteFailure::Transient(text())
    } else {
        WriteFailure::Permanent(text())
    }
}

/// How often and how patiently a write is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub attempts: u32,
    /// The backoff cap for attempt n is `base * 2^(n-1)`, at most `max`; the pause is drawn
    /// uniformly from [0, cap] ("full jitter", AWS Architecture Blog, "Exponential Backoff And
    /// Jitter", 2015): retries of a crowd spread out instead of colliding again.
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The request path (a buyer is waiting): 4 calls within about half a second.
    pub const INTERACTIVE: Self = Self {
        attempts: 4,
        base: Duration::from_millis(25),
        max: Duration::from_millis(200),
    };
    /// Background work and saga steps (nobody waits on a socket): 6 calls within a few seconds.
    pub const BACKGROUND: Self = Self {
        attempts: 6,
        base: Duration::from_millis(50),
        max: Duration::from_secs(2),
    };

    /// The pause before retry number `retry` (1-based).
    pub fn pause(&self, retry: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max);
        cap.mul_f64(fastrand::f64())
    }
}

/// Runs `call` until it succeeds, fails for good, or the policy runs out. A condition failure
/// is returned as `Err(WriteFailure::ConditionFailed)` for the caller to interpret; transient
/// failures that outlast the policy become `StoreError::Unavailable`.
pub async fn with_retries<T, E, F, Fut>(
    policy: RetryPolicy,
    what: &'static str,
    classify_error: impl Fn(&SdkError<E, HttpResponse>) -> WriteFailure,
    mut call: F,
) -> Result<Result<T, WriteFailure>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let mut last = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(policy.pause(attempt - 1)).await;
        }
        match call().await {
            Ok(value) => return Ok(Ok(value)),
            Err(error) => match classify_error(&error) {
                WriteFailure::Transient(text) => {
                    tracing::warn!(what, attempt, error = %text, "transient DynamoDB failure; retrying");
                    last = text;
                }
                WriteFailure::Permanent(text) => return Err(StoreError::Unavailable(text)),
                condition => return Ok(Err(condition)),
            },
        }
    }
    Err(StoreError::Unavailable(format!(
        "{what}: still failing after {} attempts: {last}",
        policy.attempts
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str) -> CancellationReason {
        CancellationReason::builder().code(code).build()
    }

    #[test]
    fn a_failed_condition_in_any_action_is_a_business_outcome() {
        let failure = classify_reasons(
            &[
                reason("None"),
                reason("ConditionalCheckFailed"),
                reason("ThrottlingError"),
            ],
            String::new,
        );
        assert_eq!(
            failure,
            WriteFailure::ConditionFailed {
                old: None,
                action: Some(1)
            }
        );
    }

    #[test]
    fn throttled_and_conflicting_transactions_are_retried() {
        for code in [
            "ThrottlingError",
            "TransactionConflict",
            "ProvisionedThroughputExceeded",
        ] {
            let failure = classify_reasons(&[reason("None"), reason(code)], || code.into());
            assert!(matches!(failure, WriteFailure::Transient(_)), "{code}");
        }
    }

    #[test]
    fn a_validation_error_is_permanent() {
        let failure = classify_reasons(&[reason("ValidationError")], String::new);
        assert!(matches!(failure, WriteFailure::Permanent(_)));
    }

    #[test]
    fn backoff_pauses_stay_under_a_growing_cap() {
        let p = RetryPolicy::INTERACTIVE;
        for retry in 1..10 {
            let cap = (p.base * (1 << (retry - 1))).min(p.max);
            for _ in 0..50 {
                assert!(p.pause(retry) <= cap);
            }
        }
    }
}
