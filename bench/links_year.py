"""A year of links: minting with a million links and five million events kept, against the same
install with ten thousand; and a small download through a fresh link against the sign-in page.

The goals, from issue #11: with 1,000,000 links and 5,000,000 events, minting over the API with
8 clients stays at 150 links/s or more with a p99 under 100 ms, while the purge works through
the links past the retention in the background; a 4 KiB single-use download takes at most
twice as long as the sign-in page.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median, quantiles
from urllib.parse import urlsplit

from harness import BenchError, Workspace, free_port
from report import Section
from servers import Bench, Oncelink

CLIENTS = 8
MINTS_PER_CLIENT = 500
WARM_UP_MINTS = 5  # per client, not counted: first requests, imports, caches
SMALL_INSTALL = 10_000
YEAR_INSTALL = 1_000_000
EVENTS_PER_LINK = 5  # created, preview, head, started, completed
HISTORY_DAYS = 395
RETENTION_DAYS = 365  # the oldest month of links is past it: the purge has work while minting runs
PURGE_INTERVAL_SECONDS = 1  # the purge runs through the measurement
DOWNLOADS = 200
SMALL_FILE = "small.bin"
SMALL_FILE_SIZE = 4096
RATE_GOAL = 150.0
P99_GOAL_MS = 100.0
DOWNLOAD_GOAL = 2.0
REQUEST_SECONDS = 30

LINK_ROWS = """
WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last)
INSERT INTO links (id, token_hash, storage_id, path, decrypt, created_by, created_at, expires_at,
                   max_uses, uses, last_used_at, bytes_sent)
SELECT i, printf('bench-%058d', i), 'local', :path, 1, :user, :start + (i - :first) * :step,
       :start + (i - :first) * :step + 300, 1, i % 10 != 0,
       CASE WHEN i % 10 != 0 THEN :start + (i - :first) * :step + 60 END, :size * (i % 10 != 0)
FROM n
"""
EVENT_ROWS = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1)
INSERT INTO link_events (link_id, storage_id, path, event, bytes, at, client_ip, user_agent)
SELECT MIN(:first + i / 5, :last), 'local', :path,
       CASE i % 5 WHEN 0 THEN 'created' WHEN 1 THEN 'preview' WHEN 2 THEN 'head'
                  WHEN 3 THEN 'started' ELSE 'completed' END,
       CASE WHEN i % 5 = 4 THEN :size END, :start + MIN(i / 5, :last - :first) * :step + i % 5,
       '192.0.2.' || (i % 200), 'curl/8.5.0'
FROM n
"""


@dataclass(frozen=True)
class YearInstall(Oncelink):
    """The app as `make serve` runs it, but keeping links for a year, and each worker purging
    every second, so that the purge runs while the mints are measured."""

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "ONCELINK_LINK_RETENTION": str(RETENTION_DAYS * 86400),
            "ONCELINK_PURGE_INTERVAL": str(PURGE_INTERVAL_SECONDS),
        }

    @property
    def database(self) -> Path:
        return self.workspace.instance / "oncelink.sqlite3"


def count_rows(database: Path) -> tuple[int, int]:
    """How many links and events the install keeps."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        links = conn.execute("SELECT COUNT(*) FROM links").fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM link_events").fetchone()[0]
    return links, events


def add_history(database: Path, links: int, events: int) -> None:
    """`links` more links to the small file, nine in ten used and the rest expired, created over
    the last HISTORY_DAYS by the first user, and `events` events of theirs (EVENTS_PER_LINK each,
    the last link taking what is left): SQLite makes the rows itself, in one transaction with a
    rollback journal (the server is stopped), in seconds, then flushed to disk."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM links").fetchone()[0]
        rows = {"first": first, "last": first + links - 1, "path": SMALL_FILE, "size": SMALL_FILE_SIZE}
        rows.update(start=time.time() - HISTORY_DAYS * 86400, step=HISTORY_DAYS * 86400 / links)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        conn.execute(LINK_ROWS, {**rows, "user": 1})
        conn.execute(EVENT_ROWS, {**rows, "count": events})
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    with open(database, "rb+") as written:  # on disk now, not at the server's first checkpoint
        os.fsync(written.fileno())


