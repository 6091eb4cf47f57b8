"""The purge at scale: exactly the links long dead go, in batches, through indexes, in the
background after a mint and never in the mint itself."""

from __future__ import annotations

import math
import threading
import time

import pytest

from core import purging
from core.accounts import create_api_key
from core.history import LinkQuery, history_page
from db import inserted_id, write_transaction
from db.events import list_events
from db.links import FEW, LinkState, list_links
from db.verdicts import save_tag_verdict, tag_verdict
from tests.conftest import Auth

NOW = time.time()
DAY = 86400
RETENTION = 7 * DAY
LONG_AGO = NOW - 30 * DAY  # dead for longer than the retention
LATELY = NOW - DAY  # dead, but within the retention
LATER = NOW + DAY
LINKS = 100_000
URL = "/api/storage/local/download-url"

# (expires_at, max_uses, uses, revoked_at, last_used_at, has a running claim, purged), by id % 20.
KINDS = [
    (LATER, 1, 0, None, None, False, False),  # alive
    (LONG_AGO, 1, 0, None, None, False, True),  # expired long ago
    (LATELY, 1, 0, None, None, False, False),  # expired lately
    (LATER, 1, 0, LONG_AGO, None, False, True),  # revoked long ago
    (LATER, 1, 0, LATELY, None, False, False),  # revoked lately
    (LATER, 1, 1, None, LONG_AGO, False, True),  # used up long ago
    (LATER, 1, 1, None, LATELY, False, False),  # used up lately
    (LATER, 3, 1, None, LONG_AGO, False, False),  # used long ago, uses left
    (LONG_AGO, 1, 1, LONG_AGO, LONG_AGO, False, True),  # dead in every way
    (LONG_AGO, 2, 1, None, LONG_AGO, True, False),  # expired, its last transfer still running
    (LATER, 1, 0, LONG_AGO, None, True, False),  # revoked, its transfer not stopped yet
    (LATER, 2, 1, None, LONG_AGO, True, False),  # its last use running
    *[(LATER, 1, 0, None, None, False, False)] * 8,  # most links are alive
]


def kind_of(link_id: int) -> tuple:
    return KINDS[link_id % len(KINDS)]


def build_install(db) -> None:
    """LINKS links of every kind, each with an old event and a recent one, and events of unknown
    tokens old and recent; inserted in one transaction, as fast as SQLite takes them."""
    links = [
        (link_id, f"hash-{link_id}", "local", "db.sql.gz", NOW - 40 * DAY, *kind_of(link_id)[:5])
        for link_id in range(1, LINKS + 1)
    ]
    with write_transaction(db):
        db.conn.executemany(
            "INSERT INTO links (id, token_hash, storage_id, path, created_at, expires_at, max_uses, uses,"
            " revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            links,
        )
        db.conn.executemany(
            "INSERT INTO claims (id, link_id, counts, length, started_at, lease_until)"
            " VALUES (?, ?, 1, 4, ?, ?)",
            ((f"claim-{row[0]}", row[0], NOW, NOW + 3600) for row in links if kind_of(row[0])[5]),
        )
        events = [(row[0], "created", NOW - 40 * DAY) for row in links]
        events += [(row[0], "rejected", LATELY) for row in links]
        events += [(None, "rejected", at) for at in (LONG_AGO, LATELY) for _ in range(1000)]
        db.conn.executemany("INSERT INTO link_events (link_id, event, at) VALUES (?, ?, ?)", events)


def ids(db, sql: str, params: tuple = ()) -> set:
    return {row[0] for row in db.execute(sql, params).fetchall()}


def test_the_purge_deletes_exactly_the_links_long_dead_among_100000_in_batches(db):
    build_install(db)
    purged = {link_id for link_id in range(1, LINKS + 1) if kind_of(link_id)[6]}
    events_before = ids(db, "SELECT id FROM link_events")
    old_orphans = ids(db, "SELECT id FROM link_events WHERE link_id IS NULL AND at = ?", (LONG_AGO,))
    old_of_purged = {
        row[0]
        for row in db.execute("SELECT id, link_id FROM link_events WHERE event = 'created'").fetchall()
        if row[1] in purged
    }

    steps = list(purging.purge_steps(db, RETENTION, NOW, batch_size=500))

    assert ids(db, "SELECT id FROM links") == set(range(1, LINKS + 1)) - purged
    assert ids(db, "SELECT id FROM link_events") == events_before - old_orphans - old_of_purged
    assert len(ids(db, "SELECT id FROM claims")) == sum(kind_of(i)[5] for i in range(1, LINKS + 1))
    link_steps = [step.links for step in steps if step.links]
    event_steps = [step.events for step in steps if step.events]
    assert max(link_steps + event_steps) == 500  # full batches, and none larger
    assert len(link_steps) == math.ceil(len(purged) / 500)
    assert len(event_steps) == math.ceil(len(old_orphans | old_of_purged) / 500)
    assert purging.purge_dead_links(db, RETENTION, NOW) == 0  # nothing left to find


def query_plans(db, action) -> list[str]:
    """SQLite's plan for every statement that `action` runs on `db`."""
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        db.conn.set_trace_callback(None)
    queries = [sql for sql in statements if sql.split()[0].upper() in ("SELECT", "DELETE")]
    return [row[3] for sql in queries for row in db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()]


