"""Several hosts: single-use 4 KiB downloads and mints per second, one host on SQLite against two
hosts sharing one PostgreSQL database and one backups folder, and how long the claim takes on each.

Issue 16 sets no goal here: the figures are reported as they are, as ratios of the two.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import quantiles
from typing import TypeVar
from urllib.parse import urlsplit

from harness import REPO, BenchError, Workspace, free_port
from links_year import SMALL_FILE, SMALL_FILE_SIZE, Client
from prometheus_client.parser import text_string_to_metric_families
from report import Section
from servers import Bench, Oncelink
from workers import CpuTime, workers_cpu

sys.path.insert(0, str(REPO))
from tests.postgres_server import PostgresServer  # noqa: E402

CLIENTS = 8
LINKS_PER_CLIENT = 250  # 2,000 mints, then 2,000 downloads of the links they made
WARM_UP = 5  # per client, not counted: first requests, imports, the pools' first connections
DATABASE = "oncelink"
DOWNLOAD_VIEW = {"endpoint": "public.download", "method": "GET", "status": "200"}  # claims the link
LATENCY_METRIC = "oncelink_request_duration_seconds"
# Every link is asked again once spent: 2,000 refused attempts from one address, which the default
# public failure limit (60 a minute) would answer with 429 rather than 410.
FAILURE_LIMIT = "100000 per minute"

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Host(Oncelink):
    """The app as `make serve` runs it, with /metrics on and `settings` over its environment."""

    settings: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**super().env(), "ONCELINK_PUBLIC_FAILURE_LIMIT": FAILURE_LIMIT, **self.settings}

    @property
    def metrics_token(self) -> str:
        return self.settings["ONCELINK_METRICS_TOKEN"]


class Downloader(Client):
    """A keep-alive connection that also times the answer's first byte."""

    def fetch(self, target: str) -> tuple[int, bytes, float, float]:
        """The status and body, and the seconds to the answer's headers and to its last byte."""
        started = time.perf_counter()
        self.connection.request("GET", target, headers=self.headers)
        response = self.connection.getresponse()
        first_byte = time.perf_counter() - started
        data = response.read()
        return response.status, data, first_byte, time.perf_counter() - started


@dataclass(frozen=True)
class Latency:
    """p50 and p99, in ms."""

    p50: float
    p99: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        cuts = quantiles(seconds, n=100)
        return cls(cuts[49] * 1000, cuts[98] * 1000)


@dataclass(frozen=True)
class Histogram:
    """A reading of a Prometheus histogram: how many observations were at most each bound, and
    their sum; in seconds."""

    buckets: dict[float, float]
    total: float

    @property
    def count(self) -> float:
        return self.buckets.get(math.inf, 0.0)

    def combined(self, other: Histogram, sign: int = 1) -> Histogram:
        bounds = self.buckets.keys() | other.buckets.keys()
        buckets = {b: self.buckets.get(b, 0.0) + sign * other.buckets.get(b, 0.0) for b in bounds}
        return Histogram(buckets, self.total + sign * other.total)

    def bucket_of(self, q: float) -> tuple[float, float]:
        """The bounds of the bucket the q-quantile falls in: where Prometheus's histogram_quantile
        would interpolate, assuming the observations spread evenly in it, which they need not."""
        rank, lower = q * self.count, 0.0
        for bound, cumulative in sorted(self.buckets.items()):
            if cumulative >= rank:
                return lower, bound
            lower = bound
        return lower, math.inf


@dataclass(frozen=True)
class Servers:
    """What serves one configuration: its hosts, an admin's API key, and the parents of the
    processes whose CPU time counts (the hosts' gunicorn masters, PostgreSQL's postmaster)."""

    hosts: list[Host]
    key: str
    masters: list[int]
    postmaster: int | None = None


