"""The public download through the Flask test client: headers, ranges, HEAD, failures that lose nothing."""

from __future__ import annotations

import os
import shutil

import pytest

from blueprints.errors import LINK_UNAVAILABLE_MESSAGE
from db import connect
from db.events import list_events
from db.links import list_links
from tests.conftest import make_app, mint
from tests.helpers import database_text

DATA = bytes(range(256)) * 400  # 102400 bytes
URL = "/api/storage/public-download?token="


@pytest.fixture(autouse=True)
def files(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(DATA)
    (backups / "empty.bin").write_bytes(b"")
    (backups / "big.bin").write_bytes(DATA * 20)
    (backups / "Sauvegarde été 2026 «ß».tar").write_bytes(b"non-ascii")


def get(client, token, **headers):
    """A whole download; buffered, so the body is closed as a real server would close it."""
    return client.get(URL + token, headers=headers, buffered=True)


def link_state(app):
    db = connect(app.config["DATABASE"])
    try:
        (link,) = list_links(db)
        return link.uses, [e.event for e in list_events(db, link.id)]
    finally:
        db.close()


def test_download_once_then_410(app, client):
    token = mint(app, "db.sql.gz")
    response = get(client, token)
    assert response.status_code == 200
    assert response.data == DATA
    headers = response.headers
    assert headers["Content-Length"] == str(len(DATA))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == 'attachment; filename="db.sql.gz"'
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["ETag"].startswith('"') and not headers["ETag"].startswith("W/")
    assert "Set-Cookie" not in headers
    again = get(client, token)
    assert again.status == "410 Link used up, expired, revoked or unknown"  # all that wget prints
    assert again.get_json() == {"success": False, "error": LINK_UNAVAILABLE_MESSAGE}
    assert again.headers["Cache-Control"] == "no-store" and again.headers["Referrer-Policy"] == "no-referrer"
    assert link_state(app) == (1, ["created", "started", "completed", "rejected"])


def test_every_dead_link_gets_the_same_answer(app, client, runner, db):
    """Used, expired, revoked or never made: one status line, one body, so no token can be probed."""
    used, expired, revoked = (mint(app, "db.sql.gz") for _ in range(3))
    get(client, used)
    db.execute("UPDATE links SET expires_at = 1 WHERE id = 2")
    assert runner.invoke(args=["links", "revoke", "3"]).exit_code == 0
    html = {"Accept": "text/html"}
    for headers in ({}, html):
        answers = {
            (r.status, r.data) for r in (get(client, t, **headers) for t in (used, expired, revoked, "x"))
        }
        assert len(answers) == 1 and answers.pop()[0].startswith("410 ")


def test_missing_and_broken_tokens(client):
    assert client.get("/api/storage/public-download").status_code == 400
    assert client.get(URL).status_code == 400
    for token in ("x", "a" * 43, "%00", "💥" * 10, "a" * 100_000):
        assert get(client, token).status_code == 410


def test_unknown_tokens_are_logged_without_the_token(app, client):
    client.get(URL + "not-a-real-token")
    db = connect(app.config["DATABASE"])
    assert "not-a-real-token" not in database_text(db)
    db.close()


def test_head_never_consumes(app, client):
    token = mint(app, "db.sql.gz")
    for _ in range(3):
        head = client.head(URL + token)
        assert head.status_code == 200 and head.data == b""
        assert head.headers["Content-Length"] == str(len(DATA))
    assert get(client, token).data == DATA
    assert link_state(app) == (1, ["created", "head", "started", "completed"])  # three HEADs, one row


def test_resume_from_an_offset_counts_as_the_use(app, client):
    token = mint(app, "db.sql.gz")
    response = get(client, token, Range="bytes=1000-")
    assert response.status_code == 206
    assert response.data == DATA[1000:]
    assert response.headers["Content-Range"] == f"bytes 1000-{len(DATA) - 1}/{len(DATA)}"
    assert response.headers["Content-Length"] == str(len(DATA) - 1000)
    assert get(client, token).status_code == 410


def test_a_range_short_of_the_end_does_not_use_the_link(app, client):
    token = mint(app, "db.sql.gz")
    response = get(client, token, Range="bytes=0-99")
    assert response.status_code == 206 and response.data == DATA[:100]
    assert link_state(app)[0] == 0
    assert get(client, token, Range="bytes=100-").data == DATA[100:]
    assert link_state(app) == (1, ["created", "started", "partial", "started", "completed"])


def test_unsatisfiable_range_is_416_and_keeps_the_link(app, client):
    token = mint(app, "db.sql.gz")
    response = get(client, token, Range=f"bytes={len(DATA)}-")
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert get(client, token).status_code == 200


def test_multiple_ranges_and_stale_if_range_get_the_whole_file(app, client):
    token = mint(app, "db.sql.gz", uses=2)
    multi = get(client, token, Range="bytes=0-1,5-6")
    assert multi.status_code == 200 and multi.data == DATA
    stale = get(client, token, Range="bytes=10-", **{"If-Range": '"old"'})
    assert stale.status_code == 200 and stale.data == DATA


def test_empty_file(app, client):
    token = mint(app, "empty.bin")
    response = get(client, token)
    assert response.status_code == 200 and response.data == b""
    assert get(client, token).status_code == 410


def test_non_ascii_filename_uses_rfc6266(app, client):
    name = "Sauvegarde été 2026 «ß».tar"
    response = get(client, mint(app, name))
    disposition = response.headers["Content-Disposition"].encode("latin-1")  # as on the wire
    assert disposition == (
        f'attachment; filename="{name}"; '.encode()
        + b"filename*=UTF-8''Sauvegarde%20%C3%A9t%C3%A9%202026%20%C2%AB%C3%9F%C2%BB.tar"
    )


def test_quotes_in_a_filename_cannot_break_the_header(app, client, backups):
    (backups / 'say "hi".txt').write_bytes(b"x")
    disposition = get(client, mint(app, 'say "hi".txt')).headers["Content-Disposition"]
    assert disposition == "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"


def test_a_client_that_stops_reading_leaves_the_link_usable(app, client):
    token = mint(app, "big.bin")
    response = client.get(URL + token, buffered=False)
    next(iter(response.response))  # one block, then the client goes away
    response.close()
    uses, events = link_state(app)
    assert uses == 0 and events[-1] == "aborted"
    assert get(client, token).data == DATA * 20


def test_a_busy_link_is_409(app, client):
    token = mint(app, "db.sql.gz")
    first = client.get(URL + token, buffered=False)
    second = get(client, token)
    assert second.status_code == 409
    assert second.headers["Retry-After"]
    assert b"".join(first.response) == DATA
    first.close()
    assert get(client, token).status_code == 410


def test_file_gone_is_404_and_the_link_survives(app, client, backups):
    token = mint(app, "db.sql.gz")
    (backups / "db.sql.gz").rename(backups / "moved")
    assert get(client, token).status_code == 404
    (backups / "moved").rename(backups / "db.sql.gz")
    assert get(client, token).status_code == 200


def test_storage_gone_is_500_and_the_link_survives(app, client, backups, tmp_path):
    token = mint(app, "db.sql.gz")
    shutil.move(backups, tmp_path / "unmounted")
    response = get(client, token)
    assert response.status_code == 500
    assert "nothing was counted" in response.get_json()["error"]
    assert "No such file" not in response.get_json()["error"]  # nothing about the storage leaks
    shutil.move(tmp_path / "unmounted", backups)
    assert get(client, token).data == DATA


def test_a_file_replaced_after_minting_gets_a_new_etag(app, client, backups):
    token = mint(app, "db.sql.gz", uses=2)
    first = client.head(URL + token).headers["ETag"]
    (backups / "db.sql.gz").write_bytes(DATA + b"more")
    assert client.head(URL + token).headers["ETag"] != first


def test_refusals_carry_the_privacy_headers(client):
    response = get(client, "unknown-token")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_failed_attempts_are_rate_limited_and_good_downloads_do_not_count(tmp_path, backups):
    app = make_app(tmp_path / "rl", backups, RATELIMIT_ENABLED=True, PUBLIC_FAILURE_LIMIT="3 per minute")
    client = app.test_client()
    good = [mint(app, "db.sql.gz") for _ in range(5)]
    assert [get(client, token).status_code for token in good] == [200] * 5
    assert [get(client, f"guess-{n}").status_code for n in range(4)] == [410, 410, 410, 429]


def test_an_address_past_the_limit_is_still_served_a_valid_link(tmp_path, backups):
    """Only guesses are limited: whoever holds a real link gets it, HEAD, GET and the landing page,
    from an address that tried wrong or dead tokens past the limit."""
    app = make_app(tmp_path / "rl", backups, RATELIMIT_ENABLED=True, PUBLIC_FAILURE_LIMIT="3 per minute")
    client = app.test_client()
    used = mint(app, "db.sql.gz")
    assert get(client, used).status_code == 200
    codes = [get(client, token).status_code for token in ("", "guess", used)]
    assert codes == [400, 410, 410]  # no token, an unknown one, a used one: three failures
    refused = get(client, "guess")
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    token = mint(app, "db.sql.gz")
    assert client.head(URL + token).status_code == 200
    assert client.get(URL + token, headers={"Accept": "text/html"}).status_code == 200
    response = get(client, token)
    assert response.status_code == 200 and response.data == DATA
    assert get(client, token).status_code == 429  # used up, it is a guess like any other
    other_address = app.test_client()
    other_address.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert get(other_address, "guess").status_code == 410


def test_ranges_short_of_the_end_cannot_fetch_a_file_again_and_again(app, client):
    """Partial ranges never use a link, so they draw on a byte budget: two copies for one use.
    A request that would cross the budget is refused before it starts."""
    token = mint(app, "db.sql.gz")
    almost_all = f"bytes=0-{len(DATA) - 2}"
    codes = [get(client, token, Range=almost_all).status_code for _ in range(3)]
    assert codes == [206, 206, 410]
    uses, events = link_state(app)
    assert uses == 0 and events[-1] == "rejected"
    assert get(client, token, Range="bytes=-2").status_code == 206  # what is left still fits


def test_the_budget_holds_for_small_ranges(app, client, backups):
    (backups / "k.bin").write_bytes(DATA[:1024])
    token = mint(app, "k.bin")
    codes = [get(client, token, Range="bytes=0-1022").status_code for _ in range(3)]
    assert codes == [206, 206, 410]  # 2,046 bytes handed out of a budget of 2,048


def test_a_same_size_same_mtime_replacement_changes_the_etag(app, client, backups):
    """`cp -p` and `rsync -t` keep size and mtime: a stale If-Range must still get the whole file."""
    token = mint(app, "db.sql.gz", uses=2)
    path = backups / "db.sql.gz"
    before = path.stat()
    etag = client.head(URL + token).headers["ETag"]
    replaced = bytes(reversed(DATA))
    path.write_bytes(replaced)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    response = get(client, token, Range="bytes=100-", **{"If-Range": etag})
    assert response.status_code == 200 and response.data == replaced


@pytest.mark.parametrize("rewritten", [False, True], ids=["same file", "rewritten in between"])
def test_a_resume_without_if_range_never_splices_two_files(app, client, backups, rewritten):
    """wget -c and curl -C - send a bare Range: it is read against what the link last sent."""
    token = mint(app, "db.sql.gz")
    assert get(client, token, Range="bytes=0-999").status_code == 206  # the interrupted download
    replaced = bytes(reversed(DATA))
    if rewritten:
        (backups / "db.sql.gz.new").write_bytes(replaced)  # as a backup tool replaces its file
        (backups / "db.sql.gz.new").replace(backups / "db.sql.gz")
    response = get(client, token, Range="bytes=1000-")
    if rewritten:
        assert response.status_code == 412 and "replaced" in response.get_json()["error"]
        assert client.head(URL + token, headers={"Range": "bytes=1000-"}).status_code == 412
        assert link_state(app) == (0, ["created", "started", "partial", "rejected"])
        db = connect(app.config["DATABASE"])
        try:
            (link,) = list_links(db)
            assert list_events(db, link.id)[-1].reason == "changed"
        finally:
            db.close()
        assert get(client, token).data == replaced  # a download from the start
    else:
        assert response.status_code == 206 and response.data == DATA[1000:]
    assert get(client, token).status_code == 410


def test_a_resumed_download_stays_within_the_budget(app, client):
    token = mint(app, "db.sql.gz")
    for start in (0, 30_000, 60_000):
        assert get(client, token, Range=f"bytes={start}-{start + 29_999}").status_code == 206  # interrupted
    assert get(client, token, Range="bytes=90000-").status_code == 206
    assert link_state(app)[0] == 1
