"""The storage explorer and the link dialog through the Flask test client."""

from __future__ import annotations

import io
import os
import shlex
import time

import pytest

from core import search
from core.commands import fetch_commands, output_name
from core.tokens import hash_token
from db.links import find_link, list_links
from db.storages import StorageRecord, insert_storage
from encryption.format import encrypt_stream, new_header
from tests.conftest import PASSWORD, csrf_token_from, mint

HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def files(backups):
    (backups / "folder" / "deeper").mkdir(parents=True)
    (backups / "db.sql.gz").write_bytes(b"dump" * 1000)
    (backups / "small.txt").write_bytes(b"x")
    (backups / "it's $(odd) name.tar").write_bytes(b"odd")
    (backups / "folder" / "a.tar").write_bytes(b"archive")


def test_page_without_htmx_fragment_with_it(client, auth):
    auth.login("viewer")
    page = client.get("/browse/local")
    assert page.status_code == 200 and "<html" in page.text and 'id="listing"' in page.text
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/browse/local", headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<section id="listing"')
    assert "HX-Request" in fragment.headers["Vary"]


def test_history_restore_gets_the_whole_page(client, auth):
    auth.login("viewer")
    response = client.get("/browse/local", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in response.text


def test_listing_shows_folders_first_sizes_and_breadcrumbs(client, auth):
    auth.login("viewer")
    text = client.get("/browse/local").text
    assert text.index("folder</bdi>/") < text.index("db.sql.gz") < text.index("small.txt")
    assert "3.9 KiB" in text and "1 B" in text
    inner = client.get("/browse/local?path=folder/deeper", headers=HX).text
    assert 'aria-current="location"><bdi>deeper</bdi><' in inner
    assert 'href="/browse/local?path=folder"' in inner


def test_sort_and_filter(client, auth):
    auth.login("viewer")
    text = client.get("/browse/local?sort=size&order=desc").text
    assert text.index("db.sql.gz") < text.index("odd") < text.index("small.txt")
    filtered = client.get("/browse/local?q=SQL", headers=HX).text
    assert "db.sql.gz" in filtered and "small.txt" not in filtered
    assert "No name contains" in client.get("/browse/local?q=nothing-like-this").text


@pytest.fixture
def many(backups):
    """A folder of 250 empty files: three pages of 100."""
    folder = backups / "many"
    folder.mkdir()
    for index in range(250):
        (folder / f"f{index:05}.bin").write_bytes(b"")
    return folder


def test_big_folders_are_paged(client, auth, many):
    auth.login("viewer")
    first = client.get("/browse/local?path=many").text
    assert first.count('class="file-name"') == 100 and "page 1 of 3" in first
    last = client.get("/browse/local?path=many&page=3", headers=HX).text
    assert last.count('class="file-name"') == 50 and "f00249.bin" in last and "Next" not in last


def test_the_pager_sits_above_and_below_with_first_last_a_jump_and_a_page_size(client, auth, many):
    auth.login("viewer")
    second = client.get("/browse/local?path=many&page=2").text
    assert 'aria-label="Pages (above)"' in second and 'aria-label="Pages (below)"' in second
    assert second.count("« First") == 2 and second.count("Last »") == 2
    assert 'href="/browse/local?path=many&amp;page=3"' in second  # Last, and Next
    assert second.count('name="page" value="2" min="1" max="3"') == 2  # the jump, above and below
    wide = client.get("/browse/local?path=many&size=250").text
    assert wide.count('class="file-name"') == 250 and "Next" not in wide and "Last »" not in wide
    assert '<option value="250" selected>' in wide
    wide_second_page = client.get("/browse/local?path=many&size=50&page=5").text
    assert wide_second_page.count('class="file-name"') == 50 and "f00249.bin" in wide_second_page
    assert "size=50" in wide_second_page.split("« First")[0].rsplit("href=", 1)[-1]  # links keep the size
    odd = client.get("/browse/local?path=many&size=7").text
    assert odd.count('class="file-name"') == 100  # a size that is not offered is the default


def test_the_filter_can_search_the_folders_below(client, auth, backups):
    for path in (
        "a/keep-1.sql",
        "a/b/c/keep-2.sql",
        "a/b/other.txt",
        "z/keep-dir/inside.txt",
        "keep-top.sql",
    ):
        (backups / "deep" / path).parent.mkdir(parents=True, exist_ok=True)
        (backups / "deep" / path).write_bytes(b"x")
    auth.login("viewer")
    here = client.get("/browse/local?path=deep&q=keep", headers=HX).text
    assert "keep-top.sql" in here and "keep-1.sql" not in here
    below = client.get("/browse/local?path=deep&q=KEEP&below=1", headers=HX).text
    shown = [
        below.index(name)
        for name in ("keep-top.sql", "a/keep-1.sql", "z/keep-dir</bdi>/", "a/b/c/keep-2.sql")
    ]
    assert shown == sorted(shown)  # nearer folders first
    assert "other.txt" not in below and "inside.txt" not in below
    assert "4 matches" in below and "may be more" not in below
    assert 'href="/browse/local?path=deep/z/keep-dir"' in below  # a folder found opens as a folder


def test_a_search_below_says_when_its_bounds_stopped_it(client, auth, backups, monkeypatch):
    monkeypatch.setattr(search, "MAX_ENTRIES", 7)  # the folder, then two of its five folders
    for number in range(5):
        (backups / "wide" / f"sub{number}").mkdir(parents=True)
        (backups / "wide" / f"sub{number}" / "match.sql").write_bytes(b"x")
    auth.login("viewer")
    cut = client.get("/browse/local?path=wide&q=match&below=1", headers=HX).text
    assert "may be more" in cut and 0 < cut.count('class="file-name"') < 5


def test_storages_are_named_once_on_home_and_in_the_breadcrumb(client, auth, db, backups):
    insert_storage(db, StorageRecord("nightly", "Nightly dumps", "local", {"path": str(backups)}))
    auth.login("viewer")
    home = client.get("/").text
    assert "Nightly dumps" in home and "a folder on this server · id <code>nightly</code>" in home
    assert "(local)" not in home
    page = client.get("/browse/nightly").text
    crumbs = page.split('aria-label="Folder"')[1].split("</nav>")[0]
    assert "Nightly dumps" in crumbs and "nightly<" not in crumbs
    assert "<title>Nightly dumps · Oncelink</title>" in page


def test_errors_are_clear_messages(client, auth):
    auth.login("operator")
    missing = client.get("/browse/local?path=nowhere")
    assert missing.status_code == 404 and "No such folder" in missing.text and "<html" in missing.text
    fragment = client.get("/browse/local?path=nowhere", headers=HX)
    assert fragment.status_code == 404 and "<html" not in fragment.text and "No such folder" in fragment.text
    assert client.get("/browse/local?path=../etc").status_code == 400
    assert client.get("/browse/nope").status_code == 404
    gone = client.get("/browse/local/link?path=gone.sql", headers=HX)
    assert gone.status_code == 404 and "No such file" in gone.text


def test_signed_out_htmx_request_gets_hx_redirect(client):
    response = client.get(
        "/browse/local?path=folder",
        headers={**HX, "HX-Current-URL": "http://localhost/browse/local?path=folder"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/browse/local?path%3Dfolder"
    plain = client.get("/browse/local")
    assert plain.status_code == 302 and plain.headers["Location"] == "/login?next=/browse/local"


@pytest.mark.parametrize(
    ("role", "browse", "download", "mint"),
    [("viewer", 200, 403, 403), ("operator", 200, 200, 200), ("admin", 200, 200, 200)],
)
def test_role_matrix(client, auth, role, browse, download, mint):
    auth.login(role)
    assert client.get("/browse/local").status_code == browse
    assert client.get("/browse/local/file?path=small.txt", buffered=True).status_code == download
    assert client.get("/browse/local/link?path=small.txt").status_code == mint
    form = {"path": "small.txt", "csrf_token": auth.csrf_token}
    assert client.post("/browse/local/link", data=form).status_code == mint
    assert ('class="menu"' in client.get("/browse/local").text) == (role != "viewer")


def test_minting_needs_the_csrf_token(client, auth):
    auth.login("operator")
    assert client.post("/browse/local/link", data={"path": "small.txt"}).status_code == 400


def test_link_dialog_mints_a_link_with_commands(app, client, auth, db):
    auth.login("operator")
    dialog = client.get("/browse/local/link?path=folder/a.tar", headers=HX)
    assert '<form id="link-box"' in dialog.text and 'name="ttl"' in dialog.text
    assert 'name="decrypt"' not in dialog.text  # only for encrypted files
    form = {"path": "folder/a.tar", "ttl": "900", "uses": "2", "csrf_token": auth.csrf_token}
    result = client.post("/browse/local/link", data=form, headers=HX)
    assert result.status_code == 200 and "<html" not in result.text
    (link,) = list_links(db)
    assert (link.path, link.max_uses, round(link.expires_at - link.created_at)) == ("folder/a.tar", 2, 900)
    assert f'data-expires-at="{time.strftime("%Y-%m-%d", time.gmtime(link.expires_at))}' in result.text
    assert "curl -fL -C - -o a.tar &#39;http://localhost/api/storage/public-download?token=" in result.text
    assert "wget -c --content-disposition &#39;http://localhost/" in result.text and "15:00" in result.text
    assert "Shown once: copy it now." in result.text and 'data-copy="link-url"' in result.text
    assert "Run the same command again in the same folder to resume" in result.text


def test_link_options_are_checked(client, auth):
    auth.login("operator")
    form = {"path": "small.txt", "ttl": "999999999", "csrf_token": auth.csrf_token}
    response = client.post("/browse/local/link", data=form, headers=HX)
    assert response.status_code == 400 and "ttl&#39; must be a whole number from 1 to 86400" in response.text
    form = {"path": "small.txt", "uses": "two", "csrf_token": auth.csrf_token}
    assert client.post("/browse/local/link", data=form).status_code == 400


def test_regenerate_revokes_the_unused_link(client, auth, db):
    auth.login("operator")
    form = {"path": "small.txt", "csrf_token": auth.csrf_token}
    client.post("/browse/local/link", data=form, headers=HX)
    (first,) = list_links(db)
    again = client.post("/browse/local/link", data={**form, "replaces": str(first.id)}, headers=HX)
    second, first = list_links(db)
    assert first.revoked_at is not None and second.revoked_at is None
    assert f"Link #{first.id} was revoked: it no longer works." in again.text
    assert f"revokes link #{second.id} if nobody used it" in again.text


def test_regenerate_says_why_a_used_link_was_not_revoked(app, client, auth, db):
    auth.login("operator")
    form = {"path": "small.txt", "uses": "2", "csrf_token": auth.csrf_token}
    client.post("/browse/local/link", data=form, headers=HX)
    (first,) = list_links(db)
    db.execute("UPDATE links SET uses = 1 WHERE id = ?", [first.id])
    again = client.post("/browse/local/link", data={**form, "replaces": str(first.id)}, headers=HX)
    assert f"Link #{first.id} still works: it was already used" in again.text and "(1 of 2)" in again.text
    db.execute("UPDATE links SET uses = 2 WHERE id = ?", [first.id])
    third = client.post("/browse/local/link", data={**form, "replaces": str(first.id)}, headers=HX)
    assert f"Link #{first.id} was already used: nothing to revoke." in third.text
    assert all(link.revoked_at is None for link in list_links(db))


def test_regenerate_cannot_touch_someone_elses_link(client, auth, db, app):
    auth.login("operator")
    form = {"path": "small.txt", "csrf_token": auth.csrf_token}
    client.post("/browse/local/link", data=form)
    (theirs,) = list_links(db)
    other = app.test_client()
    auth.create("other", "operator")
    token = csrf_token_from(other.get("/login").text)
    other.post("/login", data={"name": "other", "password": PASSWORD, "csrf_token": token})
    token = csrf_token_from(other.get("/").text)
    response = other.post(
        "/browse/local/link", data={**form, "csrf_token": token, "replaces": str(theirs.id)}
    )
    assert response.status_code == 404
    assert list_links(db)[-1].revoked_at is None


def test_without_javascript_the_dialog_is_a_page(client, auth):
    auth.login("operator")
    page = client.get("/browse/local/link?path=folder/a.tar")
    assert "<html" in page.text and "Back to the folder" in page.text
    result = client.post("/browse/local/link", data={"path": "folder/a.tar", "csrf_token": auth.csrf_token})
    assert "<html" in result.text and "curl -fL -C - -o a.tar" in result.text


def test_direct_download(client, auth):
    auth.login("operator")
    response = client.get("/browse/local/file?path=db.sql.gz", buffered=True)
    assert response.data == b"dump" * 1000
    assert response.headers["Content-Disposition"] == 'attachment; filename="db.sql.gz"'
    assert "no-store" in response.headers["Cache-Control"]


@pytest.fixture
def encrypted(app, db, backups):
    keyring = app.extensions["oncelink_keyring"]
    profile = keyring.create(db, "main", time.time())
    plain = os.urandom(100_000)
    out = io.BytesIO()
    encrypt_stream(
        io.BytesIO(plain), out, keyring.by_name(db, "main")[1], new_header(bytes.fromhex(profile.id))
    )
    (backups / "secret.sql.enc").write_bytes(out.getvalue())
    return plain


def test_encrypted_files_get_a_badge_a_choice_and_decrypt(client, auth, encrypted, db):
    auth.login("operator")
    assert '<svg class="icon icon-lock"' in client.get("/browse/local").text
    assert "</svg> encrypted · main" in client.get("/browse/local").text
    dialog = client.get("/browse/local/link?path=secret.sql.enc", headers=HX).text
    assert 'name="decrypt" value="0"' in dialog and "profile main" in dialog
    assert client.get("/browse/local/file?path=secret.sql.enc", buffered=True).data == encrypted
    form = {"path": "secret.sql.enc", "decrypt": "0", "csrf_token": auth.csrf_token}
    stored = client.post("/browse/local/link", data=form, headers=HX).text
    assert "curl -fL -C - -o secret.sql.enc" in stored and list_links(db)[0].decrypt is False
    assert '<span class="badge mode stored">as stored</span>' in stored and "decrypted" not in stored
    plain = client.post("/browse/local/link", data={**form, "decrypt": "1"}, headers=HX).text
    assert "curl -fL -C - -o secret.sql " in plain
    assert '<span class="badge mode decrypted">decrypted</span>' in plain and "decrypted on the fly" in plain


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.tar", "a.tar"),
        ("-rf", "./-rf"),
        ("..", "download"),
        ("x/../y", "y"),
        ("", "download"),
        ("invoice\u202egpj.exe", "invoice_gpj.exe"),
        ("a\nb", "a_b"),
    ],
)
def test_output_name(name, expected):
    assert output_name(name) == expected


def test_commands_quote_hostile_names():
    commands = fetch_commands("http://h/x?token=a&b", "it's $(rm -rf ~) `x`.tar")
    assert shlex.split(commands.curl) == [
        "curl",
        "-fL",
        "-C",
        "-",
        "-o",
        "it's $(rm -rf ~) `x`.tar",
        "http://h/x?token=a&b",
    ]
    assert shlex.split(commands.wget) == ["wget", "-c", "--content-disposition", "http://h/x?token=a&b"]


def test_minting_in_the_dialog_purges_links_long_dead(app, client, auth, db, monkeypatch):
    """In the background, once the purge interval has passed (here: at once)."""
    monkeypatch.setattr(app.extensions["oncelink_purge"], "interval_seconds", 0)
    auth.login("operator")
    old = mint(app, "small.txt", ttl=1)
    week_ago = time.time() - 8 * 86400
    db.execute("UPDATE links SET expires_at = ? WHERE token_hash = ?", [week_ago, hash_token(old)])
    form = {"path": "small.txt", "csrf_token": auth.csrf_token}
    assert client.post("/browse/local/link", data=form, headers=HX).status_code == 200
    app.extensions["oncelink_purge"].wait()
    assert find_link(db, hash_token(old)) is None
    assert len(list_links(db)) == 1


def test_a_search_below_reads_a_folder_met_again_through_a_symlink_once(client, auth, backups):
    (backups / "looped" / "inner").mkdir(parents=True)
    (backups / "looped" / "inner" / "keep.sql").write_bytes(b"x")
    os.symlink("..", backups / "looped" / "inner" / "up")  # inner/up is looped itself
    auth.login("viewer")
    found = client.get("/browse/local?path=looped&q=keep&below=1", headers=HX).text
    assert found.count('class="file-name"') == 1 and "1 match " in found and "may be more" not in found
