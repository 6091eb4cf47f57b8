"""Connections kept open between requests: reused by requests, the lease keeper and the end of a
transfer; replaced once they met an error that says the database cannot be written. Writers
take turns in a queue instead of polling SQLite's busy handler."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest

import db
from core.accounts import create_api_key
from core.attempts import FailureLimits
from tests.conftest import ROOT, Auth, mint
from tests.helpers import settled

pytestmark = pytest.mark.sqlite_only  # SQLite's own connections, locks and errors

URL = "/api/storage/public-download?token="
DATA = b"x" * 4096


@pytest.fixture(autouse=True)
def file(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "small.bin").write_bytes(DATA)
    settled(backups / "small.bin")  # its digest is computed within the mint, not by a background thread


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The paths of the connections the app opens from here on."""
    paths: list[str] = []
    real_connect = db.connect

    def counting_connect(path: str):
        paths.append(path)
        return real_connect(path)

    db.close_pools()
    monkeypatch.setattr(db, "connect", counting_connect)
    return paths


def test_downloads_and_their_claims_reuse_one_connection(app, client, opened):
    """Each download checks its link, claims it, makes the claim final and counts the use: four
    uses of a connection, by the request and then by its body, one after the other."""
    tokens = [mint(app, "small.bin") for _ in range(20)]
    assert opened == []  # tokens are minted on the test's own connections
    for token in tokens:
        with client.get(URL + token) as response:
            assert response.status_code == 200 and response.data == DATA
        assert client.get(URL + token).status_code == 410
    assert opened == [app.config["DATABASE"]]


def test_a_download_runs_three_short_write_transactions_and_few_statements(app, client, monkeypatch):
    """The claim (with its `started` event), the mark before the last piece, the end (with its
    event); the link is read by the failure limit, the download and the claim, the file's digest
    once (for Repr-Digest). Every statement counts at this size: sqlite-utils' insert() alone would
    add six."""
    statements: list[str] = []
    real_connect = db.connect

    def traced_connect(path: str):
        database = real_connect(path)
        database.conn.set_trace_callback(statements.append)
        return database

    db.close_pools()
    monkeypatch.setattr(db, "connect", traced_connect)
    app.extensions["oncelink_failure_limits"] = FailureLimits.from_config(
        {**app.config, "RATELIMIT_ENABLED": True}
    )
    token = mint(app, "small.bin")
    with client.get(URL + token) as response:
        assert response.status_code == 200 and response.data == DATA
    begins = [sql for sql in statements if sql.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN ", "BEGIN IMMEDIATE"]
    # 17, one read each for the start and the end (which notices the targets want: db/events.py), the
    # digest's lookup (core/digests.py) and the ETag the claim notes (db/claims.py)
    assert len([sql for sql in statements if not sql.startswith("PRAGMA")]) <= 21


def api_headers(app) -> dict:
    Auth(app, None).create("robot", "operator")
    database = db.connect(app.config["DATABASE"])
    try:
        return {"Authorization": f"Bearer {create_api_key(database, 'robot', 0, None)[0]}"}
    finally:
        database.close()


def test_a_connection_that_could_not_write_is_replaced(app, client, monkeypatch):
    """As after a full disk: the request answers 503, and the next one gets a fresh connection
    instead of the one that failed, which would be given out again and again otherwise."""
    headers = api_headers(app)
    writable_connect = db.connect
    opened: list[bool] = []

    def read_only_first(path: str):
        database = writable_connect(path)
        if not opened:
            database.execute("PRAGMA query_only = ON")  # SQLITE_READONLY on every write
        opened.append(True)
        return database

    db.close_pools()
    monkeypatch.setattr(db, "connect", read_only_first)
    body = {"file": "small.bin"}
    assert client.post("/api/storage/local/download-url", json=body, headers=headers).status_code == 503
    assert client.post("/api/storage/local/download-url", json=body, headers=headers).status_code == 200
    assert client.post("/api/storage/local/download-url", json=body, headers=headers).status_code == 200
    assert len(opened) == 2


def test_work_outside_requests_reuses_connections_and_drops_broken_ones(app):
    path = app.config["DATABASE"]
    with db.pooled(path) as first:
        first.execute("SELECT 1")
    with db.pooled(path) as again:
        assert again is first
    with pytest.raises(sqlite3.OperationalError), db.pooled(path) as broken:
        broken.execute("PRAGMA query_only = ON")
        broken.execute("DELETE FROM links")
    with db.pooled(path) as fresh:
        assert fresh is not first
        fresh.execute("DELETE FROM links")  # writable


def closed(database) -> bool:
    try:
        database.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_a_pool_keeps_at_most_its_size_of_idle_connections(app):
    pool = db.ConnectionPool(app.config["DATABASE"], size=2)
    taken = [pool.take() for _ in range(4)]  # more at once than it keeps: never waits
    assert len({id(database) for database in taken}) == 4
    for database in taken:
        pool.give_back(database)
    assert [closed(database) for database in taken] == [False, False, True, True]
    assert {id(pool.take()) for _ in range(2)} == {id(taken[0]), id(taken[1])}
    pool.close()


def test_a_connection_left_inside_a_transaction_is_closed_not_kept(app):
    pool = db.ConnectionPool(app.config["DATABASE"], size=2)
    database = pool.take()
    database.execute("BEGIN")
    pool.give_back(database)
    assert closed(database)
    assert pool.take() is not database
    pool.close()


WRITER = """
import sys
from db import connect

database = connect(sys.argv[1])
database.execute("PRAGMA busy_timeout = 0")
for n in range(int(sys.argv[2])):
    database.execute("INSERT INTO attempts (key, expires_at) VALUES ('process', ?)", [n])
"""
WRITES = 200


def write_in_turns(path: str, name: str, in_transactions: bool, failures: list) -> None:
    database = db.connect(path)
    database.execute("PRAGMA busy_timeout = 0")  # SQLITE_BUSY at once for a writer that did not queue
    try:
        for n in range(WRITES):
            if in_transactions:
                with db.write_transaction(database):
                    database.execute("INSERT INTO attempts (key, expires_at) VALUES (?, ?)", [name, n])
                    database.execute("UPDATE attempts SET expires_at = expires_at + 1 WHERE key = ?", [name])
            else:
                database.execute("INSERT INTO attempts (key, expires_at) VALUES (?, ?)", [name, n])
    except sqlite3.OperationalError as exc:
        failures.append(exc)
    finally:
        database.close()


def test_writers_of_threads_and_processes_take_turns_without_the_busy_handler(app):
    """With SQLite's busy handler off, a writer that met another's write lock would fail at once:
    none does, because every write waits for its turn in the queue first."""
    path = app.config["DATABASE"]
    process = subprocess.Popen([sys.executable, "-c", WRITER, path, str(WRITES)], cwd=ROOT)
    failures: list = []
    threads = [
        threading.Thread(target=write_in_turns, args=(path, f"thread-{n}", n % 2 == 0, failures))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert process.wait(timeout=60) == 0
    assert failures == []
    database = db.connect(path)
    counts = dict(database.execute("SELECT key, COUNT(*) FROM attempts GROUP BY key").fetchall())
    database.close()
    assert counts == {"process": WRITES, **{f"thread-{n}": WRITES for n in range(4)}}
