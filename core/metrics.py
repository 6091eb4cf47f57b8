"""Prometheus metrics: what the server did, counted where it happened, added up over its workers.

Under gunicorn every worker is a process of its own. With metrics on, gunicorn.conf.py points
PROMETHEUS_MULTIPROC_DIR at a folder in the data dir before any worker imports prometheus-client:
each worker then writes its values to files there, /metrics adds up every worker's, the dead ones'
counters included, and a worker's `active` gauge goes when it exits. Elsewhere (tests, `flask`)
they are the one process's own. Counting is an in-memory write (a mapped file under gunicorn):
nothing here touches the network or delays a transfer.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from storage.base import Storage

# TransferStopped reasons (core/sending.py, core/leases.py), as label values; any other is "other".
ABORT_REASONS = frozenset(
    {"client gone", "stalled", "file shrank", "lapsed", "unsecured", "revoked", "integrity"}
)

LINKS_MINTED = Counter("oncelink_links_minted", "Links minted, by how they deliver the file.", ["mode"])
TRANSFERS_STARTED = Counter(
    "oncelink_transfers_started",
    "Transfers of a link that took a claim (redirects: the presigned URL handed out), by delivery.",
    ["mode"],
)
TRANSFERS_COMPLETED = Counter(
    "oncelink_transfers_completed",
    "Transfers the client acknowledged to the end of the file: uses.",
    ["mode"],
)
TRANSFERS_PARTIAL = Counter(
    "oncelink_transfers_partial", "Ranges short of the end of the file, delivered (not a use).", ["mode"]
)
TRANSFERS_ABORTED = Counter(
    "oncelink_transfers_aborted", "Transfers that ended before the client had every byte, by why.", ["reason"]
)
TRANSFERS_REJECTED = Counter(
    "oncelink_transfers_rejected",
    "Downloads refused before a byte was sent: used, expired, revoked, unknown, busy, bytes,"
    " too_many_attempts.",
    ["reason"],
)
CLAIM_CONFLICTS = Counter(
    "oncelink_claim_conflicts",
    "Claims refused by the conditional insert although the link looked usable: racing transfers.",
    ["reason"],
)
BYTES_SENT = Counter(
    "oncelink_bytes_sent",
    "Bytes handed to clients' connections (links and direct downloads).",
    ["storage_kind"],
)
ACTIVE_TRANSFERS = Gauge(
    "oncelink_active_transfers", "Transfers of links running now.", multiprocess_mode="livesum"
)
REQUEST_SECONDS = Histogram(
    "oncelink_request_duration_seconds",
    "Time from a request to its response's start (a transfer's own time is not in it), by endpoint.",
    ["endpoint", "method", "status"],
)


def label(reason: object) -> str:
    return str(reason).replace(" ", "_")


def storage_kind(storage: Storage) -> str:
    """The adapter's kind, read from its module (storage/local.py: local), as its record names it."""
    return type(storage).__module__.rpartition(".")[2]


def link_minted(mode: str) -> None:
    LINKS_MINTED.labels(label(mode)).inc()


def transfer_rejected(reason: object) -> None:
    TRANSFERS_REJECTED.labels(label(reason)).inc()


def claim_conflict(reason: object) -> None:
    CLAIM_CONFLICTS.labels(label(reason)).inc()


def transfer_started(mode: str) -> None:
    TRANSFERS_STARTED.labels(label(mode)).inc()
    ACTIVE_TRANSFERS.inc()


def transfer_ended(mode: str, delivered: bool, counts: bool, failure: str | None) -> None:
    ACTIVE_TRANSFERS.dec()
    if not delivered:
        TRANSFERS_ABORTED.labels(label(failure if failure in ABORT_REASONS else "other")).inc()
    else:
        (TRANSFERS_COMPLETED if counts else TRANSFERS_PARTIAL).labels(label(mode)).inc()


def redirected() -> None:
    """A redirect: the link is used up as the presigned URL leaves; no transfer of ours follows."""
    TRANSFERS_STARTED.labels("redirect").inc()
    TRANSFERS_COMPLETED.labels("redirect").inc()


def bytes_sent(kind: str, count: int) -> None:
    if count:
        BYTES_SENT.labels(kind).inc(count)


def request_seen(endpoint: str, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(endpoint, method, str(status)).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus's text format: every worker's, added up, under gunicorn."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
