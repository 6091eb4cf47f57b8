"""Failure limits under real gunicorn with two workers: requests alternate between a connection
held by each worker, and the limit is counted once for both."""

from __future__ import annotations

import time
from itertools import cycle
from urllib.parse import urlencode

from core.accounts import create_user
from db import connect
from tests.conftest import PASSWORD, csrf_token_from
from tests.helpers import connection_per_worker, link_record, make_file, serving_worker, token_of, wait_for

LIMITED = {
    "ONCELINK_RATELIMIT_ENABLED": "true",
    "ONCELINK_PUBLIC_FAILURE_LIMIT": "10 per minute",
    "ONCELINK_SIGN_IN_FAILURE_LIMIT": "10 per minute",
    # Idle kept connections stay open while the test looks for one on each worker (default: 2 s).
    "GUNICORN_CMD_ARGS": "--keep-alive 30",
}
PUBLIC = "/api/storage/public-download?token="


def assert_still_on_their_workers(server, connections, workers) -> None:
    """Every request went where the test meant: no connection moved to another worker."""
    assert [serving_worker(server.worker_pids(), server.port, c.port) for c in connections] == workers


def test_wrong_tokens_are_limited_across_workers_and_a_valid_link_is_still_served(start_server):
    server = start_server(settings=LIMITED)
    data = make_file(server.backups, "db.sql.gz", 100_000)
    url = server.link("db.sql.gz", uses=2)
    with connection_per_worker(server) as connections:
        served_by_each(server, connections, url, data)


def served_by_each(server, connections, url: str, data: bytes) -> None:
    token = token_of(url)
    workers = [serving_worker(server.worker_pids(), server.port, c.port) for c in connections]
    assert len(set(workers)) == 2
    answers = [c.request("GET", f"{PUBLIC}guess-{n}") for n, c in zip(range(14), cycle(connections))]
    assert [status for status, _, _ in answers] == [410] * 10 + [429] * 4
    assert all(1 <= int(headers["retry-after"]) <= 60 for _, headers, _ in answers[10:])
    for connection in connections:
        assert connection.request("HEAD", PUBLIC + token)[0] == 200
        status, _, body = connection.request("GET", PUBLIC + token)
        assert status == 200 and body == data
    wait_for(lambda: link_record(server, url)[0].uses == 2, "both downloads to count")
    assert connections[0].request("GET", PUBLIC + token)[0] == 429  # used up: a failure like any other
    assert_still_on_their_workers(server, connections, workers)


def form_post(cookie: str, fields: dict) -> dict:
    body = urlencode(fields).encode()
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    return {"headers": headers, "body": body}


def test_wrong_passwords_are_limited_across_workers(start_server):
    server = start_server(settings=LIMITED)
    db = connect(server.app.config["DATABASE"])
    create_user(db, "ops", PASSWORD, "operator", time.time())
    db.close()
    with connection_per_worker(server) as connections:
        refused_on_each(server, connections)


def refused_on_each(server, connections) -> None:
    workers = [serving_worker(server.worker_pids(), server.port, c.port) for c in connections]
    _, headers, page = connections[0].request("GET", "/login")
    cookie = headers["set-cookie"].split(";", 1)[0]
    token = csrf_token_from(page.decode())

    def sign_in(connection, password: str) -> int:
        fields = {"name": "ops", "password": password, "csrf_token": token}
        return connection.request("POST", "/login", **form_post(cookie, fields))[0]

    codes = [sign_in(c, f"wrong {n}") for n, c in zip(range(11), cycle(connections))]
    assert codes == [401] * 10 + [429]
    assert [sign_in(c, PASSWORD) for c in connections] == [429, 429]
    assert_still_on_their_workers(server, connections, workers)
