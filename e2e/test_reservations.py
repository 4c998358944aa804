"""The buyer API end to end: API Gateway (REST) -> authorizer -> Lambda -> Redis + DynamoDB."""

import concurrent.futures
import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, aws, bearer, mint, new_sale, token
from payments import reservations_of_sale

# These tests read the events queue themselves: its consumer, the notifier, waits meanwhile.
pytestmark = pytest.mark.usefixtures("notifier_paused")


def reserve(http, api, sale_id, tok, key=None, body=None):
    headers = {**bearer(tok), "Idempotency-Key": key or uuid.uuid4().hex}
    return http.post(f"{api}/sales/{sale_id}/reservations", json=body or {}, headers=headers, timeout=30)


def available(http, api, sale_id):
    r = http.get(f"{api}/sales/{sale_id}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["available"]


def test_a_buyer_reserves_and_reads_it_back(api, http, admin_token):
    sale_id = new_sale(http, api, admin_token, stock=5, per_user_limit=2)
    tok = token("e2e-alice")
    r = reserve(http, api, sale_id, tok, body={"quantity": 2, "user_id": "mallory"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "PENDING" and created["quantity"] == 2 and created["sale_id"] == sale_id
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert header in r.headers, r.headers
    got = http.get(f"{api}/reservations/{created['reservation_id']}", headers=bearer(tok), timeout=30)
    assert got.status_code == 200, got.text
    assert got.json() == created
    # Someone else's reservation does not exist for them.
    other = http.get(f"{api}/reservations/{created['reservation_id']}", headers=bearer(token("e2e-bob")), timeout=30)
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert available(http, api, sale_id) == 3


def test_a_second_buyer_is_refused_when_stock_is_gone(api, http, admin_token):
    sale_id = new_sale(http, api, admin_token, stock=1)
    assert reserve(http, api, sale_id, token("e2e-first")).status_code == 201
    refused = reserve(http, api, sale_id, token("e2e-second"))
    assert refused.status_code == 410, refused.text
    assert refused.json()["type"] == "/problems/sold-out"
    assert http.get(f"{api}/sales/{sale_id}", timeout=30).json()["status"] == "sold_out"


def test_more_than_is_left_is_409_not_sold_out_and_a_smaller_request_still_succeeds(api, http, admin_token):
    sale_id = new_sale(http, api, admin_token, stock=3, per_user_limit=3, shards=1)
    assert reserve(http, api, sale_id, token("e2e-left-1")).status_code == 201
    big = reserve(http, api, sale_id, token("e2e-left-big"), body={"quantity": 3})
    assert big.status_code == 409, big.text
    assert big.json()["type"] == "/problems/insufficient-stock"
    # No sold-out was remembered: a buyer of one right after gets a unit.
    assert reserve(http, api, sale_id, token("e2e-left-2")).status_code == 201
    # A JSON body that is not an object is refused, not read as the fields in order ([3] = 3 units).
    arr = reserve(http, api, sale_id, token("e2e-left-arr"), body=[1])
    assert arr.status_code == 400 and arr.json()["type"] == "/problems/malformed-body", arr.text


def test_the_same_key_twice_returns_the_same_reservation_and_decrements_once(api, http, admin_token):
    sale_id = new_sale(http, api, admin_token, stock=5, per_user_limit=3)
    tok = token("e2e-retrier")
    first = reserve(http, api, sale_id, tok, key="retry-key")
    again = reserve(http, api, sale_id, tok, key="retry-key")
    assert first.status_code == again.status_code == 201
    assert first.json()["reservation_id"] == again.json()["reservation_id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert available(http, api, sale_id) == 4
    reused = reserve(http, api, sale_id, tok, key="retry-key", body={"quantity": 2})
    assert reused.status_code == 422
    assert reused.json()["type"] == "/problems/idempotency-key-reused"
    assert available(http, api, sale_id) == 4


def test_a_burst_gets_429_with_retry_after_and_rate_headers(api, http, admin_token):
    sale_id = new_sale(http, api, admin_token, stock=100, per_user_limit=100)
    tok = token("e2e-burst")
    statuses, limited = [], None
    for _ in range(12):
        r = reserve(http, api, sale_id, tok)
        statuses.append(r.status_code)
        if r.status_code == 429:
            limited = r
            break
    assert limited is not None, statuses
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-limit"]) >= 1
    assert limited.json()["type"] == "/problems/rate-limited"


def test_missing_or_bad_tokens_get_401_and_buyers_cannot_administer(api, http, admin_token):
    sale_id = new_sale(http, api, admin_token, stock=1)
    url = f"{api}/sales/{sale_id}/reservations"
    assert http.post(url, json={}, headers={"Idempotency-Key": "k"}, timeout=30).status_code == 401
    forged = token("e2e-x")[:-4] + "AAAA"
    assert http.post(url, json={}, headers={**bearer(forged), "Idempotency-Key": "k"}, timeout=30).status_code == 401
    expired = mint("--sub", "e2e-old", "--ttl", "-3600")[0]
    assert http.post(url, json={}, headers={**bearer(expired), "Idempotency-Key": "k"}, timeout=30).status_code == 401
    r = http.put(f"{api}/sales/{sale_id}", json={}, headers=bearer(token("e2e-buyer")), timeout=30)
    assert r.status_code == 403, r.text


def events_for(queue_url, wanted_ids, timeout_s=60):
    """Drains the queue until every wanted event id was seen (or time runs out): the events
    seen, by id."""
    sqs = aws("sqs")
    seen = {}
    deadline = time.time() + timeout_s
    while time.time() < deadline and not wanted_ids <= seen.keys():
        out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in out.get("Messages", []):
            body = json.loads(m["Body"])
            seen[body["event_id"]] = body
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return seen


def test_a_reservation_created_event_reaches_the_events_queue(api, http, admin_token, outputs):
    sale_id = new_sale(http, api, admin_token, stock=2)
    r = reserve(http, api, sale_id, token("e2e-evented"))
    assert r.status_code == 201
    event_id = f"{r.json()['reservation_id']}:PENDING"
    seen = events_for(outputs["EventsQueueUrl"], {event_id})
    assert event_id in seen
    # It carries what a notification needs: the address from the buyer's identity, the amount.
    event = seen[event_id]
    assert event["email"] == "e2e-evented@buyers.flashsale.test", event
    assert (event["amount_minor"], event["currency"]) == (1999, "EUR"), event


def test_a_failed_publish_does_not_lose_the_event(api, http, admin_token, outputs):
    """Point the publisher at a queue that does not exist: the stream keeps the record and
    retries; once the queue is back the event arrives (or, after the bounded retries, it is on
    the DLQ). Either way it is not lost."""
    lam = aws("lambda")
    name = f"Flashsale-{os.environ.get('STAGE', 'dev')}-event-publisher"
    env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    broken = {**env, "EVENTS_QUEUE_URL": env["EVENTS_QUEUE_URL"] + "-missing"}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": broken})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    try:
        sale_id = new_sale(http, api, admin_token, stock=2)
        r = reserve(http, api, sale_id, token("e2e-outage"))
        assert r.status_code == 201, "the buyer is not affected by the queue outage"
        event_id = f"{r.json()['reservation_id']}:PENDING"
        time.sleep(3)  # let the publisher fail at least once
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    seen = events_for(outputs["EventsQueueUrl"], {event_id}, timeout_s=90)
    if event_id not in seen:
        # The bounded retries ran out while the queue was gone: the stream's on-failure
        # destination (the events DLQ) holds a pointer to the batch.
        sqs = aws("sqs")
        dlq = sqs.receive_message(QueueUrl=outputs["EventsDlqUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=2)
        assert dlq.get("Messages"), "the event is neither delivered nor on the DLQ"


def test_two_thousand_buyers_at_one_hundred_units_never_oversell(api, http, admin_token, outputs):
    sale_id = new_sale(http, api, admin_token, stock=100, shards=8, prefix="e2e-crowd")
    tokens = mint("--sub", f"crowd-{uuid.uuid4().hex[:6]}", "--count", "2000")

    def attempt(tok):
        # A well-behaved client: on a 5xx (here: dozens of cold starts at once on two cores)
        # it retries with the SAME Idempotency-Key, which must never reserve twice.
        key = uuid.uuid4().hex
        for backoff in (0.2, 0.5, 1, 2, 4, 0):
            status = reserve(http, api, sale_id, tok, key=key).status_code
            if status < 500:
                return status
            time.sleep(backoff)
        return status

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(attempt, tokens))
    elapsed = time.time() - started
    assert statuses.count(201) == 100, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(410) == 1900, {s: statuses.count(s) for s in set(statuses)}
    print(f"2000 buyers in {elapsed:.1f}s")

    # Exactly 100 durable reservations for the sale...
    assert len(reservations_of_sale(outputs, sale_id)) == 100
    # ...and 100 holds in Redis, none available, counters consistent on every shard.
    held = available_left = 0
    for shard in range(8):
        out = subprocess.run(["redis-cli", "-p", "6379", "HMGET", f"fs:{{{sale_id}:{shard}}}:stock", "initial", "available", "held", "sold"],
                             capture_output=True, text=True, check=True).stdout.split()
        initial, avail, h, sold = map(int, out)
        assert initial == avail + h + sold
        held += h
        available_left += avail
    assert (held, available_left) == (100, 0)
