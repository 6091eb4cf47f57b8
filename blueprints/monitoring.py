"""For whoever runs the server: /healthz for load balancers and monitors, /metrics for Prometheus,
and the latency of every request.

/healthz answers anyone (it says which part fails, never an address, a path or a secret; the
operator who sends the metrics token also gets each failure's detail). /metrics does not exist
unless ONCELINK_METRICS_TOKEN is set, and then answers only to that token.
"""

from __future__ import annotations

import functools
import hmac
import time

from flask import Blueprint, Response, abort, current_app, g, jsonify, request

from blueprints.formats import iso
from core import metrics
from core.health import Health, health_probes
from core.offloading import Started, off_the_hub
from db import DatabaseError, connect
from db.storages import StorageRecord, list_storages
from extensions import health_monitor, keyring

bp = Blueprint("monitoring", __name__)


def metrics_token() -> str | None:
    token = current_app.config.get("METRICS_TOKEN")
    return str(token) if token else None  # from_prefixed_env reads a token of digits as a number


def sent_metrics_token() -> bool:
    """The request carries `Authorization: Bearer TOKEN` with the metrics token."""
    token = metrics_token()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _probes() -> dict:
    config = current_app.config
    settings = health_monitor().settings
    storages = storages_to_check(config["DATABASE"], settings.timeout / 2)
    return health_probes(config["DATABASE"], config["DATA_DIR"], storages, keyring(), settings)


def storages_to_check(target: str, timeout: float) -> list[StorageRecord]:
    """The storages, read on a connection of their own within `timeout`: with the database gone
    (a PostgreSQL server down, whose pool would keep a request waiting), none are checked, and the
    database's own probe says what fails."""
    try:
        return Started(functools.partial(_read_storages, target)).result(timeout)
    except (TimeoutError, *DatabaseError):
        return []


def _read_storages(target: str) -> list[StorageRecord]:
    db = connect(target)
    try:
        return list_storages(db)
    finally:
        db.close()


def health_document(health: Health, detailed: bool) -> dict:
    checks = {}
    for check in health.checks:
        answer = {"status": "ok"} if check.ok else {"status": "fail", "problem": check.problem}
        if detailed and check.detail:
            answer["detail"] = check.detail
        checks[check.part] = answer
    return {
        "status": "ok" if health.ok else "fail",
        "failing": health.failing,
        "checks": checks,
        "checked_at": iso(health.checked_at),
    }


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when every part is fine, else 503 naming the parts that are not."""
    health = health_monitor().health(functools.partial(_probes), time.time())
    return jsonify(health_document(health, sent_metrics_token())), 200 if health.ok else 503


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    if metrics_token() is None:
        abort(404)
    if not sent_metrics_token():
        refused = Response(
            "Send the metrics token as 'Authorization: Bearer TOKEN'.\n", 401, mimetype="text/plain"
        )
        refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    body, content_type = off_the_hub(metrics.exposition)  # reads every worker's file
    return Response(body, content_type=content_type)


@bp.before_app_request
def note_request_start() -> None:
    g.request_started = time.perf_counter()


@bp.after_app_request
def observe_request_latency(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        endpoint = request.url_rule.endpoint if request.url_rule else "none"
        metrics.request_seen(endpoint, request.method, response.status_code, time.perf_counter() - started)
    return response
