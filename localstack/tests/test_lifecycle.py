"""env.sh: idempotent start, status codes, loopback-only sockets, stop without orphans.

These tests stop and restart the environment, so they run last (see conftest.py).
"""

from __future__ import annotations

import time

import pytest

from support import (
    LOOPBACK_HOSTS,
    alive,
    env_sh,
    host_of,
    invoke,
    listening_sockets,
    our_processes,
    pid_from,
    processes_under_local_dir,
)

pytestmark = pytest.mark.lifecycle


@pytest.fixture
def warm_environment(lambda_client, dynamodb_client, deploy):
    """Running bootstraps and DynamoDB Local, so that every kind of process exists."""
    name = deploy()
    invoke(lambda_client, name, {"action": "echo"})
    dynamodb_client.list_tables()
    return name


def test_status_is_zero_while_running(local_env):
    result = env_sh("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redis: running" in result.stdout
    assert "localstack: running" in result.stdout


def test_start_twice_is_harmless(local_env):
    before = (pid_from("redis"), pid_from("localstack"))

    result = env_sh("start")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "already running" in result.stdout
    assert (pid_from("redis"), pid_from("localstack")) == before
    assert env_sh("status").returncode == 0


def test_every_listening_socket_of_ours_is_on_loopback(warm_environment):
    ours = {p.pid for p in our_processes()}
    mine = [(address, pids) for address, pids in listening_sockets() if pids & ours]

    # at least Redis, the gateway, DynamoDB Local and one Runtime API server
    assert len(mine) >= 4, mine
    exposed = [address for address, _ in mine if host_of(address) not in LOOPBACK_HOSTS]
    assert exposed == []


def test_stop_leaves_no_process_behind_and_start_brings_it_back(warm_environment):
    processes = our_processes()
    assert any("bootstrap" in " ".join(p.cmdline()) for p in processes)
    assert any("DynamoDBLocal.jar" in " ".join(p.cmdline()) for p in processes)

    result = env_sh("stop")

    assert result.returncode == 0, result.stdout + result.stderr
    assert [p for p in processes if alive(p)] == []
    assert processes_under_local_dir() == []
    assert env_sh("status").returncode == 3
    # stopping a stopped environment is harmless too
    assert env_sh("stop").returncode == 0

    started = time.monotonic()
    result = env_sh("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert env_sh("status").returncode == 0
    print(f"env.sh start from stopped: {time.monotonic() - started:.2f}s")


def test_stop_cleans_up_after_localstack_was_killed_hard(warm_environment):
    processes = our_processes()
    localstack = next(p for p in processes if p.pid == pid_from("localstack"))
    children = [p for p in processes if p.pid != localstack.pid and p.pid != pid_from("redis")]
    assert children, "expected bootstraps and DynamoDB Local"

    localstack.kill()  # no graceful shutdown: its children are orphaned
    localstack.wait(timeout=10)
    result = env_sh("stop")

    assert result.returncode == 0, result.stdout + result.stderr
    assert [p for p in processes if alive(p)] == []
    assert processes_under_local_dir() == []

    result = env_sh("start")
    assert result.returncode == 0, result.stdout + result.stderr
