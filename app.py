"""The Oncelink application factory: `flask --app app ...` and gunicorn's wsgi.py both start here."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

import db
from blueprints import (
    accounts,
    admin,
    admin_notify,
    admin_storages,
    digests,
    explorer,
    keys,
    link_history,
    links,
    monitoring,
    public,
    storages,
)
from blueprints.errors import register_error_handlers
from core.accounts import create_user
from core.attempts import FailureLimits
from core.digests import DigestWorker
from core.downloads import Serving
from core.health import HealthMonitor, HealthSettings
from core.leases import LeaseKeeper
from core.log_lines import log_json_to_stderr, wants_json
from core.notifying import NotificationSender, NotifySettings
from core.offloading import answered, answering
from core.purging import BackgroundPurge
from core.redaction import RedactingFilter
from core.shared_scans import shared_scans
from core.storages import add_local_storage
from db.postgres import is_postgres
from db.storages import get_storage
from db.users import count_users
from encryption.keys import Keyring, load_master_key, read_or_create_secret
from extensions import csrf, login_manager

DEFAULTS = {
    "DATA_DIR": "instance",
    "BACKUP_DIR": "data/backups",
    "PUBLIC_URL": None,
    "TOKEN_TTL": 300,
    "TOKEN_MAX_TTL": 86400,
    "TOKEN_MAX_USES": 100,
    "LEASE_SECONDS": 30,
    "LINK_RETENTION": 7 * 86400,
    "PURGE_INTERVAL": 60,  # seconds between two purges of long-dead links by one worker
    "DATABASE_URL": None,  # postgresql://... for several hosts sharing one database; unset: SQLite
    "DATABASE_CONNECTIONS": 8,  # idle database connections each worker keeps open
    "PRESIGN_TTL": 30,
    "SEND_TIMEOUT": 120,
    "PROXY_HOPS": 0,
    "NOTIFY_TIMEOUT": 10,  # seconds a webhook receiver has to answer
    "NOTIFY_RETRY_SECONDS": 10,  # the wait before a failed notification's first retry (then x3 each)
    "NOTIFY_ATTEMPTS": 8,
    "NOTIFY_POLL_SECONDS": 2,
    # Wrong or dead tokens one address may try; right ones are never limited.
    "PUBLIC_FAILURE_LIMIT": "60 per minute",
    "SIGN_IN_FAILURE_LIMIT": "10 per minute",
    "RATELIMIT_ENABLED": True,  # the tests that send many refused requests turn the limits off
    "ADMIN_PASSWORD": None,
    # No form or JSON body of ours comes near this; anything larger is refused with 413 unread.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "METRICS_TOKEN": None,  # /metrics exists only when set, and answers only to it
    "LOG_FORMAT": "text",  # or "json": one JSON object a line (core/log_lines.py)
    "HEALTH_MIN_FREE_MIB": 100,  # /healthz says 503 below this much free space for the data dir
    "HEALTH_TIMEOUT": 2,  # seconds for all of /healthz's checks
    "HEALTH_CACHE_SECONDS": 5,  # how long one round of checks answers /healthz
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def load_secret_key(data_dir: Path) -> str:
    """The session signing key: generated once, kept in the data dir readable by us alone."""
    return read_or_create_secret(data_dir / "secret_key", lambda: secrets.token_hex(32))


def configure(app: Flask, config: dict | None) -> None:
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("ONCELINK")
    app.config.update(config or {})
    data_dir = Path(app.config["DATA_DIR"]).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app.config["DATA_DIR"] = str(data_dir)
    app.config.setdefault("DATABASE", app.config.get("DATABASE_URL") or str(data_dir / "oncelink.sqlite3"))
    if str(app.config.get("PUBLIC_URL") or "").startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config["SEVERAL_HOSTS"] = is_postgres(app.config["DATABASE"])
    if app.config["SEVERAL_HOSTS"]:
        require_shared_secrets(app.config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(data_dir)


class MissingSetting(RuntimeError):
    """A host of several cannot start without a setting the others share."""


def require_shared_secrets(config: dict) -> None:
    """Hosts that share a PostgreSQL database must share the keys too: a secret made up in one
    host's data dir would sign sessions the others refuse, and wrap keys the others cannot open."""
    missing = [f"ONCELINK_{name}" for name in ("SECRET_KEY", "MASTER_KEY") if not config.get(name)]
    if missing:
        raise MissingSetting(
            f"ONCELINK_DATABASE_URL names a PostgreSQL database that several hosts may share, so"
            f" {' and '.join(missing)} must be set too (the same on every host); see docs/deploy.md."
        )


