"""Setting up several hosts on PostgreSQL: what a host refuses to start without, and the storages
it accepts (a local folder only as a shared mount)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from app import MissingSetting, create_app
from db import close_pool
from db.postgres import PostgresPool
from tests.conftest import SHARED_MASTER_KEY, Auth, free_port, make_app
from tests.helpers import wait_for

SHARED_ONLY = "a local folder can be a storage only if every host sees it at this path"


@pytest.fixture
def host(postgres, tmp_path):
    config = {"DATABASE_URL": postgres.fresh_database(), "SECRET_KEY": "s", "MASTER_KEY": SHARED_MASTER_KEY}
    return make_app(tmp_path / "instance", tmp_path / "backups", **config)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "MASTER_KEY"])
def test_a_host_refuses_to_start_on_postgresql_without_the_shared_secrets(postgres, tmp_path, missing):
    config = {"DATABASE_URL": postgres.fresh_database(), "SECRET_KEY": "s", "MASTER_KEY": SHARED_MASTER_KEY}
    del config[missing]
    with pytest.raises(MissingSetting, match=f"ONCELINK_{missing} must be set"):
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path), **config})


def test_the_command_line_adds_a_local_folder_only_as_a_shared_mount(host, tmp_path):
    runner = host.test_cli_runner()
    refused = runner.invoke(args=["storages", "add-local", "nas", str(tmp_path / "nas")])
    assert refused.exit_code != 0 and SHARED_ONLY in refused.output
    added = runner.invoke(args=["storages", "add-local", "nas", str(tmp_path / "nas"), "--shared"])
    assert added.exit_code == 0, added.output
    assert "nas" in runner.invoke(args=["storages", "list"]).output


def test_the_admin_form_asks_for_the_shared_mount_and_refuses_a_folder_without_it(host, tmp_path):
    client = host.test_client()
    auth = Auth(host, client)
    auth.login("admin")
    assert "Shared mount: every host sees this folder" in client.get("/admin/storages").text
    form = {
        "kind": "local",
        "storage_id": "nas",
        "path": str(tmp_path / "nas"),
        "csrf_token": auth.csrf_token,
    }
    refused = client.post("/admin/storages", data=form)
    assert refused.status_code == 400 and SHARED_ONLY in refused.text
    assert client.post("/admin/storages", data={**form, "shared": "1"}).status_code in (200, 303)


def test_bootstrap_makes_no_local_storage_for_several_hosts(host):
    output = host.test_cli_runner().invoke(args=["bootstrap"]).output
    assert "none is made by default" in output and "Storage 'local'" not in output


def test_a_host_started_while_postgresql_is_unreachable_answers_503_and_healthz_says_why(tmp_path):
    """Nothing listens on the URL's port: the host still starts (gunicorn would stop the server if a
    worker failed to boot), its pages answer 503, and /healthz answers in its own JSON."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/oncelink"
    config = {"DATABASE_URL": url, "SECRET_KEY": "s", "MASTER_KEY": SHARED_MASTER_KEY, "HEALTH_TIMEOUT": 4}
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), **config})
    try:
        client = app.test_client()
        assert client.get("/login").status_code == 503
        health = client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["failing"] == ["database"]
    finally:
        close_pool(url)


@pytest.mark.timeout(60)
def test_a_request_gets_its_503_once_connecting_failed_not_after_the_pools_wait(monkeypatch):
    """Nothing listens: the first failed attempt to connect ends the wait for a connection, which
    a busy pool's would not (made ten minutes here)."""
    monkeypatch.setattr("db.postgres.POOL_WAIT_SECONDS", 600)
    pool = PostgresPool(f"postgresql://postgres@127.0.0.1:{free_port()}/oncelink", 1)
    try:
        with pytest.raises(psycopg.OperationalError):  # the pool's PoolTimeout: a 503 (UNAVAILABLE)
            pool.take()
    finally:
        pool.close()


def test_a_request_still_waits_for_a_connection_of_a_busy_pool(postgres, monkeypatch):
    """Every connection taken: the next waits past a look at the pool's failures (none) until one
    is given back."""
    monkeypatch.setattr("db.postgres.TRY_SECONDS", 0.1)
    pool = PostgresPool(postgres.fresh_database(), 1)
    taken = [pool.take() for _ in range(pool.pool.max_size)]
    waited, queued = [], pool.pool.get_stats().get("requests_queued", 0)
    waiter = threading.Thread(target=lambda: waited.append(pool.take()))

    def looks() -> int:  # the waiter's asks of the pool so far
        return pool.pool.get_stats().get("requests_queued", 0) - queued

    try:
        waiter.start()
        wait_for(lambda: looks() >= 3, "the waiter to look at the pool's failures twice")
        pool.give_back(taken.pop())
        waiter.join(30)
        assert len(waited) == 1 and waited[0].execute("SELECT 1").fetchone()[0] == 1
    finally:
        for db in taken + waited:
            pool.give_back(db)
        pool.close()
