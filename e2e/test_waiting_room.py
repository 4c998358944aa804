"""The waiting room through API Gateway on LocalStack (seed flow 8): a crowd joins, only
admitted buyers reserve, in the order of the queue, nobody without a ticket, nothing oversold;
and losing the sale's Redis data mid-queue leaves admitted tickets valid."""

import concurrent.futures
import datetime
import subprocess
import time
import uuid

from conftest import bearer, mint, token
from payments import assert_invariant, redis_levels

SHARDS = 4


def room_sale(http, api, admin_token, stock, drain_per_sec, starts_in_s=-60, prefix="e2e-room"):
    sale_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    now = datetime.datetime.now(datetime.timezone.utc)
    iso = lambda t: t.isoformat().replace("+00:00", "Z")
    body = {
        "name": "Room drop",
        "total_stock": stock,
        "shards": SHARDS,
        "per_user_limit": 1,
        "price": {"amount_minor": 2500, "currency": "EUR"},
        "starts_at": iso(now + datetime.timedelta(seconds=starts_in_s)),
        "ends_at": iso(now + datetime.timedelta(hours=1)),
        "waiting_room": {"mode": "always", "drain_per_sec": drain_per_sec, "admission_window_seconds": 120},
    }
    r = http.put(f"{api}/sales/{sale_id}", json=body, headers=bearer(admin_token), timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["waiting_room"]["mode"] == "always"
    return sale_id


def join(http, api, sale_id, tok):
    for backoff in (0.2, 0.5, 1, 2, 0):
        r = http.post(f"{api}/sales/{sale_id}/queue", headers=bearer(tok), timeout=30)
        if r.status_code < 500:
            return r
        time.sleep(backoff)
    return r


def reserve(http, api, sale_id, tok, ticket=None, key=None):
    headers = {**bearer(tok), "Idempotency-Key": key or uuid.uuid4().hex}
    if ticket is not None:
        headers["Queue-Ticket"] = ticket
    return http.post(f"{api}/sales/{sale_id}/reservations", json={}, headers=headers, timeout=30)


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_a_crowd_joins_and_only_admitted_buyers_reserve_in_queue_order(api, http, admin_token, outputs):
    stock, crowd = 20, 40
    # 10 places a second: the crowd is admitted over about 4 s.
    sale_id = room_sale(http, api, admin_token, stock=stock, drain_per_sec=10)
    tokens = mint("--sub", f"room-{uuid.uuid4().hex[:6]}", "--count", str(crowd))
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        joined = list(pool.map(lambda t: join(http, api, sale_id, t), tokens))
    assert all(r.status_code == 201 for r in joined), [r.text for r in joined if r.status_code != 201][:3]
    places = [r.json() for r in joined]
    positions = sorted(p["position"] for p in places)
    assert positions == list(range(1, crowd + 1)), "one dense place per buyer"
    # Admission follows the queue: a later place is never admitted earlier.
    by_position = sorted(places, key=lambda p: p["position"])
    admits = [parse(p["admit_at"]) for p in by_position]
    assert admits == sorted(admits)
    # Joining again keeps the place.
    again = join(http, api, sale_id, tokens[0])
    assert again.status_code == 200 and again.json()["position"] == places[0]["position"]
    # Rate-limit headers on join; the public status, cacheable.
    assert "x-ratelimit-remaining" in {k.lower() for k in again.headers}
    status = http.get(f"{api}/sales/{sale_id}/queue", timeout=30)
    assert status.status_code == 200, status.text
    assert status.headers["cache-control"] == "public, max-age=1"
    assert status.json()["queue_length"] == crowd

    # Nobody reserves without a ticket, with a forged one, or with someone else's.
    outsider = token(f"room-outsider-{uuid.uuid4().hex[:6]}")
    no_ticket = reserve(http, api, sale_id, outsider)
    assert no_ticket.status_code == 403 and no_ticket.json()["type"] == "/problems/queue-required", no_ticket.text
    assert no_ticket.headers["content-type"] == "application/problem+json"
    stolen = reserve(http, api, sale_id, outsider, ticket=places[0]["ticket"])
    assert stolen.status_code == 403 and stolen.json()["type"] == "/problems/invalid-queue-ticket"
    head, payload, _sig = places[0]["ticket"].split(".")
    forged = reserve(http, api, sale_id, tokens[0], ticket=f"{head}.{payload}.AAAA")
    assert forged.status_code == 403 and forged.json()["type"] == "/problems/invalid-queue-ticket"

    # The last place is not admitted yet right now (it is ~4 s away): refused with Retry-After.
    last_tok = tokens[places.index(by_position[-1])]
    if parse(by_position[-1]["admit_at"]) - time.time() > 1.5:
        early = reserve(http, api, sale_id, last_tok, ticket=by_position[-1]["ticket"])
        assert early.status_code == 403 and early.json()["type"] == "/problems/not-admitted-yet", early.text
        assert int(early.headers["retry-after"]) >= 1

    # Each buyer reserves once its place is admitted; the order they get in is the queue's.
    def buy(i):
        place = places[i]
        wait = parse(place["admit_at"]) - time.time()
        if wait > 0:
            time.sleep(wait + 0.05)
        key = uuid.uuid4().hex
        for backoff in (0.2, 0.5, 1, 2, 0):
            r = reserve(http, api, sale_id, tokens[i], ticket=place["ticket"], key=key)
            if r.status_code < 500:
                return place["position"], r.status_code, time.time()
            time.sleep(backoff)
        return place["position"], r.status_code, time.time()

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(buy, range(crowd)))
    codes = [code for _, code, _ in results]
    assert codes.count(201) == stock, {c: codes.count(c) for c in set(codes)}
    assert codes.count(410) == crowd - stock, {c: codes.count(c) for c in set(codes)}
    # The units went to the front of the queue, give or take the buyers a thread pool of 16
    # started late: every winner is within the first stock + 16 places.
    winners = sorted(pos for pos, code, _ in results if code == 201)
    assert winners[-1] <= stock + 16, winners
    totals = assert_invariant(sale_id, SHARDS, outputs)
    assert totals["available"] == 0 and totals["held"] == stock, totals