def grow(database: Path, links: int) -> None:
    """Add rows until the install keeps `links` links and EVENTS_PER_LINK times as many events."""
    kept_links, kept_events = count_rows(database)
    add_history(database, links - kept_links, links * EVENTS_PER_LINK - kept_events)


class Client:
    """One keep-alive HTTP/1.1 connection to the install."""

    def __init__(self, install: Oncelink, key: str | None = None):
        self.connection = http.client.HTTPConnection("127.0.0.1", install.port, timeout=REQUEST_SECONDS)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, target: str, body: dict | None = None) -> tuple[float, bytes]:
        """Seconds from sending the request to the last byte of the answer, and the answer."""
        headers = {**self.headers, "Content-Type": "application/json"} if body else self.headers
        started = time.perf_counter()
        self.connection.request(method, target, json.dumps(body) if body else None, headers)
        response = self.connection.getresponse()
        data = response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise BenchError(f"{method} {target.split('?')[0]} answered {response.status}: {data[:200]!r}")
        return seconds, data

    def mint(self) -> tuple[float, str]:
        seconds, data = self.request("POST", "/api/storage/local/download-url", {"file": SMALL_FILE})
        return seconds, json.loads(data)["url"]

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True)
class Minting:
    links_before: int
    events_before: int
    rate: float
    p99_ms: float
    median_ms: float


def mint_loop(install: Oncelink, key: str, start: threading.Barrier, seconds: list[float]) -> None:
    client = Client(install, key)
    try:
        for _ in range(WARM_UP_MINTS):
            client.mint()
        start.wait()
        for _ in range(MINTS_PER_CLIENT):
            seconds.append(client.mint()[0])
    finally:
        client.close()


def mint_concurrently(install: Oncelink, key: str) -> tuple[float, list[float]]:
    """CLIENTS threads minting MINTS_PER_CLIENT links each, started together after a warm-up:
    the wall time of the whole, and the time of each mint."""
    start = threading.Barrier(CLIENTS + 1)
    seconds: list[float] = []
    threads = [
        threading.Thread(target=mint_loop, args=(install, key, start, seconds)) for _ in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=REQUEST_SECONDS * WARM_UP_MINTS)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if len(seconds) != CLIENTS * MINTS_PER_CLIENT:
        raise BenchError(f"only {len(seconds)} of {CLIENTS * MINTS_PER_CLIENT} mints answered (see the log)")
    return time.perf_counter() - began, seconds


def measure_mints(install: YearInstall, key: str) -> Minting:
    links, events = count_rows(install.database)
    with install.serving():
        wall, seconds = mint_concurrently(install, key)
    p99 = quantiles(seconds, n=100)[98]
    return Minting(links, events, len(seconds) / wall, p99 * 1000, median(seconds) * 1000)


def measure_small_downloads(install: YearInstall, key: str) -> tuple[float, float]:
    """Median ms of a 4 KiB download through a link minted for it (not timed), and of the sign-in
    page, taking turns on one keep-alive connection."""
    with install.serving():
        minter = Client(install, key)
        targets = [urlsplit(minter.mint()[1]) for _ in range(DOWNLOADS + 1)]
        minter.close()
        client = Client(install)
        downloads, pages = [], []
        for target in targets:
            seconds, data = client.request("GET", f"{target.path}?{target.query}")
            if len(data) != SMALL_FILE_SIZE:
                raise BenchError(f"a download brought {len(data)} bytes, not {SMALL_FILE_SIZE}")
            downloads.append(seconds)
            pages.append(client.request("GET", "/login")[0])
        client.close()
    return median(downloads[1:]) * 1000, median(pages[1:]) * 1000  # the first of each: a warm-up


