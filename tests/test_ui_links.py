"""The Links page: who sees which links, their states and events, paging and filters, revoking by
htmx and by form."""

from __future__ import annotations

import re
import time

import pytest

from core.history import EVENTS_PER_LINK
from db.links import list_links
from tests.conftest import mint, seal

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
    assert "<html" not in fragment.text and "HX-Request" in fragment.headers["Vary"]
    assert "db.sql.gz" not in client.get("/links?state=used", headers=HX).text


def test_one_links_page_and_its_events_fragment(client, auth, db):
    auth.login("operator")
    mint_as(client, auth)
    (link,) = list_links(db)
    page = client.get(f"/links/{link.id}")
    assert (
        "<html" in page.text and f"Link #{link.id}" in page.text and "<strong>created</strong>" in page.text
    )
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get(f"/links/{link.id}", headers=HX)
    assert fragment.text.lstrip().startswith(f'<ol class="events" id="events-{link.id}"')
    assert "<html" not in fragment.text and "HX-Request" in fragment.headers["Vary"]


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


def download(client, token: str, **headers):
    response = client.get(f"/api/storage/public-download?token={token}", headers=headers, buffered=True)
    assert response.status_code in (200, 206)
    return response


def test_a_transfer_reads_with_seconds_its_offset_its_duration_and_speed(app, client, auth):
    download(client, mint(app, "db.sql.gz"), Range="bytes=2-")
    auth.login("admin")
    text = client.get("/links").text
    completed = re.search(r'<li class="event completed">(.*?)</li>', text, re.S).group(1)
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="[^"]+ UTC">', completed)
    assert re.search(r">\d\d:\d\d:\d\d</time>", completed)  # seconds, not minutes
    assert "· from 2 B · 2 B in " in completed and re.search(r"\d+ ms \(\S+ (K|M)?i?B/s\)", completed)
    started = re.search(r'<li class="event started">(.*?)</li>', text, re.S).group(1)
    assert "from 2 B" in started and "· 0 B" not in started  # an offset, not an amount


def test_decrypted_and_stored_links_look_different(app, client, auth, backups):
    (backups / "db.sql.gz.enc").write_bytes(seal(app, "main", b"secret dump"))
    mint(app, "db.sql.gz.enc", decrypt=False)
    download(client, mint(app, "db.sql.gz.enc"))
    auth.login("admin")
    text = client.get("/links").text
    rows = dict(re.findall(r'<tr id="link-(\d+)" class="link-row [a-z]+ ([a-z]+)"', text))
    assert sorted(rows.values()) == ["decrypted", "stored"]
    assert '<span class="badge mode decrypted">decrypted</span>' in text
    assert '<span class="badge mode stored">as stored</span>' in text
    completed = re.search(r'<li class="event completed">(.*?)</li>', text, re.S).group(1)
    assert "badge mode decrypted" in completed and "11 B" in completed  # the plaintext's length


def test_events_are_folded_and_a_long_history_unfolds_in_full(app, client, auth, db):
    token = mint(app, "db.sql.gz")
    for address in range(EVENTS_PER_LINK + 5):  # one HEAD row per address
        client.head(
            f"/api/storage/public-download?token={token}", environ_base={"REMOTE_ADDR": f"192.0.2.{address}"}
        )
    auth.login("admin")
    text = client.get("/links").text
    assert '<details class="history">' in text and f"{EVENTS_PER_LINK + 6} events" in text
    assert text.count('<li class="event ') == EVENTS_PER_LINK and "6 earlier events…" in text
    assert "<strong>created</strong>" not in text  # the oldest is folded away
    (link,) = list_links(db)
    unfolded = client.get(f"/links/{link.id}", headers=HX).text
    assert (
        unfolded.count('<li class="event ') == EVENTS_PER_LINK + 6 and "<strong>created</strong>" in unfolded
    )


def mint_many(app, count: int) -> None:
    for number in range(count):
        mint(app, "db.sql.gz" if number % 2 else "other.tar")


def rows_on(text: str) -> list[int]:
    return [int(link_id) for link_id in re.findall(r'<tr id="link-(\d+)"', text)]


def cursor_of(text: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" hx-get="[^"]+" rel="{rel}">', text)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.mark.parametrize("limit", [1, 7, 50])
def test_paging_down_and_back_up_visits_every_link_exactly_once(app, client, auth, backups, db, limit):
    (backups / "other.tar").write_bytes(b"tar")
    mint_many(app, 23)
    auth.login("admin")
    seen, url = [], f"/links?limit={limit}"
    while url:
        text = client.get(url, headers=HX).text
        seen += rows_on(text)
        url = cursor_of(text, "next")
        if url:
            mint(app, "db.sql.gz")  # links minted meanwhile never shift a page
    assert seen == list(range(23, 0, -1))
    back, url = rows_on(text), cursor_of(text, "prev")
    while url:
        text = client.get(url, headers=HX).text
        back = rows_on(text) + back
        url = cursor_of(text, "prev")
    assert back == [link.id for link in list_links(db, limit=1000)]  # the new ones too, each once
    assert len(back) > 23 or limit == 50


def test_filters_by_state_and_name_and_keep_them_across_pages(app, client, auth, backups, db):
    (backups / "other.tar").write_bytes(b"tar")
    mint_many(app, 10)
    db.execute("UPDATE links SET revoked_at = ? WHERE id IN (2, 4, 5)", [time.time()])
    db.execute("UPDATE links SET expires_at = ? WHERE id = 6", [time.time() - 1])
    auth.login("admin")
    assert rows_on(client.get("/links?state=revoked").text) == [5, 4, 2]
    assert rows_on(client.get("/links?state=expired").text) == [6]
    assert rows_on(client.get("/links?q=DB.SQL").text) == [10, 8, 6, 4, 2]
    assert rows_on(client.get("/links?q=db.sql&state=active").text) == [10, 8]
    assert rows_on(client.get("/links?q=%25").text) == []  # % is a character, not a wildcard
    first = client.get("/links?q=db.sql&state=revoked&limit=1").text
    assert rows_on(first) == [4]
    assert cursor_of(first, "next") == "/links?state=revoked&q=db.sql&limit=1&before=4"
    assert rows_on(client.get(cursor_of(first, "next")).text) == [2]


@pytest.mark.parametrize("query", ["state=lost", "before=x", "after=-1", "limit=0", "limit=1001"])
def test_bad_page_parameters_are_400(client, auth, query):
    auth.login("admin")
    assert client.get(f"/links?{query}").status_code == 400
