"""plux plugin that makes the executor selectable with LAMBDA_RUNTIME_EXECUTOR=host."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class HostRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "host"

    def load(self, *args, **kwargs):
        # Imported lazily, like LocalStack's own docker plugin: plux instantiates every
        # plugin of the namespace when it lists them, and the executor pulls in the
        # Lambda service modules.
        from flashsale_host_executor.executor import HostRuntimeExecutor

        return HostRuntimeExecutor
