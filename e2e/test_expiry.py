"""Expiry, the race between paying and expiring, the scheduled rule, and the stock rebuild
after Redis lost a sale's data — end to end on LocalStack."""

import concurrent.futures
import json
import subprocess
import time

import pytest

from conftest import aws, bearer, new_sale, token
from payments import (
    assert_invariant, events_for, intents_of, pay, redis_levels, reservation_item, reserve, settle,
    status_of, wait_for_status,
)

# These tests read the events queue themselves: its consumer, the notifier, waits meanwhile.
pytestmark = pytest.mark.usefixtures("notifier_paused")

SHARDS = 4


def set_expires_at(outputs, reservation_id, expires_ms):
    """Moves a reservation's expiry (what the passing of its 10 minutes would do), keeping it in
    the expiry index (the index's sort key is expires_at)."""
    aws("dynamodb").update_item(
        TableName=outputs["ReservationsTableName"],
        Key={"reservation_id": {"S": reservation_id}},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": {"N": str(expires_ms)}},
    )


def run_cleanup(outputs):
    """Invokes the cleanup function directly (what the scheduled rule does every minute)."""
    fn = outputs["ExpiryCleanupFunctionName"]
    r = aws("lambda").invoke(FunctionName=fn, InvocationType="RequestResponse", Payload=b"{}")
    body = r["Payload"].read()
    assert "FunctionError" not in r, body
    return json.loads(body)


def now_ms():
    return int(time.time() * 1000)


def test_paying_after_expiry_is_refused_and_the_cleanup_expires_and_releases(api, http, admin_token, outputs):
    sale_id = new_sale(http, api, admin_token, stock=2, shards=SHARDS)
    tok = token("exp-late-payer")
    rid = reserve(http, api, sale_id, tok)["reservation_id"]
    set_expires_at(outputs, rid, now_ms() - 1000)
    refused = pay(http, api, rid, tok)
    assert refused.status_code == 410 and refused.json()["type"] == "/problems/reservation-expired"
    assert intents_of(rid) == []
    assert redis_levels(sale_id, SHARDS)["held"] == 1
    report = run_cleanup(outputs)
    assert report, report
    assert status_of(http, api, rid, tok) == "EXPIRED"
    assert "expiry_bucket" not in reservation_item(outputs, rid)
    levels = redis_levels(sale_id, SHARDS)
    assert (levels["available"], levels["held"], levels["sold"]) == (2, 0, 0)
    assert events_for(outputs, rid, "ReservationExpired"), "no ReservationExpired event"
    # Expired stays expired: paying now is still refused, a second run changes nothing.
    assert pay(http, api, rid, tok).status_code == 410
    run_cleanup(outputs)
    assert redis_levels(sale_id, SHARDS)["available"] == 2
    assert_invariant(sale_id, SHARDS, outputs)


def test_paying_while_the_expiry_worker_runs_exactly_one_wins(api, http, admin_token, outputs):
    n = 12
    sale_id = new_sale(http, api, admin_token, stock=n, shards=SHARDS, per_user_limit=1)
    buyers = []
    for i in range(n):
        tok = token(f"exp-racer-{i}")
        buyers.append((reserve(http, api, sale_id, tok)["reservation_id"], tok))
    deadline = now_ms() + 2500
    for rid, _ in buyers:
        set_expires_at(outputs, rid, deadline)

    def pay_around_the_deadline(i, rid, tok):
        # Spread the payments from 400 ms before to 400 ms after the deadline.
        at = deadline - 400 + i * 800 // (n - 1)
        time.sleep(max(0.0, (at - now_ms()) / 1000))
        return rid, tok, pay(http, api, rid, tok).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=n + 1) as pool:
        payments = [pool.submit(pay_around_the_deadline, i, rid, tok) for i, (rid, tok) in enumerate(buyers)]
        time.sleep(max(0.0, (deadline + 50 - now_ms()) / 1000))
        cleanups = [pool.submit(run_cleanup, outputs) for _ in range(2)]
        results = [f.result() for f in payments]
        for f in cleanups:
            f.result()
    run_cleanup(outputs)  # anything the racing runs did not reach
    outcomes = {"paid": 0, "expired": 0}
    for rid, tok, code in results:
        assert code in (202, 410), (rid, code)
        final = settle(http, api, outputs, rid, tok) if code == 202 else status_of(http, api, rid, tok)
        if code == 202:
            assert final == "CONFIRMED", (rid, final)
            outcomes["paid"] += 1
        else:
            assert final == "EXPIRED", (rid, final)
            assert intents_of(rid) == []
            outcomes["expired"] += 1
    assert outcomes["paid"] + outcomes["expired"] == n
    totals = assert_invariant(sale_id, SHARDS, outputs)
    assert totals["sold"] == outcomes["paid"] and totals["available"] == outcomes["expired"]


