"""The command line: bootstrap, users, API keys, storages, links and the purge."""

from __future__ import annotations

import re
import time

from app import create_app
from db import connect
from db.links import list_links
from db.storages import list_storages
from db.users import list_users
from tests.conftest import csrf_token_from


def database(app):
    return connect(app.config["DATABASE"])


def test_bootstrap_creates_storage_and_admin_once(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "inst"), "BACKUP_DIR": str(tmp_path / "data" / "backups")})
    runner = app.test_cli_runner()
    first = runner.invoke(args=["bootstrap"])
    assert first.exit_code == 0, first.output
    password = re.search(r"password: (\S+)", first.output).group(1)
    assert (tmp_path / "data" / "backups").is_dir()
    db = database(app)
    assert [(s.id, s.kind) for s in list_storages(db)] == [("local", "local")]
    (admin,) = list_users(db)
    assert admin.name == "admin" and admin.role == "admin" and password not in admin.password_hash
    second = runner.invoke(args=["bootstrap"])
    assert second.exit_code == 0 and "password" not in second.output
    assert len(list_users(db)) == 1
    assert (tmp_path / "inst" / "secret_key").stat().st_mode & 0o777 == 0o600
    db.close()


def test_bootstrap_takes_the_admin_password_from_the_environment(tmp_path):
    app = create_app(
        {"DATA_DIR": str(tmp_path), "BACKUP_DIR": str(tmp_path / "b"), "ADMIN_PASSWORD": 12345678}
    )
    result = app.test_cli_runner().invoke(args=["bootstrap"])
    assert "ONCELINK_ADMIN_PASSWORD" in result.output and "12345678" not in result.output
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"name": "admin", "password": "12345678", "csrf_token": token})
    assert response.status_code == 303


def test_users_create_from_stdin_and_refusals(app, runner):
    result = runner.invoke(
        args=["users", "create", "ops", "--role", "operator", "--password-stdin"], input="a long password\n"
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["users", "create", "ops", "--password-stdin"], input="a long password\n")
    assert again.exit_code != 0 and "exists already" in again.output
    short = runner.invoke(args=["users", "create", "x", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "8 characters" in short.output
    bad_role = runner.invoke(
        args=["users", "create", "y", "--role", "root", "--password-stdin"], input="x" * 9
    )
    assert bad_role.exit_code != 0
    assert "ops\toperator" in runner.invoke(args=["users", "list"]).output


def test_apikeys_create_prints_only_the_key(app, runner):
    runner.invoke(args=["users", "create", "robot", "--password-stdin"], input="a long password\n")
    result = runner.invoke(args=["apikeys", "create", "--user", "robot", "--expires-days", "30"])
    assert result.exit_code == 0
    key = result.output.strip()
    assert re.fullmatch(r"olk_[A-Za-z0-9_-]{43}", key)
    listing = runner.invoke(args=["apikeys", "list"]).output
    assert key[:12] in listing and key not in listing
    assert runner.invoke(args=["apikeys", "create", "--user", "nobody"]).exit_code != 0


def test_storages_add_local_and_list(app, runner, tmp_path):
    shared = ["--shared"] if app.config["SEVERAL_HOSTS"] else []  # several hosts: a shared mount only
    result = runner.invoke(args=["storages", "add-local", "nas", str(tmp_path / "nas"), *shared])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nas").is_dir()
    assert "nas\tlocal" in runner.invoke(args=["storages", "list"]).output
    assert runner.invoke(args=["storages", "add-local", "nas", str(tmp_path)]).exit_code != 0
    assert runner.invoke(args=["storages", "add-local", "Bad Id!", str(tmp_path)]).exit_code != 0


def test_storages_remove_asks_first_and_revokes_the_links(app, db, runner, backups):
    (backups / "db.sql.gz").write_bytes(b"dump")
    runner.invoke(args=["links", "create", "local", "db.sql.gz"])
    kept = runner.invoke(args=["storages", "remove", "local"], input="n\n")
    assert kept.exit_code == 1 and "revoke its 1 working link(s)? [y/N]" in kept.output
    assert [record.id for record in list_storages(db)] == ["local"]
    removed = runner.invoke(args=["storages", "remove", "local"], input="y\n")
    assert removed.exit_code == 0 and "Storage 'local' removed; 1 working link(s) revoked." in removed.output
    assert list_storages(db) == [] and (backups / "db.sql.gz").exists()
    assert "\trevoked\t" in runner.invoke(args=["links", "list"]).output
    again = runner.invoke(args=["storages", "remove", "local", "--yes"])
    assert again.exit_code == 1 and "No storage 'local'." in again.output


def test_storages_remove_yes_does_not_ask(app, runner):
    removed = runner.invoke(args=["storages", "remove", "local", "--yes"])
    assert removed.exit_code == 0 and "[y/N]" not in removed.output
    assert "0 working link(s) revoked" in removed.output


def test_links_create_prints_only_the_url(app, runner, backups):
    (backups / "db.sql.gz").write_bytes(b"dump")
    result = runner.invoke(args=["links", "create", "local", "db.sql.gz", "--ttl", "60", "--uses", "2"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"http://127\.0\.0\.1:8000/api/storage/public-download\?token=[\w-]{43}\n", result.output
    )
    db = database(app)
    (link,) = list_links(db)
    assert (link.max_uses, round(link.expires_at - link.created_at)) == (2, 60)
    db.close()
    missing = runner.invoke(args=["links", "create", "local", "nope.gz"])
    assert missing.exit_code != 0
    revoke = runner.invoke(args=["links", "revoke", str(link.id)])
    assert revoke.exit_code == 0 and "revoked" in runner.invoke(args=["links", "list"]).output


def test_tokens_purge(app, runner, backups):
    (backups / "db.sql.gz").write_bytes(b"dump")
    runner.invoke(args=["links", "create", "local", "db.sql.gz", "--ttl", "1"])
    runner.invoke(args=["links", "create", "local", "db.sql.gz"])
    db = database(app)
    db.execute("UPDATE links SET expires_at = ? WHERE id = 1", [time.time() - 1])
    assert runner.invoke(args=["tokens", "purge"]).output == "Purged 1 dead token(s).\n"
    assert [link.id for link in list_links(db)] == [2]
    db.close()
