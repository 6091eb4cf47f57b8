"""Admin storages page: list, add and edit local and S3 storages, test their connection; admins only."""

from __future__ import annotations

import time
import uuid

import pytest

from core.links import revoke_link
from core.tokens import hash_token
from db.events import list_events
from db.links import find_link
from db.storages import get_storage
from tests.conftest import add_s3, free_port, mint
from tests.helpers import database_text

SECRET = "s3cr3t-Never-Shown-0123456789"
HTMX = {"HX-Request": "true"}


def new_bucket(moto) -> str:
    name = f"admin-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=name)
    return name


def local_form(auth, **fields) -> dict:
    """The local storage form; where several hosts share the database, marked a shared mount."""
    shared = {"shared": "1"} if auth.app.config["SEVERAL_HOSTS"] else {}
    return {"kind": "local", "csrf_token": auth.csrf_token, **shared, **fields}


def s3_form(auth, **fields) -> dict:
    return {"kind": "s3", "csrf_token": auth.csrf_token, "region": "us-east-1", "path_style": "1", **fields}


def admin_requests(auth, tmp_path) -> list[tuple[str, str, dict | None]]:
    form = local_form(auth, storage_id="nas", path=str(tmp_path / "nas"))
    return [
        ("GET", "/admin/storages", None),
        ("GET", "/admin/storages/local", None),
        ("POST", "/admin/storages", form),
        ("POST", "/admin/storages/local", local_form(auth, path=str(tmp_path / "moved"))),
        ("POST", "/admin/storages/local/check", {"csrf_token": auth.csrf_token}),
        ("POST", "/admin/storages/local/remove", {"csrf_token": auth.csrf_token}),
    ]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_see_or_change_storages(client, auth, db, tmp_path, role):
    auth.login(role)
    for method, url, data in admin_requests(auth, tmp_path):
        assert client.open(url, method=method, data=data).status_code == 403, url
    assert get_storage(db, "nas") is None and not (tmp_path / "nas").exists()
    assert get_storage(db, "local") is not None
    assert "/admin/storages" not in client.get("/").text


def test_signed_out_is_sent_to_sign_in(client, auth, tmp_path):
    for method, url, data in admin_requests(auth, tmp_path):
        page = client.open(url, method=method, data=data)
        assert page.status_code in (302, 400), url  # POSTs without a session fail CSRF first
        fragment = client.open(url, method=method, data=data, headers=HTMX)
        assert fragment.status_code in (401, 400), url
    page = client.get("/admin/storages")
    assert page.headers["Location"].startswith("/login?next=/admin/storages")
    fragment = client.get("/admin/storages/local", headers=HTMX)
    assert fragment.headers["HX-Redirect"].startswith("/login?next=")


def test_admin_page_lists_storages_and_is_linked(client, auth, app, moto, backups):
    auth.login("admin")
    add_s3(app, "bucket", moto.url, "some-bucket", prefix="db", secret_access_key=SECRET, redirect=True)
    page = client.get("/admin/users").text
    assert 'href="/admin/storages"' in page
    listing = client.get("/admin/storages")
    assert listing.status_code == 200
    assert 'aria-current="page">Storages' in listing.text
    assert str(backups.resolve()) in listing.text
    assert f"s3://some-bucket/db at {moto.url} (redirect)" in listing.text
    assert listing.text.count("Test connection") == 2
    assert "single use is only approximate" in listing.text
    assert SECRET not in listing.text


def test_changes_need_the_csrf_token(client, auth, db, tmp_path):
    auth.login("admin")
    for method, url, data in admin_requests(auth, tmp_path):
        if method == "POST":
            without = {k: v for k, v in data.items() if k != "csrf_token"}
            answer = client.post(url, data=without)
            assert answer.status_code == 400 and "CSRF" in answer.text, url
    assert get_storage(db, "nas") is None
    assert get_storage(db, "local").config["path"] != str(tmp_path / "moved")
    assert client.get("/browse/local").status_code == 200  # not removed


