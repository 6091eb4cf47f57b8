"""/healthz and /metrics through the test client: every part named, 503 for the one that fails (a
storage gone, a database another writer holds, too little free space), nothing about where things
are, a round of checks that serves a few seconds and never runs a hung check twice; metrics only
with the token, counting what a download did; JSON log lines without tokens."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.health import HealthMonitor, HealthSettings, Unhealthy
from core.log_lines import JsonLines
from core.storages import add_local_storage
from db import connect
from tests.conftest import add_s3, free_port, make_app, mint

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def checked_app(tmp_path, backups):
    """An app whose /healthz checks afresh on every request, within half a second."""
    app = make_app(
        tmp_path / "instance", backups, HEALTH_CACHE_SECONDS=0, HEALTH_TIMEOUT=0.5, METRICS_TOKEN=TOKEN
    )
    yield app
    app.extensions["oncelink_purge"].wait()


def healthz(app, **headers) -> tuple[int, dict]:
    response = app.test_client().get("/healthz", headers=headers)
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, response.get_json()


def test_all_parts_healthy(client):
    status, body = healthz(client.application)
    assert status == 200
    assert body["status"] == "ok" and body["failing"] == []
    assert body["checks"] == {part: {"status": "ok"} for part in ("database", "disk", "storage:local")}


def test_a_storage_that_is_gone_is_named_without_its_path(checked_app, tmp_path):
    gone = tmp_path / "elsewhere" / "nightly"
    gone.mkdir(parents=True)
    db = connect(checked_app.config["DATABASE"])
    add_local_storage(db, "nightly", str(gone), "Nightly")
    db.close()
    assert healthz(checked_app)[0] == 200
    shutil.rmtree(gone)
    status, body = healthz(checked_app)
    assert status == 503
    assert body["status"] == "fail" and body["failing"] == ["storage:nightly"]
    assert body["checks"]["storage:nightly"] == {"status": "fail", "problem": "did not answer"}
    assert body["checks"]["storage:local"] == {"status": "ok"}
    assert "elsewhere" not in json.dumps(body)


def test_an_unreachable_s3_endpoint_hides_its_address_and_secret(checked_app):
    add_s3(
        checked_app,
        "offsite",
        f"http://127.0.0.1:{free_port()}",
        "secret-bucket-name",
        secret_access_key="s3-secret-value",
    )
    status, body = healthz(checked_app)
    assert status == 503 and body["failing"] == ["storage:offsite"]
    assert body["checks"]["storage:offsite"]["problem"] in ("did not answer", "no answer within 0.5 s")
    _, detailed = healthz(checked_app, Authorization=f"Bearer {TOKEN}")
    for answer in (body, detailed):
        text = json.dumps(answer)
        assert "127.0.0.1" not in text and "s3-secret-value" not in text and "http" not in text
    assert "detail" not in body["checks"]["storage:offsite"]


def test_a_database_that_cannot_be_written_within_the_timeout(checked_app):
    holder = connect(checked_app.config["DATABASE"])
    holder.conn.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        status, body = healthz(checked_app, Authorization=f"Bearer {TOKEN}")
    finally:
        holder.conn.execute("ROLLBACK")
        holder.close()
    assert status == 503 and body["failing"] == ["database"]
    assert body["checks"]["database"] == {
        "status": "fail",
        "problem": "cannot write",
        "detail": "database is locked",
    }
    assert healthz(checked_app)[0] == 200


def test_too_little_free_space(tmp_path, backups):
    app = make_app(tmp_path / "instance", backups, HEALTH_MIN_FREE_MIB=10**12)
    status, body = healthz(app)
    assert status == 503 and body["failing"] == ["disk"]
    assert body["checks"]["disk"]["problem"] == f"less than {10**12:.1f} MiB free"
    app.extensions["oncelink_purge"].wait()


def test_one_round_answers_for_a_few_seconds(app, backups):
    """The default: a round serves 5 s, so a flood of /healthz costs one round of checks."""
    first = healthz(app)
    shutil.rmtree(backups)
    assert healthz(app) == first  # the same round: same answer, same time
    assert first[0] == 200


def test_a_hung_check_is_waited_for_again_not_started_twice():
    release, calls = threading.Event(), []

    def hangs() -> None:
        calls.append(1)
        release.wait()

    def fails() -> None:
        raise Unhealthy("cannot write", "disk I/O error")

    monitor = HealthMonitor(HealthSettings(0, timeout=0.2, cache_seconds=0))
    try:
        for now in (1.0, 2.0):
            health = monitor.health(lambda: {"storage:slow": hangs, "database": fails}, now)
            assert health.failing == ["storage:slow", "database"]
            assert health.checks[0].problem == "no answer within 0.2 s"
        assert calls == [1]
    finally:
        release.set()


def test_metrics_need_the_token(app, checked_app):
    assert app.test_client().get("/metrics").status_code == 404  # no token set: no metrics
    client = checked_app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert "oncelink_transfers_started_total" in answer.get_data(as_text=True)


def test_json_log_lines_keep_the_redaction():
    try:
        raise ValueError("bad /api/storage/public-download?token=secret-exception")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "gunicorn.access",
        logging.INFO,
        __file__,
        1,
        "%(r)s %(s)s",
        {
            "r": "GET /dl?token=secret-one HTTP/1.1",
            "s": "200",
            "m": "GET",
            "U": "/dl",
            "q": "token=secret-one",
            "{authorization}i": "Bearer metrics-secret",
        },
        exc_info,
    )
    line = JsonLines().format(record)
    assert "secret" not in line and "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "GET /dl?token=[redacted] HTTP/1.1 200"
    assert fields["query"] == "token=[redacted]" and fields["method"] == "GET" and fields["status"] == "200"
    assert fields["level"] == "INFO" and fields["logger"] == "gunicorn.access"
    assert "ValueError" in fields["exception"]


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, read by prometheus-client's own parser."""
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_a_download_and_its_refused_second_try(checked_app, backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "dump.sql").write_bytes(b"x" * 5000)
    client = checked_app.test_client()
    before = scrape(client)
    token = mint(checked_app, "dump.sql")
    url = f"/api/storage/public-download?token={token}"
    assert client.get(url, buffered=True).status_code == 200
    assert client.get(url, buffered=True).status_code == 410
    after = scrape(client)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("oncelink_transfers_started_total", mode="stored") == 1
    assert grew("oncelink_transfers_completed_total", mode="stored") == 1
    assert grew("oncelink_transfers_rejected_total", reason="used") == 1
    assert grew("oncelink_bytes_sent_total", storage_kind="local") == 5000
    assert after[("oncelink_active_transfers", ())] == before[("oncelink_active_transfers", ())]
    download = dict(endpoint="public.download", method="GET", status="200")
    assert grew("oncelink_request_duration_seconds_count", **download) == 1
