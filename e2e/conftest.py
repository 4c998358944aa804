"""End-to-end tests against the stack deployed on LocalStack (`./dev up` or `./dev test`).

They read the stack's outputs from .local/stack-outputs.json and call the REST API through
LocalStack's API Gateway, as a client would."""

import datetime
import json
import os
import pathlib
import subprocess
import time
import uuid

import boto3
import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENDPOINT = "http://127.0.0.1:4566"


@pytest.fixture(scope="session")
def outputs():
    path = ROOT / ".local" / "stack-outputs.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: deploy the stack first (./dev up)")
    stack = f"Flashsale-{os.environ.get('STAGE', 'dev')}"
    return json.loads(path.read_text())[stack]


@pytest.fixture(scope="session")
def api(outputs):
    """Base URL of the REST API on LocalStack (the stack's ApiUrl output does not resolve here)."""
    return f"{ENDPOINT}/_aws/execute-api/{outputs['ApiId']}/{outputs['StageName']}"


@pytest.fixture(scope="session")
def http():
    session = requests.Session()
    # Enough pooled connections for the concurrent tests' worker threads.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
    session.mount("http://", adapter)
    yield session
    session.close()


MINT = ROOT / "target" / "debug" / "mint-token"


def mint(*args):
    """Local bearer tokens from tools/mint-token (signed with .local/jwt/private.pem)."""
    out = subprocess.run([str(MINT), *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.fixture(scope="session")
def admin_token():
    return mint("--sub", "ops", "--admin")[0]


def token(user):
    return mint("--sub", user)[0]


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def new_sale(http, api, admin_token, stock, per_user_limit=1, shards=4, prefix="e2e"):
    """Creates an open sale through the admin API and returns its id."""
    sale_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    now = datetime.datetime.now(datetime.timezone.utc)
    body = {
        "name": "E2E drop",
        "total_stock": stock,
        "shards": shards,
        "per_user_limit": per_user_limit,
        "price": {"amount_minor": 1999, "currency": "EUR"},
        "starts_at": (now - datetime.timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        "ends_at": (now + datetime.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    r = http.put(f"{api}/sales/{sale_id}", json=body, headers=bearer(admin_token), timeout=30)
    assert r.status_code == 201, r.text
    return sale_id


def aws(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def sent_emails(attempts=10):
    """Every email LocalStack's SES has sent (its /_aws/ses inspection endpoint), as a list of
    its message dicts. The endpoint iterates its store of sent mail unlocked, so a read while the
    notifier is sending can fail with a 500 ("dictionary changed size during iteration"): such
    reads are tried again, a bounded number of times."""
    for attempt in range(attempts):
        r = requests.get(f"{ENDPOINT}/_aws/ses", timeout=60)
        if r.status_code < 500 or attempt == attempts - 1:
            r.raise_for_status()
            return r.json()["messages"]
        time.sleep(0.2)


def _notifier_mapping(outputs):
    lam = aws("lambda")
    mappings = lam.list_event_source_mappings(FunctionName=outputs["NotifierFunctionName"])["EventSourceMappings"]
    assert len(mappings) == 1, mappings
    return lam, mappings[0]["UUID"]


def set_notifier(outputs, enabled, timeout=60):
    """Starts or stops the notifier's event source mapping and waits until it is so."""
    lam, uuid_ = _notifier_mapping(outputs)
    lam.update_event_source_mapping(UUID=uuid_, Enabled=enabled)
    wanted = "Enabled" if enabled else "Disabled"
    deadline = time.monotonic() + timeout
    while lam.get_event_source_mapping(UUID=uuid_)["State"] != wanted:
        assert time.monotonic() < deadline, f"the notifier's mapping did not become {wanted}"
        time.sleep(0.5)


@pytest.fixture(scope="session", autouse=True)
def notifier_running(outputs):
    """Every run starts with the notifier consuming (a run killed while it was paused would
    otherwise leave it stopped: a redeploy does not restart it)."""
    set_notifier(outputs, True)


@pytest.fixture(scope="module")
def notifier_paused(outputs):
    """For the tests that read the events queue themselves: the notifier (its consumer) is
    stopped meanwhile, so it does not take their messages; started again after."""
    try:
        set_notifier(outputs, False)
        yield
    finally:
        set_notifier(outputs, True)
