"""Two real gunicorn hosts sharing one PostgreSQL database: a link minted on one is served by the
other, and the exactly-once promise holds with the racing requests split across both."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import SHARED_MASTER_KEY, LiveServer
from tests.helpers import MIB, link_record, status_of, token_of, wait_for, wget_killed_then_continued

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


def test_a_download_interrupted_on_one_host_is_resumed_on_the_other(hosts, tmp_path):
    a, b = hosts
    url = a.link("db.sql.gz")
    wget_killed_then_continued(a, url, tmp_path / "db.sql.gz", DATA, resume_url=on(b, url))
    assert status_of(url) == 410
