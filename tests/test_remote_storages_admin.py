"""SFTP and WebDAV storages on the admin page and in the CLI: secrets write-only, the host key
confirmed once and a changed one refused, and Test connection saying precisely what is wrong."""

from __future__ import annotations

import html
import io
import re
import subprocess
from dataclasses import dataclass

import pytest

from db.storages import get_storage
from tests.conftest import free_port
from tests.servers import WEBDAV_PASSWORD, WEBDAV_USER, add_sftp

HTMX = {"HX-Request": "true"}
OTHER_FINGERPRINT = "SHA256:" + "A" * 43


def sftp_form(auth, sshd, **fields) -> dict:
    return {
        "kind": "sftp",
        "csrf_token": auth.csrf_token,
        "host": "127.0.0.1",
        "port": str(sshd.port),
        "user": sshd.user,
        "root": str(sshd.root),
        "private_key": sshd.client_key,
        **fields,
    }


@dataclass
class Checked:
    text: str  # the result as read on the page: tags dropped, entities decoded
    html: str


def check(client, auth, storage_id: str) -> Checked:
    url = f"/admin/storages/{storage_id}/check"
    answer = client.post(url, data={"csrf_token": auth.csrf_token}, headers=HTMX).text
    return Checked(html.unescape(re.sub(r"<[^>]+>", "", answer)), answer)


def test_sftp_added_on_the_page_then_its_host_key_confirmed(client, auth, db, sshd):
    auth.login("admin")
    added = client.post("/admin/storages", data=sftp_form(auth, sshd, storage_id="box"), headers=HTMX)
    assert added.headers["HX-Redirect"] == "/admin/storages"
    stored = get_storage(db, "box").config
    assert stored["private_key"] and "PRIVATE KEY" not in stored["private_key"]  # sealed
    for page in (client.get("/admin/storages").text, client.get("/admin/storages/box").text):
        assert "PRIVATE KEY" not in page and stored["private_key"] not in page
    assert "host key not confirmed" in client.get("/admin/storages").text
    first = check(client, auth, "box")
    assert "not confirmed yet" in first.text and f'value="{sshd.fingerprint}"' in first.html
    confirmed = client.post(
        "/admin/storages/box/host-key",
        data={"csrf_token": auth.csrf_token, "fingerprint": sshd.fingerprint},
        headers=HTMX,
    )
    assert confirmed.headers["HX-Redirect"] == "/admin/storages"
    assert get_storage(db, "box").config["host_keys"] == [sshd.fingerprint]
    assert "OK:" in check(client, auth, "box").text


def test_editing_keeps_the_stored_key_and_host_key(client, auth, db, sshd):
    auth.login("admin")
    add_sftp(client.application, "kept", sshd)
    before = get_storage(db, "kept").config
    form = sftp_form(auth, sshd, private_key="", name="Storage Box")
    assert client.post("/admin/storages/kept", data=form, headers=HTMX).headers["HX-Redirect"]
    after = get_storage(db, "kept")
    assert after.name == "Storage Box"
    assert after.config["private_key"] == before["private_key"] and after.config["host_keys"] == [
        sshd.fingerprint
    ]
    assert "OK:" in check(client, auth, "kept").text


def test_an_uploaded_key_file_works(client, auth, db, sshd):
    auth.login("admin")
    form = sftp_form(auth, sshd, storage_id="upload", private_key="", host_key=sshd.host_key_line)
    form["private_key_file"] = (io.BytesIO(sshd.client_key.encode()), "id_ed25519")
    added = client.post("/admin/storages", data=form, headers=HTMX, content_type="multipart/form-data")
    assert added.headers["HX-Redirect"]
    assert get_storage(db, "upload").config["host_keys"] == [" ".join(sshd.host_key_line.split()[1:])]
    assert "OK:" in check(client, auth, "upload").text


def test_a_changed_host_key_is_refused(client, auth, db, sshd):
    auth.login("admin")
    form = sftp_form(auth, sshd, storage_id="moved", host_key=OTHER_FINGERPRINT)
    client.post("/admin/storages", data=form, headers=HTMX)
    answer = check(client, auth, "moved")
    assert (
        "host key changed" in answer.text and sshd.fingerprint in answer.text and "Trust" not in answer.text
    )


@pytest.mark.parametrize(
    "fields, diagnosis",
    [
        ({"host": "no-such-host.invalid"}, "does not resolve"),
        ({"port": "PORT"}, "refused the connection"),
        ({"user": "nobody-here"}, "refused user 'nobody-here'"),
        ({"root": "/no/such/folder"}, "does not exist on the server"),
    ],
)
def test_check_diagnoses_sftp(client, auth, sshd, fields, diagnosis):
    auth.login("admin")
    fields = {name: str(free_port()) if value == "PORT" else value for name, value in fields.items()}
    form = sftp_form(auth, sshd, storage_id="diag", host_key=sshd.fingerprint, **fields)
    assert client.post("/admin/storages", data=form, headers=HTMX).headers.get("HX-Redirect")
    answer = check(client, auth, "diag")
    assert "Failed:" in answer.text and diagnosis in answer.text


