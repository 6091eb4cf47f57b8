"""Signing in and out in the browser, and what a signed-out visitor gets."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.conftest import PASSWORD, Auth, csrf_token_from, make_app


def sign_in(client, name, password, next_url=""):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    return client.post(f"/login{next_url}", data={"name": name, "password": password, "csrf_token": token})


def test_home_needs_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_sign_in_and_out(client, auth):
    auth.create("ops", "operator")
    assert sign_in(client, "ops", "wrong password").status_code == 401
    assert sign_in(client, "nobody", PASSWORD).status_code == 401
    response = sign_in(client, "ops", PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert "ops (operator)" in client.get("/").get_data(as_text=True)
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout").status_code == 400  # CSRF
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/").status_code == 302


def test_sign_in_without_csrf_token_is_refused(client, auth):
    auth.create("ops", "operator")
    assert client.post("/login", data={"name": "ops", "password": PASSWORD}).status_code == 400


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("/api/links", "/api/links"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_stays_on_this_site(client, auth, next_url, location):
    auth.create("ops", "operator")
    response = sign_in(client, "ops", PASSWORD, f"?next={quote(next_url)}")
    assert response.headers["Location"] == location


def test_disabled_user_cannot_sign_in(app, client, auth, db):
    auth.create("gone", "viewer")
    db.execute("UPDATE users SET disabled = 1")
    assert sign_in(client, "gone", PASSWORD).status_code == 401


def test_security_headers_on_pages(client):
    headers = client.get("/login").headers
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "same-origin"


def test_sign_in_is_rate_limited(tmp_path, backups):
    app = make_app(tmp_path / "rl", backups, RATELIMIT_ENABLED=True)
    client = app.test_client()
    codes = [sign_in(client, "nobody", "wrong password").status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_only_failed_sign_ins_count_and_a_limited_address_is_refused_the_right_password_too(
    tmp_path, backups
):
    """Were the right password let in past the limit, guessing could go on until the one answer
    that is not 429. Successes give their try back; another address is not limited."""
    app = make_app(tmp_path / "rl", backups, RATELIMIT_ENABLED=True, SIGN_IN_FAILURE_LIMIT="3 per minute")
    Auth(app, app.test_client()).create("ops", "operator")
    client = app.test_client()
    codes = [sign_in(client, "ops", password).status_code for password in [PASSWORD] * 5 + ["wrong"] * 4]
    assert codes == [303] * 5 + [401] * 3 + [429]
    refused = sign_in(client, "ops", PASSWORD)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Too many failed attempts" in refused.text
    other_address = app.test_client()
    other_address.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert sign_in(other_address, "ops", PASSWORD).status_code == 303
