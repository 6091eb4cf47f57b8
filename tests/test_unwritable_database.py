"""A database that cannot be written: minting, downloads and pages answer 503 with Retry-After,
nothing is counted, and the same requests work once it can be written again. Other SQLite
errors are bugs and stay 500. (tests/test_live_disk_full.py fills a real disk.)"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time

import pytest

import db
from app import create_app
from core.accounts import create_api_key
from db.links import list_links
from tests.conftest import mint

pytestmark = pytest.mark.sqlite_only  # SQLite's own connections, locks and errors

API_URL = "/api/storage/local/download-url"
PUBLIC_URL = "/api/storage/public-download?token="
BROWSER = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0 Firefox/128.0"}
HX = {"HX-Request": "true"}
DATA = b"nightly dump" * 1000


@pytest.fixture(autouse=True)
def files(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(DATA)


@contextlib.contextmanager
def unwritable_database():
    """Every connection the app opens meanwhile refuses writes (SQLITE_READONLY), as one does whose
    disk is full; connections opened before (the tests' own) are untouched. The connections the app
    keeps open are closed before, so that it opens new ones, and after, so that it keeps none of those."""
    writable_connect = db.connect

    def read_only(path: str):
        database = writable_connect(path)
        database.execute("PRAGMA query_only = ON")
        return database

    db.close_pools()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db, "connect", read_only)
        yield
    db.close_pools()


def links_in(app) -> list:
    database = db.connect(app.config["DATABASE"])
    try:
        return list_links(database)
    finally:
        database.close()


def api_key(app, user_name: str) -> str:
    database = db.connect(app.config["DATABASE"])
    try:
        return create_api_key(database, user_name, time.time(), None)[0]
    finally:
        database.close()


def logged_once_without_traceback(caplog) -> bool:
    ours = [record for record in caplog.records if record.name == "blueprints.errors"]
    return [record.levelno for record in ours] == [logging.WARNING] and not any(
        record.exc_info for record in caplog.records
    )


def test_api_mint_answers_503_json_and_works_again(app, client, auth, caplog):
    auth.create("robot", "operator")
    bearer = {"Authorization": f"Bearer {api_key(app, 'robot')}"}
    with unwritable_database():
        refused = client.post(API_URL, json={"file": "db.sql.gz"}, headers=bearer)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "30"
    body = refused.get_json()
    assert body["success"] is False
    assert body["error"].startswith("Oncelink cannot write to its database right now")
    assert "readonly database" in body["error"]
    assert logged_once_without_traceback(caplog)
    assert links_in(app) == []
    minted = client.post(API_URL, json={"file": "db.sql.gz"}, headers=bearer)
    assert minted.status_code == 200 and minted.get_json()["success"] is True


def test_public_download_answers_503_and_the_link_is_not_used(app, client, caplog):
    token = mint(app, "db.sql.gz")
    with unwritable_database():
        refused = client.get(PUBLIC_URL + token, buffered=True)
        page = client.get(PUBLIC_URL + token, headers=BROWSER)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert refused.get_json() == {
        "success": False,
        "error": "Downloads are unavailable for a moment; this link was not used. Try again later.",
    }
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert page.mimetype == "text/html" and "this link was not used" in page.text
    assert "database" not in page.text  # a link holder learns nothing about the server
    assert not any(record.exc_info for record in caplog.records)
    assert [link.uses for link in links_in(app)] == [0]
    served = client.get(PUBLIC_URL + token, buffered=True)
    assert served.status_code == 200 and served.data == DATA
    assert client.get(PUBLIC_URL + token).status_code == 410


@pytest.mark.parametrize(("headers", "marker"), [(HX, 'class="error-box"'), ({}, "<html")])
def test_link_dialog_answers_503_as_fragment_or_page(app, client, auth, headers, marker):
    auth.login("operator")
    form = {"path": "db.sql.gz", "csrf_token": auth.csrf_token}
    with unwritable_database():
        refused = client.post("/browse/local/link", data=form, headers=headers)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert marker in refused.text and "Oncelink cannot write to its database right now" in refused.text
    assert links_in(app) == []
    assert client.post("/browse/local/link", data=form, headers=headers).status_code == 200


def test_other_database_errors_stay_500(app, client, auth, monkeypatch):
    """A wrong statement is a bug to fix, not a moment to wait out: 500, no Retry-After."""

    def broken_create_link(database, *_args):
        database.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr("blueprints.links.create_link", broken_create_link)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production instead of raising
    auth.login("operator")
    response = client.post(API_URL, json={"file": "db.sql.gz"}, headers=auth.headers())
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert response.get_json()["success"] is False


@pytest.mark.parametrize(
    ("code", "unwritable"),
    [
        (sqlite3.SQLITE_FULL, True),
        (sqlite3.SQLITE_IOERR, True),
        (sqlite3.SQLITE_IOERR_WRITE, True),
        (sqlite3.SQLITE_IOERR_SHMSIZE, True),
        (sqlite3.SQLITE_READONLY, True),
        (sqlite3.SQLITE_BUSY, True),
        (sqlite3.SQLITE_BUSY_SNAPSHOT, True),
        (sqlite3.SQLITE_LOCKED, True),
        (sqlite3.SQLITE_CANTOPEN, True),
        (sqlite3.SQLITE_ERROR, False),
        (sqlite3.SQLITE_CONSTRAINT_UNIQUE, False),
        (sqlite3.SQLITE_CORRUPT, False),
        (sqlite3.SQLITE_MISMATCH, False),
    ],
)
def test_cannot_write_reads_the_primary_code(code, unwritable):
    error = sqlite3.OperationalError("from the table")
    error.sqlite_errorcode = code
    assert db.cannot_write(error) is unwritable


def test_cannot_write_needs_a_sqlite_code():
    assert not db.cannot_write(sqlite3.OperationalError("raised by hand, no code"))
    assert not db.cannot_write(OSError(28, "No space left on device"))


def test_an_app_that_starts_while_the_database_cannot_be_written_migrates_when_it_can(tmp_path):
    """A gunicorn worker restarted on a full disk: it boots, answers 503, and migrates once it can."""
    with unwritable_database():
        app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "fresh")})
        refused = app.test_client().get("/login")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert "Oncelink cannot write to its database right now" in refused.text
    assert app.test_client().get("/login").status_code == 200
    assert links_in(app) == []  # the schema is there
