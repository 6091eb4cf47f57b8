"""The Links page: who sees which links, their states and events, revoking by htmx and by form."""

from __future__ import annotations

import pytest

from db.links import list_links
from tests.conftest import mint

HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def files(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(b"dump")


def mint_as(client, auth, path="db.sql.gz"):
    client.post("/browse/local/link", data={"path": path, "csrf_token": auth.csrf_token})


def test_page_and_fragment(client, auth):
    auth.login("operator")
    mint_as(client, auth)
    page = client.get("/links")
    assert "<html" in page.text and "db.sql.gz" in page.text and "badge active" in page.text
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/links?state=active", headers=HX)
    assert fragment.text.lstrip().startswith('<div id="link-table"') and "db.sql.gz" in fragment.text
    assert "db.sql.gz" not in client.get("/links?state=used", headers=HX).text


def test_states_and_events_are_shown(app, client, auth):
    token = mint(app, "db.sql.gz")
    assert client.get(f"/api/storage/public-download?token={token}", buffered=True).status_code == 200
    auth.login("admin")
    text = client.get("/links").text
    assert "badge used" in text and "by cli" in text
    assert "<strong>started</strong>" in text and "<strong>completed</strong>" in text


def test_repeated_events_show_their_count(app, client, auth):
    token = mint(app, "db.sql.gz")
    for _ in range(37):
        client.head(f"/api/storage/public-download?token={token}")
    auth.login("admin")
    text = client.get("/links").text
    assert "<strong>head ×37</strong>" in text and "<strong>created</strong>" in text  # no count for one


def test_operators_see_only_their_links_admins_all(app, client, auth):
    mint(app, "db.sql.gz")  # from the CLI, nobody's
    auth.login("operator")
    assert "db.sql.gz" not in client.get("/links").text
    mint_as(client, auth)
    assert client.get("/links").text.count("link-row") == 1


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("operator", 200), ("admin", 200)])
def test_viewers_have_no_links_page(client, auth, role, status):
    auth.login(role)
    assert client.get("/links").status_code == status


def test_revoke_with_htmx_returns_the_row(client, auth, db):
    auth.login("operator")
    mint_as(client, auth)
    (link,) = list_links(db)
    assert client.delete(f"/links/{link.id}", headers=HX).status_code == 400  # no CSRF token
    response = client.delete(f"/links/{link.id}", headers={**HX, **auth.headers()})
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<tr id="link-{link.id}"') and "badge revoked" in response.text
    assert list_links(db)[0].revoked_at is not None


def test_revoke_without_javascript(client, auth, db):
    auth.login("operator")
    mint_as(client, auth)
    (link,) = list_links(db)
    response = client.post(f"/links/{link.id}/revoke", data={"csrf_token": auth.csrf_token})
    assert response.status_code == 303 and response.headers["Location"] == "/links"
    assert list_links(db)[0].revoked_at is not None


def test_cannot_revoke_someone_elses_link(app, client, auth, db):
    mint(app, "db.sql.gz")
    auth.login("operator")
    (link,) = list_links(db)
    assert client.delete(f"/links/{link.id}", headers={**HX, **auth.headers()}).status_code == 404
    assert list_links(db)[0].revoked_at is None
