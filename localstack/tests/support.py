"""Helpers shared by the tests of the local AWS environment."""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
import zipfile
from pathlib import Path

import boto3
import psutil
from botocore.config import Config

HERE = Path(__file__).resolve().parent
LOCALSTACK_DIR = HERE.parent
ROOT = LOCALSTACK_DIR.parent
LOCAL = ROOT / ".local"
ENV_SH = LOCALSTACK_DIR / "env.sh"
BOOTSTRAP = HERE / "fixtures" / "bootstrap.py"

ENDPOINT = "http://127.0.0.1:4566"
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/flashsale-test-lambda"


def env_sh(command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ENV_SH), command], capture_output=True, text=True, timeout=timeout, check=False
    )


def client(service: str, **config):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, **config),
    )


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        entry = zipfile.ZipInfo("bootstrap")
        entry.external_attr = 0o100755 << 16  # -rwxr-xr-x
        archive.writestr(entry, BOOTSTRAP.read_bytes())
    return buffer.getvalue()


def invoke(lambda_client, name: str, event: dict, tail: bool = False) -> tuple[dict, dict]:
    """Invoke synchronously; returns (decoded payload, raw response)."""
    response = lambda_client.invoke(
        FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail" if tail else "None"
    )
    payload = json.loads(response["Payload"].read() or b"null")
    return payload, response


def poll(fetch, done, timeout: float = 30.0, interval: float = 0.2):
    """Call fetch() until done(result) holds; returns the last result (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last result: {str(result)[:2000]}")
        time.sleep(interval)


# --- processes and sockets of the environment ------------------------------------

LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"}


# The pid files env.sh writes for the processes it starts (LocalStack's children have none).
REDIS_GROUP_PIDS = ("redis-6390", "redis-6391", "sentinel-26390", "sentinel-26391", "sentinel-26392", "redis-endpoint")
ENVIRONMENT_PIDS = (*REDIS_GROUP_PIDS, "aws-proxy", "payment-sandbox", "localstack")


def pid_from(name: str) -> int | None:
    path = LOCAL / "run" / f"{name}.pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def our_processes() -> list[psutil.Process]:
    """The Redis group, the fault proxies, LocalStack and everything LocalStack started (DynamoDB
    Local, bootstraps)."""
    found = []
    for name in ENVIRONMENT_PIDS:
        pid = pid_from(name)
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            found.append(root)
            found.extend(root.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return [p for p in found if alive(p)]


def processes_under_local_dir() -> list[psutil.Process]:
    """Live processes of the environment found by what they are, not by parentage
    (catches bootstraps or a DynamoDB Local that lost their parent): anything working
    in .local/ (bootstraps, Redis), LocalStack from our venv, Java using our jars."""
    local = str(LOCAL)
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            argv = process.info["cmdline"] or []
            cwd = process.info["cwd"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cmdline = " ".join(argv)
        ours = (
            cwd.startswith(local)
            or (argv and argv[0].startswith(local) and "localstack.runtime.main" in cmdline)
            or f"{local}/localstack" in cmdline
        )
        if ours and alive(process):
            found.append(process)
    return found


def listening_sockets() -> list[tuple[str, set[int]]]:
    """(local address, owning pids) for every listening TCP socket, from `ss -ltnpH`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    sockets = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        pids = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        sockets.append((fields[3], pids))
    return sockets


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0]
