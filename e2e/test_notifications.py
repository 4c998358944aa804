"""Telling the buyer (seed flows 2-4), end to end on LocalStack: the events queue -> the notifier
-> SES (email) and SNS mobile push, read back from LocalStack's inspection endpoints."""

import json
import time
import uuid

import requests

from conftest import ENDPOINT, aws, bearer, new_sale, sent_emails, token
from payments import pay, reserve, settle

SHARDS = 4
DOMAIN = "buyers.flashsale.test"


def emails_to(address):
    return [m for m in sent_emails() if address in m["Destination"]["ToAddresses"]]


def pushes_to(endpoint_arn):
    r = requests.get(f"{ENDPOINT}/_aws/sns/platform-endpoint-messages", params={"endpointArn": endpoint_arn}, timeout=10)
    r.raise_for_status()
    return r.json()["platform_endpoint_messages"].get(endpoint_arn, [])


def wait_for(probe, want, timeout=90):
    """Polls `probe` until it returns at least `want` items (or time runs out); the last answer."""
    deadline = time.monotonic() + timeout
    got = probe()
    while len(got) < want and time.monotonic() < deadline:
        time.sleep(1)
        got = probe()
    return got


def expire(outputs, reservation_id):
    from test_expiry import now_ms, run_cleanup, set_expires_at
    set_expires_at(outputs, reservation_id, now_ms() - 1000)
    run_cleanup(outputs)


def register_device(http, api, tok, device_token):
    return http.post(f"{api}/me/devices", json={"token": device_token}, headers=bearer(tok), timeout=30)


def test_each_end_of_a_reservation_reaches_the_buyer_once_by_email_and_push(api, http, admin_token, outputs):
    run = uuid.uuid4().hex[:6]
    sale_id = new_sale(http, api, admin_token, stock=5, shards=SHARDS, prefix="e2e-notify")
    users = {end: f"notify-{end}-{run}" for end in ("confirmed", "declined", "expired")}
    toks = {end: token(user) for end, user in users.items()}
    # The buyer whose reservation expires has a phone registered for push.
    device = register_device(http, api, toks["expired"], f"fcm-token-{run}")
    assert device.status_code == 201, device.text
    endpoint = device.json()["endpoint_arn"]
    assert endpoint.startswith("arn:aws:sns:")

    confirmed = reserve(http, api, sale_id, toks["confirmed"])["reservation_id"]
    assert pay(http, api, confirmed, toks["confirmed"]).status_code == 202
    assert settle(http, api, outputs, confirmed, toks["confirmed"]) == "CONFIRMED"
    declined = reserve(http, api, sale_id, toks["declined"])["reservation_id"]
    assert pay(http, api, declined, toks["declined"], method="pm_card_chargeDeclined").status_code == 202
    assert settle(http, api, outputs, declined, toks["declined"]) == "FAILED"
    expired = reserve(http, api, sale_id, toks["expired"])["reservation_id"]
    expire(outputs, expired)

    subjects = {
        "confirmed": "Your order is confirmed",
        "declined": "Your payment did not go through",
        "expired": "Your reservation expired",
    }
    for end, user in users.items():
        got = wait_for(lambda: emails_to(f"{user}@{DOMAIN}"), 1)
        assert [m["Subject"] for m in got] == [subjects[end]], (end, got)
        assert got[0]["Source"] == "notifications@flashsale.test"
    assert "EUR 19.99" in emails_to(f"{users['confirmed']}@{DOMAIN}")[0]["Body"]["text_part"]
    assert "declined" in emails_to(f"{users['declined']}@{DOMAIN}")[0]["Body"]["text_part"]
    pushed = wait_for(lambda: pushes_to(endpoint), 1)
    assert len(pushed) == 1 and "expired" in pushed[0]["Message"], pushed

    # The same event delivered again (SQS is at least once): nothing more is sent.
    item = aws("dynamodb").get_item(TableName=outputs["ReservationsTableName"], Key={"reservation_id": {"S": expired}},
                                    ConsistentRead=True)["Item"]
    again = {
        "event_id": f"{expired}:EXPIRED", "event_type": "ReservationExpired", "reservation_id": expired,
        "sale_id": sale_id, "user_id": users["expired"], "quantity": 1, "status": "EXPIRED",
        "email": item["email"]["S"],
    }
    sqs = aws("sqs")
    sqs.send_message(QueueUrl=outputs["EventsQueueUrl"], MessageBody=json.dumps(again))
    sqs.send_message(QueueUrl=outputs["EventsQueueUrl"], MessageBody=json.dumps(again))
    # A marker after them: once its email arrived, the duplicates were read too.
    marker = f"notify-marker-{run}"
    sqs.send_message(QueueUrl=outputs["EventsQueueUrl"], MessageBody=json.dumps({
        **again, "event_id": f"marker-{run}:EXPIRED", "reservation_id": f"marker-{run}", "user_id": marker,
        "email": f"{marker}@{DOMAIN}"}))
    assert wait_for(lambda: emails_to(f"{marker}@{DOMAIN}"), 1), "the marker's email never came"
    time.sleep(2)
    assert len(emails_to(f"{users['expired']}@{DOMAIN}")) == 1
    assert len(pushes_to(endpoint)) == 1


def test_device_registration_refuses_bad_tokens_with_a_problem(api, http):
    tok = token(f"notify-devices-{uuid.uuid4().hex[:6]}")
    for body in ({"token": ""}, {"token": "x" * 3000}, {"token": "has space"}):
        r = http.post(f"{api}/me/devices", json=body, headers=bearer(tok), timeout=30)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/invalid-device-token"
    r = http.post(f"{api}/me/devices", data="not json", headers=bearer(tok), timeout=30)
    assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-body", r.text
    assert http.post(f"{api}/me/devices", json={"token": "abc"}, timeout=30).status_code == 401
    # Registering the same token twice: the same endpoint.
    first = register_device(http, api, tok, "fcm-same-token")
    second = register_device(http, api, tok, "fcm-same-token")
    assert first.status_code == second.status_code == 201
    assert first.json()["endpoint_arn"] == second.json()["endpoint_arn"]
