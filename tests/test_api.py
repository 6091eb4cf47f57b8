"""The link API through the Flask test client: auth, CSRF, permissions, validation, answers."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from core.accounts import create_api_key
from db import connect
from db.links import list_links
from tests.conftest import Auth, make_app
from tests.helpers import database_text
from tests.test_storage_local import HOSTILE_PATHS

URL = "/api/storage/local/download-url"


@pytest.fixture(autouse=True)
def files(backups):
    (backups / "folder").mkdir(parents=True)
    (backups / "db.sql.gz").write_bytes(b"dump")
    (backups / "folder" / "a.tar").write_bytes(b"archive")


def api_key(app, user_name, expires_days=None):
    db = connect(app.config["DATABASE"])
    try:
        return create_api_key(db, user_name, time.time(), expires_days)[0]
    finally:
        db.close()


def test_session_user_mints_a_link(client, auth):
    auth.login("operator")
    before = time.time()
    response = client.post(URL, json={"file": "db.sql.gz"}, headers=auth.headers())
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["url"].startswith("http://localhost/api/storage/public-download?token=")
    assert body["expiresIn"] == "5 minutes"
    assert body["singleUse"] is True and body["uses"] == 1
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00")).timestamp()
    assert before + 299 <= expires <= time.time() + 301


def test_options_are_honoured(client, auth):
    auth.login("operator")
    body = client.post(
        URL, json={"file": "folder/a.tar", "ttl": 3600, "uses": 3, "decrypt": False}, headers=auth.headers()
    ).get_json()
    assert (body["expiresIn"], body["singleUse"], body["uses"]) == ("1 hour", False, 3)


def test_public_url_setting_is_the_base_of_links(tmp_path, backups):
    app = make_app(tmp_path / "other", backups, PUBLIC_URL="https://backups.example.org/")
    Auth(app, None).create("ops", "operator")
    key = api_key(app, "ops")
    body = (
        app.test_client()
        .post(URL, json={"file": "db.sql.gz"}, headers={"Authorization": f"Bearer {key}"})
        .get_json()
    )
    assert body["url"].startswith("https://backups.example.org/api/storage/public-download?token=")


def test_session_without_csrf_token_is_refused(client, auth):
    auth.login("operator")
    response = client.post(URL, json={"file": "db.sql.gz"})
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]


def test_anonymous_is_401(client):
    response = client.post(URL, json={"file": "db.sql.gz"})
    assert response.status_code == 401
    assert response.get_json()["success"] is False


def test_api_key_works_without_csrf_and_is_stored_hashed(app, client, auth):
    auth.create("script", "operator")
    key = api_key(app, "script")
    response = client.post(URL, json={"file": "db.sql.gz"}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    db = connect(app.config["DATABASE"])
    assert key not in database_text(db)
    db.close()


@pytest.mark.parametrize("header", ["Bearer olk_wrong", "Bearer ", "Basic dXNlcjpwYXNz", "olk_x"])
def test_bad_api_keys_are_401(client, header):
    assert client.post(URL, json={"file": "db.sql.gz"}, headers={"Authorization": header}).status_code == 401


def test_revoked_and_expired_keys_are_401(app, client, auth, runner):
    auth.create("script", "operator")
    key = api_key(app, "script")
    assert runner.invoke(args=["apikeys", "revoke", "1"]).exit_code == 0
    assert client.post(URL, json={"file": "x"}, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    old = api_key(app, "script", expires_days=1)
    db = connect(app.config["DATABASE"])
    db.execute("UPDATE api_keys SET expires_at = ?", [time.time() - 1])
    db.close()
    assert client.post(URL, json={"file": "x"}, headers={"Authorization": f"Bearer {old}"}).status_code == 401


def test_disabled_user_key_is_401(app, client, auth):
    auth.create("gone", "operator")
    key = api_key(app, "gone")
    db = connect(app.config["DATABASE"])
    db.execute("UPDATE users SET disabled = 1")
    db.close()
    assert (
        client.post(URL, json={"file": "db.sql.gz"}, headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("role", "read", "mint"), [("viewer", 200, 403), ("operator", 200, 200), ("admin", 200, 200)]
)
def test_permissions_by_role(app, client, auth, role, read, mint):
    auth.create(role, role)
    headers = {"Authorization": f"Bearer {api_key(app, role)}"}
    assert client.get("/api/storages", headers=headers).status_code == read
    assert client.get("/api/storage/local/files", headers=headers).status_code == read
    assert client.post(URL, json={"file": "db.sql.gz"}, headers=headers).status_code == mint
    assert client.get("/api/links", headers=headers).status_code == mint


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (None, 400),
        ([], 400),
        ({}, 400),
        ({"file": ""}, 400),
        ({"file": 3}, 400),
        ({"file": "db.sql.gz", "ttl": 0}, 400),
        ({"file": "db.sql.gz", "ttl": 86401}, 400),
        ({"file": "db.sql.gz", "ttl": "300"}, 400),
        ({"file": "db.sql.gz", "ttl": True}, 400),
        ({"file": "db.sql.gz", "uses": 0}, 400),
        ({"file": "db.sql.gz", "uses": 101}, 400),
        ({"file": "db.sql.gz", "decrypt": "yes"}, 400),
        ({"file": "../etc/passwd"}, 400),
        ({"file": "folder"}, 400),
        ({"file": "missing.tar"}, 404),
    ],
)
def test_bad_requests_get_clear_json_errors(app, client, auth, body, status):
    auth.create("ops", "operator")
    headers = {"Authorization": f"Bearer {api_key(app, 'ops')}"}
    response = (
        client.post(URL, json=body, headers=headers)
        if body is not None
        else client.post(URL, data="not json", headers=headers)
    )
    assert response.status_code == status
    answer = response.get_json()
    assert answer["success"] is False and answer["error"]
    db = connect(app.config["DATABASE"])
    assert list_links(db) == []  # nothing minted on a refusal
    db.close()


def test_unknown_storage_is_404(app, client, auth):
    auth.create("ops", "operator")
    headers = {"Authorization": f"Bearer {api_key(app, 'ops')}"}
    response = client.post("/api/storage/nope/download-url", json={"file": "db.sql.gz"}, headers=headers)
    assert response.status_code == 404 and "nope" in response.get_json()["error"]


def test_file_listing(app, client, auth):
    auth.login("viewer")
    body = client.get("/api/storage/local/files?path=folder").get_json()
    assert [(e["name"], e["size"], e["isDir"]) for e in body["entries"]] == [("a.tar", 7, False)]
    assert client.get("/api/storage/local/files?path=../").status_code == 400


def test_links_are_listed_revoked_and_their_events_shown(app, client, auth):
    auth.login("operator")
    minted = client.post(URL, json={"file": "db.sql.gz"}, headers=auth.headers()).get_json()
    links = client.get("/api/links").get_json()["links"]
    assert [(link["id"], link["state"]) for link in links] == [(minted["id"], "active")]
    assert client.delete(f"/api/links/{minted['id']}").status_code == 400  # CSRF
    revoked = client.delete(f"/api/links/{minted['id']}", headers=auth.headers()).get_json()
    assert revoked["link"]["state"] == "revoked"
    events = client.get(f"/api/links/{minted['id']}/events").get_json()["events"]
    assert [e["event"] for e in events] == ["created", "revoked"]
    token = minted["url"].split("token=")[1]
    assert client.get(f"/api/storage/public-download?token={token}").status_code == 410


def test_running_transfers_are_listed_with_their_link(app, client, auth):
    auth.login("operator")
    minted = client.post(URL, json={"file": "db.sql.gz", "uses": 2}, headers=auth.headers()).get_json()
    running = app.test_client().get(minted["url"], buffered=False)  # another client, still reading
    (link,) = client.get("/api/links").get_json()["links"]
    assert (link["transfers"], link["usesDone"], link["state"]) == (1, 0, "active")
    b"".join(running.response)
    running.close()
    (link,) = client.get("/api/links").get_json()["links"]
    assert (link["transfers"], link["usesDone"]) == (0, 1)


def test_operators_see_only_their_own_links(app, client, auth):
    auth.create("other", "operator")
    other_key = api_key(app, "other")
    theirs = client.post(URL, json={"file": "db.sql.gz"}, headers={"Authorization": f"Bearer {other_key}"})
    link_id = theirs.get_json()["id"]
    auth.login("operator")
    assert client.get("/api/links").get_json()["links"] == []
    assert client.delete(f"/api/links/{link_id}", headers=auth.headers()).status_code == 404
    assert client.get(f"/api/links/{link_id}/events").status_code == 404


def test_links_come_a_page_at_a_time_each_exactly_once(app, client, auth):
    auth.login("operator")
    minted = [
        client.post(URL, json={"file": "db.sql.gz"}, headers=auth.headers()).get_json()["id"]
        for _ in range(7)
    ]
    pages, cursor = [], ""
    while cursor is not None:
        body = client.get(f"/api/links?limit=3&cursor={cursor}").get_json()
        pages.append([link["id"] for link in body["links"]])
        cursor = body["next"]
    newest_first = minted[::-1]
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:]]


def test_the_links_answer_carries_the_pages_data_and_filters(app, client, auth):
    auth.login("operator")
    first = client.post(URL, json={"file": "db.sql.gz"}, headers=auth.headers()).get_json()
    client.post(URL, json={"file": "db.sql.gz"}, headers=auth.headers())
    assert first["mode"] == "stored" and first["delivery"] == "proxy"
    client.get(first["url"], headers={"Range": "bytes=1-"}, buffered=True)
    body = client.get("/api/links?state=used").get_json()
    assert body["next"] is None
    (link,) = body["links"]
    assert (link["id"], link["mode"], link["createdBy"], link["eventCount"]) == (
        first["id"],
        "stored",
        "operator",
        3,
    )
    started, completed = link["events"][1:]
    assert (started["event"], started["start"], started["bytes"], started["mode"]) == (
        "started",
        1,
        None,
        "stored",
    )
    assert (completed["event"], completed["start"], completed["bytes"]) == ("completed", 1, len(b"dump") - 1)
    assert completed["seconds"] >= 0 and completed["at"].endswith("Z")
    assert len(client.get("/api/links").get_json()["links"]) == 2  # 200 a page, as before pages existed
    assert client.get("/api/links?q=nothing-like-it").get_json()["links"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "cursor=abc", "state=gone"])
def test_bad_link_pages_are_400(client, auth, query):
    auth.login("operator")
    response = client.get(f"/api/links?{query}")
    assert response.status_code == 400 and response.get_json()["success"] is False


@pytest.fixture
def escape_links(backups, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not serve")
    (backups / "escape-file-link").symlink_to(outside / "secret.txt")
    (backups / "escape-dir-link").symlink_to(outside)
    (backups / "folder" / "escape-link").symlink_to("../../outside/secret.txt")


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused_by_the_api(app, client, auth, escape_links, path):
    auth.create("ops", "operator")
    headers = {"Authorization": f"Bearer {api_key(app, 'ops')}"}
    response = client.post(URL, json={"file": path}, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["success"] is False
    db = connect(app.config["DATABASE"])
    assert list_links(db) == []
    db.close()
