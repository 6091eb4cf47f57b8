"""The write that /healthz makes to prove the database takes one."""

from __future__ import annotations

import sqlite3

PROBE = "INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at"


def prove_writable(path: str, timeout: float, now: float) -> None:
    """Rewrite the probe row and commit, on a connection of its own that waits at most `timeout`
    for the write lock: a pooled one waits 10 s, and takes the writers' queue, whose locks belong
    to the request's thread. Raises sqlite3.Error when the write or the commit fails."""
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        with conn:
            conn.execute(PROBE, [now])
    finally:
        conn.close()
