"""Notifications from real gunicorn workers to a real receiver on loopback: a download never waits
for the receiver, two workers send each notification once, and a restart loses none."""

from __future__ import annotations

import time

import pytest

from core.notify_targets import TargetSettings, add_target
from db import connect
from db.notifications import recent_deliveries
from tests.helpers import (
    WebhookReceiver,
    connection_per_worker,
    curl,
    make_file,
    verify_standard_webhook,
    wait_for,
)

SECRET = "whsec_" + "bGl2ZS10ZXN0LXNlY3JldC1vZi0zMi1ieXRlcy1sb25n"
SIZE = 3 * 1024 * 1024


@pytest.fixture
def receiver():
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


def add_webhook(server, receiver) -> None:
    db = connect(server.app.config["DATABASE"])
    try:
        settings = TargetSettings("Ops", receiver.url, SECRET, ("completed",))
        add_target(db, server.app.extensions["oncelink_keyring"], "ops", settings, time.time())
    finally:
        db.close()


def deliveries(server) -> list:
    db = connect(server.app.config["DATABASE"])
    try:
        return recent_deliveries(db)
    finally:
        db.close()


def download(server, name: str, folder) -> bytes:
    target = folder / name
    result = curl("-f", "-o", str(target), server.link(name))
    assert result.returncode == 0, result.stderr
    return target.read_bytes()


def test_downloads_never_wait_for_a_receiver_and_each_is_told_once(start_server, receiver, tmp_path):
    server = start_server(settings={"ONCELINK_NOTIFY_POLL_SECONDS": "0.1"})
    add_webhook(server, receiver)
    files = {name: make_file(server.backups, name, SIZE) for name in ("one.bin", "two.bin", "three.bin")}
    receiver.hold()  # the receiver takes the first POST and does not answer
    for name, data in files.items():
        assert download(server, name, tmp_path) == data
    wait_for(lambda: receiver.received, "the first notification, held")
    assert {delivery.state for delivery in deliveries(server)} <= {"pending", "sending"}
    receiver.release()
    wait_for(lambda: {d.state for d in deliveries(server)} == {"sent"}, "every notification sent")
    paths = sorted(hook.payload["data"]["link"]["path"] for hook in receiver.received)
    assert paths == sorted(files)  # two workers, one POST each
    assert all(verify_standard_webhook(SECRET, hook, time.time()) for hook in receiver.received)
    assert "receiver-only-t0ken" not in server.error_log.read_text() + server.access_log.read_text()


def test_a_notification_queued_before_a_restart_is_sent_after_it(start_server, receiver, tmp_path):
    idle = start_server(settings={"ONCELINK_NOTIFY_POLL_SECONDS": "3600"})  # looks once, at start
    with connection_per_worker(idle):
        pass  # both workers serve, so both have looked, before anything is queued
    add_webhook(idle, receiver)
    data = make_file(idle.backups, "db.sql.gz", SIZE)
    assert download(idle, "db.sql.gz", tmp_path) == data
    wait_for(lambda: deliveries(idle), "the queued notification")
    idle.stop()
    assert [d.state for d in deliveries(idle)] == ["pending"] and not receiver.received
    restarted = start_server(settings={"ONCELINK_NOTIFY_POLL_SECONDS": "0.1"})
    wait_for(
        lambda: [d.state for d in deliveries(restarted)] == ["sent"], "the notification, after the restart"
    )
    (hook,) = receiver.received
    assert hook.payload["type"] == "link.completed" and hook.payload["data"]["bytes"] == SIZE
