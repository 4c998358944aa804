"""Cold and warm latency of calls through the REST API on LocalStack (API Gateway -> Lambda).

Usage (stack deployed with ./dev up):  .local/e2e/bin/python tools/api_latency.py [--warm 200]

cold: the first call after the function's configuration changed (LocalStack starts a new
      execution environment, i.e. a new bootstrap process), repeated --cold times;
warm: --warm sequential calls on a warm environment.
Measured for GET /health (one function) and POST reservations (the authorizer, then reserve).
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import time
import uuid

import boto3
import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENDPOINT = "http://127.0.0.1:4566"
LAMBDA = boto3.client("lambda", endpoint_url=ENDPOINT, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")


def restart(function):
    env = LAMBDA.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    env["BENCH_NONCE"] = uuid.uuid4().hex
    LAMBDA.update_function_configuration(FunctionName=function, Environment={"Variables": env})
    LAMBDA.get_waiter("function_updated_v2").wait(FunctionName=function)


def timed(call):
    started = time.perf_counter()
    response = call()
    assert response.status_code < 500, response.text
    return (time.perf_counter() - started) * 1000


def summary(name, samples):
    samples = sorted(samples)
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    print(f"| {name:<28} | {len(samples):>4} | {statistics.median(samples):>8.1f} | {p(0.95):>8.1f} | {max(samples):>8.1f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--warm", type=int, default=200)
    args = parser.parse_args()
    outputs = json.loads((ROOT / ".local" / "stack-outputs.json").read_text())["Flashsale-dev"]
    api = f"{ENDPOINT}/_aws/execute-api/{outputs['ApiId']}/{outputs['StageName']}"
    mint = lambda *a: subprocess.run([str(ROOT / "target/debug/mint-token"), *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    http = requests.Session()
    admin = mint("--sub", "bench-ops", "--admin")[0]
    sale_id = f"bench-{uuid.uuid4().hex[:10]}"
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    r = http.put(f"{api}/sales/{sale_id}", headers={"Authorization": f"Bearer {admin}"}, json={
        "total_stock": 1_000_000, "shards": 8, "per_user_limit": 1,
        "price": {"amount_minor": 100, "currency": "EUR"}, "starts_at": iso(now - 60), "ends_at": iso(now + 3600)})
    assert r.status_code == 201, r.text
    tokens = iter(mint("--sub", f"bench-{uuid.uuid4().hex[:6]}", "--count", str(args.cold + args.warm + 10)))

    def reserve():
        return http.post(f"{api}/sales/{sale_id}/reservations", json={},
                         headers={"Authorization": f"Bearer {next(tokens)}", "Idempotency-Key": uuid.uuid4().hex})

    health = lambda: http.get(f"{api}/health")
    cold_health, cold_reserve = [], []
    for _ in range(args.cold):
        restart("Flashsale-dev-health")
        cold_health.append(timed(health))
        restart("Flashsale-dev-reserve")
        restart("Flashsale-dev-authorizer")
        cold_reserve.append(timed(reserve))
    timed(health), timed(reserve)  # make sure both are warm
    warm_health = [timed(health) for _ in range(args.warm)]
    warm_reserve = [timed(reserve) for _ in range(args.warm)]
    print("| call                         |    n |   p50 ms |   p95 ms |   max ms |")
    print("|------------------------------|------|----------|----------|----------|")
    summary("GET /health, cold", cold_health)
    summary("GET /health, warm", warm_health)
    summary("POST reservations, cold", cold_reserve)
    summary("POST reservations, warm", warm_reserve)


if __name__ == "__main__":
    main()
