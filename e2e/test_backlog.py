"""Surviving a backlog (seed flow 11), on LocalStack: the notifier stops, 5,000 events pile up,
the backlog alarm goes to ALARM, the notifier starts again and drains them; every event's email
is sent exactly once and nothing lands on the DLQ. Prints the drain rate (BENCHMARKS.md)."""

import concurrent.futures
import datetime
import json
import os
import time
import uuid

import requests

from conftest import ENDPOINT, aws, sent_emails, set_notifier

EVENTS = int(os.environ.get("DRAIN_EVENTS", "5000"))
DOMAIN = "buyers.flashsale.test"


def emails_from_run(run):
    return [m["Destination"]["ToAddresses"][0] for m in sent_emails()
            if m["Destination"]["ToAddresses"][0].startswith(f"drain-{run}-")]


def backlog_alarm():
    alarms = aws("cloudwatch").describe_alarms()["MetricAlarms"]
    found = [a for a in alarms if "EventsBacklog" in a["AlarmName"]]
    assert len(found) == 1, [a["AlarmName"] for a in alarms]
    return found[0]


def test_a_backlog_of_5000_events_raises_the_alarm_and_drains_exactly_once(outputs):
    run = uuid.uuid4().hex[:8]
    sqs = aws("sqs")
    queue = outputs["EventsQueueUrl"]
    try:
        set_notifier(outputs, False)

        def send(chunk):
            entries = [{"Id": str(i), "MessageBody": json.dumps({
                "event_id": f"drain-{run}-{i}:EXPIRED", "event_type": "ReservationExpired",
                "reservation_id": f"drain-{run}-{i}", "sale_id": "drain", "user_id": f"drain-{run}-{i}",
                "quantity": 1, "status": "EXPIRED", "email": f"drain-{run}-{i}@{DOMAIN}"})} for i in chunk]
            out = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
            assert not out.get("Failed"), out["Failed"]

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, [range(i, min(i + 10, EVENTS)) for i in range(0, EVENTS, 10)]))
        print(f"sent {EVENTS} events in {time.monotonic() - started:.1f}s")
        # The depth alarm (more than 1,000 visible for a minute) goes to ALARM. LocalStack reports
        # queue depths every 10 s here and evaluates the alarm once a period (60 s).
        deadline = time.monotonic() + 200
        since = datetime.datetime.now(datetime.timezone.utc)

        def alarmed_now():
            alarm = backlog_alarm()
            return alarm["StateValue"] == "ALARM" and alarm["StateUpdatedTimestamp"] >= since - datetime.timedelta(seconds=5)

        while not alarmed_now():
            assert time.monotonic() < deadline, f"the backlog alarm stayed {backlog_alarm()['StateValue']}"
            time.sleep(5)
        alarmed = time.monotonic() - started
        print(f"backlog alarm in ALARM {alarmed:.0f}s after the first event was sent")
    finally:
        set_notifier(outputs, True)
    restarted = time.monotonic()
    deadline = restarted + 600
    sent = emails_from_run(run)
    while len(sent) < EVENTS:
        assert time.monotonic() < deadline, f"drained {len(sent)} of {EVENTS} in 600 s"
        time.sleep(5)
        sent = emails_from_run(run)
    drained = time.monotonic() - restarted
    print(f"DRAIN: {EVENTS} events drained in {drained:.1f}s after the restart ({EVENTS / drained:.0f} events/s)")
    # Every message acknowledged: none visible, none in flight (a message in flight could come
    # again and, failing, reach the DLQ). Then nothing more can be sent, and what was sent is
    # exactly one email per event.
    deadline = time.monotonic() + 60
    while True:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        assert time.monotonic() < deadline, f"messages left after the drain: {attrs}"
        time.sleep(2)
    sent = emails_from_run(run)
    assert len(sent) == EVENTS and len(set(sent)) == EVENTS, (len(sent), len(set(sent)))
    # Leave LocalStack's mail box small for the tests after this one.
    requests.delete(f"{ENDPOINT}/_aws/ses", timeout=60).raise_for_status()
