"""Two real gunicorn hosts sharing one PostgreSQL database: a link minted on one is served by the
other, and the exactly-once promise holds with the racing requests split across both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from core.accounts import create_api_key, create_user
from db import connect
from tests.conftest import (
    PASSWORD,
    SHARED_MASTER_KEY,
    Auth,
    LiveServer,
    add_s3,
    csrf_token_from,
    free_port,
)
from tests.helpers import (
    MIB,
    RawDownload,
    claims_lapsed,
    curl,
    link_record,
    serving_worker,
    status_of,
    token_of,
    wait_for,
    wget_killed_then_continued,
)
from tests.postgres_server import cluster

DATA = os.urandom(MIB) * 6 + os.urandom(4321)


@pytest.fixture(scope="module")
def hosts(postgres, tmp_path_factory):
    """Hosts A and B: one database, the same secrets, and one folder both see (as a shared mount)."""
    base = tmp_path_factory.mktemp("hosts")
    shared = {
        "DATABASE_URL": postgres.fresh_database(),
        "SECRET_KEY": "shared",
        "MASTER_KEY": SHARED_MASTER_KEY,
    }
    backups = base / "backups"
    servers = [LiveServer(base / name, backups, shared=shared).start() for name in ("a", "b")]
    (backups / "db.sql.gz").write_bytes(DATA)
    yield servers
    for server in servers:
        server.stop()


def on(host: LiveServer, url: str) -> str:
    """The same link, asked of another host."""
    return f"{host.url}/api/storage/public-download?token={token_of(url)}"


def test_a_link_minted_on_one_host_is_served_once_by_the_other(hosts, tmp_path):
    a, b = hosts
    url = a.link("db.sql.gz")
    out = tmp_path / "out"
    assert status_of(on(b, url), out) == 200
    assert out.read_bytes() == DATA
    assert status_of(url) == 410 and status_of(on(b, url)) == 410
    record, events = link_record(a, url)
    assert record.uses == 1 and [e.event for e in events].count("completed") == 1


@pytest.mark.parametrize("uses", [1, 3])
def test_fifty_clients_racing_across_both_hosts_get_exactly_uses_downloads(hosts, uses, tmp_path):
    a, b = hosts
    url = a.link("db.sql.gz", uses=uses)
    urls = [on(a if n % 2 else b, url) for n in range(50)]
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(status_of, urls))
    assert statuses.count(200) == uses
    assert all(status in (200, 409, 410, 503) for status in statuses) and 500 not in statuses
    wait_for(lambda: link_record(a, url)[0].uses == uses, "every use to be counted")


@pytest.fixture(scope="module")
def bucket(hosts, moto):
    """One moto S3 bucket both hosts read, registered once in their shared database."""
    client = moto.client()
    client.create_bucket(Bucket="hosts")
    client.put_object(Bucket="hosts", Key="nightly/db.sql.gz", Body=DATA)
    add_s3(hosts[0].app, "offsite", moto.url, "hosts", prefix="nightly")
    return client


def test_bytes_from_s3_minted_on_one_host_are_resumed_on_the_other(hosts, bucket, tmp_path):
    a, b = hosts
    url = a.link("db.sql.gz", storage="offsite")
    wget_killed_then_continued(a, url, tmp_path / "db.sql.gz", DATA, resume_url=on(b, url))
    assert status_of(on(b, url)) == 410 and status_of(url) == 410


def test_a_download_interrupted_on_one_host_is_resumed_on_the_other(hosts, tmp_path):
    a, b = hosts
    url = a.link("db.sql.gz")
    wget_killed_then_continued(a, url, tmp_path / "db.sql.gz", DATA, resume_url=on(b, url))
    assert status_of(url) == 410


@pytest.fixture
def pair(postgres, tmp_path):
    """Two hosts of their own for a test that kills one or needs other settings: `pair(**settings)`."""
    servers: list[LiveServer] = []

    def start(database_url: str | None = None, **settings: str) -> tuple[LiveServer, LiveServer]:
        url = database_url or postgres.fresh_database()
        shared = {"DATABASE_URL": url, "SECRET_KEY": "shared", "MASTER_KEY": SHARED_MASTER_KEY}
        backups = tmp_path / "backups"
        for name in ("a", "b"):
            servers.append(
                LiveServer(tmp_path / name, backups, shared=shared, own_group=True, settings=settings)
            )
            servers[-1].start()
        return servers[-2], servers[-1]

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.stop()


def big_file(server: LiveServer, size: int = 16 * MIB) -> bytes:
    data = os.urandom(MIB) * (size // MIB)
    (server.backups / "big.bin").write_bytes(data)
    return data


def resumed_with_wget(url: str, target) -> bool:
    """`wget -c` of the rest into `target`: True once the link served it (a busy one is a 409,
    which leaves the file as it was)."""
    done = subprocess.run(["wget", "-q", "-c", "-O", str(target), url], cwd=target.parent, timeout=120)
    return done.returncode == 0


def test_a_host_killed_mid_transfer_costs_the_link_nothing_and_the_other_resumes_it(pair, tmp_path):
    a, b = pair()
    data = big_file(a)
    url = a.link("big.bin")
    client = RawDownload(url)
    client.read(2 * MIB)
    os.killpg(a.process.pid, signal.SIGKILL)  # the whole host: gunicorn's arbiter and its workers
    a.process.wait()
    client.sock.close()
    target = tmp_path / "big.bin"
    target.write_bytes(bytes(client.body))
    wait_for(lambda: resumed_with_wget(on(b, url), target), "B to serve the rest once the lease lapsed")
    assert target.read_bytes() == data
    wait_for(lambda: link_record(b, url)[0].uses == 1, "the one use to be counted")
    assert status_of(on(b, url)) == 410


def test_revoking_on_one_host_stops_a_transfer_on_the_other(pair):
    a, b = pair()
    data = big_file(a)
    url = a.link("big.bin")
    db = connect(a.app.config["DATABASE"])
    try:
        create_user(db, "ops", PASSWORD, "admin", time.time())  # an admin may revoke any link
        key = create_api_key(db, "ops", time.time())[0]
    finally:
        db.close()
    client = RawDownload(url)
    client.read(MIB)
    link_id = link_record(a, url)[0].id
    listed = curl("-s", "-H", f"Authorization: Bearer {key}", f"{b.url}/api/links")
    assert link_id in [link["id"] for link in json.loads(listed.stdout)["links"]]  # listed on the other host
    revoked = curl("-s", "-X", "DELETE", "-H", f"Authorization: Bearer {key}", f"{b.url}/api/links/{link_id}")
    assert json.loads(revoked.stdout)["success"] is True, revoked.stdout
    received = client.read_to_end(rate=2 * MIB)  # 8 s for the whole file; revocation acts within 2 s
    assert client.ended == "reset" and len(received) < len(data)
    wait_for(lambda: "stopped" in [e.event for e in link_record(a, url)[1]], "the transfer to be stopped")
    assert link_record(b, url)[0].uses == 0


def test_signing_out_on_one_host_ends_the_session_on_the_other(pair):
    a, b = pair()
    Auth(a.app, None).create("alice", "viewer")
    browser = requests.Session()
    token = csrf_token_from(browser.get(f"{a.url}/login").text)
    signed_in = browser.post(
        f"{a.url}/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert signed_in.ok
    cookie = browser.cookies.get("session")
    home_on_b = requests.get(f"{b.url}/", cookies={"session": cookie}, allow_redirects=False, timeout=30)
    assert home_on_b.status_code == 200 and "alice" in home_on_b.text
    csrf = csrf_token_from(browser.get(f"{a.url}/").text)
    assert browser.post(f"{a.url}/logout", data={"csrf_token": csrf}).ok
    after = requests.get(f"{b.url}/", cookies={"session": cookie}, allow_redirects=False, timeout=30)
    assert after.status_code in (302, 303) and "/login" in after.headers["Location"]


def test_failed_tokens_count_against_the_limit_on_every_host(pair):
    a, b = pair(ONCELINK_RATELIMIT_ENABLED="true", ONCELINK_PUBLIC_FAILURE_LIMIT="60 per minute")
    (a.backups / "db.sql.gz").write_bytes(DATA)
    good = a.link("db.sql.gz")
    bad = [f"{host.url}/api/storage/public-download?token=bad-{n}" for n in range(30) for host in (a, b)]
    statuses = [status_of(url) for url in bad]
    assert statuses == [410] * 60
    assert status_of(f"{a.url}/api/storage/public-download?token=bad-a") == 429
    assert status_of(f"{b.url}/api/storage/public-download?token=bad-b") == 429
    assert status_of(on(b, good)) == 200  # a working link is served all the same


@pytest.fixture
def own_postgres():
    """A cluster of this test's own, to stop and start again."""
    with cluster(free_port()) as server:
        yield server


