"""Real gunicorn with two gevent workers: /metrics adds up both workers' counts (and a killed
worker's), answers only to its token; /healthz turns 503 when the database's disk is full or a
storage is down, without holding up the other requests of its worker; log lines are JSON
without a token in them."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.accounts import create_api_key, create_user
from core.offloading import Started
from db import connect
from tests.conftest import PASSWORD, LiveServer, add_s3
from tests.helpers import Filler, KeptConnection, connection_per_worker, curl, make_file, wait_for

TOKEN = "live-metrics-token-3f9a"
WATCHED = {
    "ONCELINK_METRICS_TOKEN": TOKEN,
    "ONCELINK_LOG_FORMAT": "json",
    "ONCELINK_HEALTH_CACHE_SECONDS": "0",
}
SIZES = [1000, 20_000, 300_000, 4_000_000]

Samples = dict[tuple[str, tuple], float]


def scrape(server: LiveServer) -> Samples:
    """Every sample of /metrics, read by prometheus-client's own parser."""
    answer = curl("-f", "-H", f"Authorization: Bearer {TOKEN}", f"{server.url}/metrics")
    assert answer.returncode == 0, answer.stderr
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.stdout)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def api_key(server: LiveServer) -> str:
    db = connect(server.app.config["DATABASE"])
    try:
        create_user(db, "robot", PASSWORD, "operator", time.time())
        return create_api_key(db, "robot", time.time(), None)[0]
    finally:
        db.close()


def mint_and_fetch_twice(connection: KeptConnection, key: str, name: str) -> bytes:
    """Mint a link over this connection, download it, then be refused: all on one worker."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    status, _, body = connection.request(
        "POST", "/api/storage/local/download-url", headers, json.dumps({"file": name}).encode()
    )
    assert status == 200, body
    url = urlsplit(json.loads(body)["url"])
    status, _, data = connection.request("GET", f"{url.path}?{url.query}")
    assert status == 200
    assert connection.request("GET", f"{url.path}?{url.query}")[0] == 410
    return data


@pytest.fixture(scope="module")
def watched(tmp_path_factory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("watched")
    server = LiveServer(base / "instance", base / "backups", settings=WATCHED).start()
    yield server
    server.stop()


def test_metrics_add_up_both_workers_counts(watched):
    for index, size in enumerate(SIZES):
        make_file(watched.backups, f"f{index}.bin", size)
    key = api_key(watched)
    with connection_per_worker(watched) as connections:
        for index, size in enumerate(SIZES):
            assert len(mint_and_fetch_twice(connections[index % 2], key, f"f{index}.bin")) == size

    def counted() -> Samples | None:
        samples = scrape(watched)
        return samples if value(samples, "oncelink_transfers_completed_total", mode="stored") == 4 else None

    samples = wait_for(counted, "the last transfer to be counted")
    assert value(samples, "oncelink_links_minted_total", mode="stored") == 4
    assert value(samples, "oncelink_transfers_started_total", mode="stored") == 4
    assert value(samples, "oncelink_transfers_rejected_total", reason="used") == 4
    assert value(samples, "oncelink_bytes_sent_total", storage_kind="local") == sum(SIZES)
    assert value(samples, "oncelink_active_transfers") == 0
    download = {"endpoint": "public.download", "method": "GET"}
    assert value(samples, "oncelink_request_duration_seconds_count", **download, status="200") == 4
    assert value(samples, "oncelink_request_duration_seconds_count", **download, status="410") == 4

    # A killed worker's counts stay; the worker gunicorn starts in its place adds to them.
    victim = watched.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(set(watched.worker_pids()) - {victim}) == 2, "gunicorn to replace the worker")
    for _ in range(6):  # some land on the new worker, whichever accepts
        assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{watched.url}/healthz").stdout == "200"
    after = scrape(watched)
    assert value(after, "oncelink_transfers_completed_total", mode="stored") == 4
    assert value(after, "oncelink_bytes_sent_total", storage_kind="local") == sum(SIZES)
    assert value(after, "oncelink_active_transfers") == 0
    healthz = {"endpoint": "monitoring.healthz", "method": "GET", "status": "200"}
    assert value(after, "oncelink_request_duration_seconds_count", **healthz) >= 6


def test_metrics_are_refused_without_the_token(watched):
    for headers in ([], ["-H", "Authorization: Bearer wrong"], ["-H", f"Authorization: {TOKEN}"]):
        answer = curl("-o", "/dev/null", "-w", "%{http_code}", *headers, f"{watched.url}/metrics")
        assert answer.stdout == "401"


def test_log_lines_are_json_without_tokens(watched):
    make_file(watched.backups, "logged.bin", 1000)
    url = watched.link("logged.bin")
    assert curl("-o", "/dev/null", "-A", "logged-by-test", url).returncode == 0
    token = url.rsplit("=", 1)[1]

    def logged() -> list[dict] | None:
        lines = [json.loads(line) for line in watched.access_log.read_text().splitlines()]
        return [line for line in lines if line.get("user_agent") == "logged-by-test"] or None

    (line,) = wait_for(logged, "the download's access line")
    assert line["query"] == "token=[redacted]" and line["status"] == "200" and line["method"] == "GET"
    for log in (watched.access_log, watched.error_log):
        text = log.read_text()
        assert token not in text and TOKEN not in text
        assert all(json.loads(line)["level"] for line in text.splitlines())


class Silent:
    """An endpoint that takes connections and never answers: an S3 that hangs."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return
            self.connected.set()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept, which then ends
        self._acceptor.join()
        self.listener.close()
        for connection in self.held:
            connection.close()