def test_add_a_local_storage(client, auth, db, tmp_path):
    auth.login("admin")
    form = local_form(auth, storage_id="nas", name="The NAS", path=str(tmp_path / "nas"))
    answer = client.post("/admin/storages", data=form)
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/storages"
    assert get_storage(db, "nas").config["path"] == str(tmp_path / "nas")
    listing = client.get("/admin/storages").text
    assert "Storage nas added." in listing and "The NAS" in listing
    htmx = client.post(
        "/admin/storages", data=local_form(auth, storage_id="nas2", path=str(tmp_path / "n2")), headers=HTMX
    )
    assert htmx.status_code == 200 and htmx.headers["HX-Redirect"] == "/admin/storages"
    assert get_storage(db, "nas2").name == "nas2"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"storage_id": "Bad Id", "path": "{tmp}/x"}, "A storage id is lower-case letters"),
        ({"storage_id": "local", "path": "{tmp}/x"}, "A storage &#39;local&#39; exists already."),
        ({"storage_id": "nas", "path": "  "}, "A folder path is required."),
        ({"storage_id": "nas", "path": "{tmp}/instance/keys"}, "overlaps the data folder"),
        ({"storage_id": "nas", "path": "{tmp}"}, "overlaps the data folder"),
    ],
)
def test_local_form_errors_are_shown_with_what_was_typed(client, auth, db, tmp_path, fields, message):
    auth.login("admin")
    fields = {key: value.replace("{tmp}", str(tmp_path)) for key, value in fields.items()}
    page = client.post("/admin/storages", data=local_form(auth, name="Typed name", **fields))
    assert page.status_code == 400 and message in page.text
    assert "<html" in page.text and 'value="Typed name"' in page.text
    assert page.vary.as_set() >= {"hx-request"}
    fragment = client.post("/admin/storages", data=local_form(auth, **fields), headers=HTMX)
    assert fragment.status_code == 400 and message in fragment.text
    assert "<html" not in fragment.text and fragment.text.lstrip().startswith("<form")
    assert fragment.vary.as_set() >= {"hx-request"}
    assert get_storage(db, "nas") is None


def test_unknown_kind_is_refused(client, auth):
    auth.login("admin")
    assert client.post("/admin/storages", data=local_form(auth, kind="ftp")).status_code == 400


def dump(db) -> str:
    return database_text(db)


def test_add_s3_storage_keeps_the_secret_sealed_and_unseen(client, auth, db, moto):
    auth.login("admin")
    bucket = new_bucket(moto)
    form = s3_form(
        auth,
        storage_id="bucket",
        name="Backups in S3",
        bucket=bucket,
        prefix="db/",
        endpoint_url=moto.url,
        access_key_id="AKIDEXAMPLE",
        secret_access_key=SECRET,
        redirect="1",
    )
    answers = [client.post("/admin/storages", data=form)]
    record = get_storage(db, "bucket")
    assert answers[0].status_code == 303
    assert record.config["bucket"] == bucket and record.config["redirect"] is True
    assert record.config["path_style"] is True and record.config["access_key_id"] == "AKIDEXAMPLE"
    assert record.config["secret_access_key"] and SECRET not in dump(db)
    answers += [client.get("/admin/storages"), client.get("/admin/storages/bucket")]
    answers.append(client.post("/admin/storages/bucket/check", data={"csrf_token": auth.csrf_token}))
    answers.append(client.post("/admin/storages/bucket/check", headers={**HTMX, **auth.headers()}))
    refused = client.post("/admin/storages", data={**form, "storage_id": "Bad Id"})
    assert refused.status_code == 400 and 'value="AKIDEXAMPLE"' in refused.text
    assert "type it again" in refused.text
    answers.append(refused)
    for answer in answers:
        assert SECRET not in answer.text
    assert 'placeholder="unchanged"' in answers[2].text and "AKIDEXAMPLE" in answers[2].text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bucket": ""}, "A bucket name is required."),
        ({"bucket": "b", "endpoint_url": "minio:9000"}, "must be an http:// or https:// address"),
    ],
)
def test_s3_form_errors(client, auth, db, fields, message):
    auth.login("admin")
    answer = client.post(
        "/admin/storages", data=s3_form(auth, storage_id="s3", secret_access_key=SECRET, **fields)
    )
    assert answer.status_code == 400 and message in answer.text and SECRET not in answer.text
    assert get_storage(db, "s3") is None


