"""`make bench`: measure Oncelink on loopback, rewrite docs/benchmarks.md and print its tables.

`bench/run.py listings minting` runs only the measurements named (as in MEASUREMENTS, without
`measure_`) and prints their tables, leaving docs/benchmarks.md as it is.

Each measurement is a function from the running `Bench` to a report `Section`; a new
benchmark is one more function in MEASUREMENTS (as S3 storages, listings and several hosts were).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from dbackup_downloads import measure_dbackup
from decrypted_downloads import measure_decrypted
from harness import REPO, BenchError, MiB, Workspace, free_port
from hosts import measure_hosts
from links_year import measure_minting
from listings import measure_listings
from page_floods import measure_floods
from raw_downloads import measure_throughput, measure_workers
from remote_downloads import measure_remote
from report import Section, machine_facts, render_document, render_section
from s3_downloads import measure_s3
from servers import Bench, Nginx, Oncelink
from slow_clients import measure_crowd

WORK = REPO / "bench" / "work"
DOC = REPO / "docs" / "benchmarks.md"
FILES = {"100 MiB": ("100MiB.bin", 100 * MiB), "1 GiB": ("1GiB.bin", 1024 * MiB)}
# A guard against a hung server, not a goal: the whole run took 502 s on a quiet host and, with the
# floods section since, about twice that on a slow one.
TIME_LIMIT_SECONDS = 2400

MEASUREMENTS: list[Callable[[Bench], Section]] = [
    measure_throughput,
    measure_workers,
    measure_decrypted,
    measure_dbackup,
    measure_s3,
    measure_remote,
    measure_crowd,
    measure_floods,
    measure_listings,
    measure_minting,
    measure_hosts,
]


class Interrupted(Exception):
    """SIGTERM or the time limit: unwinds through the `finally` blocks that stop the servers."""


def stop_on_signals() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(TIME_LIMIT_SECONDS)


@contextmanager
def running_bench(workspace: Workspace) -> Iterator[Bench]:
    """The files, a bootstrapped Oncelink and both servers, up for the duration of the block."""
    files = {label: workspace.add_file(name, size) for label, (name, size) in FILES.items()}
    oncelink = Oncelink(workspace, free_port())
    oncelink.bootstrap()
    nginx = Nginx(workspace, free_port())
    with oncelink.serving() as gunicorn, nginx.serving():
        yield Bench(oncelink, nginx, gunicorn.pid, files)


def chosen(names: list[str]) -> list[Callable[[Bench], Section]]:
    """The measurements named, all of them without names."""
    known = {measure.__name__.removeprefix("measure_"): measure for measure in MEASUREMENTS}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise BenchError(f"no measurement named {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[name] for name in names] if names else MEASUREMENTS


def measure_all(measurements: list[Callable[[Bench], Section]]) -> tuple[list[Section], float]:
    """Run the measurements; the large files (encrypted copies too) are deleted afterwards, the logs kept."""
    started = time.monotonic()
    workspace = Workspace.fresh(WORK)
    try:
        with running_bench(workspace) as bench:
            sections = [measure(bench) for measure in measurements]
    finally:
        workspace.remove_backups()
    return sections, time.monotonic() - started


def main(names: list[str]) -> int:
    stop_on_signals()
    try:
        sections, seconds = measure_all(chosen(names))
    except (BenchError, Interrupted) as exc:
        print(f"bench failed: {exc}\n(logs in {WORK / 'logs'})", file=sys.stderr)
        return 1
    print("\n\n".join(render_section(section) for section in sections))
    if not names:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        DOC.write_text(render_document(sections, machine_facts(), when, seconds))
        print(f"\nWritten to {DOC}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
