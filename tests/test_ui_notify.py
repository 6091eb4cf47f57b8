"""The admin's notifications page and the `notify` CLI: targets added, edited, tested and removed,
their URL and secret never shown again nor stored in clear."""

from __future__ import annotations

import time

import pytest

from db.notifications import get_target, recent_deliveries
from tests.helpers import WebhookReceiver, database_text, verify_standard_webhook

SECRET = "whsec_" + "c2VjcmV0LWtleS1vZi10aGUtcmVjZWl2ZXItMzItYnl0ZXM="


@pytest.fixture
def receiver():
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


def add_form(auth, receiver, **fields) -> dict:
    form = {
        "csrf_token": auth.csrf_token,
        "target_id": "ops",
        "name": "Ops room",
        "url": receiver.url,
        "events": ["completed", "rejected"],
    }
    return {**form, **fields}


def stored_in_clear(db, *texts: str) -> bool:
    dump = database_text(db)
    return any(text in dump for text in texts)


def test_the_admin_adds_a_webhook_whose_url_and_secret_are_never_shown(app, client, auth, db, receiver):
    auth.login("admin")
    answer = client.post("/admin/notifications", data=add_form(auth, receiver, secret=SECRET))
    assert answer.status_code == 303
    page = client.get("/admin/notifications").text
    assert "Ops room" in page and "http://127.0.0.1:" in page and "completed, rejected" in page
    edit = client.get("/admin/notifications/ops").text
    for shown in (page, edit):
        assert "receiver-only-t0ken" not in shown and "/hooks/oncelink" not in shown and SECRET not in shown
    assert not stored_in_clear(db, "receiver-only-t0ken", SECRET)
    assert get_target(db, "ops").events == ("completed", "rejected")


def test_a_generated_secret_is_shown_once_and_signs(app, client, auth, db, receiver):
    auth.login("admin")
    answer = client.post("/admin/notifications", data=add_form(auth, receiver))
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    secret = answer.text.split('<pre id="new-secret">', 1)[1].split("</pre>", 1)[0]
    assert secret.startswith("whsec_") and "will not be shown again" in answer.text
    assert secret not in client.get("/admin/notifications").text
    assert secret not in client.get("/admin/notifications/ops").text
    runner = app.test_cli_runner()
    result = runner.invoke(args=["notify", "test", "ops"])
    assert result.exit_code == 0, result.output
    assert "answered 200" in result.output
    (hook,) = receiver.received
    assert hook.payload["type"] == "link.test" and verify_standard_webhook(secret, hook, time.time())


def test_an_edit_with_empty_url_and_secret_keeps_them(app, client, auth, db, receiver):
    auth.login("admin")
    client.post("/admin/notifications", data=add_form(auth, receiver, secret=SECRET))
    before = get_target(db, "ops")
    form = {"csrf_token": auth.csrf_token, "name": "Renamed", "url": "", "secret": "", "events": ["aborted"]}
    answer = client.post("/admin/notifications/ops", data={**form, "enabled": ["0", "1"]})
    assert answer.status_code == 303
    after = get_target(db, "ops")
    assert (after.url, after.secret, after.name, after.events) == (
        before.url,
        before.secret,
        "Renamed",
        ("aborted",),
    )
    client.post("/admin/notifications/ops", data={**form, "enabled": "0"})
    assert get_target(db, "ops").enabled is False
    assert "disabled" in client.get("/admin/notifications").text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "ftp://example.com/x?token=receiver-only-t0ken"}, "must be an http:// or https:// address"),
        ({"events": []}, "Choose at least one event"),
        ({"target_id": "Not An Id"}, "A target id is lower-case letters"),
    ],
)
def test_a_refused_form_says_why_and_never_echoes_the_url(client, auth, receiver, fields, message):
    auth.login("admin")
    answer = client.post("/admin/notifications", data=add_form(auth, receiver, secret=SECRET, **fields))
    assert answer.status_code == 400 and message in answer.text
    assert "receiver-only-t0ken" not in answer.text and SECRET not in answer.text
    assert 'value="Ops room"' in answer.text  # the rest of what was typed stays


def test_the_test_button_queues_and_remove_drops_the_target(client, auth, db, receiver):
    auth.login("admin")
    client.post("/admin/notifications", data=add_form(auth, receiver, secret=SECRET))
    answer = client.post("/admin/notifications/ops/test", data={"csrf_token": auth.csrf_token})
    assert answer.status_code == 303
    (queued,) = recent_deliveries(db)
    assert (queued.notice, queued.state) == ("test", "pending")
    assert '<span class="badge">queued</span>' in client.get("/admin/notifications").text
    removed = client.post("/admin/notifications/ops/remove", headers={**auth.headers(), "HX-Request": "true"})
    assert removed.headers["HX-Redirect"] == "/admin/notifications"
    assert get_target(db, "ops") is None and recent_deliveries(db) == []
    assert client.get("/admin/notifications/ops").status_code == 404


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_admins_see_notifications(client, auth, role):
    auth.login(role)
    assert client.get("/admin/notifications").status_code == 403


def test_the_cli_adds_lists_and_logs_without_showing_the_url(app, runner, db, receiver, monkeypatch):
    monkeypatch.setenv("ONCELINK_NOTIFY_URL", receiver.url)
    added = runner.invoke(args=["notify", "add", "ops", "--events", "completed,aborted"])
    assert added.exit_code == 0, added.output
    assert "Signing secret (shown once" in added.output and "receiver-only-t0ken" not in added.output
    listed = runner.invoke(args=["notify", "list"])
    assert (
        listed.output.startswith("ops\tenabled\thttp://127.0.0.1:")
        and "receiver-only-t0ken" not in listed.output
    )
    assert runner.invoke(args=["notify", "test", "ops"]).exit_code == 0
    logged = runner.invoke(args=["notify", "log"])
    assert "\tsent\t1\tops\ttest\t" in logged.output and "answered 200" in logged.output
    unknown = runner.invoke(args=["notify", "add", "ops2", "--events", "completed,bogus"])
    assert unknown.exit_code != 0 and "Unknown events: bogus" in unknown.output
    assert runner.invoke(args=["notify", "remove", "ops"]).exit_code == 0
    missing = runner.invoke(args=["notify", "remove", "ops"])
    assert missing.exit_code != 0 and "No notification target 'ops'" in missing.output
