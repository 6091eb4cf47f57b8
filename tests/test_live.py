"""Real gunicorn, real curl and wget: single use, races, aborts, resume, restarts and logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.tokens import hash_token
from db import connect
from tests.helpers import (
    MIB,
    curl,
    interrupted,
    link_record,
    make_file,
    mint_over_http,
    outcome_events,
    status_of,
    token_of,
    wait_for,
    wget_killed_then_continued,
)


@pytest.fixture(scope="module")
def big(live_server) -> bytes:
    return make_file(live_server.backups, "big.bin", 64 * MIB)


@pytest.fixture(scope="module")
def small(live_server) -> bytes:
    return make_file(live_server.backups, "small.tar.gz", 3 * MIB + 17)


def test_curl_downloads_once_then_gets_410(live_server, small, tmp_path):
    url = live_server.link("small.tar.gz")
    result = curl("-o", str(tmp_path / "out"), "-w", "%{http_code}", url)
    assert result.stdout == "200"
    assert (tmp_path / "out").read_bytes() == small
    assert status_of(url) == 410
    link, events = link_record(live_server, url)
    assert link.uses == 1
    completed = [e for e in events if e.event == "completed"]
    assert completed[0].bytes == len(small) and completed[0].client_ip == "127.0.0.1"
    assert completed[0].user_agent.startswith("curl/")


def test_thirty_parallel_requests_give_exactly_one_200(live_server, small):
    url = live_server.link("small.tar.gz")
    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(lambda _: status_of(url), range(30)))
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 410, 409}, codes
    wait_for(lambda: outcome_events(live_server, url) == ["completed"], "the one transfer to finish")
    assert link_record(live_server, url)[0].uses == 1


def test_head_never_consumes(live_server, small):
    url = live_server.link("small.tar.gz")
    for _ in range(3):
        head = curl("-I", url).stdout
        assert head.startswith("HTTP/1.1 200")
        assert f"Content-Length: {len(small)}" in head
    assert status_of(url) == 200


def test_a_client_that_reads_half_and_disconnects_leaves_the_link_usable(live_server, big, tmp_path):
    url = live_server.link("big.bin")
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    received = 0
    while received < len(big) // 2:
        chunk = sock.recv(256 * 1024)
        assert chunk, "server closed early"
        received += len(chunk)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # with linger 0: a reset, as when a client dies
    wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the abort to be recorded")
    link, events = link_record(live_server, url)
    assert link.uses == 0
    aborted = events[-1]
    assert len(big) // 2 <= aborted.bytes < len(big)
    result = curl("-o", str(tmp_path / "out"), "-w", "%{http_code}", url)
    assert result.stdout == "200" and (tmp_path / "out").read_bytes() == big


def test_wget_continue_after_a_killed_wget_finishes_and_uses_the_link(live_server, big, tmp_path):
    url = live_server.link("big.bin")
    wget_killed_then_continued(live_server, url, tmp_path / "big.bin", big)
    assert status_of(url) == 410


def test_curl_continue_resumes_too(live_server, big, tmp_path):
    url = live_server.link("big.bin")
    target = tmp_path / "out.bin"
    interrupted(["curl", "-s", "--limit-rate", "8M", "-o", str(target), url], target, tmp_path)
    wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the abort to be recorded")
    result = curl("-C", "-", "-o", str(target), "-w", "%{http_code}", url)
    assert result.stdout == "206"
    assert target.read_bytes() == big
    assert status_of(url) == 410


def test_expired_link_is_410(live_server, small):
    url = live_server.link("small.tar.gz")
    db = connect(live_server.app.config["DATABASE"])
    db.execute(
        "UPDATE links SET expires_at = ? WHERE token_hash = ?", [time.time() - 1, hash_token(token_of(url))]
    )
    db.close()
    assert status_of(url) == 410
    assert link_record(live_server, url)[1][-1].reason == "expired"


def test_non_ascii_filename_round_trips_with_curl_remote_header_name(live_server, tmp_path):
    name = "Sauvegarde été «ß» 日本.tar"
    data = make_file(live_server.backups, name, 1000)
    result = curl("-OJ", "-w", "%{http_code}", live_server.link(name), cwd=tmp_path)
    assert result.stdout == "200", result.stderr
    assert (tmp_path / name).read_bytes() == data


def test_a_worker_that_dies_mid_transfer_does_not_strand_the_link(live_server, big, tmp_path):
    url = live_server.link("big.bin")
    target = tmp_path / "out"
    process = subprocess.Popen(["curl", "-s", "--limit-rate", "4M", "-o", str(target), url])
    try:
        wait_for(lambda: target.exists() and target.stat().st_size > MIB, "the transfer to start")
        for pid in live_server.worker_pids():
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert target.stat().st_size < len(big)
    link, events = link_record(live_server, url)
    # The worker died inside the transfer: nothing was recorded, nothing counted, and its
    # lease (2 s in tests) lapses because nobody renews it; gunicorn restarts the workers.
    assert link.uses == 0 and [e.event for e in events] == ["created", "started"]
    wait_for(lambda: status_of(url, target) == 200, "the lease to lapse")
    assert target.read_bytes() == big


def test_a_file_truncated_mid_stream_aborts_and_keeps_the_link(live_server, tmp_path):
    data = make_file(live_server.backups, "shrinking.bin", 32 * MIB)
    url = live_server.link("shrinking.bin")
    target = tmp_path / "out"
    process = subprocess.Popen(["curl", "-s", "--limit-rate", "4M", "-o", str(target), url])
    try:
        wait_for(lambda: target.exists() and target.stat().st_size > MIB, "the transfer to start")
        os.truncate(live_server.backups / "shrinking.bin", 2 * MIB)
        wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the short transfer to be recorded")
    finally:
        process.kill()
        process.wait()
    assert link_record(live_server, url)[0].uses == 0
    (live_server.backups / "shrinking.bin").write_bytes(data)
    assert status_of(url, target) == 200
    assert target.read_bytes() == data


def test_logs_never_show_a_token_whatever_its_spelling(live_server, small):
    url = live_server.link("small.tar.gz")
    token = token_of(url)
    base = live_server.url + "/api/storage/public-download?"
    respelled = [f"tok%65n={token}", f"%74oken={token}", f"TOKEN={token}", f"token={token}&token={token}"]
    assert [status_of(base + query) for query in respelled] == [400] * 4  # only `token=` is accepted
    assert status_of(url) == 200
    assert status_of(url) == 410
    assert status_of(base + "token=made-up-token-value") == 410
    wait_for(
        lambda: live_server.access_log.read_text().count("public-download?") >= 7, "the access log lines"
    )
    logs = live_server.access_log.read_text() + live_server.error_log.read_text()
    assert "public-download?token=[redacted]" in logs and "tok%65n=[redacted]" in logs
    assert token not in logs and "made-up-token-value" not in logs


def test_restart_keeps_unexpired_links(start_server, tmp_path):
    server = start_server()
    data = make_file(server.backups, "db.dump", 100_000)
    url = server.link("db.dump")
    server.stop()
    restarted = start_server()
    moved = url.replace(server.url, restarted.url)
    assert curl("-o", str(tmp_path / "out"), "-w", "%{http_code}", moved).stdout == "200"
    assert (tmp_path / "out").read_bytes() == data
    assert status_of(moved) == 410


def test_cli_and_api_key_mint_links_that_work(live_server, small, tmp_path):
    def flask(*args: str, stdin: str | None = None) -> str:
        """The project's CLI, as an operator runs it beside the server."""
        command = [sys.executable, "-m", "flask", "--app", "app", *args]
        root = Path(__file__).resolve().parent.parent
        done = subprocess.run(
            command, input=stdin, cwd=root, env=live_server.env(), capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    cli_url = flask("links", "create", "local", "small.tar.gz")
    assert cli_url.startswith(live_server.url + "/api/storage/public-download?token=")
    assert status_of(cli_url) == 200
    flask(
        "users", "create", "robot", "--role", "operator", "--password-stdin", stdin="long enough password\n"
    )
    key = flask("apikeys", "create", "--user", "robot")
    status, minted = mint_over_http(live_server, key, "local", {"file": "small.tar.gz", "uses": 2})
    assert status == 200 and minted["success"] is True and minted["uses"] == 2
    assert [status_of(minted["url"]) for _ in range(3)] == [200, 200, 410]


def test_a_client_that_stops_reading_loses_the_lease(live_server, big, tmp_path):
    """It reads the headers, then nothing (a laptop asleep): after the send timeout (3 s in tests)
    the transfer is given up and the link can be fetched again."""
    url = live_server.link("big.bin")
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    try:
        wait_for(
            lambda: outcome_events(live_server, url) == ["aborted"], "the stalled transfer to be given up"
        )
        assert status_of(url, tmp_path / "out") == 200
    finally:
        sock.close()
    assert (tmp_path / "out").read_bytes() == big


def test_curl_and_wget_continue_refuse_to_splice_a_backup_rewritten_meanwhile(live_server, tmp_path):
    """A download stops part-way; the backup is rewritten under its name; `curl -C -` and `wget -c`
    (which send no If-Range) are refused (412) and leave what they hold as it is; a download from the
    start then delivers the new file whole."""
    make_file(live_server.backups, "rewritten.bin", 4 * MIB)
    url = live_server.link("rewritten.bin")
    part = tmp_path / "part.bin"
    assert curl("-r", f"0-{MIB - 1}", "-o", str(part), "-w", "%{http_code}", url).stdout == "206"
    held = part.read_bytes()
    new = make_file(live_server.backups, "rewritten.bin.new", 4 * MIB)
    (live_server.backups / "rewritten.bin.new").replace(live_server.backups / "rewritten.bin")

    resumed = curl("-f", "-C", "-", "-o", str(part), "-w", "%{http_code}", url)
    assert resumed.returncode == 22 and resumed.stdout == "412"
    continued = subprocess.run(["wget", "-q", "-c", "-O", str(part), url], cwd=tmp_path, timeout=120)
    assert continued.returncode != 0
    assert part.read_bytes() == held
    whole = curl("-o", str(tmp_path / "whole.bin"), "-w", "%{http_code}", url)
    assert whole.stdout == "200" and (tmp_path / "whole.bin").read_bytes() == new
    assert status_of(url) == 410
