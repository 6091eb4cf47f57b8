"""Admin pages: only admins, CSRF on every change, users and API keys managed from the browser."""

from __future__ import annotations

import re

import pytest

from db.users import get_user_by_name, list_api_keys
from tests.conftest import PASSWORD, csrf_token_from


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("operator", 403), ("admin", 200)])
@pytest.mark.parametrize("page", ["/admin/users", "/admin/keys"])
def test_only_admins_open_admin_pages(client, auth, role, status, page):
    auth.login(role)
    assert client.get(page).status_code == status
    assert client.post(page, data={"csrf_token": auth.csrf_token}).status_code in (status, 400)


def test_operator_cannot_change_users(client, auth):
    auth.login("operator")
    target = auth.create("target", "viewer")
    form = {"role": "admin", "disabled": "0", "csrf_token": auth.csrf_token}
    assert client.post(f"/admin/users/{target.id}", data=form).status_code == 403


def test_admin_pages_need_the_csrf_token(client, auth):
    auth.login("admin")
    target = auth.create("target", "viewer")
    assert (
        client.post("/admin/users", data={"name": "x", "password": PASSWORD, "role": "viewer"}).status_code
        == 400
    )
    assert client.post(f"/admin/users/{target.id}", data={"role": "admin"}).status_code == 400
    assert client.post("/admin/keys", data={"user": "target"}).status_code == 400


def test_create_change_disable_and_reset(app, client, auth, db):
    auth.login("admin")
    form = {"name": "ops", "password": PASSWORD, "role": "operator", "csrf_token": auth.csrf_token}
    response = client.post("/admin/users", data=form)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/users"
    assert "User ops created (operator)." in client.get("/admin/users").text
    ops = get_user_by_name(db, "ops")
    change = {"role": "viewer", "disabled": "1", "csrf_token": auth.csrf_token}
    assert client.post(f"/admin/users/{ops.id}", data=change).status_code == 303
    changed = get_user_by_name(db, "ops")
    assert (changed.role, changed.disabled) == ("viewer", True)
    reset = {"password": "a new password", "csrf_token": auth.csrf_token}
    assert client.post(f"/admin/users/{ops.id}/password", data=reset).status_code == 303
    assert get_user_by_name(db, "ops").password_hash != ops.password_hash


def test_errors_are_messages(client, auth):
    admin = auth.login("admin")
    short = {"name": "x", "password": "short", "role": "viewer", "csrf_token": auth.csrf_token}
    response = client.post("/admin/users", data=short)
    assert response.status_code == 400 and "at least 8 characters" in response.text
    mine = {"role": "viewer", "disabled": "1", "csrf_token": auth.csrf_token}
    response = client.post(f"/admin/users/{admin.id}", data=mine)
    assert response.status_code == 400 and "cannot change your own" in response.text


def test_api_key_is_shown_once_and_can_be_revoked(app, client, auth, db):
    auth.login("admin")
    auth.create("script", "operator")
    response = client.post("/admin/keys", data={"user": "script", "csrf_token": auth.csrf_token})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    key = re.search(r'<pre id="new-key">(olk_[^<]+)</pre>', response.text).group(1)
    assert key not in client.get("/admin/keys").text
    assert client.get("/api/links", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    (record,) = list_api_keys(db)
    token = csrf_token_from(client.get("/admin/keys").text)
    assert client.post(f"/admin/keys/{record.id}/revoke", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/links", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_encryption_profiles_create_and_export(app, client, auth):
    auth.login("admin")
    assert client.post("/admin/profiles", data={"name": "main"}).status_code == 400  # CSRF
    response = client.post("/admin/profiles", data={"name": "main", "csrf_token": auth.csrf_token})
    assert response.status_code == 303
    assert "<code>" in client.get("/admin/profiles").text
    again = client.post("/admin/profiles", data={"name": "main", "csrf_token": auth.csrf_token})
    assert again.status_code == 400 and "exists already" in again.text
    kit = client.post("/admin/profiles/main/kit", data={"csrf_token": auth.csrf_token})
    assert kit.status_code == 200 and "Oncelink recovery kit" in kit.text and "key id:" in kit.text
    assert kit.headers["Content-Disposition"] == 'attachment; filename="oncelink-kit-main.txt"'
    assert kit.headers["Cache-Control"] == "no-store"


def test_operator_cannot_export_a_kit(client, auth):
    auth.login("operator")
    assert client.get("/admin/profiles").status_code == 403
    assert client.post("/admin/profiles/main/kit", data={"csrf_token": auth.csrf_token}).status_code == 403
