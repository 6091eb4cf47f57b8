"""SFTP and WebDAV storages through real gunicorn, curl and wget, against a real sshd and wsgidav."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import seal
from tests.helpers import (
    MIB,
    RawDownload,
    curl,
    link_record,
    outcome_events,
    status_of,
    wait_for,
    wget_killed_then_continued,
)
from tests.servers import add_sftp, add_webdav

DATA = os.urandom(MIB) * 24 + os.urandom(4321)
KINDS = ["sftp", "webdav"]


@pytest.fixture(scope="module")
def remote(live_server, sshd, webdav):
    """Both storages on the module's server, holding the same files."""
    for root in (sshd.root, webdav.root):
        (root / "db.sql.gz").write_bytes(DATA)
        (root / "db.sql.gz.enc").write_bytes(seal(live_server.app, "remote", DATA))
    add_sftp(live_server.app, "sftp", sshd)
    add_webdav(live_server.app, "webdav", webdav)
    return live_server


@pytest.mark.parametrize("kind", KINDS)
def test_single_use_download_with_curl(remote, kind, tmp_path):
    url = remote.link("db.sql.gz", storage=kind)
    assert curl("-I", url).stdout.startswith("HTTP/1.1 200")  # HEAD never uses the link
    out = tmp_path / "db.sql.gz"
    assert status_of(url, out) == 200
    assert out.read_bytes() == DATA
    wait_for(lambda: link_record(remote, url)[0].uses == 1, "the use to be counted")
    assert status_of(url) == 410


@pytest.mark.parametrize("kind", KINDS)
def test_wget_continue_resumes(remote, kind, tmp_path):
    url = remote.link("db.sql.gz", storage=kind)
    wget_killed_then_continued(remote, url, tmp_path / "db.sql.gz", DATA)


@pytest.mark.parametrize("kind", KINDS)
def test_decrypted_download_and_resume(remote, kind, tmp_path):
    result = curl("-OJ", "-w", "%{http_code}", remote.link("db.sql.gz.enc", storage=kind), cwd=tmp_path)
    assert result.stdout == "200" and (tmp_path / "db.sql.gz").read_bytes() == DATA
    url = remote.link("db.sql.gz.enc", storage=kind)
    resumed = curl("-H", "Range: bytes=5000000-", "-o", str(tmp_path / "tail"), "-w", "%{http_code}", url)
    assert resumed.stdout == "206" and (tmp_path / "tail").read_bytes() == DATA[5_000_000:]
    wait_for(lambda: link_record(remote, url)[0].uses == 1, "the use to be counted")
    assert status_of(url) == 410


@pytest.mark.parametrize("kind", KINDS)
def test_two_use_link_serves_two_parallel_downloads(remote, kind, tmp_path):
    url = remote.link("db.sql.gz", storage=kind, uses=2)
    processes = [subprocess.Popen(["curl", "-sf", "-o", str(tmp_path / f"out{n}"), url]) for n in range(2)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    assert all((tmp_path / f"out{n}").read_bytes() == DATA for n in range(2))
    wait_for(lambda: link_record(remote, url)[0].uses == 2, "both uses to be counted")
    assert status_of(url) == 410


def test_a_path_through_a_server_symlink_out_of_the_root_is_refused(remote, sshd, tmp_path):
    os.symlink("/etc", sshd.root / "etc-link")
    assert status_of(f"{remote.url}/api/storage/sftp/files?path=etc-link") in (401, 403)  # not signed in
    from tests.conftest import mint

    with pytest.raises(Exception, match="outside the storage"):
        mint(remote.app, "etc-link/passwd", storage="sftp")


@pytest.mark.parametrize("kind", KINDS)
def test_storage_killed_mid_download_keeps_the_link_and_resumes(live_server, kind, request, tmp_path):
    server = request.getfixturevalue("start_sshd" if kind == "sftp" else "start_webdav")()
    (server.root / "big.bin").write_bytes(DATA)
    storage_id = f"fragile-{kind}"
    (add_sftp if kind == "sftp" else add_webdav)(live_server.app, storage_id, server)
    url = live_server.link("big.bin", storage=storage_id)
    download = RawDownload(url)
    download.read(MIB)
    server.stop()
    received = download.read_to_end()
    assert len(received) < len(DATA)  # cut short, not padded or hung
    wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the broken transfer to be recorded")
    target = tmp_path / "big.bin"
    target.write_bytes(received)
    link, events = link_record(live_server, url)
    assert link.uses == 0
    assert [e.reason for e in events if e.event == "aborted"] == ["storage failed"]
    assert status_of(url) >= 500  # still gone: a clear error, and the link survives
    server.start()  # back, on the same port with the same host key
    resumed = curl("-f", "-C", "-", "-o", str(target), "-w", "%{http_code}", url)
    assert resumed.stdout == "206" and target.read_bytes() == DATA
    wait_for(lambda: link_record(live_server, url)[0].uses == 1, "the resumed transfer to count")