def full_scans(plans: list[str]) -> list[str]:
    """Steps that read a whole table or sort all it found: what grows with every link kept."""
    scans = ("SCAN links", "SCAN link_events")
    return [step for step in plans if step.startswith(scans) or "B-TREE FOR ORDER BY" in step]


@pytest.mark.sqlite_only
def test_the_purge_finds_its_rows_through_indexes(db):
    build_install(db)
    plans = query_plans(db, lambda: purging.purge_dead_links(db, RETENTION, NOW, batch_size=500))
    assert plans and full_scans(plans) == []


def test_the_purge_forgets_dbackup_tag_verdicts_older_than_the_retention_and_keeps_the_rest(db):
    for number, at in enumerate([LONG_AGO] * 1200 + [LATELY] * 3):
        save_tag_verdict(db, f"identity-{number}", number % 2 == 0, at)
    steps = list(purging.purge_steps(db, RETENTION, NOW, batch_size=500))
    assert [step.verdicts for step in steps if step.verdicts] == [500, 500, 200]
    assert ids(db, "SELECT identity FROM tag_verdicts") == {
        f"identity-{number}" for number in (1200, 1201, 1202)
    }
    assert tag_verdict(db, "identity-1200") is True and tag_verdict(db, "identity-1201") is False


PAGES = [LinkQuery(), *(LinkQuery(state=state) for state in LinkState), LinkQuery(name="db.sql")]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("query", PAGES, ids=lambda query: query.state or query.name or "all")
def test_the_links_page_and_api_read_only_the_page_of_links_and_their_events(app, db, query):
    build_install(db)
    admin = Auth(app, None).create("admin", "admin")
    operator = Auth(app, None).create("ops", "operator")
    db.execute("UPDATE links SET created_by = ? WHERE id % 3 = 0", [operator.id])
    for user in (admin, operator):
        plans = query_plans(db, lambda user=user: history_page(db, user, query, NOW))
        newest_first = [step for step in plans if step.startswith("SCAN links")]
        assert full_scans(plans) == newest_first  # the admin's page reads links newest first...
        assert len(newest_first) <= (user is admin and query.state not in FEW)  # ...and stops at a page
    assert [link.id for link in list_links(db, operator.id)][:2] == [99999, 99996]
    assert [event.event for event in list_events(db, 99999)] == ["created", "rejected"]


@pytest.fixture
def api(app, db, backups) -> dict:
    """An API key's headers, and a file to mint links to."""
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(b"dump")
    Auth(app, None).create("robot", "operator")
    return {"Authorization": f"Bearer {create_api_key(db, 'robot', time.time(), None)[0]}"}


def long_dead_link(db) -> int:
    return inserted_id(
        db,
        "INSERT INTO links (token_hash, storage_id, path, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        ["dead", "local", "db.sql.gz", LONG_AGO, LONG_AGO],
    )


def link_exists(db, link_id: int) -> bool:
    return db.execute("SELECT COUNT(*) FROM links WHERE id = ?", [link_id]).fetchone()[0] == 1


class BlockedPurge:
    """Stands in for the purge's steps: counts the purges started and holds each until released."""

    def __init__(self):
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, *_args, **_kwargs):
        self.calls += 1
        self.started.release()
        assert self.release.wait(30), "the test never released the purge"
        return iter(())


def test_minting_answers_without_waiting_for_the_purge_it_starts(app, client, db, api, monkeypatch):
    purge = app.extensions["oncelink_purge"]
    monkeypatch.setattr(purge, "interval_seconds", 0)
    blocked = BlockedPurge()
    monkeypatch.setattr(purging, "purge_steps", blocked)
    first = client.post(URL, json={"file": "db.sql.gz"}, headers=api)
    assert first.status_code == 200  # answered while its purge is held
    assert blocked.started.acquire(timeout=30)
    assert client.post(URL, json={"file": "db.sql.gz"}, headers=api).status_code == 200
    assert blocked.calls == 1  # a purge was running: none more
    blocked.release.set()
    purge.wait()
    assert client.post(URL, json={"file": "db.sql.gz"}, headers=api).status_code == 200
    purge.wait()
    assert blocked.calls == 2


def test_a_worker_purges_at_most_once_per_interval(app, client, db, api, monkeypatch):
    """The default interval is a minute, counted from the start: a fresh app's mints purge nothing."""
    dead = long_dead_link(db)
    for _ in range(3):
        assert client.post(URL, json={"file": "db.sql.gz"}, headers=api).status_code == 200
    app.extensions["oncelink_purge"].wait()
    assert link_exists(db, dead)
    monkeypatch.setattr(app.extensions["oncelink_purge"], "interval_seconds", 0)
    assert client.post(URL, json={"file": "db.sql.gz"}, headers=api).status_code == 200
    app.extensions["oncelink_purge"].wait()
    assert not link_exists(db, dead)


def test_one_process_purges_at_a_time(app, client, db, api, monkeypatch):
    """Another process holding the purge lock: this one leaves the round to it."""
    monkeypatch.setattr(app.extensions["oncelink_purge"], "interval_seconds", 0)
    dead = long_dead_link(db)
    with purging.purge_lock(app.config["DATABASE"]) as ours:
        assert ours
        assert client.post(URL, json={"file": "db.sql.gz"}, headers=api).status_code == 200
        app.extensions["oncelink_purge"].wait()
        assert link_exists(db, dead)
    assert client.post(URL, json={"file": "db.sql.gz"}, headers=api).status_code == 200
    app.extensions["oncelink_purge"].wait()
    assert not link_exists(db, dead)