def test_losing_the_sales_redis_data_mid_queue_keeps_admitted_tickets_valid(api, http, admin_token, outputs):
    sale_id = room_sale(http, api, admin_token, stock=5, drain_per_sec=50)
    tokens = [token(f"room-flush-{uuid.uuid4().hex[:6]}-{i}") for i in range(3)]
    places = [join(http, api, sale_id, t).json() for t in tokens]
    assert [p["position"] for p in places] == [1, 2, 3]
    time.sleep(0.2)  # all three admitted (50 a second)
    # Redis loses everything of this sale: the queue and the stock.
    keys = subprocess.run(["redis-cli", "-p", "6379", "--scan", "--pattern", f"fs:{{*{sale_id}*"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert any(k.startswith("fs:{wr:") for k in keys) and any(k.endswith(":stock") for k in keys), keys
    subprocess.run(["redis-cli", "-p", "6379", "DEL", *keys], capture_output=True, check=True)
    # The stock comes back from the durable records (reserve asks for the rebuild; an admin may too).
    rebuilt = http.post(f"{api}/sales/{sale_id}/stock/rebuild", headers=bearer(admin_token), timeout=30)
    assert rebuilt.status_code == 200, rebuilt.text
    # The admitted tickets still admit: the queue's state was not needed for that.
    for tok, place in zip(tokens, places):
        r = reserve(http, api, sale_id, tok, ticket=place["ticket"])
        assert r.status_code == 201, r.text
    # Without a ticket still nobody gets in; a new join starts a new queue.
    assert reserve(http, api, sale_id, token(f"room-flush-late-{uuid.uuid4().hex[:6]}")).status_code == 403
    newcomer = join(http, api, sale_id, token(f"room-flush-new-{uuid.uuid4().hex[:6]}"))
    assert newcomer.status_code == 201 and newcomer.json()["state"] == "admitted", newcomer.text
    levels = redis_levels(sale_id, SHARDS)
    assert (levels["initial"], levels["held"], levels["available"]) == (5, 3, 2), levels
    assert_invariant(sale_id, SHARDS, outputs)


def test_before_the_opening_buyers_wait_in_the_pre_queue(api, http, admin_token):
    sale_id = room_sale(http, api, admin_token, stock=5, drain_per_sec=10, starts_in_s=600)
    tok = token(f"room-pre-{uuid.uuid4().hex[:6]}")
    r = join(http, api, sale_id, tok)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "pre_queue" and len(body["seed_commitment"]) == 64
    assert 590 <= int(r.headers["retry-after"]) <= 600
    status = http.get(f"{api}/sales/{sale_id}/queue", timeout=30).json()
    assert status["state"] == "pre_queue" and status["pre_queue_size"] == 1 and "seed" not in status
