"""Notifications: queued with the event that causes them, sent signed to a real HTTP receiver on
loopback, retried, shown to the admin, and their targets' URL and secret never shown again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from core.notify_targets import TargetSettings, add_target
from core.notifying import NotificationSender, NotifySettings, deliver_due
from db import connect
from db.notifications import Notice, queue_test, recent_deliveries
from tests.conftest import mint
from tests.helpers import WebhookReceiver, make_file, verify_standard_webhook, wait_for

URL = "/api/storage/public-download?token="
QUICK = NotifySettings(timeout=5, retry_seconds=0, attempts=3, poll_seconds=0.05)


@pytest.fixture
def receiver():
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


@pytest.fixture
def data(backups: Path) -> bytes:
    return make_file(backups, "db.sql.gz", 3000)


def add_webhook(app, db, receiver, events=tuple(Notice), target_id="ops", secret=None) -> str:
    settings = TargetSettings("Ops", receiver.url, secret, tuple(e for e in events if e != Notice.TEST))
    saved = add_target(db, app.extensions["oncelink_keyring"], target_id, settings, time.time())
    return secret or saved.new_secret


def send_due(app, db, settings: NotifySettings = QUICK) -> int:
    return deliver_due(db, app.extensions["oncelink_keyring"], settings, "test-sender")


def test_a_completed_download_is_told_signed_with_what_happened(app, client, db, receiver, data):
    secret = add_webhook(app, db, receiver)
    token = mint(app, "db.sql.gz")
    response = client.get(
        URL + token,
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
        headers={"User-Agent": "curl/8"},
        buffered=True,
    )
    assert response.status_code == 200 and response.data == data
    assert not receiver.received  # nothing is sent on the download's path
    assert send_due(app, db) == 1
    (hook,) = receiver.received
    assert hook.headers["content-type"] == "application/json"
    assert verify_standard_webhook(secret, hook, time.time())
    assert not verify_standard_webhook(secret, hook.__class__(hook.headers, hook.body + b" "), time.time())
    payload = hook.payload
    assert payload["type"] == "link.completed" and payload["timestamp"].endswith("Z")
    event = payload["data"]
    assert event["event"] == "completed" and event["bytes"] == len(data) and event["start"] == 0
    assert event["link"]["path"] == "db.sql.gz" and event["link"]["storage"] == "local"
    assert event["client"] == {"ip": "192.0.2.10", "userAgent": "curl/8"}
    assert token not in hook.body.decode()
    (delivery,) = recent_deliveries(db)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("sent", 1, 200)
    assert hook.headers["webhook-id"] == delivery.message_id
    assert send_due(app, db) == 0  # sent once


def test_each_target_hears_only_the_events_it_chose(app, client, db, receiver, data):
    add_webhook(app, db, receiver, events=(Notice.REJECTED,))
    token = mint(app, "db.sql.gz")
    client.get(URL + token, buffered=True)
    assert send_due(app, db) == 0  # a completed download: not asked for
    for _ in range(3):  # a used link tried three times in a minute: one row, one notification
        assert client.get(URL + token, buffered=True).status_code == 410
    client.get(URL + "no-such-token", buffered=True)  # no link: anyone's guess, not told
    assert send_due(app, db) == 1
    (hook,) = receiver.received
    assert hook.payload["type"] == "link.rejected" and hook.payload["data"]["reason"] == "used"


def test_a_second_address_is_told_once_with_the_addresses(app, client, db, receiver, data):
    add_webhook(app, db, receiver, events=(Notice.ADDRESSES,))
    token = mint(app, "db.sql.gz", uses=5)
    for address in ("192.0.2.1", "192.0.2.1", "198.51.100.2", "192.0.2.1", "198.51.100.2"):
        assert (
            client.get(URL + token, environ_base={"REMOTE_ADDR": address}, buffered=True).status_code == 200
        )
    assert send_due(app, db) == 1
    (hook,) = receiver.received
    assert hook.payload["type"] == "link.addresses"
    assert hook.payload["data"]["addresses"] == ["192.0.2.1", "198.51.100.2"]


def test_a_failed_delivery_is_retried_with_the_same_id_and_shown(app, client, db, auth, data):
    receiver = WebhookReceiver(statuses=(500,))
    try:
        secret = add_webhook(app, db, receiver, events=(Notice.COMPLETED,))
        client.get(URL + mint(app, "db.sql.gz"), buffered=True)
        patient = NotifySettings(timeout=5, retry_seconds=3, attempts=3)
        assert send_due(app, db, patient) == 1
        (delivery,) = recent_deliveries(db)
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
        assert delivery.next_at > time.time()  # waits its turn
        auth.login("admin")
        page = client.get("/admin/notifications").text
        assert "retrying" in page and "answered 500" in page
        assert send_due(app, db, patient) == 0
        wait_for(lambda: send_due(app, db, patient), "the retry, once due")
        first, second = receiver.received
        assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
        assert verify_standard_webhook(secret, second, time.time())
        (delivery,) = recent_deliveries(db)
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("sent", 2, 200)
        page = client.get("/admin/notifications").text
        assert '<span class="badge active">sent</span>' in page and "try 2" in page
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("statuses", "attempts", "error"),
    [((404,), 1, "answered 404 Not Found"), ((503, 503, 503), 3, "answered 503 Service Unavailable")],
)
def test_a_refusal_or_the_last_attempt_fails_for_good(app, client, db, auth, statuses, attempts, error):
    receiver = WebhookReceiver(statuses=statuses)
    try:
        add_webhook(app, db, receiver)
        queue_test(db, "ops", '{"type":"link.test"}', time.time())
        for _ in range(4):
            send_due(app, db)
        (delivery,) = recent_deliveries(db)
        assert (delivery.state, delivery.attempts, delivery.last_error) == ("failed", attempts, error)
        auth.login("admin")
        page = client.get("/admin/notifications").text
        assert '<span class="badge revoked">failed</span>' in page and error in page
        assert "receiver-only-t0ken" not in page
    finally:
        receiver.close()


def test_a_receiver_that_does_not_listen_is_a_failure_without_its_address(app, db, caplog):
    settings = TargetSettings(
        "Gone", "http://127.0.0.1:9/hook?token=receiver-only-t0ken", "s", ("completed",)
    )
    add_target(db, app.extensions["oncelink_keyring"], "gone", settings, time.time())
    queue_test(db, "gone", "{}", time.time())
    send_due(app, db)
    (delivery,) = recent_deliveries(db)
    assert (delivery.state, delivery.attempts) == ("failed", QUICK.attempts)  # no wait between tries here
    assert delivery.last_error == "could not connect: connection refused"
    assert "receiver-only-t0ken" not in caplog.text and "127.0.0.1:9" not in caplog.text
    assert "could not connect" in caplog.text


def test_two_senders_never_send_the_same_notification(app, db, receiver):
    add_webhook(app, db, receiver)
    for number in range(30):
        queue_test(db, "ops", json.dumps({"n": number}), time.time())
    keyring = app.extensions["oncelink_keyring"]

    def sender(name: str) -> None:
        own = connect(app.config["DATABASE"])
        try:
            deliver_due(own, keyring, QUICK, name)
        finally:
            own.close()

    threads = [threading.Thread(target=sender, args=(f"worker-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [hook.headers["webhook-id"] for hook in receiver.received]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert {delivery.state for delivery in recent_deliveries(db)} == {"sent"}


def test_a_claim_left_by_a_dead_sender_is_taken_over(app, db, receiver):
    add_webhook(app, db, receiver)
    queue_test(db, "ops", "{}", time.time())
    db.execute(
        "UPDATE notifications SET state = 'sending', claimed_by = 'dead', claimed_until = ?",
        [time.time() - 1],
    )
    assert send_due(app, db) == 1 and len(receiver.received) == 1
    (delivery,) = recent_deliveries(db)
    assert (delivery.state, delivery.attempts) == ("sent", 1)


def test_the_thread_of_a_worker_sends_what_is_queued(app, db, receiver):
    add_webhook(app, db, receiver)
    sender = NotificationSender(app.config["DATABASE"], app.extensions["oncelink_keyring"], QUICK)
    sender.start()
    try:
        queue_test(db, "ops", '{"type":"link.test"}', time.time())
        wait_for(lambda: receiver.received, "the sender's POST")
    finally:
        sender.stop(10)
    assert receiver.received[0].payload == {"type": "link.test"}


def test_no_target_no_queue(app, client, db, data):
    client.get(URL + mint(app, "db.sql.gz"), buffered=True)
    assert db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 0