def downloaded(url: str, target, statuses: list[int]) -> bool:
    """One download of `url` into `target`, its status kept in `statuses`: True once it is a 200."""
    statuses.append(status_of(url, target))
    return statuses[-1] == 200


def test_postgresql_down_answers_503_consumes_nothing_and_recovers(pair, own_postgres, tmp_path):
    a, b = pair(database_url=own_postgres.fresh_database())
    data = big_file(a)
    running, waiting = a.link("big.bin"), a.link("big.bin")
    client = RawDownload(running)
    client.read(MIB)
    own_postgres.stop("immediate")
    assert status_of(on(b, waiting), tmp_path / "refused") == 503  # not a 500, and nothing used
    health = curl("-s", "-w", "\n%{http_code}", f"{a.url}/healthz").stdout.rsplit("\n", 1)
    assert health[1] == "503" and health[0].startswith("{"), health[0][:2000]
    assert json.loads(health[0])["failing"] == ["database"]  # its JSON, not a page
    received = client.read_to_end(rate=2 * MIB)  # its lease cannot be renewed: it stops, the link kept
    assert client.ended == "reset" and len(received) < len(data)
    own_postgres.start()
    statuses: list[int] = []
    wait_for(lambda: downloaded(on(b, waiting), tmp_path / "waiting", statuses), "PostgreSQL to be back")
    assert set(statuses) <= {200, 503} and (tmp_path / "waiting").read_bytes() == data
    target = tmp_path / "running"
    target.write_bytes(received)
    wait_for(lambda: resumed_with_wget(on(a, running), target), "the interrupted link to be served again")
    assert target.read_bytes() == data
    wait_for(lambda: link_record(a, running)[0].uses == 1, "its one use to be counted")
    assert link_record(a, waiting)[0].uses == 1