def add_security_headers(response):
    """Every response: the page protections above, and no cache keeps a copy unless the response
    says otherwise (static files do), so nothing that carries a token or a key is ever stored."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class BoundedJSONProvider(DefaultJSONProvider):
    """JSON nested too deep for the parser is a malformed body (400), not a crash (500)."""

    def loads(self, s: str | bytes, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("The JSON is nested too deeply.") from exc


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.json = BoundedJSONProvider(app)
    configure(app, config)
    if wants_json(app.config["LOG_FORMAT"]):
        log_json_to_stderr()  # first: Flask gives its logger a text handler unless the root has one
    app.logger.addFilter(RedactingFilter())
    if int(app.config["PROXY_HOPS"]):
        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app, exempt=frozenset({"monitoring"}))  # /healthz answers while migrations wait
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    keyring = Keyring(load_master_key(app.config["DATA_DIR"], app.config.get("MASTER_KEY")))
    shared_scans.keep_in(Path(app.config["DATA_DIR"]) / "scans")  # the process's workers share one data dir
    keeper = LeaseKeeper(app.config["DATABASE"], float(app.config["LEASE_SECONDS"]))
    app.extensions["oncelink_keyring"] = keyring
    app.extensions["oncelink_serving"] = Serving(keyring, keeper, int(app.config["PRESIGN_TTL"]))
    app.extensions["oncelink_failure_limits"] = FailureLimits.from_config(app.config)
    app.extensions["oncelink_health"] = HealthMonitor(HealthSettings.from_config(app.config))
    app.extensions["oncelink_digests"] = DigestWorker(app.config["DATABASE"], keyring)
    app.extensions["oncelink_purge"] = BackgroundPurge(
        app.config["DATABASE"], float(app.config["LINK_RETENTION"]), float(app.config["PURGE_INTERVAL"])
    )
    app.extensions["oncelink_notify"] = NotificationSender(
        app.config["DATABASE"], keyring, NotifySettings.from_config(app.config)
    )

    areas = (admin, admin_notify, admin_storages, explorer, link_history, links, monitoring, public, storages)
    for area in (accounts, *areas):
        app.register_blueprint(area.bp)
    for group in (
        accounts.users_cli,
        accounts.apikeys_cli,
        links.links_cli,
        links.tokens_cli,
        storages.storages_cli,
        keys.keys_cli,
        admin_notify.notify_cli,
        digests.digests_cli,
    ):
        app.cli.add_command(group)
    for command in (bootstrap_command, keys.encrypt_command, keys.decrypt_command):
        app.cli.add_command(command)
    register_error_handlers(app)
    app.after_request(add_security_headers)
    app.before_request(answering)  # the background work a request asks for starts once it is answered
    app.teardown_request(answered)
    return app


def compile_templates(app: Flask) -> None:
    """Every page's template compiled now, as a worker starts, rather than by the first request
    that renders it (about 7 ms a template here, 50 ms for the explorer's first page)."""
    for name in app.jinja_env.list_templates(extensions=["html"]):
        app.jinja_env.get_template(name)


@click.command("bootstrap")
@with_appcontext
def bootstrap_command() -> None:
    """First start: the default local storage and, when there is no user yet, an admin."""
    database = db.get_db()
    if current_app.config["SEVERAL_HOSTS"]:
        click.echo("Several hosts share this database: add a storage they all reach (S3, SFTP, WebDAV, or")
        click.echo("a shared mount with `storages add-local ID PATH --shared`); none is made by default.")
    elif get_storage(database, "local") is None:
        add_local_storage(database, "local", current_app.config["BACKUP_DIR"], "Local backups")
        click.echo(f"Storage 'local' serves {Path(current_app.config['BACKUP_DIR']).resolve()}.")
    if count_users(database) == 0:
        password = current_app.config["ADMIN_PASSWORD"]
        generated = not password
        password = str(password) if password else secrets.token_urlsafe(12)
        create_user(database, "admin", password, "admin", time.time())
        if generated:
            click.echo(
                f"Created user 'admin' with password: {password}  (shown once; change it or keep it safe)"
            )
        else:
            click.echo("Created user 'admin' with the password from ONCELINK_ADMIN_PASSWORD.")
