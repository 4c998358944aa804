"""End-to-end tests against the stack deployed on LocalStack (`./dev up` or `./dev test`).

They read the stack's outputs from .local/stack-outputs.json and call the REST API through
LocalStack's API Gateway, as a client would."""

import json
import os
import pathlib

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
    yield session
    session.close()


def aws(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