def test_a_hanging_storage_fails_healthz_without_holding_up_its_worker(start_server):
    """One worker: were the check on gevent's hub, the page asked while it hangs would wait for it."""
    server = start_server(settings={"WEB_CONCURRENCY": "1", "ONCELINK_HEALTH_TIMEOUT": "8"})
    silent = Silent()
    try:
        add_s3(server.app, "offsite", silent.url, "backups")
        pending = Started(lambda: curl("-w", "\n%{http_code}", f"{server.url}/healthz").stdout)
        assert silent.connected.wait(20), "the health check never reached the storage"
        assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/login").stdout == "200"
        assert pending.running(), "/healthz answered before the page asked after it"
        body, status = pending.result(timeout=60).rsplit("\n", 1)
    finally:
        silent.close()
    answer = json.loads(body)
    assert status == "503" and answer["failing"] == ["storage:offsite"]
    assert answer["checks"]["storage:offsite"] == {"status": "fail", "problem": "no answer within 8 s"}
    assert silent.url.rsplit(":", 1)[1] not in body and "127.0.0.1" not in body


class ServerOnSmallDisk(LiveServer):
    """Its data dir on the small disk, its logs not; /healthz wants 1 MiB free and checks afresh."""

    @property
    def access_log(self):
        return self.backups.parent / "access.log"

    @property
    def error_log(self):
        return self.backups.parent / "error.log"

    def env(self) -> dict:
        return {**super().env(), "ONCELINK_HEALTH_MIN_FREE_MIB": "1", "ONCELINK_HEALTH_CACHE_SECONDS": "0"}


def health(server: LiveServer) -> tuple[int, dict]:
    answer = curl("-w", "\n%{http_code}", f"{server.url}/healthz")
    body, status = answer.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small tmpfs to fill needs root")
def test_healthz_turns_503_while_the_database_disk_is_full(small_disk, tmp_path):
    server = ServerOnSmallDisk(small_disk / "instance", tmp_path / "backups")
    try:
        server.start()
        assert health(server) == (200, health(server)[1]) and health(server)[1]["failing"] == []
        filler = Filler(small_disk / "filler")
        filler.fill()
        status, answer = wait_for(
            lambda: (found := health(server))[0] == 503 and found, "a 503 on a full disk"
        )
        assert "disk" in answer["failing"] and "storage:local" not in answer["failing"]
        assert answer["checks"]["disk"] == {"status": "fail", "problem": "less than 1.0 MiB free"}
        filler.remove()
        wait_for(lambda: health(server)[0] == 200, "/healthz to recover once space returned")
    finally:
        server.stop()
