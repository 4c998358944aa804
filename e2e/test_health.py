"""GET /health through API Gateway -> Lambda (host-process executor) -> Redis and DynamoDB."""

import subprocess

import requests


def test_readiness_reports_redis_and_dynamodb_reachable(api, http):
    response = http.get(f"{api}/health", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert {c["name"]: c["ok"] for c in body["checks"]} == {"redis": True, "dynamodb": True}


def test_liveness_answers(api, http):
    response = http.get(f"{api}/health/live", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_fails_fast_with_503_when_redis_is_down(api, http):
    """Redis stops answering under the deployed function: readiness must say so within its
    timeout. The Redis endpoint's fault proxy (localstack/env.sh) holds every byte (stall), as a
    frozen primary would."""
    control = "http://127.0.0.1:6398"
    assert requests.post(f"{control}/mode", json={"mode": "stall"}, timeout=10).status_code == 200
    try:
        response = http.get(f"{api}/health", timeout=30)
        assert response.status_code == 503, response.text
        checks = {c["name"]: c for c in response.json()["checks"]}
        assert checks["redis"]["ok"] is False
        assert checks["dynamodb"]["ok"] is True
        assert checks["redis"]["latency_ms"] < 3000
    finally:
        requests.post(f"{control}/mode", json={"mode": "pass"}, timeout=10)
    assert http.get(f"{api}/health", timeout=30).status_code == 200


def test_every_listener_of_the_environment_is_on_loopback():
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours = [l for l in out.splitlines() if any(p in l for p in ("redis", "python", "java", "bootstrap", "fault-proxy"))]
    assert ours, out
    for line in ours:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")), line
