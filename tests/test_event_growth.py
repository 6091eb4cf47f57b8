"""Bounded growth of the event log: short user agents, repeats counted on one row, old orphans purged."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from core.links import LinkRequest, create_link
from core.purging import purge_dead_links
from db import connect
from db.events import Client, list_events, record_link_event
from db.links import get_link
from encryption.keys import Keyring
from tests.conftest import mint as mint_token

NOW = time.time()
URL = "/api/storage/public-download?token="
HOME = Client("192.0.2.1", "curl/8.5.0")
ELSEWHERE = Client("198.51.100.7", "curl/8.5.0")


@pytest.fixture(autouse=True)
def file(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(b"dump" * 1000)
    return "db.sql.gz"


def mint(db, ttl=300):
    return create_link(db, "local", LinkRequest("db.sql.gz", True, ttl, 1), Keyring(bytes(32)), None, NOW)


def rows(db, kind: str) -> list[tuple[int | None, str | None, float, int]]:
    """(link, address, first seen, repeats) of every stored event of one kind, oldest first."""
    return [(e.link_id, e.client_ip, e.at, e.repeats) for e in list_events(db) if e.event == kind]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [(None, None), ("curl/8.5.0", "curl/8.5.0"), ("x" * 256, "x" * 256), ("x" * 8192, "x" * 256)],
)
def test_user_agents_are_stored_cut_to_256_characters(db, sent, stored):
    link = mint(db).link
    record_link_event(db, "started", link, NOW, Client("192.0.2.1", sent), bytes=0)
    assert list_events(db, link.id)[-1].user_agent == stored


@pytest.mark.parametrize("kind", ["head", "preview", "rejected"])
def test_repeats_from_one_address_within_a_minute_make_one_row(db, kind):
    link = mint(db).link
    for second in range(0, 60, 10):
        record_link_event(db, kind, link, NOW + second, HOME)
    assert rows(db, kind) == [(link.id, HOME.ip, NOW, 6)]


def test_another_address_gets_its_own_row(db):
    link = mint(db).link
    for client in (HOME, ELSEWHERE, HOME, ELSEWHERE, HOME):
        record_link_event(db, "head", link, NOW, client)
    assert rows(db, "head") == [(link.id, HOME.ip, NOW, 3), (link.id, ELSEWHERE.ip, NOW, 2)]


def test_a_minute_after_the_first_a_new_row_begins(db):
    """`at` stays the first time: a client that never stops adds a row a minute, not one a request."""
    link = mint(db).link
    for second in (0, 59, 60, 61, 125):
        record_link_event(db, "head", link, NOW + second, HOME)
    assert rows(db, "head") == [
        (link.id, HOME.ip, NOW, 2),
        (link.id, HOME.ip, NOW + 60, 2),
        (link.id, HOME.ip, NOW + 125, 1),
    ]


def test_other_links_and_reasons_get_their_own_rows(db):
    first, second = mint(db).link, mint(db).link
    for link, reason in ((first, "used"), (second, "used"), (first, "busy"), (first, "used")):
        record_link_event(db, "rejected", link, NOW, HOME, reason=reason)
    stored = [(e.link_id, e.reason, e.repeats) for e in list_events(db) if e.event == "rejected"]
    assert stored == [(first.id, "used", 2), (second.id, "used", 1), (first.id, "busy", 1)]


def test_unknown_tokens_are_counted_on_one_row_per_address(db):
    for client in (HOME, HOME, ELSEWHERE, HOME):
        record_link_event(db, "rejected", None, NOW, client, reason="unknown")
    assert rows(db, "rejected") == [(None, HOME.ip, NOW, 3), (None, ELSEWHERE.ip, NOW, 1)]


@pytest.mark.parametrize("kind", ["started", "completed", "partial", "aborted", "redirected", "revoked"])
def test_transfers_and_changes_are_never_coalesced(db, kind):
    link = mint(db).link
    for _ in range(3):
        record_link_event(db, kind, link, NOW, HOME)
    assert rows(db, kind) == [(link.id, HOME.ip, NOW, 1)] * 3


def test_events_without_a_link_go_after_the_retention_and_not_before(db):
    link = mint(db, ttl=1).link  # dead at NOW + 1
    alive = mint(db, ttl=86400).link
    record_link_event(db, "rejected", None, NOW, HOME, reason="unknown")
    record_link_event(db, "rejected", link, NOW + 30, HOME, reason="expired")
    purge_dead_links(db, 3600, NOW + 3599)
    assert rows(db, "rejected") == [(None, HOME.ip, NOW, 1), (link.id, HOME.ip, NOW + 30, 1)]
    assert purge_dead_links(db, 3600, NOW + 3601) == 1
    assert rows(db, "rejected") == [(link.id, HOME.ip, NOW + 30, 1)]  # younger than the retention
    assert list_events(db, link.id)[0].event == "rejected"  # its old `created` went with the link
    purge_dead_links(db, 3600, NOW + 3631)
    assert rows(db, "rejected") == []
    assert [e.event for e in list_events(db, alive.id)] == ["created"]  # a live link keeps its history


@pytest.mark.sqlite_only
def test_each_purge_step_commits_whole_or_not_at_all(db):
    """Steps commit on their own: a failed one keeps every row of its batch, the steps before it
    stay done, and the next purge finishes the work."""
    links = [mint(db, ttl=1).link for _ in range(3)]
    refuse = "BEGIN SELECT RAISE(ABORT, 'no'); END"
    db.execute(f"CREATE TRIGGER refuse BEFORE DELETE ON links WHEN old.id = {links[1].id} {refuse}")
    with pytest.raises(sqlite3.IntegrityError, match="no"):
        purge_dead_links(db, 0, NOW + 10)
    assert [get_link(db, link.id) is not None for link in links] == [True, True, True]  # one batch
    db.execute("DROP TRIGGER refuse")
    db.execute(f"CREATE TRIGGER refuse BEFORE DELETE ON link_events {refuse}")
    with pytest.raises(sqlite3.IntegrityError, match="no"):
        purge_dead_links(db, 0, NOW + 10)
    assert [get_link(db, link.id) for link in links] == [None, None, None]
    assert [[e.event for e in list_events(db, link.id)] for link in links] == [["created"]] * 3
    db.execute("DROP TRIGGER refuse")
    assert purge_dead_links(db, 0, NOW + 10) == 0
    assert [list_events(db, link.id) for link in links] == [[], [], []]


def database_size(app) -> int:
    """The main file's size once the write-ahead log is folded in, so growth shows wherever it sits."""
    db = connect(app.config["DATABASE"])
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return Path(app.config["DATABASE"]).stat().st_size


@pytest.mark.sqlite_only
@pytest.mark.parametrize("known", [True, False], ids=["link", "unknown-token"])
def test_500_heads_with_an_8kb_user_agent_barely_grow_the_database(app, client, known):
    token = mint_token(app, "db.sql.gz") if known else "not-a-token-of-ours-" + "a" * 23
    before = database_size(app)
    for _ in range(500):
        response = client.head(URL + token, headers={"User-Agent": "x" * 8192})
        assert response.status_code == (200 if known else 410)
    client.head(URL + token, headers={"User-Agent": "x" * 8192}, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    growth = database_size(app) - before
    db = connect(app.config["DATABASE"])
    try:
        events = [e for e in list_events(db) if e.event != "created"]
    finally:
        db.close()
    assert [(e.event, e.client_ip, e.repeats) for e in events] == [
        ("head" if known else "rejected", "127.0.0.1", 500),
        ("head" if known else "rejected", "10.0.0.2", 1),
    ]
    assert {len(e.user_agent) for e in events} == {256}
    assert growth < 64 * 1024  # before: 4 MB for the same 500 requests