def test_a_sale_whose_redis_data_is_lost_pauses_is_rebuilt_exactly_and_sells_on(api, http, admin_token, outputs):
    stock = 10
    sale_id = new_sale(http, api, admin_token, stock=stock, shards=SHARDS, per_user_limit=1)
    held = [(reserve(http, api, sale_id, token(f"rb-holder-{i}"))["reservation_id"], token(f"rb-holder-{i}")) for i in range(3)]
    paid_id, paid_tok = held[0]
    assert pay(http, api, paid_id, paid_tok).status_code == 202
    assert settle(http, api, outputs, paid_id, paid_tok) == "CONFIRMED"
    # Redis loses this sale's keys (a failover without them, an eviction): every shard's record.
    keys = subprocess.run(["redis-cli", "-p", "6379", "--scan", "--pattern", f"fs:{{{sale_id}:*"], capture_output=True, text=True, check=True).stdout.split()
    assert keys
    subprocess.run(["redis-cli", "-p", "6379", "DEL", *keys], capture_output=True, check=True)
    # Selling refuses (503 + Retry-After), never treats the missing keys as zero or fresh stock.
    refused = http.post(f"{api}/sales/{sale_id}/reservations", json={}, headers={**bearer(token("rb-during")), "Idempotency-Key": "k1"}, timeout=30)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    # Buyers cannot rebuild; admins can.
    denied = http.post(f"{api}/sales/{sale_id}/stock/rebuild", headers=bearer(token("rb-mallory")), timeout=30)
    assert denied.status_code == 403
    rebuilt = http.post(f"{api}/sales/{sale_id}/stock/rebuild", headers=bearer(admin_token), timeout=30)
    assert rebuilt.status_code == 200, rebuilt.text
    levels = redis_levels(sale_id, SHARDS)
    assert (levels["initial"], levels["available"], levels["held"], levels["sold"]) == (stock, stock - 3, 2, 1), levels
    assert_invariant(sale_id, SHARDS, outputs)
    # The rebuilt holds still work: one is paid, the other expires.
    rid, tok = held[1]
    assert pay(http, api, rid, tok).status_code == 202
    assert settle(http, api, outputs, rid, tok) == "CONFIRMED"
    rid, tok = held[2]
    set_expires_at(outputs, rid, now_ms() - 1000)
    run_cleanup(outputs)
    assert status_of(http, api, rid, tok) == "EXPIRED"
    # Selling resumes and sells exactly what is left: 8 units among 12 new buyers.
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda i: http.post(f"{api}/sales/{sale_id}/reservations", json={},
                                                  headers={**bearer(token(f"rb-buyer-{i}")), "Idempotency-Key": f"rb-{i}"}, timeout=30).status_code, range(12)))
    assert codes.count(201) == stock - 2 and codes.count(410) == 12 - (stock - 2), codes
    totals = assert_invariant(sale_id, SHARDS, outputs)
    assert totals["available"] == 0 and totals["sold"] == 2 and totals["held"] == stock - 2


def test_the_scheduled_rule_runs_the_cleanup(api, http, admin_token, outputs):
    """No direct invoke here: the EventBridge rule (rate(1 minute)) must expire it."""
    sale_id = new_sale(http, api, admin_token, stock=1, shards=SHARDS)
    tok = token("exp-by-schedule")
    rid = reserve(http, api, sale_id, tok)["reservation_id"]
    set_expires_at(outputs, rid, now_ms() - 1000)
    assert wait_for_status(http, api, rid, tok, "EXPIRED", timeout=150) == "EXPIRED"
    assert redis_levels(sale_id, SHARDS)["available"] == 1
    assert_invariant(sale_id, SHARDS, outputs)