def prepared_install(bench: Bench) -> tuple[YearInstall, str]:
    """A fresh install of its own beside the bench's, with a 4 KiB file and an admin's API key."""
    workspace = Workspace.fresh(bench.oncelink.workspace.root / "links-year")
    install = YearInstall(workspace, free_port())
    install.bootstrap()
    (workspace.backups / SMALL_FILE).write_bytes(bytes(range(256)) * (SMALL_FILE_SIZE // 256))
    key = install.flask("apikeys", "create", "--user", "admin").strip()
    return install, key


def row(
    measurement: str, value: float, reference: float, goal: str = "", met: bool | None = None
) -> list[str]:
    """A table row: the figure, its reference, their ratio, and the goal and whether it was met."""
    digits = 2 if value < 10 else 1 if value < 100 else 0
    result = "" if met is None else "met" if met else "NOT met"
    return [
        measurement,
        f"{value:.{digits}f}",
        f"{reference:.{digits}f}",
        f"{value / reference:.2f}x",
        goal,
        result,
    ]


def table(small: Minting, year: Minting, download_ms: float, page_ms: float) -> list[list[str]]:
    versus = f"{year.links_before:,} vs {small.links_before:,} links"
    return [
        row(f"Mints/s, {CLIENTS} clients: {versus}", year.rate, small.rate, f">= {RATE_GOAL:.0f}/s",
            year.rate >= RATE_GOAL),
        row(f"Mint p99, ms: {versus}", year.p99_ms, small.p99_ms, f"< {P99_GOAL_MS:.0f} ms",
            year.p99_ms < P99_GOAL_MS),
        row(f"Mint median, ms: {versus}", year.median_ms, small.median_ms),
        row(f"{SMALL_FILE_SIZE // 1024} KiB single-use download vs sign-in page, median ms", download_ms,
            page_ms, f"<= {DOWNLOAD_GOAL:.0f}x", download_ms <= DOWNLOAD_GOAL * page_ms),
    ]  # fmt: skip


def measure_minting(bench: Bench) -> Section:
    """Minting on a small install, then on the same install grown to a year of links; then small
    downloads on it. Its database (about 1 GiB) is deleted afterwards, its logs kept."""
    install, key = prepared_install(bench)
    try:
        grow(install.database, SMALL_INSTALL)
        small = measure_mints(install, key)
        grow(install.database, YEAR_INSTALL)
        year = measure_mints(install, key)
        links_after, events_after = count_rows(install.database)
        download_ms, page_ms = measure_small_downloads(install, key)
    finally:
        shutil.rmtree(install.workspace.instance, ignore_errors=True)
    minted = CLIENTS * (MINTS_PER_CLIENT + WARM_UP_MINTS)  # a link and its `created` event each
    purged = (year.links_before + minted - links_after, year.events_before + minted - events_after)
    return section(small, year, purged, download_ms, page_ms)


def section(
    small: Minting, year: Minting, purged: tuple[int, int], download_ms: float, page_ms: float
) -> Section:
    rows = table(small, year, download_ms, page_ms)
    met = all(cells[-1] != "NOT met" for cells in rows)
    return Section(
        title="A year of links: minting and small downloads",
        about=(
            f"Oncelink on an install of its own: {CLIENTS} clients mint {MINTS_PER_CLIENT} links each over "
            f"the API (an API key, one keep-alive connection each, after {WARM_UP_MINTS} untimed mints), "
            f"first with {small.links_before:,} links and {small.events_before:,} events kept, then with the "
            f"same install grown to {year.links_before:,} links and {year.events_before:,} events (the rows "
            f"made directly in SQLite, spread over {HISTORY_DAYS} days; links are kept {RETENTION_DAYS} days "
            f"and each worker purges every {PURGE_INTERVAL_SECONDS} s). Then, on the large install, "
            f"{DOWNLOADS} downloads of a {SMALL_FILE_SIZE // 1024} KiB file, each through a single-use link "
            "minted for it (not timed), and as many requests for the sign-in page, taking turns on one "
            "keep-alive connection. Times are the client's, from sending the request to the last byte."
        ),
        columns=["Measurement", "Result", "Reference", "Ratio", "Goal", "Goal met"],
        rows=rows,
        notes=(
            f"While the large install was measured, the purge deleted {purged[0]:,} links past the "
            f"retention and {purged[1]:,} events no link owns any more, in the background; the downloads "
            "ran while it went on. A mint writes once (the link and its event, one transaction), twice "
            "when its API key's last use is due (written once a minute)."
        ),
        verdict=f"goals {'met' if met else 'NOT met'} (last column).",
    )
