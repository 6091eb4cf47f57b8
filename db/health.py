"""The write that /healthz makes to prove the database takes one."""

from __future__ import annotations

import sqlite3

import psycopg

from db.postgres import is_postgres

PROBE = "INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at"


def prove_writable(path: str, timeout: float, now: float) -> None:
    """Rewrite the probe row and commit, on a connection of its own that waits at most `timeout`
    for the write lock: a pooled one waits 10 s, and takes the writers' queue, whose locks belong
    to the request's thread. Raises sqlite3.Error or psycopg.Error when the write or the commit fails."""
    if is_postgres(path):
        _prove_postgres_writable(path, timeout, now)
        return
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        with conn:
            conn.execute(PROBE, [now])
    finally:
        conn.close()


def _prove_postgres_writable(url: str, timeout: float, now: float) -> None:
    """The same on PostgreSQL, the connection and the statement each bounded by `timeout`."""
    milliseconds = max(1, int(timeout * 1000))
    options = f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
    with psycopg.connect(url, connect_timeout=max(1, round(timeout)), options=options) as conn:
        conn.execute(PROBE.replace("?", "%s"), [now])