@dataclass(frozen=True)
class Phase:
    """The clients at work together: how long, how many requests, and the CPU seconds that the
    hosts' workers and PostgreSQL's processes used meanwhile."""

    seconds: float
    count: int
    app_cpu: float
    database_cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request."""
        return (self.app_cpu + self.database_cpu) / self.count * 1000

    @property
    def database_share(self) -> float:
        return self.database_cpu / (self.app_cpu + self.database_cpu)


@dataclass(frozen=True)
class Figures:
    """One configuration's results; latencies in ms."""

    mints: Phase
    mint: Latency
    downloads: Phase
    download: Latency
    first_byte: Latency
    claims: Histogram  # the app's own time from a download's request to its response: the claim is in it

    @property
    def claim_mean(self) -> float:
        return self.claims.total / self.claims.count * 1000


def in_parallel(work: Callable[..., Result], calls: list[tuple]) -> tuple[float, list[Result]]:
    """`work` with each of the arguments at once, a thread each: the wall time of the whole, and
    the results."""
    with ThreadPoolExecutor(len(calls)) as pool:
        began = time.perf_counter()
        futures = [pool.submit(work, *arguments) for arguments in calls]
        results = [future.result() for future in futures]
        return time.perf_counter() - began, results


def target(url: str) -> str:
    """What a client asks for: the link's path and query, whichever host minted it."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# Each client's work opens its own keep-alive connection: gunicorn closes one left idle for two
# seconds, as a client that finished first would leave it while the others go on.


def mint_links(host: Host, key: str, count: int) -> list[tuple[float, str]]:
    """`count` links to the small file: the seconds each mint took, and the link."""
    with closing(Client(host, key)) as client:
        return [(seconds, target(url)) for seconds, url in (client.mint() for _ in range(count))]


def download_each(host: Host, links: list[str]) -> list[tuple[float, float]]:
    """Every link once, whole: the seconds to the first and to the last byte of each."""
    timings = []
    with closing(Downloader(host)) as client:
        for link in links:
            status, data, first_byte, seconds = client.fetch(link)
            if status != 200 or len(data) != SMALL_FILE_SIZE:
                raise BenchError(f"a single-use download answered {status} with {len(data)} bytes")
            timings.append((first_byte, seconds))
    return timings


def check_spent(host: Host, links: list[str]) -> None:
    """Each downloaded link asked once more: gone (410), on whichever host."""
    with closing(Downloader(host)) as client:
        for link in links:
            status = client.fetch(link)[0]
            if status != 410:
                raise BenchError(f"a downloaded single-use link answered {status}, not 410")


def download_histogram(host: Host) -> Histogram:
    """The download view's latencies on this host, every worker's added up (gunicorn.conf.py)."""
    client = Client(host, host.metrics_token)
    try:
        text = client.request("GET", "/metrics")[1].decode()
    finally:
        client.close()
    buckets, total = {}, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if any(sample.labels.get(name) != value for name, value in DOWNLOAD_VIEW.items()):
                continue
            if sample.name == f"{LATENCY_METRIC}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{LATENCY_METRIC}_sum":
                total = sample.value
    return Histogram(buckets, total)


def all_hosts_histogram(hosts: list[Host]) -> Histogram:
    return functools.reduce(Histogram.combined, [download_histogram(host) for host in hosts])


def shifted(items: list[Item]) -> list[Item]:
    """Client i gets client i + 1's: on two hosts, each link is downloaded on the host that did
    not mint it, and checked again on the one that did."""
    return items[1:] + items[:1]


def links_of(made: list[tuple[float, str]]) -> list[str]:
    return [link for _, link in made]


def cpu_seconds(used: list[CpuTime]) -> float:
    return sum(cpu.user + cpu.system for cpu in used)


def timed(servers: Servers, work: Callable[..., list], calls: list[tuple]) -> tuple[Phase, list[list]]:
    """`work` with each of the arguments at once, and the servers' CPU time meanwhile; each call
    returns a list of its requests."""
    with ExitStack() as stack:
        app = [stack.enter_context(workers_cpu(master)) for master in servers.masters]
        parents = [servers.postmaster] if servers.postmaster else []
        database = [stack.enter_context(workers_cpu(parent)) for parent in parents]
        wall, results = in_parallel(work, calls)
    count = sum(len(result) for result in results)
    return Phase(wall, count, cpu_seconds(app), cpu_seconds(database)), results


def measure_on(servers: Servers) -> Figures:
    """CLIENTS clients, spread evenly over the hosts, mint links; then download them, each on
    the host that did not mint it when there are two; then each is asked again (410)."""
    hosts, key = servers.hosts, servers.key
    on_hosts = [hosts[n % len(hosts)] for n in range(CLIENTS)]
    warm = in_parallel(mint_links, [(host, key, WARM_UP) for host in on_hosts])[1]
    mints, minted = timed(servers, mint_links, [(host, key, LINKS_PER_CLIENT) for host in on_hosts])
    links = [links_of(made) for made in minted]
    in_parallel(download_each, list(zip(on_hosts, shifted([links_of(made) for made in warm]), strict=True)))
    before = all_hosts_histogram(hosts)
    downloads, timings = timed(servers, download_each, list(zip(on_hosts, shifted(links), strict=True)))
    claims = all_hosts_histogram(hosts).combined(before, sign=-1)
    in_parallel(check_spent, list(zip(on_hosts, links, strict=True)))
    return figures(mints, minted, downloads, timings, claims)


def figures(
    mints: Phase,
    minted: list[list[tuple[float, str]]],
    downloads: Phase,
    timings: list[list[tuple[float, float]]],
    claims: Histogram,
) -> Figures:
    done = [timing for each in timings for timing in each]
    if claims.count != len(done):
        raise BenchError(f"the hosts' metrics count {claims.count:.0f} downloads, not {len(done)}")
    return Figures(
        mints=mints,
        mint=Latency.of([seconds for made in minted for seconds, _ in made]),
        downloads=downloads,
        download=Latency.of([seconds for _, seconds in done]),
        first_byte=Latency.of([first_byte for first_byte, _ in done]),
        claims=claims,
    )


def host_workspace(root: Path, name: str) -> Workspace:
    """A host's own folder: its data dir and logs (the backups it serves are the shared ones)."""
    workspace = Workspace(root / name)
    workspace.logs.mkdir(parents=True)
    return workspace


