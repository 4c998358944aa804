"""A fix for LocalStack's Step Functions callbacks (`.waitForTaskToken` with HeartbeatSeconds).

LocalStack creates a task's heartbeat endpoint only after the invoked Lambda has returned. A
SendTaskSuccess/Failure that arrives while the Lambda still runs (a fast payment webhook does:
the provider calls back before our charge step has answered) stores the outcome but wakes
nobody, and the task then waits for a heartbeat until it fails with a timeout. On AWS the
outcome wins. This patch makes the heartbeat wait look at an outcome that is already there
before it starts waiting; every later notification wakes it as before.
"""

import logging

LOG = logging.getLogger(__name__)


def register():
    from localstack.services.stepfunctions.asl.component.state.state_execution.state_task.service import (
        state_task_service_callback as module,
    )

    cls = module.StateTaskServiceCallback
    if getattr(cls, "_flashsale_early_outcome", False):
        return
    original = cls._wait_for_task_token_heartbeat

    def wait_for_task_token_heartbeat(self, env, callback_endpoint, heartbeat_endpoint):
        outcome = callback_endpoint.get_outcome()
        if outcome is not None:
            return outcome
        return original(self, env, callback_endpoint, heartbeat_endpoint)

    cls._wait_for_task_token_heartbeat = wait_for_task_token_heartbeat
    cls._flashsale_early_outcome = True
    LOG.info("flashsale: Step Functions callbacks that arrive before the heartbeat wait are kept")


try:  # the hook decorator exists only inside LocalStack's runtime
    from localstack.runtime import hooks

    @hooks.on_infra_start()
    def keep_early_task_outcomes():
        register()

except ImportError:
    pass
