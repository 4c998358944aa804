//! The Step Functions adapter of [`SagaControl`] (aws-sdk-sfn).

use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::Client;
use serde_json::Value;

use super::control::{ControlError, ExecutionState, Resumed, SagaControl, Started};

#[derive(Clone)]
pub struct StepFunctionsControl {
    client: Client,
    state_machine_arn: String,
}

impl StepFunctionsControl {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// A client from the function's AWS configuration (`store::aws_config`, loaded once per
    /// cold start; `AWS_ENDPOINT_URL` for LocalStack).
    pub fn client(config: &aws_config::SdkConfig) -> Client {
        Client::new(config)
    }

    /// `arn:aws:states:<region>:<account>:stateMachine:<name>` ─▶ the ARN of its execution `name`.
    fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

fn unavailable<E, R>(error: SdkError<E, R>) -> ControlError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ControlError::Unavailable(DisplayErrorContext(&error).to_string())
}

/// TaskTimedOut: the task ended (timed out, or closed by an earlier SendTask*); InvalidToken:
/// the token is unknown or its execution is gone. Both mean "nothing to resume".
fn resumed<O, E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    result: Result<O, SdkError<E, R>>,
) -> Result<Resumed, ControlError> {
    match result {
        Ok(_) => Ok(Resumed::Resumed),
        Err(e) => match e.as_service_error().and_then(|s| s.code()) {
            Some("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist") => Ok(Resumed::TaskEnded),
            _ => Err(unavailable(e)),
        },
    }
}

impl SagaControl for StepFunctionsControl {
    async fn start(&self, name: &str, input: &Value) -> Result<Started, ControlError> {
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Started::Started),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("ExecutionAlreadyExists") =>
            {
                let described = self
                    .client
                    .describe_execution()
                    .execution_arn(self.execution_arn(name))
                    .send()
                    .await
                    .map_err(unavailable)?;
                Ok(Started::AlreadyStarted {
                    status: described.status().as_str().to_owned(),
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn succeed(&self, token: &str, output: &Value) -> Result<Resumed, ControlError> {
        resumed(
            self.client
                .send_task_success()
                .task_token(token)
                .output(output.to_string())
                .send()
                .await,
        )
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<Resumed, ControlError> {
        resumed(
            self.client
                .send_task_failure()
                .task_token(token)
                .error(error)
                .cause(cause)
                .send()
                .await,
        )
    }

    async fn describe(&self, name: &str) -> Result<ExecutionState, ControlError> {
        match self
            .client
            .describe_execution()
            .execution_arn(self.execution_arn(name))
            .send()
            .await
        {
            Ok(described) => Ok(match described.status().as_str() {
                "RUNNING" | "PENDING_REDRIVE" => ExecutionState::Running,
                other => ExecutionState::Ended(other.to_owned()),
            }),
            Err(e)
                if e.as_service_error().and_then(|s| s.code()) == Some("ExecutionDoesNotExist") =>
            {
                Ok(ExecutionState::NotFound)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn heartbeat(&self, token: &str) -> Result<Resumed, ControlError> {
        resumed(
            self.client
                .send_task_heartbeat()
                .task_token(token)
                .send()
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_arn_is_derived_from_the_state_machine_arn() {
        let config = aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .build();
        let control = StepFunctionsControl::new(
            Client::from_conf(config),
            "arn:aws:states:us-east-1:000000000000:stateMachine:Flashsale-dev-checkout",
        );
        assert_eq!(
            control.execution_arn("0191-abc"),
            "arn:aws:states:us-east-1:000000000000:execution:Flashsale-dev-checkout:0191-abc"
        );
    }
}
