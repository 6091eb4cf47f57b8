"""The public link opened in a browser or by a link-preview bot: a landing page that never uses the link."""

from __future__ import annotations

import pytest

from core.landing import is_preview_bot, prefers_html, wants_landing_page
from db import connect
from db.events import list_events
from db.links import list_links
from tests.conftest import mint

URL = "/api/storage/public-download?token="
CHROME_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)
BOTS = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Applebot/0.1",
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "Twitterbot/1.0",
]


@pytest.fixture(autouse=True)
def files(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(b"dump" * 300)


def uses(app) -> int:
    db = connect(app.config["DATABASE"])
    try:
        return list_links(db)[0].uses
    finally:
        db.close()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CHROME_ACCEPT, True),
        ("text/html", True),
        ("*/*", False),
        (None, False),
        ("", False),
        ("application/json", False),
        ("text/html;q=0.5, */*", False),
        ("*/*;q=0.1, text/html", True),
    ],
)
def test_prefers_html(accept, expected):
    assert prefers_html(accept) is expected


@pytest.mark.parametrize("user_agent", BOTS)
def test_preview_bots_are_known(user_agent):
    assert is_preview_bot(user_agent)
    assert wants_landing_page("*/*", user_agent, download_pressed=True)


@pytest.mark.parametrize("user_agent", ["curl/8.5.0", "Wget/1.21.3", "python-requests/2.32", CHROME_UA, None])
def test_clients_are_not_bots(user_agent):
    assert not is_preview_bot(user_agent)


def test_browser_sees_a_landing_page_and_the_link_stays(app, client):
    token = mint(app, "db.sql.gz")
    page = client.get(URL + token, headers={"Accept": CHROME_ACCEPT, "User-Agent": CHROME_UA})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "db.sql.gz" in page.text and "1.2 KiB" in page.text and "data-expires-at=" in page.text
    assert (
        f'<form id="download-form" method="post" action="/api/storage/public-download?token={token}">'
        in page.text
    )
    command = (
        f"curl -fL -C - -o db.sql.gz &#39;http://localhost/api/storage/public-download?token={token}&#39;"
    )
    assert command in page.text and "wget -c --content-disposition &#39;http://localhost/" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in page.headers and "Accept" in page.headers["Vary"]
    assert uses(app) == 0
    scanner = client.get(
        URL + token + "&download=1", headers={"Accept": CHROME_ACCEPT, "User-Agent": CHROME_UA}
    )
    assert "<html" in scanner.text and uses(app) == 0  # a scanner in a browser's clothes follows links
    download = client.post(URL + token, headers={"Accept": CHROME_ACCEPT}, buffered=True)
    assert download.data == b"dump" * 300 and uses(app) == 1


@pytest.mark.parametrize("user_agent", BOTS[:4])
def test_bots_never_use_the_link(app, client, user_agent):
    token = mint(app, "db.sql.gz")
    for send in (client.get, client.post):
        response = send(URL + token, headers={"User-Agent": user_agent, "Accept": "*/*"})
        assert response.status_code == 200 and "<html" in response.text
    assert uses(app) == 0
    db = connect(app.config["DATABASE"])
    assert [(event.event, event.repeats) for event in list_events(db)] == [("created", 1), ("preview", 2)]
    db.close()


def test_curl_still_gets_the_file_at_once(app, client):
    token = mint(app, "db.sql.gz")
    response = client.get(URL + token, headers={"Accept": "*/*", "User-Agent": "curl/8.5.0"}, buffered=True)
    assert response.data == b"dump" * 300 and uses(app) == 1


def test_head_from_a_browser_never_uses_the_link(app, client):
    token = mint(app, "db.sql.gz")
    assert client.head(URL + token, headers={"Accept": CHROME_ACCEPT}).status_code == 200
    assert uses(app) == 0


def test_dead_link_in_a_browser_is_a_page(app, client):
    token = mint(app, "db.sql.gz")
    client.get(URL + token, buffered=True)
    page = client.get(URL + token, headers={"Accept": CHROME_ACCEPT})
    assert page.status_code == 410 and "<h1>This link no longer works</h1>" in page.text
    assert (
        "has been used up" in page.text and "<title>This link no longer works · Oncelink</title>" in page.text
    )
    assert "Set-Cookie" not in page.headers
    scripted = client.get(URL + token)
    assert scripted.status_code == 410 and scripted.get_json()["success"] is False


HX = {"HX-Request": "true", "Accept": "*/*"}  # what htmx sends: nothing says HTML


def test_the_landing_page_re_reads_its_link_without_using_it(app, client):
    token = mint(app, "db.sql.gz", uses=2)
    state = client.get(URL + token, headers=HX)
    assert state.status_code == 200 and "<html" not in state.text and "HX-Request" in state.headers["Vary"]
    assert 'id="link-state"' in state.text and "works for 2 more downloads" in state.text
    assert 'hx-trigger="focus from:window, formdata from:#download-form delay:1s"' in state.text  # no polling
    assert uses(app) == 0
    client.get(URL + token, buffered=True)
    assert "works for one download" in client.get(URL + token, headers=HX).text


def test_the_landing_page_follows_a_running_download(app, client):
    token = mint(app, "db.sql.gz")
    running = client.post(URL + token, buffered=False)  # the Download button, its body still unread
    state = client.get(URL + token, headers=HX).text
    assert "Being downloaded right now" in state and "every 2s" in state and 'id="download-form"' not in state
    b"".join(running.response)
    running.close()
    used = client.get(URL + token, headers=HX)
    assert used.status_code == 200 and "<strong>This link is used up</strong>" in used.text
    assert "hx-get" not in used.text and "Download" not in used.text  # nothing more to re-read
    assert uses(app) == 1


@pytest.mark.parametrize(
    ("query", "heading"),
    [
        ("", "This link is incomplete"),
        ("token=a&token=b", "This link is incomplete"),
        ("token=x", "This link no longer works"),
    ],
)
def test_every_refusal_has_a_human_heading(client, query, heading):
    page = client.get(f"/api/storage/public-download?{query}", headers={"Accept": CHROME_ACCEPT})
    assert page.status_code in (400, 410) and f"<h1>{heading}</h1>" in page.text
    assert f"<h1>{page.status_code}</h1>" not in page.text


def test_a_browser_gets_409_and_416_pages_not_500(app, client, backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "f.bin").write_bytes(b"x" * 1000)
    html = {"Accept": "text/html,*/*;q=0.8"}
    token = mint(app, "f.bin")
    url = f"/api/storage/public-download?token={token}"
    busy = client.post(url, buffered=False)  # a transfer in progress holds the link
    second = client.post(url, headers=html)
    assert second.status_code == 409 and second.headers["Retry-After"]
    assert "<h1>This link is being downloaded right now</h1>" in second.text
    busy.close()
    fresh = f"/api/storage/public-download?token={mint(app, 'f.bin')}"
    past_end = client.post(fresh, headers={**html, "Range": "bytes=5000-"})
    assert past_end.status_code == 416 and past_end.headers["Content-Range"] == "bytes */1000"
    assert "<h1>That part of the file does not exist</h1>" in past_end.text