def test_edit_a_local_storage(client, auth, db, tmp_path):
    auth.login("admin")
    page = client.get("/admin/storages/local")
    assert page.status_code == 200 and 'name="storage_id"' not in page.text
    assert 'value="Local"' in page.text
    form = local_form(auth, name="Moved", path=str(tmp_path / "moved"))
    answer = client.post("/admin/storages/local", data=form)
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/storages"
    record = get_storage(db, "local")
    assert (record.name, record.config["path"]) == ("Moved", str(tmp_path / "moved"))
    refused = client.post("/admin/storages/local", data={**form, "path": str(tmp_path)}, headers=HTMX)
    assert refused.status_code == 400 and "overlaps the data folder" in refused.text
    assert refused.vary.as_set() >= {"hx-request"} and "<html" not in refused.text
    page_refused = client.post("/admin/storages/local", data={**form, "path": ""})
    assert page_refused.status_code == 400 and "<html" in page_refused.text
    assert get_storage(db, "local") == record


def test_edit_s3_keeps_or_replaces_the_secret(client, auth, app, db, moto):
    auth.login("admin")
    bucket = new_bucket(moto)
    add_s3(app, "bucket", moto.url, bucket, secret_access_key=SECRET)
    sealed = get_storage(db, "bucket").config["secret_access_key"]
    form = s3_form(auth, name="Renamed", bucket=bucket, endpoint_url=moto.url, access_key_id="test")
    assert client.post("/admin/storages/bucket", data=form).status_code == 303
    record = get_storage(db, "bucket")
    assert record.name == "Renamed" and record.config["secret_access_key"] == sealed
    check = client.post("/admin/storages/bucket/check", headers={**HTMX, **auth.headers()})
    assert "check ok" in check.text
    new_secret = "another-secret-9876543210"
    refused = client.post(
        "/admin/storages/bucket", data={**form, "bucket": "", "secret_access_key": new_secret}
    )
    assert refused.status_code == 400 and new_secret not in refused.text and SECRET not in refused.text
    assert 'placeholder="unchanged"' in refused.text
    answer = client.post("/admin/storages/bucket", data={**form, "secret_access_key": new_secret})
    assert answer.status_code == 303
    assert get_storage(db, "bucket").config["secret_access_key"] != sealed
    assert new_secret not in dump(db) and SECRET not in dump(db)
    assert new_secret not in client.get("/admin/storages/bucket").text


def test_edit_unknown_storage_is_404(client, auth):
    auth.login("admin")
    assert client.get("/admin/storages/nope").status_code == 404
    assert client.post("/admin/storages/nope", data=local_form(auth, path="/tmp")).status_code == 404
    assert client.post("/admin/storages/nope/check", data={"csrf_token": auth.csrf_token}).status_code == 404
    assert client.post("/admin/storages/nope/remove", data={"csrf_token": auth.csrf_token}).status_code == 404


def check(client, auth, storage_id: str, htmx: bool = True):
    headers = {**HTMX, **auth.headers()} if htmx else {}
    return client.post(
        f"/admin/storages/{storage_id}/check", data={"csrf_token": auth.csrf_token}, headers=headers
    )


