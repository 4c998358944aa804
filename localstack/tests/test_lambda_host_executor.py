"""The host Lambda executor (localstack/host_executor) through LocalStack's Lambda API."""

from __future__ import annotations

import base64
import io
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from support import ENDPOINT, LOCAL, invoke, poll


@pytest.fixture(scope="module")
def function(deploy):
    """One function shared by the tests that leave its processes intact."""
    return deploy(timeout=2, env={"FLASHSALE_TEST": "shared"})


def test_invoke_returns_the_function_result_and_passes_the_environment(lambda_client, function):
    payload, response = invoke(lambda_client, function, {"action": "echo", "n": 42})

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert payload["echo"] == {"action": "echo", "n": 42}
    env = payload["env"]
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == function
    assert env["AWS_ENDPOINT_URL"] == ENDPOINT
    assert env["FLASHSALE_TEST"] == "shared"
    # The code runs from LocalStack's unzipped copy, under .local/, which is the task root.
    assert env["LAMBDA_TASK_ROOT"] == payload["cwd"]
    assert payload["cwd"].startswith(str(LOCAL))
    assert payload["function_arn"].endswith(f":function:{function}")
    assert payload["deadline_ms"] > time.time() * 1000


def test_function_error_passes_its_error_type_through(lambda_client, function):
    payload, response = invoke(
        lambda_client, function, {"action": "error", "errorType": "StockExhausted", "message": "sold out"}
    )

    assert response["FunctionError"] == "Unhandled"
    assert payload == {"errorType": "StockExhausted", "errorMessage": "sold out"}
    # The environment is still usable afterwards.
    payload, response = invoke(lambda_client, function, {"action": "echo"})
    assert "FunctionError" not in response


def test_timeout_reports_sandbox_timedout_and_the_next_invoke_gets_a_fresh_process(lambda_client, deploy):
    name = deploy(timeout=1)
    first, _ = invoke(lambda_client, name, {"action": "echo"})

    started = time.monotonic()
    payload, response = invoke(lambda_client, name, {"action": "sleep", "seconds": 5})
    elapsed = time.monotonic() - started

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert elapsed < 3, f"timeout took {elapsed:.2f}s"
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE

    again, response = invoke(lambda_client, name, {"action": "echo"})
    assert "FunctionError" not in response
    assert again["pid"] != first["pid"]


def test_crash_reports_runtime_exit_error_and_the_next_invoke_gets_a_fresh_process(lambda_client, deploy):
    name = deploy(timeout=2)
    first, _ = invoke(lambda_client, name, {"action": "echo"})

    payload, response = invoke(lambda_client, name, {"action": "exit", "code": 7}, tail=True)

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in payload["errorMessage"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "exiting on purpose" in tail

    again, response = invoke(lambda_client, name, {"action": "echo"})
    assert "FunctionError" not in response
    assert again["pid"] != first["pid"]


def test_init_error_reaches_the_caller_with_its_error_type(lambda_client, deploy):
    name = deploy(env={"FAIL_INIT": "Config.MissingSetting"})

    payload, response = invoke(lambda_client, name, {"action": "echo"})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Config.MissingSetting"
    assert "FLASHSALE_TABLE" in payload["errorMessage"]


def test_missing_bootstrap_is_an_invalid_entrypoint(lambda_client, deploy):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "no bootstrap here")
    name = deploy(zip_file=buffer.getvalue())

    payload, response = invoke(lambda_client, name, {"action": "echo"})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.InvalidEntrypoint"


def test_all_log_lines_of_an_invocation_reach_cloudwatch_logs(lambda_client, logs_client, function):
    tag = f"tag-{uuid.uuid4().hex[:8]}"
    lines = 1500

    payload, response = invoke(lambda_client, function, {"action": "log", "lines": lines, "tag": tag}, tail=True)
    assert payload == {"logged": lines, "tag": tag}
    # LogType=Tail carries the last 4 KB, which must include the very last line.
    assert f"{tag} stderr last" in base64.b64decode(response["LogResult"]).decode()

    def fetch():
        messages = []
        paginator = logs_client.get_paginator("filter_log_events")
        for page in paginator.paginate(logGroupName=f"/aws/lambda/{function}"):
            messages.extend(event["message"] for event in page["events"])
        return [m for m in messages if m.startswith(tag)]

    messages = poll(fetch, lambda found: len(found) >= lines + 1)
    expected = {f"{tag} stdout {i}" for i in range(lines)} | {f"{tag} stderr last"}
    assert {m.rstrip("\n") for m in messages} == expected


def test_concurrent_invocations_run_in_several_processes(lambda_client, deploy):
    name = deploy(timeout=5)
    count, sleep = 20, 0.5

    def one(_):
        payload, response = invoke(lambda_client, name, {"action": "sleep", "seconds": sleep})
        assert "FunctionError" not in response, payload
        return payload["pid"]

    rounds = []
    for _ in range(2):  # cold (20 process starts), then warm
        started = time.monotonic()
        with ThreadPoolExecutor(count) as pool:
            pids = list(pool.map(one, range(count)))
        rounds.append((time.monotonic() - started, len(set(pids))))

    (cold, cold_pids), (warm, warm_pids) = rounds
    serial = count * sleep
    assert cold < serial, f"cold round {cold:.2f}s"
    assert warm < serial / 3, f"warm round {warm:.2f}s"
    assert cold_pids > 1 and warm_pids > 1