def test_wrong_passwords_count_against_the_limit_on_every_host(pair):
    a, b = pair(ONCELINK_RATELIMIT_ENABLED="true", ONCELINK_SIGN_IN_FAILURE_LIMIT="10 per minute")
    Auth(a.app, None).create("alice", "viewer")

    def sign_in(host: LiveServer, password: str) -> int:
        browser = requests.Session()
        token = csrf_token_from(browser.get(f"{host.url}/login", timeout=30).text)
        form = {"name": "alice", "password": password, "csrf_token": token}
        return browser.post(f"{host.url}/login", data=form, allow_redirects=False, timeout=30).status_code

    assert {sign_in(host, "wrong") for _ in range(5) for host in (a, b)} == {401}
    assert sign_in(b, PASSWORD) == 429  # the eleventh, on either host: refused, the right password too
    assert sign_in(a, PASSWORD) == 429


def test_a_worker_frozen_on_one_host_is_fenced_when_the_other_serves_the_link(pair, tmp_path):
    """The frozen worker's claim lapses, host B serves the link whole, and host A's worker, woken,
    never delivers a second copy: the fence is the same shared claim row on both hosts."""
    a, b = pair()
    data = big_file(a, 20 * MIB)
    url = a.link("big.bin")
    first = RawDownload(url)
    first.read(MIB, rate=4 * MIB)
    worker = serving_worker(a.worker_pids(), a.port, first.port)
    os.kill(worker, signal.SIGSTOP)
    try:
        wait_for(lambda: claims_lapsed(a, url), "the frozen worker's claim to lapse")
        assert status_of(on(b, url), tmp_path / "second") == 200
    finally:
        os.kill(worker, signal.SIGCONT)
    assert (tmp_path / "second").read_bytes() == data
    received = first.read_to_end()
    assert len(received) < len(data) and data.startswith(received)
    wait_for(lambda: "lost" in [e.event for e in link_record(a, url)[1]], "the frozen transfer to stop")
    assert link_record(b, url)[0].uses == 1 and status_of(url) == 410