def test_a_wrong_password_is_an_authentication_failure(client, auth, sshd):
    auth.login("admin")
    form = sftp_form(auth, sshd, storage_id="pw", host_key=sshd.fingerprint, private_key="", password="wrong")
    client.post("/admin/storages", data=form, headers=HTMX)
    assert "with this password" in check(client, auth, "pw").text


def webdav_form(auth, webdav, **fields) -> dict:
    return {
        "kind": "webdav",
        "csrf_token": auth.csrf_token,
        "url": webdav.url,
        "user": WEBDAV_USER,
        "password": WEBDAV_PASSWORD,
        **fields,
    }


@pytest.mark.parametrize(
    "fields, diagnosis",
    [
        ({}, "OK: WebDAV folder"),
        ({"password": "wrong"}, "refused user 'backup' with this password"),
        ({"url": "URL/nope/"}, "does not exist on the server"),
        ({"url": "http://127.0.0.1:PORT/dav/"}, "refused the connection"),
        ({"url": "http://no-such-host.invalid/dav/"}, "does not resolve"),
    ],
)
def test_webdav_on_the_page_and_its_diagnosis(client, auth, db, webdav, fields, diagnosis):
    auth.login("admin")
    fields = {k: v.replace("URL/", webdav.url).replace("PORT", str(free_port())) for k, v in fields.items()}
    assert client.post(
        "/admin/storages", data=webdav_form(auth, webdav, storage_id="dav", **fields), headers=HTMX
    )
    assert WEBDAV_PASSWORD not in client.get("/admin/storages/dav").text
    assert get_storage(db, "dav").config["password"] != WEBDAV_PASSWORD
    assert diagnosis in check(client, auth, "dav").text


def test_cli_add_sftp_with_a_fingerprint_then_test(runner, sshd, tmp_path):
    key = tmp_path / "key"
    key.write_text(sshd.client_key)
    common = ["--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user, "--root", str(sshd.root)]
    added = runner.invoke(
        args=[
            "storages",
            "add-sftp",
            "box",
            *common,
            "--key-file",
            str(key),
            "--fingerprint",
            sshd.fingerprint,
        ]
    )
    assert added.exit_code == 0, added.output
    tested = runner.invoke(args=["storages", "test", "box"])
    assert tested.exit_code == 0 and "is readable" in tested.output


def test_cli_add_sftp_unconfirmed_then_trusted(runner, sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    common = ["--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user, "--root", str(sshd.root)]
    env = {"ONCELINK_STORAGE_PASSWORD": "not-the-password"}
    assert runner.invoke(args=["storages", "add-sftp", "pw", *common], env=env).exit_code == 0
    tested = runner.invoke(args=["storages", "test", "pw"])
    assert tested.exit_code == 1 and f"trust-host-key pw {sshd.fingerprint}" in tested.output
    assert runner.invoke(args=["storages", "trust-host-key", "pw", sshd.fingerprint]).exit_code == 0
    assert "with this password" in runner.invoke(args=["storages", "test", "pw"]).output
    known_hosts.write_text(sshd.host_key_line + "\n")
    key = tmp_path / "key"
    key.write_text(sshd.client_key)
    by_file = ["--key-file", str(key), "--known-hosts", str(known_hosts)]
    assert runner.invoke(args=["storages", "add-sftp", "kh", *common, *by_file]).exit_code == 0
    assert "is readable" in runner.invoke(args=["storages", "test", "kh"]).output


def test_cli_add_webdav(runner, webdav):
    env = {"ONCELINK_STORAGE_PASSWORD": WEBDAV_PASSWORD}
    added = runner.invoke(
        args=["storages", "add-webdav", "dav", "--url", webdav.url, "--user", WEBDAV_USER], env=env
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(args=["storages", "list"]).output
    assert webdav.url in listed and WEBDAV_PASSWORD not in listed
    assert "is readable" in runner.invoke(args=["storages", "test", "dav"]).output


def test_ssh_keyscan_shows_the_fingerprint_the_page_asks_to_confirm(sshd):
    """What the admin compares with: the fingerprint OpenSSH's own tools print for the server."""
    scanned = subprocess.run(
        ["ssh-keyscan", "-p", str(sshd.port), "-t", "ed25519", "127.0.0.1"], capture_output=True, text=True
    )
    printed = subprocess.run(["ssh-keygen", "-lf", "-"], input=scanned.stdout, capture_output=True, text=True)
    assert sshd.fingerprint in printed.stdout
