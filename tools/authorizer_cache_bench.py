"""Requests per second through the local API with the TOKEN authorizer's result cache off, then
on, in one run (the ratio is what to compare: these machines are noisy).

Usage (stack deployed with ./dev up):
    .local/e2e/bin/python tools/authorizer_cache_bench.py [--seconds 20] [--clients 8]

Each phase sets the authorizer's authorizerResultTtlInSeconds through the API Gateway API (as
deploy-local.sh does), redeploys the stage, warms up, then runs --clients threads, each calling
GET /reservations/{id} (authorized: authorizer + get-reservation) with its own buyer's token for
--seconds. The cache is keyed by token, as API Gateway's is, so every client has one entry.
The authorizer is left with the TTL it had.
"""

import argparse
import datetime
import json
import pathlib
import subprocess
import threading
import time
import uuid

import boto3
import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENDPOINT = "http://127.0.0.1:4566"
APIGW = boto3.client("apigateway", endpoint_url=ENDPOINT, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test")


def mint(*args):
    out = subprocess.run([str(ROOT / "target/debug/mint-token"), *args], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def set_ttl(api_id, stage, seconds):
    (authorizer,) = [a for a in APIGW.get_authorizers(restApiId=api_id)["items"] if a["type"] == "TOKEN"]
    APIGW.update_authorizer(restApiId=api_id, authorizerId=authorizer["id"], patchOperations=[
        {"op": "replace", "path": "/authorizerResultTtlInSeconds", "value": str(seconds)}])
    APIGW.create_deployment(restApiId=api_id, stageName=stage, description=f"bench ttl={seconds}")
    return int(authorizer.get("authorizerResultTtlInSeconds") or 0)


def phase(api, clients, seconds):
    """(requests, errors) per second over `seconds` with `clients` threads."""
    counts = [0] * len(clients)
    errors = [0] * len(clients)
    stop = time.monotonic() + seconds

    def run(i, tok, rid):
        session = requests.Session()
        while time.monotonic() < stop:
            r = session.get(f"{api}/reservations/{rid}", headers={"Authorization": f"Bearer {tok}"}, timeout=30)
            counts[i] += 1
            errors[i] += r.status_code != 200

    threads = [threading.Thread(target=run, args=(i, tok, rid)) for i, (tok, rid) in enumerate(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    return sum(counts) / took, sum(errors)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    outputs = json.loads((ROOT / ".local/stack-outputs.json").read_text())["Flashsale-dev"]
    api_id, stage = outputs["ApiId"], outputs["StageName"]
    api = f"{ENDPOINT}/_aws/execute-api/{api_id}/{stage}"

    admin = mint("--sub", "bench-admin", "--admin")
    sale = f"bench-{uuid.uuid4().hex[:10]}"
    now = datetime.datetime.now(datetime.timezone.utc)
    body = {"name": "bench", "total_stock": 100, "shards": 2, "per_user_limit": 1,
            "price": {"amount_minor": 100, "currency": "EUR"},
            "starts_at": (now - datetime.timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "ends_at": (now + datetime.timedelta(hours=1)).isoformat().replace("+00:00", "Z")}
    r = requests.put(f"{api}/sales/{sale}", json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert r.status_code == 201, r.text
    clients = []
    for i in range(args.clients):
        tok = mint("--sub", f"bench-{sale}-{i}")
        r = requests.post(f"{api}/sales/{sale}/reservations", json={},
                          headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex}, timeout=30)
        assert r.status_code == 201, r.text
        clients.append((tok, r.json()["reservation_id"]))

    results = {}
    original = None
    try:
        for ttl in (0, 300):
            previous = set_ttl(api_id, stage, ttl)
            original = previous if original is None else original
            phase(api, clients, 3)  # warm up (and, with caching, fill the cache)
            results[ttl] = phase(api, clients, args.seconds)
    finally:
        if original is not None:
            set_ttl(api_id, stage, original)
    for ttl, (rate, errors) in results.items():
        print(f"authorizer cache TTL {ttl:>3} s: {rate:6.1f} requests/s ({errors} non-200)")
    print(f"cached / uncached: {results[300][0] / results[0][0]:.2f} "
          f"({args.clients} clients, {args.seconds:.0f} s each, GET /reservations/{{id}})")


if __name__ == "__main__":
    main()
