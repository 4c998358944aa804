"""Fixtures for the tests of the local AWS environment (localstack/).

The session fixture `local_env` makes sure env.sh has Redis and LocalStack running;
it stops them at the end only if it was the one that started them.
"""

from __future__ import annotations

import time
import uuid

import pytest

from support import ROLE, client, env_sh, function_zip


def pytest_collection_modifyitems(items):
    # The lifecycle tests stop and restart the environment: run them last.
    items.sort(key=lambda item: item.get_closest_marker("lifecycle") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "lifecycle: stops/starts the environment; runs last")


@pytest.fixture(scope="session")
def local_env():
    started = env_sh("status").returncode != 0
    if started:
        result = env_sh("start")
        assert result.returncode == 0, f"env.sh start failed:\n{result.stdout}\n{result.stderr}"
    yield {"started_by_tests": started}
    if started:
        env_sh("stop")


@pytest.fixture(scope="session")
def lambda_client(local_env):
    # Enough connections for the concurrency test; reads longer than any test function runs.
    return client("lambda", max_pool_connections=32, read_timeout=60)


@pytest.fixture(scope="session")
def logs_client(local_env):
    return client("logs")


@pytest.fixture(scope="session")
def dynamodb_client(local_env):
    return client("dynamodb")


@pytest.fixture(scope="session")
def deploy(lambda_client):
    """deploy(timeout=..., env=..., zip_file=...) -> name of a new, active provided.al2023
    function; its code is tests/fixtures/bootstrap.py unless zip_file is given.
    Functions are deleted at the end of the session."""
    created = []
    code = function_zip()

    def _deploy(timeout: int = 2, env: dict[str, str] | None = None, zip_file: bytes | None = None) -> str:
        name = f"flashsale-test-{uuid.uuid4().hex[:10]}"
        lambda_client.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Handler="bootstrap",
            Role=ROLE,
            Code={"ZipFile": zip_file or code},
            Timeout=timeout,
            MemorySize=128,
            Architectures=["x86_64"],
            Environment={"Variables": env or {}},
        )
        created.append(name)
        deadline = time.monotonic() + 60
        while True:
            config = lambda_client.get_function_configuration(FunctionName=name)
            if config["State"] == "Active":
                return name
            assert config["State"] != "Failed", config.get("StateReason")
            assert time.monotonic() < deadline, f"{name} not active: {config['State']}"
            time.sleep(0.05)

    yield _deploy
    for name in created:
        try:
            lambda_client.delete_function(FunctionName=name)
        except Exception:  # the lifecycle tests may have restarted LocalStack meanwhile
            pass