def common_settings(backups: Path) -> dict[str, str]:
    """What every host here is given: the one backups folder (a mount every host sees, in a real
    install), and a metrics token for reading its request histogram."""
    return {"ONCELINK_BACKUP_DIR": str(backups), "ONCELINK_METRICS_TOKEN": secrets.token_urlsafe(16)}


def postgres_settings(url: str) -> dict[str, str]:
    """The database, and what hosts sharing it must share besides (app.require_shared_secrets)."""
    return {
        "ONCELINK_DATABASE_URL": url,
        "ONCELINK_SECRET_KEY": secrets.token_urlsafe(32),
        "ONCELINK_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


@contextmanager
def serving(hosts: list[Host], postmaster: int | None = None) -> Iterator[Servers]:
    """Every host serving, after the first was bootstrapped (they share the rest)."""
    first = hosts[0]
    first.bootstrap()
    if postmaster is not None:  # several hosts: bootstrap makes no storage; add the folder they share
        first.flask("storages", "add-local", "local", first.settings["ONCELINK_BACKUP_DIR"], "--shared")
    key = first.flask("apikeys", "create", "--user", "admin").strip()
    with ExitStack() as stack:
        masters = [stack.enter_context(host.serving()).pid for host in hosts]
        yield Servers(hosts, key, masters, postmaster)


def started(server: PostgresServer) -> None:
    try:
        server.start()
        server.admin(f"CREATE DATABASE {DATABASE}")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise BenchError(f"PostgreSQL did not start: {exc} {getattr(exc, 'stderr', '') or ''}") from exc


def postmaster_pid(server: PostgresServer) -> int:
    """The server's first process, the parent of the others (its pid file's first line)."""
    return int((server.data / "postmaster.pid").read_text().split()[0])


@contextmanager
def postgres_cluster(logs: Path) -> Iterator[PostgresServer]:
    """A cluster of its own, as the tests start it, with an empty database. It is stopped and its
    folder deleted afterwards; its log is kept with the others."""
    server = PostgresServer(free_port())
    try:
        started(server)
        yield server
    finally:
        try:
            if (server.data / "postmaster.pid").exists():
                server.stop()
        finally:
            if (server.folder / "server.log").exists():
                shutil.copy(server.folder / "server.log", logs / "postgres.log")
            server.remove()


def one_host_on_sqlite(root: Path, settings: dict[str, str]) -> Figures:
    host = Host(host_workspace(root, "sqlite"), free_port(), settings)
    with serving([host]) as servers:
        return measure_on(servers)


def two_hosts_on_postgres(root: Path, settings: dict[str, str]) -> Figures:
    with postgres_cluster(root / "logs") as server:
        shared = {**settings, **postgres_settings(server.url(DATABASE))}
        hosts = [Host(host_workspace(root, name), free_port(), shared) for name in ("a", "b")]
        with serving(hosts, postmaster_pid(server)) as servers:
            return measure_on(servers)


def measure_hosts(bench: Bench) -> Section:
    """One host on SQLite, then two on PostgreSQL, each on installs of their own beside the
    bench's, serving one 4 KiB file from one shared folder."""
    workspace = Workspace.fresh(bench.oncelink.workspace.root / "hosts")
    (workspace.backups / SMALL_FILE).write_bytes(bytes(range(256)) * (SMALL_FILE_SIZE // 256))
    settings = common_settings(workspace.backups)
    one = one_host_on_sqlite(workspace.root, settings)
    two = two_hosts_on_postgres(workspace.root, settings)
    return section(one, two)


def number(value: float) -> str:
    return f"{value:,.{2 if value < 10 else 1 if value < 100 else 0}f}"


def row(label: str, one: float, two: float) -> list[str]:
    return [label, number(one), number(two), f"{two / one:.2f}x"]


def bucket_row(label: str, q: float, one: Figures, two: Figures) -> list[str]:
    """Where the claims' q-quantile falls on each: a bucket of the app's histogram, no ratio."""

    def cell(figures: Figures) -> str:
        lower, upper = figures.claims.bucket_of(q)
        return f"{lower * 1000:g}-{upper * 1000:g}"

    return [label, cell(one), cell(two), ""]


def table(one: Figures, two: Figures) -> list[list[str]]:
    """Each figure of one host on SQLite, of two hosts on PostgreSQL, and their ratio."""
    kib = SMALL_FILE_SIZE // 1024
    figures = [
        (f"Single-use {kib} KiB downloads/s, {CLIENTS} clients", lambda f: f.downloads.rate),
        ("Download p50, ms", lambda f: f.download.p50),
        ("Download p99, ms", lambda f: f.download.p99),
        ("Server CPU per download, ms", lambda f: f.downloads.cpu_ms),
        (f"Mints/s over the API, {CLIENTS} clients", lambda f: f.mints.rate),
        ("Mint p50, ms", lambda f: f.mint.p50),
        ("Mint p99, ms", lambda f: f.mint.p99),
        ("Server CPU per mint, ms", lambda f: f.mints.cpu_ms),
        ("Claim mean, ms: server, request to response", lambda f: f.claim_mean),
    ]
    claims_by_client = [
        ("Claim p50, ms: client, time to first byte", lambda f: f.first_byte.p50),
        ("Claim p99, ms: client, time to first byte", lambda f: f.first_byte.p99),
    ]
    return [
        *(row(label, figure(one), figure(two)) for label, figure in figures),
        bucket_row("Claim p50, ms: server, its histogram's bucket", 0.5, one, two),
        bucket_row("Claim p99, ms: server, its histogram's bucket", 0.99, one, two),
        *(row(label, figure(one), figure(two)) for label, figure in claims_by_client),
    ]


ABOUT = (
    f"The same {SMALL_FILE_SIZE // 1024} KiB file served by one host on SQLite, then by two hosts on "
    "PostgreSQL: each host a fresh install started as `make serve` starts it (gunicorn, two gevent "
    "workers), so four workers in all against two; the two hosts have their own data dir and port, the "
    "same `ONCELINK_DATABASE_URL`, `ONCELINK_SECRET_KEY` and `ONCELINK_MASTER_KEY`, and serve one "
    "backups folder. PostgreSQL is a cluster of the bench's own on loopback, started as the tests start "
    "it (Debian's server, fsync and synchronous_commit off; SQLite runs as always, WAL with "
    f"synchronous=NORMAL, so neither waits for the disk at a commit). {CLIENTS} clients, half on "
    "each host where there are two, each on one keep-alive connection: first each mints "
    f"{LINKS_PER_CLIENT:,} links over the API with an admin's API key, then each downloads "
    f"{LINKS_PER_CLIENT:,} of them, another client's (with two hosts, links minted on the other host); "
    f"{WARM_UP} of each per client before, not counted. Every download must be a 200 with every byte, "
    "and every link then answers 410 (asked of the host that minted it; the public failure limit is "
    "raised for these 2,000 refusals to one address). Rates: the count over the wall "
    "time of all the clients. Times: the client's, from sending the request to the last byte, except "
    "where said. The ratio is two hosts on PostgreSQL over one host on SQLite: above 1 is more for "
    "rates, longer for times."
)

CLAIM_NOTE = (
    "*Claim*: nothing in the app times the claim alone. The nearest is its request histogram "
    "(`oncelink_request_duration_seconds` on `/metrics`, the download view's 200s, every host's and "
    "worker's added up): the server's time from the request to its response, before the first byte. "
    "It holds the link's checks, the file's opening, the claim (one conditional statement; on "
    "PostgreSQL under the link's advisory lock) and its `started` event, but not the acknowledged "
    "completion after the last byte. Its mean is exact (sum over count); its p50 and p99 are known only "
    "to the bucket they fall in (Prometheus's default bounds: 5, 10, 25, 50, 75, 100 ms...), so they "
    "are given as that bucket. The client's time to the first byte (the answer's headers) is the same "
    "wait plus the queueing and the loopback as the client sees them."
)


def notes(two: Figures) -> str:
    return (
        f"{CLAIM_NOTE} *Server CPU*: the user and system time of every host's workers and, on "
        "PostgreSQL, of the cluster's processes, while the clients ran, over the count of requests; of "
        f"it, PostgreSQL's processes took {two.mints.database_share:.0%} for the mints and "
        f"{two.downloads.database_share:.0%} for the downloads. The clients, the hosts and PostgreSQL "
        "share the machine's CPUs, so the rates are bounded by the CPU each request costs."
    )


def verdict(one: Figures, two: Figures) -> str:
    downloads = two.downloads.rate / one.downloads.rate
    mints = two.mints.rate / one.mints.rate
    return (
        f"no goal in the issue; as measured, two hosts on PostgreSQL did {downloads:.2f}x the single-use "
        f"downloads/s and {mints:.2f}x the mints/s of one host on SQLite, and the server's time to a "
        f"download's response (the claim in it) was {two.claim_mean / one.claim_mean:.2f}x as long "
        "on average."
    )


def section(one: Figures, two: Figures) -> Section:
    return Section(
        title="Several hosts: one on SQLite vs two on PostgreSQL",
        about=ABOUT,
        columns=["Measurement", "One host, SQLite", "Two hosts, PostgreSQL", "Two / one"],
        rows=table(one, two),
        notes=notes(two),
        verdict=verdict(one, two),
    )
