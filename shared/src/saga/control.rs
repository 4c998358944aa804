//! The port to the workflow engine: start a saga, resume or keep alive a waiting task.

use std::future::Future;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Started,
    /// An execution with this name exists (a retried request): its status, e.g. RUNNING.
    AlreadyStarted {
        status: String,
    },
}

/// What resuming a task did. A token whose task already ended (timed out, resumed before by a
/// duplicate webhook, or its execution stopped) is a normal case, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    Resumed,
    TaskEnded,
}

/// Where an execution stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionState {
    Running,
    /// SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    Ended(String),
    /// No execution with this name.
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("workflow engine unavailable: {0}")]
    Unavailable(String),
}

pub trait SagaControl: Send + Sync {
    /// Starts the saga execution named `name` (the reservation id) with `input`.
    fn start(
        &self,
        name: &str,
        input: &Value,
    ) -> impl Future<Output = Result<Started, ControlError>> + Send;

    fn succeed(
        &self,
        token: &str,
        output: &Value,
    ) -> impl Future<Output = Result<Resumed, ControlError>> + Send;

    fn fail(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> impl Future<Output = Result<Resumed, ControlError>> + Send;

    fn heartbeat(&self, token: &str) -> impl Future<Output = Result<Resumed, ControlError>> + Send;

    /// The state of the execution named `name`.
    fn describe(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<ExecutionState, ControlError>> + Send;
}
