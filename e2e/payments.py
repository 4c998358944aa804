"""Helpers of the payment end-to-end tests: the sandbox's switches and views, paying, waiting for
a saga to settle, and the invariant every scenario ends with."""

import subprocess
import time
import uuid

import requests

from conftest import ENDPOINT, aws, bearer

SANDBOX = "http://127.0.0.1:12111"
# What `localstack/env.sh` starts the sandbox with; tests put every switch back to these.
DEFAULT_SWITCHES = {
    "duplicate_webhooks": False,
    "reorder_webhooks": False,
    "reorder_window_ms": 1500,
    "webhook_delay_ms": 0,
    "drop_webhooks": False,
    "outage": False,
    "latency_ms": [500, 2000],
    "slow_ms": 5000,
}
SETTLED = {"CONFIRMED", "FAILED", "EXPIRED"}
BREAKER_KEY = "fs:breaker:{payment-provider}"


def switches(**changes):
    r = requests.post(f"{SANDBOX}/_sandbox/switches", json=changes, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def intents_of(reservation_id):
    r = requests.get(f"{SANDBOX}/_sandbox/payment_intents", params={"metadata.reservation_id": reservation_id}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def events_of(payment_intent_id):
    r = requests.get(f"{SANDBOX}/_sandbox/events", params={"payment_intent": payment_intent_id}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def stats():
    return requests.get(f"{SANDBOX}/_sandbox/stats", timeout=10).json()


def reserve(http, api, sale_id, tok):
    r = http.post(f"{api}/sales/{sale_id}/reservations", json={}, headers={**bearer(tok), "Idempotency-Key": uuid.uuid4().hex}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def pay(http, api, reservation_id, tok, method="pm_card_visa", key=None):
    headers = {**bearer(tok), "Idempotency-Key": key or uuid.uuid4().hex}
    return http.post(f"{api}/reservations/{reservation_id}/payment", json={"payment_method": method}, headers=headers, timeout=30)


def status_of(http, api, reservation_id, tok):
    r = http.get(f"{api}/reservations/{reservation_id}", headers=bearer(tok), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["status"]


def wait_for_status(http, api, reservation_id, tok, wanted, timeout=60):
    """Polls the buyer's view until the reservation reaches one of `wanted`; returns it."""
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = status_of(http, api, reservation_id, tok)
        if seen in wanted:
            return seen
        time.sleep(0.25)
    raise AssertionError(f"{reservation_id} is {seen} after {timeout} s, wanted {wanted}")


def wait_for_saga(outputs, reservation_id, timeout=90):
    """Waits until the reservation's saga execution has ended (the compensations after FAILED
    run after the status changes); returns its status."""
    sfn = aws("stepfunctions")
    arn = outputs["CheckoutSagaArn"].replace(":stateMachine:", ":execution:") + ":" + reservation_id
    deadline = time.monotonic() + timeout
    while True:
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status != "RUNNING" or time.monotonic() > deadline:
            return status
        time.sleep(0.25)


def settle(http, api, outputs, reservation_id, tok, timeout=90):
    """The reservation's final status once its saga has completely ended."""
    status = wait_for_status(http, api, reservation_id, tok, {"CONFIRMED", "FAILED"}, timeout=timeout)
    assert wait_for_saga(outputs, reservation_id, timeout=timeout) == "SUCCEEDED"
    return status


def reservation_item(outputs, reservation_id):
    item = aws("dynamodb").get_item(TableName=outputs["ReservationsTableName"], Key={"reservation_id": {"S": reservation_id}}, ConsistentRead=True).get("Item")
    assert item is not None, reservation_id
    return item


def order_item(outputs, reservation_id):
    return aws("dynamodb").get_item(TableName=outputs["OrdersTableName"], Key={"reservation_id": {"S": reservation_id}}, ConsistentRead=True).get("Item")


def redis_levels(sale_id, shards):
    total = {"initial": 0, "available": 0, "held": 0, "sold": 0}
    for shard in range(shards):
        out = subprocess.run(["redis-cli", "-p", "6379", "HMGET", f"fs:{{{sale_id}:{shard}}}:stock", *total], capture_output=True, text=True, check=True).stdout.split()
        for name, value in zip(total, out):
            total[name] += int(value)
    return total


def redis(*args):
    return subprocess.run(["redis-cli", "-p", "6379", *args], capture_output=True, text=True, check=True).stdout.strip()


# The reservations' by-sale index is spread over 16 partitions per sale (sale_bucket =
# "<sale>#00".."#15", shared/src/reservation/item.rs); the orders' has one (sale_id).
SALE_BUCKETS = 16


def query_partition(table, index, key_name, key):
    ddb, items, start = aws("dynamodb"), [], None
    while True:
        kwargs = {"TableName": table, "IndexName": index, "KeyConditionExpression": "#k = :s",
                  "ExpressionAttributeNames": {"#k": key_name}, "ExpressionAttributeValues": {":s": {"S": key}}}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = ddb.query(**kwargs)
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def reservations_of_sale(outputs, sale_id):
    return [item for bucket in range(SALE_BUCKETS)
            for item in query_partition(outputs["ReservationsTableName"], "by-sale-bucketed", "sale_bucket", f"{sale_id}#{bucket:02d}")]


def orders_of_sale(outputs, sale_id):
    return query_partition(outputs["OrdersTableName"], "by-sale", "sale_id", sale_id)


# Every events-queue message this test session drained, so one test's drain cannot hide a
# message another check of the session still looks for.
DRAINED = []


def events_for(outputs, reservation_id, event_type, timeout=30):
    """Messages on the events queue about this reservation and of this type. Drains the queue
    (receive + delete, like test_reservations.py), keeping what it read in DRAINED."""
    sqs, deadline = aws("sqs"), time.monotonic() + timeout

    def matching():
        return [b for b in DRAINED if reservation_id in b and event_type in b]

    while not matching() and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=outputs["EventsQueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            DRAINED.append(message["Body"])
            sqs.delete_message(QueueUrl=outputs["EventsQueueUrl"], ReceiptHandle=message["ReceiptHandle"])
    return matching()


def assert_invariant(sale_id, shards, outputs, settle_timeout=90):
    """At a quiescent point: initial = available (Redis) + held (PENDING + PAYMENT_PROCESSING)
    + sold (orders); Redis agrees with the durable records; no reservation charged twice; every
    succeeded charge is an order or fully refunded."""
    deadline = time.monotonic() + settle_timeout
    while True:
        reservations = reservations_of_sale(outputs, sale_id)
        if not any(r["status"]["S"] == "PAYMENT_PROCESSING" for r in reservations) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    held = sum(int(r["quantity"]["N"]) for r in reservations if r["status"]["S"] in ("PENDING", "PAYMENT_PROCESSING"))
    orders = orders_of_sale(outputs, sale_id)
    sold = sum(int(o["quantity"]["N"]) for o in orders)
    levels = redis_levels(sale_id, shards)
    assert levels["initial"] == levels["available"] + held + sold, (levels, held, sold)
    assert levels["held"] == held and levels["sold"] == sold, (levels, held, sold)
    confirmed = {r["reservation_id"]["S"] for r in reservations if r["status"]["S"] == "CONFIRMED"}
    assert confirmed == {o["reservation_id"]["S"] for o in orders}
    for r in reservations:
        rid = r["reservation_id"]["S"]
        intents = intents_of(rid)
        assert len(intents) <= 1, f"{rid} has {len(intents)} payment intents"
        for intent in intents:
            if intent["status"] != "succeeded":
                continue
            refunded = sum(refund["amount"] for refund in intent["refunds"])
            order = order_item(outputs, rid)
            if order is not None:
                assert order["payment_intent_id"]["S"] == intent["id"] and refunded == 0, (rid, intent)
            else:
                assert refunded == intent["amount"], f"{rid}: charge {intent['id']} is neither an order nor refunded"
    return {"held": held, "sold": sold, "available": levels["available"]}
