"""Hostile input gets a clear 4xx and loses nothing: a table of cases across the mint API, the
files API, the explorer and the public download, generated paths and JSON, ranges, names."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.redaction import redact
from db import connect
from db.links import list_links
from tests.conftest import mint, seal

MINT = "/api/storage/local/download-url"
FILES = "/api/storage/local/files"
PUBLIC = "/api/storage/public-download"
DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture(autouse=True)
def files(backups):
    (backups / "folder").mkdir(parents=True)
    (backups / "db.sql.gz").write_bytes(DATA)
    (backups / "folder" / "a.tar").write_bytes(b"archive")
    (backups / "loop").symlink_to("loop")  # resolving it never ends: ELOOP
    (backups / "out").symlink_to("/etc")  # leads out of the storage


@pytest.fixture
def operator(client, auth):
    auth.login("operator")
    return auth.headers()


def raw_json(text: str) -> dict:
    return {"data": text, "content_type": "application/json"}


# (what, JSON body as sent, expected status)
MINT_CASES = [
    ("parent directory", {"file": "../etc/passwd"}, 400),
    ("parent inside the path", {"file": "folder/../../x"}, 400),
    ("absolute path", {"file": "/etc/passwd"}, 400),
    ("backslash", {"file": "folder\\a.tar"}, 400),
    ("NUL byte", {"file": "db.sql.gz\x00.txt"}, 400),
    ("newline", {"file": "db\n.sql.gz"}, 400),
    ("DEL character", {"file": "db\x7f"}, 400),
    ("empty path", {"file": ""}, 400),
    ("only dots and slashes", {"file": "./././"}, 400),
    ("a number", {"file": 5}, 400),
    ("a list", {"file": ["db.sql.gz"]}, 400),
    ("an object", {"file": {"path": "db.sql.gz"}}, 400),
    ("null", {"file": None}, 400),
    ("no file", {}, 400),
    ("a path of 5,000 characters", {"file": "a/" * 2500}, 400),
    ("a missing file", {"file": "missing.bin"}, 404),
    ("a name too long for the filesystem", {"file": "a" * 300}, 400),
    ("a symlink loop", {"file": "loop/db.sql.gz"}, 400),
    ("a symlink out of the storage", {"file": "out/passwd"}, 400),
    ("a file below a file", {"file": "db.sql.gz/x"}, 404),
    ("a folder", {"file": "folder"}, 400),
    ("negative ttl", {"file": "db.sql.gz", "ttl": -1}, 400),
    ("ttl as a string", {"file": "db.sql.gz", "ttl": "300"}, 400),
    ("a huge ttl", {"file": "db.sql.gz", "ttl": 10**30}, 400),
    ("ttl true", {"file": "db.sql.gz", "ttl": True}, 400),
    ("zero uses", {"file": "db.sql.gz", "uses": 0}, 400),
    ("fractional uses", {"file": "db.sql.gz", "uses": 1.5}, 400),
    ("decrypt as a string", {"file": "db.sql.gz", "decrypt": "yes"}, 400),
    ("a JSON list", ["db.sql.gz"], 400),
    ("a JSON string", "db.sql.gz", 400),
]

# (what, raw body, expected status): bodies json.dumps cannot make
RAW_MINT_CASES = [
    ("a lone surrogate", '{"file": "\\ud800"}', 400),
    ("a lone surrogate in a folder name", '{"file": "folder/\\udfff/a.tar"}', 400),
    ("JSON nested 100,000 deep", "[" * 100_000 + "]" * 100_000, 400),
    ("an object nested 50,000 deep", '{"a":' * 50_000 + "1" + "}" * 50_000, 400),
    ("truncated JSON", '{"file": "db.sql.gz"', 400),
    ("not JSON", "file=db.sql.gz", 400),
    ("null", "null", 400),
    ("a body over 1 MiB", json.dumps({"file": "x" * (2 * 1024 * 1024)}), 413),
]

# (what, URL, expected status) for a signed-in operator's GETs
GET_CASES = [
    ("files API: parent directory", f"{FILES}?path=../", 400),
    ("files API: absolute path", f"{FILES}?path=/etc", 400),
    ("files API: NUL byte", f"{FILES}?path=%00", 400),
    ("files API: a file, not a folder", f"{FILES}?path=db.sql.gz", 400),
    ("files API: a missing folder", f"{FILES}?path=nowhere", 404),
    ("files API: bytes that are not UTF-8", f"{FILES}?path=%ED%A0%80", 404),
    ("files API: unknown storage", "/api/storage/nope/files", 404),
    ("files API: a symlink loop", f"{FILES}?path=loop", 400),
    ("files API: a symlink out of the storage", f"{FILES}?path=out", 400),
    ("files API: a name too long", f"{FILES}?path={'b' * 300}", 400),
    ("explorer: parent directory", "/browse/local?path=../../", 400),
    ("explorer: unknown storage", "/browse/nope", 404),
    ("direct download: parent directory", "/browse/local/file?path=../x", 400),
    ("direct download: a folder", "/browse/local/file?path=folder", 400),
    ("direct download: missing", "/browse/local/file?path=missing", 404),
    ("link dialog: absolute path", "/browse/local/link?path=/etc/passwd", 400),
    ("link dialog: control character", "/browse/local/link?path=a%0D%0Ab", 400),
]

# (what, query string, headers, expected status) on the public download, for a fresh 1-use link
PUBLIC_CASES = [
    ("no token", "", {}, 400),
    ("an empty token", "token=", {}, 400),
    ("two tokens", "token={token}&token={token}", {}, 400),
    ("the token spelled tok%65n", "tok%65n={token}", {}, 400),
    ("the token spelled %74oken", "%74oken={token}", {}, 400),
    ("the token in capitals", "TOKEN={token}", {}, 400),
    ("a token that is not UTF-8", "token=%FF%FE", {}, 410),
    ("a token with a NUL", "token=%00", {}, 410),
    ("a re-spelled token", "token={token}x", {}, 410),
    ("a token cut short", "token={short}", {}, 410),
    ("a token of 100,000 characters", "token=" + "a" * 100_000, {}, 410),
    ("a range past the end", "token={token}", {"Range": "bytes=999999-"}, 416),
    ("a zero-length suffix", "token={token}", {"Range": "bytes=-0"}, 416),
    ("a start of 30 digits", "token={token}", {"Range": "bytes=" + "9" * 30 + "-"}, 416),
]


@pytest.mark.parametrize(("what", "body", "status"), MINT_CASES, ids=[case[0] for case in MINT_CASES])
def test_hostile_mint_requests_get_a_clear_4xx(client, operator, what, body, status):
    response = client.post(MINT, json=body, headers=operator)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["success"] is False and response.get_json()["error"]


@pytest.mark.parametrize(("what", "body", "status"), RAW_MINT_CASES, ids=[case[0] for case in RAW_MINT_CASES])
def test_hostile_mint_bodies_get_a_clear_4xx(app, client, operator, what, body, status):
    response = client.post(MINT, headers=operator, **raw_json(body))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["success"] is False
    db = connect(app.config["DATABASE"])
    assert list_links(db) == []  # nothing was minted
    db.close()


@pytest.mark.parametrize(("what", "url", "status"), GET_CASES, ids=[case[0] for case in GET_CASES])
def test_hostile_paths_get_a_clear_4xx(client, operator, what, url, status):
    assert client.get(url, buffered=True).status_code == status


@pytest.mark.parametrize(
    ("what", "query", "headers", "status"), PUBLIC_CASES, ids=[case[0] for case in PUBLIC_CASES]
)
def test_hostile_public_requests_get_a_clear_4xx_and_keep_the_link(app, client, what, query, headers, status):
    token = mint(app, "db.sql.gz")
    query = query.format(token=token, short=token[:-1])
    assert client.get(f"{PUBLIC}?{query}", headers=headers, buffered=True).status_code == status
    assert client.get(f"{PUBLIC}?token={token}", buffered=True).data == DATA  # the link was not used


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=-99999", (200, DATA)),  # a suffix longer than the file: all of it
        ("bytes=-10", (206, DATA[-10:])),
        ("items=0-1", (200, DATA)),  # an unknown unit is ignored
        ("bytes=5-2", (200, DATA)),  # an invalid range is ignored
        ("bytes=0-1,5-6", (200, DATA)),  # several ranges: the whole file
        ("bytes=abc", (200, DATA)),
        ("bytes=٣-", (200, DATA)),  # an Arabic-Indic digit is not a digit here
        ("bytes=10-" + "9" * 30, (206, DATA[10:])),  # a huge end stops at the end of the file
    ],
)
def test_ranges_follow_rfc_9110(app, client, header, expected):
    token = mint(app, "db.sql.gz")
    response = client.get(f"{PUBLIC}?token={token}", headers={"Range": header}, buffered=True)
    assert (response.status_code, response.data) == expected


def test_the_login_next_parameter_cannot_split_the_location_header(client, auth):
    user = auth.create("someone", "viewer")
    form = client.get("/login").text
    token = form.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/login?next=/links%0D%0ASet-Cookie:%20x=1",
        data={"name": user.name, "password": "correct horse battery", "csrf_token": token},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/" and "Set-Cookie: x" not in str(response.headers)


def test_responses_that_carry_a_token_are_never_cached(client, operator):
    minted = client.post(MINT, json={"file": "db.sql.gz"}, headers=operator)
    assert minted.headers["Cache-Control"] == "no-store"
    form = {"path": "db.sql.gz", "ttl": "300", "uses": "1", "csrf_token": operator["X-CSRFToken"]}
    dialog = client.post("/browse/local/link", data=form, headers={"HX-Request": "true"})
    assert dialog.status_code == 200 and "token=" in dialog.text
    assert dialog.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/storage/public-download?token=SECRET HTTP/1.1",
        "GET /api/storage/public-download?tok%65n=SECRET HTTP/1.1",
        "GET /api/storage/public-download?%74oken=SECRET HTTP/1.1",
        "GET /api/storage/public-download?%2574oken=SECRET HTTP/1.1",
        "GET /api/storage/public-download?TOKEN=SECRET&x=1 HTTP/1.1",
        "GET /api/storage/public-download?x=1&token=SECRET&token=SECRET2 HTTP/1.1",
        'referer "https://example.org/?a=b;token=SECRET"',
    ],
)
def test_the_log_filter_redacts_every_spelling_of_the_token(line):
    assert "SECRET" not in redact(line)
    assert "[redacted]" in redact(line)


def test_other_parameters_are_left_alone():
    assert (
        redact("GET /browse/local?path=tokens.txt&sort=name") == "GET /browse/local?path=tokens.txt&sort=name"
    )


def test_head_on_a_damaged_encrypted_file_answers_as_get_does(app, client, backups):
    sealed = seal(app, "nightly", DATA * 20)
    stored = backups / "damaged.sql.enc"
    stored.write_bytes(sealed)
    token = mint(app, "damaged.sql.enc", uses=2)
    stored.write_bytes(sealed[:-1] + bytes([sealed[-1] ^ 1]))  # the final chunk fails authentication
    head, get = client.head(f"{PUBLIC}?token={token}"), client.get(f"{PUBLIC}?token={token}", buffered=True)
    assert head.status_code == get.status_code == 422
    stored.write_bytes(sealed[:4] + bytes(len(sealed) - 4))  # the header is damaged
    head, get = client.head(f"{PUBLIC}?token={token}"), client.get(f"{PUBLIC}?token={token}", buffered=True)
    assert head.status_code == get.status_code == 422
    stored.write_bytes(sealed)
    assert client.get(f"{PUBLIC}?token={token}", buffered=True).data == DATA * 20  # nothing was used


BIDI_NAME = "invoice\u202egpj.exe"


def test_bidirectional_controls_are_shown_neutralised_on_every_page(app, client, auth, backups):
    (backups / BIDI_NAME).write_bytes(b"x")
    auth.login("admin")
    token = mint(app, BIDI_NAME)
    pages = [
        client.get("/browse/local").text,
        client.get(f"/browse/local/link?path={BIDI_NAME}").text,
        client.get("/links").text,
        client.get(f"{PUBLIC}?token={token}", headers={"Accept": "text/html"}).text,
    ]
    for page in pages:
        shown = re.sub(r'value="[^"]*"', "", page)  # a form field carries the exact name back
        assert "\u202e" not in shown
        assert "<bdi>invoice\\u202egpj.exe</bdi>" in page
    disposition = client.get(f"{PUBLIC}?token={token}", buffered=True).headers["Content-Disposition"]
    assert "\u202e" not in disposition and "filename*=UTF-8''invoice%E2%80%AEgpj.exe" in disposition


PATHS = st.text(alphabet=st.characters(codec=None), max_size=300)  # surrogates and controls included
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | PATHS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(PATHS, children, max_size=4),
    max_leaves=12,
)
MINT_BODIES = JSON_VALUES | st.fixed_dictionaries(
    {"file": JSON_VALUES | PATHS},
    optional={"ttl": JSON_VALUES, "uses": JSON_VALUES, "decrypt": JSON_VALUES},
)
GENERATED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@GENERATED
@given(body=MINT_BODIES)
def test_generated_mint_bodies_never_get_a_5xx(client, operator, body):
    response = client.post(MINT, headers=operator, **raw_json(json.dumps(body)))
    assert response.status_code < 500, (body, response.get_data(as_text=True))


@GENERATED
@given(path=PATHS)
def test_generated_paths_never_get_a_5xx(client, operator, path):
    query = quote(path.encode("utf-8", "surrogatepass"))  # on the wire, whatever the bytes
    assert client.get(f"{FILES}?path={query}").status_code < 500
    response = client.post(MINT, headers=operator, **raw_json(json.dumps({"file": path})))
    assert response.status_code < 500, (path, response.get_data(as_text=True))
