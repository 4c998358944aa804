"""LocalStack runtime executor that runs `provided.al2023` / `provided.al2` functions
as host processes instead of Docker containers.

Selected with LAMBDA_RUNTIME_EXECUTOR=host. One RuntimeExecutor instance is one
execution environment; LocalStack creates more of them for concurrent invocations.
The work is in environment.py; this class adapts it to LocalStack's interface
(localstack/services/lambda_/invocation/runtime_executor.py).

Limits, by design: no sandbox (the function runs as LocalStack's user, with no
memory limit), no layers or extensions, no container images, and the function's
binary must match the host's architecture.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import stat
import tempfile
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from flashsale_host_executor.environment import HostEnvironment
from flashsale_host_executor.reporter import Reporter

LOG = logging.getLogger(__name__)

SUPPORTED_RUNTIMES = ("provided.al2023", "provided.al2", "provided")
HOST_ARCHITECTURE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower()
)
LOOPBACK = "127.0.0.1"


def _code_dir(function_version: FunctionVersion) -> Path:
    return Path(function_version.config.code.get_unzipped_code_location())


class HostRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ExecutorEndpoint(self.id, container_address=LOOPBACK)
        self._environment: HostEnvironment | None = None
        self._tmpdir: str | None = None

    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        task_root = str(_code_dir(self.function_version))
        # Each environment gets its own TMPDIR (Lambda's /tmp), removed on stop.
        self._tmpdir = tempfile.mkdtemp(prefix=f"lambda-host-{self.id}-")
        env = {key: str(value) for key, value in env_vars.items()}
        env.update(
            {
                "LAMBDA_TASK_ROOT": task_root,
                # The host's PATH, so script bootstraps find their interpreter.
                "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{config.GATEWAY_LISTEN[0].port}",
                "TMPDIR": self._tmpdir,
            }
        )
        self._environment = HostEnvironment(
            executor_id=self.id,
            bootstrap=os.path.join(task_root, "bootstrap"),
            task_root=task_root,
            env=env,
            timeout_seconds=int(self.function_version.config.timeout),
            memory_mb=int(self.function_version.config.memory_size),
            qualifier=self.function_version.id.qualifier,
            reporter=Reporter(self.get_runtime_endpoint(), self.id),
        )
        self.executor_endpoint.container_port = self._environment.port
        self._environment.start()
        # Resolved by the bootstrap's first GET /next (ready) or an init failure (raises);
        # cancelled if LocalStack's start-up timer stops us meanwhile.
        self.executor_endpoint.wait_for_startup()

    def stop(self) -> None:
        if self._environment is not None:
            self._environment.stop()
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:  # not started, or already unregistered
            LOG.debug("executor %s: endpoint shutdown: %s", self.id, e)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def get_address(self) -> str:
        return LOOPBACK

    def get_endpoint_from_executor(self) -> str:
        # The function runs on the host, where the gateway listens on loopback.
        return LOOPBACK

    def get_runtime_endpoint(self) -> str:
        return (
            f"http://{LOOPBACK}:{config.GATEWAY_LISTEN[0].port}"
            f"{self.executor_endpoint.get_endpoint_prefix()}"
        )

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        return self._environment.logs() if self._environment is not None else ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not cfg.code:
            raise LambdaRuntimeException("host executor: only zip packages are supported")
        if cfg.runtime not in SUPPORTED_RUNTIMES:
            raise LambdaRuntimeException(
                f"host executor: runtime {cfg.runtime} is not supported, only {', '.join(SUPPORTED_RUNTIMES)}"
            )
        if cfg.layers:
            LOG.warning("host executor: layers of %s are ignored", function_version.qualified_arn)
        arch = cfg.architectures[0] if cfg.architectures else "x86_64"
        if HOST_ARCHITECTURE and arch != HOST_ARCHITECTURE:
            LOG.warning(
                "host executor: %s is built for %s, this host is %s; a native binary will not start",
                function_version.qualified_arn,
                arch,
                HOST_ARCHITECTURE,
            )
        # The same unzip the Docker executor uses (to $TMPDIR/lambda/...).
        cfg.code.prepare_for_execution()
        bootstrap = _code_dir(function_version) / "bootstrap"
        if bootstrap.is_file():
            # Zips built on some systems lose the executable bit.
            mode = bootstrap.stat().st_mode
            bootstrap.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        else:
            LOG.warning("host executor: %s has no bootstrap at the root of its zip", function_version.qualified_arn)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        # Nothing of ours outlives the environments; the unzipped code belongs to
        # LocalStack's code object, which removes it itself.
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        return True
