"""A thousand slow downloads at once: do they all progress, and do pages and minting still answer?

The goal from issue 11: 1,000 concurrent downloads at 200 KB/s each (distinct links) all make
progress at once; meanwhile the explorer page and the mint API keep p95 < 300 ms; no transfer
fails; worker memory grows by less than 100 MB in all. nginx serves the same crowd as reference.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median, quantiles
from urllib.parse import urlencode

from harness import BenchError, MiB, script_report, started_script
from report import Section
from servers import Bench
from workers import KiB, watch_workers

CLIENTS = 1000
RATE = 200 * 1000  # bytes a second for each client
SECONDS = 24  # a quarter warms up, then two halves are measured
GOAL_P95_MS = 300
GOAL_GROWTH_MIB = 100
OPERATOR, PASSWORD = "bench-operator", "bench operator password"


@dataclass(frozen=True)
class Crowd:
    """What the crowd process saw: statuses, and body bytes in each measured half."""

    statuses: list[int]
    halves: list[list[int]]
    seconds: float

    @property
    def progressing(self) -> int:
        """Clients that received bytes in both halves: they moved all along, not in turns."""
        return sum(1 for first, second in zip(*self.halves, strict=True) if first and second)

    @property
    def mib_per_second(self) -> float:
        return sum(self.halves[1]) / self.seconds / MiB


class Session:
    """Requests to Oncelink as a signed-in operator (pages) and with its API key (minting)."""

    def __init__(self, bench: Bench):
        self.bench = bench
        oncelink = bench.oncelink
        oncelink.flask("users", "create", OPERATOR, "--role", "operator", "--password-stdin", stdin=PASSWORD)
        self.key = oncelink.flask("apikeys", "create", "--user", OPERATOR).strip()
        self.cookie = self._sign_in()

    def request(self, method: str, target: str, headers: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.bench.oncelink.port, timeout=60)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def _sign_in(self) -> str:
        _, headers, page = self.request("GET", "/login", {})
        cookie = headers["Set-Cookie"].split(";")[0]
        token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1).decode()
        form = urlencode({"name": OPERATOR, "password": PASSWORD, "csrf_token": token}).encode()
        form_headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
        status, headers, _ = self.request("POST", "/login", form_headers, form)
        if status != 303:
            raise BenchError(f"signing in answered {status}")
        return headers["Set-Cookie"].split(";")[0]

    def mint(self, relative: str, uses: int = 1) -> tuple[float, str]:
        """Seconds the mint API took, and the link."""
        body = json.dumps({"file": relative, "ttl": 3600, "uses": uses}).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        started = time.perf_counter()
        status, _, answer = self.request("POST", "/api/storage/local/download-url", headers, body)
        if status != 200:
            raise BenchError(f"minting answered {status}")
        return time.perf_counter() - started, json.loads(answer)["url"]

    def explorer(self) -> float:
        started = time.perf_counter()
        status, _, _ = self.request("GET", "/browse/local", {"Cookie": self.cookie})
        if status != 200:
            raise BenchError(f"the explorer answered {status}")
        return time.perf_counter() - started


_sessions: dict[int, Session] = {}


def operator_session(bench: Bench) -> Session:
    """The operator's session for the Oncelink under measure: its user can be created only once, so
    every measurement that needs it shares it."""
    port = bench.oncelink.port
    if port not in _sessions:
        _sessions[port] = Session(bench)
    return _sessions[port]


def start_crowd(urls: list[str]) -> subprocess.Popen:
    return started_script("crowd.py", [str(RATE), str(SECONDS)], "\n".join(urls))


def crowd_report(crowd: subprocess.Popen) -> Crowd:
    return Crowd(**script_report(crowd, SECONDS * 3))


Samples = list[float]


def pages_meanwhile(session: Session, relative: str, crowd: subprocess.Popen) -> tuple[Samples, Samples]:
    """Explorer pages and mints, one after the other, while the crowd's measured halves run."""
    time.sleep(SECONDS / 4)
    pages: Samples = []
    mints: Samples = []
    while crowd.poll() is None and len(pages) < 200:
        pages.append(session.explorer())
        mints.append(session.mint(relative)[0])
    return pages, mints


def p95(samples: list[float]) -> float:
    """Milliseconds."""
    return (quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]) * 1000


def ms(samples: list[float]) -> str:
    return f"{median(samples) * 1000:.0f} / {p95(samples):.0f}"


def measure_crowd(bench: Bench) -> Section:
    path: Path = bench.files["1 GiB"]
    relative = path.relative_to(bench.oncelink.workspace.backups).as_posix()
    session = operator_session(bench)
    urls = [session.mint(relative)[1] for _ in range(CLIENTS)]
    with watch_workers(bench.gunicorn_master, lambda pid: True) as workers:
        crowd = start_crowd(urls)
        pages, mints = pages_meanwhile(session, relative, crowd)
        app = crowd_report(crowd)
    growth = sum(worker.growth for worker in workers.values()) / KiB
    reference = crowd_report(start_crowd([bench.nginx.file_url(path)] * CLIENTS))
    rows = [
        row("Oncelink", app, ms(pages), ms(mints), f"+{growth:.1f}"),
        row("nginx", reference, "-", "-", "-"),
    ]
    ratio = app.mib_per_second / reference.mib_per_second
    met = (
        app.progressing == CLIENTS
        and app.statuses.count(200) == CLIENTS
        and max(p95(pages), p95(mints)) < GOAL_P95_MS
        and growth < GOAL_GROWTH_MIB
    )
    verdict = (
        f"goal {'met' if met else 'NOT met'}: {app.progressing:,} of {CLIENTS:,} downloads progressed "
        f"in both halves, {app.statuses.count(200):,} answered 200; explorer p95 {p95(pages):.0f} ms "
        f"and mint API p95 {p95(mints):.0f} ms (goal: < {GOAL_P95_MS} ms); workers grew by "
        f"{growth:.1f} MiB in all (goal: < {GOAL_GROWTH_MIB}); throughput {ratio:.2f}x nginx's "
        "for the same crowd."
    )
    return Section("A thousand slow downloads at once", ABOUT, COLUMNS, rows, verdict, NOTES)


COLUMNS = [
    "Server",
    "Clients progressing",
    "Answered 200",
    "MiB/s, all clients",
    "Explorer ms (median / p95)",
    "Mint API ms (median / p95)",
    "Workers' RSS growth, MiB",
]


def row(label: str, crowd: Crowd, pages: str, mints: str, growth: str) -> list[str]:
    return [
        label,
        f"{crowd.progressing:,} / {CLIENTS:,}",
        f"{crowd.statuses.count(200):,}",
        f"{crowd.mib_per_second:,.1f}",
        pages,
        mints,
        growth,
    ]


ABOUT = (
    f"{CLIENTS:,} clients, each with a link of its own to the 1 GiB file, read at most "
    f"{RATE // 1000} KB/s each for {SECONDS} s by one process of the bench's own (a selector over "
    "every socket, 64 KiB receive buffers: curl's --limit-rate does not pace on loopback). After a "
    "quarter of the time to warm up, the rest is split in two halves: a client *progresses* when it "
    "received bytes in both. Meanwhile a signed-in operator loads the explorer's first page and mints "
    "a link through the API, one after the other, each on a fresh connection (median / p95 in ms). "
    "*Workers' RSS growth* adds up every gunicorn worker's peak resident memory over its own at the "
    "start. nginx serves the same crowd the same file."
)
NOTES = (
    "Everything shares this machine's two cores: the crowd process reads every client's bytes in "
    "Python, so the total throughput is bounded by the reader as much as by either server."
)
