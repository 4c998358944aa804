"""env.sh: idempotent start, status codes, loopback-only sockets, stop without orphans.

These tests stop and restart the environment, so they run last (see conftest.py).
"""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from support import (
    ENVIRONMENT_PIDS,
    LOOPBACK_HOSTS,
    alive,
    env_sh,
    host_of,
    invoke,
    listening_sockets,
    our_processes,
    pid_from,
    poll,
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
    assert "aws fault proxy: running" in result.stdout
    assert "localstack: running" in result.stdout


def test_start_twice_is_harmless(local_env):
    before = [pid_from(name) for name in ENVIRONMENT_PIDS]
    assert None not in before, dict(zip(ENVIRONMENT_PIDS, before))

    result = env_sh("start")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "already running" in result.stdout
    assert [pid_from(name) for name in ENVIRONMENT_PIDS] == before
    assert env_sh("status").returncode == 0


def test_every_listening_socket_of_ours_is_on_loopback(warm_environment):
    ours = {p.pid for p in our_processes()}
    mine = [(address, pids) for address, pids in listening_sockets() if pids & ours]

    # at least the Redis group (2 nodes, 3 Sentinels, the endpoint and its control port), the AWS
    # fault proxy and its control port, the gateway, DynamoDB Local and one Runtime API server
    assert len(mine) >= 12, mine
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
    children = [p for p in processes if p.pid != localstack.pid and p.pid not in {pid_from(n) for n in ENVIRONMENT_PIDS}]
    assert children, "expected bootstraps and DynamoDB Local"

    localstack.kill()  # no graceful shutdown: its children are orphaned
    localstack.wait(timeout=10)
    result = env_sh("stop")

    assert result.returncode == 0, result.stdout + result.stderr
    assert [p for p in processes if alive(p)] == []
    assert processes_under_local_dir() == []

    result = env_sh("start")
    assert result.returncode == 0, result.stdout + result.stderr


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10).stdout.strip()


def test_the_redis_endpoint_follows_a_failover_and_heal_brings_the_dead_node_back(local_env):
    """The primary endpoint (6379) is what ElastiCache Multi-AZ gives: a SIGKILLed primary is
    replaced by its replica, the endpoint follows, data written before the kill (and replicated)
    is still there, and heal-redis restarts the dead node as the new primary's replica."""
    assert redis_cli(6379, "SET", "lifecycle:failover", "before") == "OK"
    old = pid_from("redis-6390") if redis_cli(6390, "ROLE").startswith("master") else pid_from("redis-6391")
    old_port = 6390 if old == pid_from("redis-6390") else 6391
    new_port = 6391 if old_port == 6390 else 6390
    poll(lambda: redis_cli(new_port, "GET", "lifecycle:failover"), lambda v: v == "before", timeout=10)

    psutil.Process(old).kill()
    started = time.monotonic()
    poll(lambda: redis_cli(6379, "SET", "lifecycle:failover", "after"), lambda v: v == "OK", timeout=30, interval=0.1)
    print(f"endpoint writable again {time.monotonic() - started:.2f}s after the kill")

    assert redis_cli(new_port, "ROLE").startswith("master")
    assert redis_cli(6379, "GET", "lifecycle:failover") == "after"
    assert env_sh("status").returncode == 3, "a group with a dead node is degraded"
    result = env_sh("heal-redis")
    assert result.returncode == 0, result.stdout + result.stderr
    assert redis_cli(old_port, "ROLE").startswith("slave")
    poll(lambda: redis_cli(old_port, "GET", "lifecycle:failover"), lambda v: v == "after", timeout=10)
    poll(lambda: env_sh("status").returncode, lambda rc: rc == 0, timeout=30, interval=0.5)
