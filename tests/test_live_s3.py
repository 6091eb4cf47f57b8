"""S3 storages through real gunicorn, curl and wget, against moto's S3 server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from core.accounts import create_api_key, create_user
from db import connect
from tests.conftest import add_s3, seal
from tests.helpers import (
    MIB,
    curl,
    link_record,
    mint_over_http,
    outcome_events,
    status_of,
    wait_for,
    wget_killed_then_continued,
)

BUCKET = "live"
DATA = os.urandom(MIB) * 40 + os.urandom(12345)


@pytest.fixture(scope="module")
def operator_key(live_server) -> str:
    db = connect(live_server.app.config["DATABASE"])
    try:
        create_user(db, "s3-operator", "a long password", "operator", time.time())
        return create_api_key(db, "s3-operator", time.time())[0]
    finally:
        db.close()


@pytest.fixture(scope="module")
def s3(live_server, moto):
    client = moto.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="backups/db.sql.gz", Body=DATA)
    client.put_object(Bucket=BUCKET, Key="elsewhere/secret.txt", Body=b"outside the prefix")
    add_s3(live_server.app, "s3", moto.url, BUCKET, prefix="backups")
    add_s3(live_server.app, "s3direct", moto.url, BUCKET, prefix="backups", redirect=True)
    return client


def test_single_use_download_with_curl(live_server, s3, tmp_path):
    url = live_server.link("db.sql.gz", storage="s3")
    out = tmp_path / "db.sql.gz"
    assert status_of(url, out) == 200
    assert out.read_bytes() == DATA
    assert status_of(url) == 410
    assert link_record(live_server, url)[0].uses == 1


def test_parallel_race_gives_one_download(live_server, s3):
    url = live_server.link("db.sql.gz", storage="s3")
    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(lambda _: status_of(url), range(30)))
    assert codes.count(200) == 1 and set(codes) <= {200, 410, 409}, codes
    wait_for(lambda: outcome_events(live_server, url) == ["completed"], "the one transfer to finish")


def test_abort_and_retry(live_server, s3, tmp_path):
    url = live_server.link("db.sql.gz", storage="s3")
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    received = 0
    while received < MIB:
        received += len(sock.recv(65536))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the abort")
    assert status_of(url, tmp_path / "out") == 200 and (tmp_path / "out").read_bytes() == DATA


def test_wget_continue_resumes(live_server, s3, tmp_path):
    url = live_server.link("db.sql.gz", storage="s3")
    target = tmp_path / "db.sql.gz"
    wget_killed_then_continued(live_server, url, target, DATA)


def test_decrypted_download_of_an_encrypted_object(live_server, s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="backups/db.sql.gz.enc", Body=seal(live_server.app, "s3key", DATA))
    result = curl("-OJ", "-w", "%{http_code}", live_server.link("db.sql.gz.enc", storage="s3"), cwd=tmp_path)
    assert result.stdout == "200" and (tmp_path / "db.sql.gz").read_bytes() == DATA
    url = live_server.link("db.sql.gz.enc", storage="s3")
    resumed = curl("-H", "Range: bytes=5000000-", "-o", str(tmp_path / "tail"), "-w", "%{http_code}", url)
    assert resumed.stdout == "206" and (tmp_path / "tail").read_bytes() == DATA[5_000_000:]
    assert status_of(url) == 410


def test_redirect_mode_with_curl_follow(live_server, s3, operator_key, tmp_path):
    status, minted = mint_over_http(live_server, operator_key, "s3direct", {"file": "db.sql.gz"})
    assert status == 200 and minted["delivery"] == "redirect"
    url = minted["url"]
    assert curl("-I", url).stdout.startswith("HTTP/1.1 200")  # HEAD never uses the link
    followed = curl("-L", "-o", str(tmp_path / "out"), "-w", "%{http_code} %{num_redirects}", url)
    assert followed.stdout == "200 1" and (tmp_path / "out").read_bytes() == DATA
    assert status_of(url) == 410
    _, events = link_record(live_server, url)
    assert [e.event for e in events] == ["created", "head", "redirected", "rejected"]


def test_wget_follows_the_redirect(live_server, s3, tmp_path):
    url = live_server.link("db.sql.gz", storage="s3direct")
    subprocess.run(["wget", "-q", "--content-disposition", url], cwd=tmp_path, check=True, timeout=120)
    assert (tmp_path / "db.sql.gz").read_bytes() == DATA


def test_a_key_outside_the_prefix_is_never_served(live_server, s3, operator_key):
    assert mint_over_http(live_server, operator_key, "s3", {"file": "../elsewhere/secret.txt"})[0] == 400
    assert mint_over_http(live_server, operator_key, "s3", {"file": "elsewhere/secret.txt"})[0] == 404
    assert mint_over_http(live_server, operator_key, "s3", {"file": "db.sql.gz"})[0] == 200


def test_storage_gone_mid_stream_keeps_the_link(live_server, start_moto, tmp_path):
    moto = start_moto()
    moto.client().create_bucket(Bucket="fragile")
    moto.client().put_object(Bucket="fragile", Key="big.bin", Body=DATA)
    add_s3(live_server.app, "fragile", moto.url, "fragile")
    url = live_server.link("big.bin", storage="fragile")
    target = tmp_path / "out"
    process = subprocess.Popen(["curl", "-s", "--limit-rate", "2M", "-o", str(target), url])
    try:
        wait_for(lambda: target.exists() and target.stat().st_size > MIB, "the transfer to start")
        moto.stop()
        wait_for(
            lambda: outcome_events(live_server, url) == ["aborted"], "the broken transfer to be recorded"
        )
    finally:
        process.kill()
        process.wait()
    assert link_record(live_server, url)[0].uses == 0
    assert status_of(url) == 500  # the storage is still gone: a clear error, and the link survives
