"""The write-ahead log checkpointed by a worker's own loop (core/checkpoints.py), never by the commit
of a request: a request's connection copies nothing back into the database file, the loop does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import db as database
from core.checkpoints import Checkpointer
from tests.helpers import curl, make_file, wait_for

pytestmark = pytest.mark.sqlite_only

MIB = 1024 * 1024
COMMITS = 8  # of 1 MiB each: twice SQLite's mark of 1,000 pages


@pytest.fixture
def path(tmp_path, monkeypatch) -> str:
    """A database of its own; connections that checkpoint again, as they did, after the test."""
    monkeypatch.setattr(database, "AUTOCHECKPOINT_PAGES", database.AUTOCHECKPOINT_PAGES)
    path = str(tmp_path / "oncelink.sqlite3")
    db = database.connect(path)
    db.execute("CREATE TABLE blobs (data BLOB)")
    db.close()
    return path


def write_megabytes(path: str):
    """COMMITS commits of 1 MiB each, on one connection kept open (closing the last one would
    checkpoint the log)."""
    db = database.connect(path)
    for _ in range(COMMITS):
        with database.write_transaction(db):
            db.execute("INSERT INTO blobs VALUES (?)", [os.urandom(MIB)])
    return db


def size(path: str) -> int:
    return Path(path).stat().st_size


def test_a_commit_past_the_mark_checkpoints_by_default(path):
    db = write_megabytes(path)
    try:
        assert size(f"{path}-wal") < 6 * MIB  # the log was copied back and started again
        assert size(path) > 3 * MIB
    finally:
        db.close()


def test_once_a_checkpointer_runs_commits_leave_the_log_to_it(path):
    checkpointer = Checkpointer(path, check_seconds=3600)  # started, but its first look far off
    assert checkpointer.start()
    try:
        db = write_megabytes(path)
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert size(f"{path}-wal") > COMMITS * MIB  # every commit still in the log alone
        assert size(path) < MIB
        assert checkpointer.passes == 0
        db.close()
    finally:
        checkpointer.stop(5)


def test_the_checkpointer_copies_the_log_back_while_connections_stay_open(path):
    checkpointer = Checkpointer(path, check_seconds=0.05)
    checkpointer.start()
    try:
        db = write_megabytes(path)
        wait_for(lambda: size(path) > COMMITS * MIB, "the log copied back into the database file")
        assert checkpointer.passes >= 1
        assert db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == COMMITS
        db.close()
    finally:
        checkpointer.stop(5)


def test_nothing_to_checkpoint_on_postgresql():
    assert not Checkpointer("postgresql://oncelink@localhost/oncelink").start()
    assert database.AUTOCHECKPOINT_PAGES == 1000


def test_a_worker_copies_back_what_a_few_downloads_wrote_far_from_the_mark(start_server, tmp_path):
    """A few downloads write a few pages, far from SQLite's 1,000: no commit would copy them into
    the database file (nor would closing a connection: the workers keep theirs), the loop does."""
    server = start_server()
    make_file(server.backups, "db.dump", 10_000)
    url = server.link("db.dump", uses=3)
    database_file = Path(server.app.config["DATABASE"])
    written = database_file.stat().st_mtime_ns
    for _ in range(3):
        assert curl("-o", str(tmp_path / "out"), "-w", "%{http_code}", url).stdout == "200"
    wait_for(lambda: database_file.stat().st_mtime_ns != written, "the downloads' writes checkpointed")