def test_check_a_local_storage(client, auth, backups, tmp_path):
    auth.login("admin")
    fragment = check(client, auth, "local")
    assert fragment.status_code == 200 and fragment.vary.as_set() >= {"hx-request"}
    assert fragment.text.startswith('<output id="check-local" class="check ok"')
    assert f"Folder {backups.resolve()} is readable." in fragment.text
    page = check(client, auth, "local", htmx=False)
    assert page.status_code == 200 and "<html" in page.text and 'class="check ok"' in page.text
    assert page.vary.as_set() >= {"hx-request"}
    backups.rmdir()
    failed = check(client, auth, "local")
    assert failed.status_code == 200 and 'class="check error"' in failed.text
    assert "The storage folder is not available" in failed.text


def test_check_s3_ok_missing_bucket_and_unreachable(client, auth, app, moto):
    auth.login("admin")
    bucket = new_bucket(moto)
    add_s3(app, "good", moto.url, bucket, prefix="db", secret_access_key=SECRET)
    add_s3(app, "gone", moto.url, f"missing-{uuid.uuid4().hex[:8]}", secret_access_key=SECRET)
    add_s3(app, "down", f"http://127.0.0.1:{free_port()}", bucket, secret_access_key=SECRET)
    good = check(client, auth, "good")
    assert 'class="check ok"' in good.text and f"Bucket &#39;{bucket}&#39; is readable" in good.text
    gone = check(client, auth, "gone")
    assert 'class="check error"' in gone.text and "does not exist" in gone.text
    down = check(client, auth, "down")
    assert 'class="check error"' in down.text and "Cannot reach the S3 endpoint" in down.text
    for answer in (good, gone, down):
        assert answer.status_code == 200 and SECRET not in answer.text


def download(client, token: str):
    """Buffered, so the body is closed as a real server would close it."""
    return client.get(f"/api/storage/public-download?token={token}", buffered=True)


def link_of(db, token: str):
    return find_link(db, hash_token(token))


def test_removing_a_storage_revokes_its_working_links_and_keeps_their_history(
    client, auth, app, db, backups, tmp_path
):
    auth.login("admin")
    client.post("/admin/storages", data=local_form(auth, storage_id="nas", path=str(tmp_path / "nas")))
    (tmp_path / "nas" / "db.sql.gz").write_bytes(b"dump")
    (backups / "README.txt").write_bytes(b"readme")
    working, spent = mint(app, "db.sql.gz", storage="nas", uses=2), mint(app, "db.sql.gz", storage="nas")
    elsewhere, by_hand = mint(app, "README.txt"), mint(app, "README.txt")
    assert download(client, spent).data == b"dump"
    page = client.get("/admin/storages").text
    assert (
        "Its 1 working link will stop working at once." in page and "files themselves are not touched" in page
    )

    answer = client.post("/admin/storages/nas/remove", data={"csrf_token": auth.csrf_token}, headers=HTMX)
    assert answer.status_code == 200 and answer.headers["HX-Redirect"] == "/admin/storages"
    assert get_storage(db, "nas") is None and (tmp_path / "nas" / "db.sql.gz").read_bytes() == b"dump"
    assert "Storage nas removed (1 working link revoked;" in client.get("/admin/storages").text

    now = time.time()
    link = link_of(db, working)
    assert link.state(now) == "revoked"
    events = [(event.event, event.reason) for event in list_events(db, link.id)]
    assert events[0] == ("created", "cli") and events[-1] == ("revoked", "storage removed by admin")
    assert link_of(db, spent).state(now) == "used"  # dead already: left as it was
    assert download(client, elsewhere).data == b"readme"  # another storage's links work on

    revoke_link(db, link_of(db, by_hand).id, None, now)
    refused, revoked = download(client, working), download(client, by_hand)
    assert refused.status_code == revoked.status_code == 410
    assert refused.text == revoked.text  # answers exactly as a revoked link


def test_removing_without_htmx_redirects_to_the_list(client, auth, db):
    auth.login("admin")
    answer = client.post("/admin/storages/local/remove", data={"csrf_token": auth.csrf_token})
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/storages"
    assert get_storage(db, "local") is None
    assert "No storage yet." in client.get("/admin/storages").text
