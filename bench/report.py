"""Results as markdown: the sections the measurements return, the machine, and the whole document."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from harness import BenchError, require


@dataclass(frozen=True)
class Section:
    """What one measurement found: a table, what it means, and whether the goal was met."""

    title: str
    about: str
    columns: list[str]
    rows: list[list[str]]
    verdict: str
    notes: str = ""


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    """A pipe table whose columns line up, so it reads as well in a terminal as rendered."""
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(columns), rule, *(line(row) for row in rows)])


def render_section(section: Section) -> str:
    parts = [f"## {section.title}", section.about, markdown_table(section.columns, section.rows)]
    if section.notes:
        parts.append(section.notes)
    parts.append(f"**Result:** {section.verdict}")
    return "\n\n".join(parts)


def command_version(command: list[str], pattern: str) -> str:
    """The version a tool reports about itself (nginx prints it on stderr)."""
    try:
        result = subprocess.run(
            [require(command[0]), *command[1:]], capture_output=True, text=True, timeout=10
        )
    except (BenchError, OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(pattern, result.stdout + result.stderr)
    return found.group(1) if found else "unknown"


def memory_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def machine_facts() -> list[tuple[str, str]]:
    """What the figures depend on besides the code."""
    return [
        ("CPUs (nproc)", f"{len(os.sched_getaffinity(0))} x {cpu_model()}"),
        ("Memory", memory_total()),
        ("Kernel", f"Linux {platform.release()}"),
        ("Python", platform.python_version()),
        ("gunicorn", version("gunicorn")),
        ("boto3", version("boto3")),
        ("moto", version("moto")),
        ("nginx", command_version(["nginx", "-v"], r"nginx/(\S+)")),
        ("curl", command_version(["curl", "--version"], r"curl (\S+)")),
        ("PostgreSQL (psql)", command_version(["psql", "--version"], r"\(PostgreSQL\) (\S+)")),
        ("psycopg", version("psycopg")),
        ("Load average at the end (1, 5, 15 min)", ", ".join(f"{load:.2f}" for load in os.getloadavg())),
    ]


INTRO = """\
# Benchmarks

`make bench` (that is, `bench/run.py`) measures Oncelink on this machine, on loopback only
(127.0.0.1), and rewrites this file on every run. It serves a 100 MiB and a 1 GiB file of
random bytes, freshly written and so read from the page cache, never from disk: the figures
are the cost of the servers, not of storage or network (but for S3, where the S3 server's own
cost is part of every figure, and its section tells how much). Oncelink runs exactly as
`make serve` starts it (gunicorn with `gunicorn.conf.py`: gevent workers, sendfile); the
reference is Debian's nginx serving the same folder with `sendfile on; tcp_nopush on;`. Each
download is one `curl` to `/dev/null`; through Oncelink, via a freshly minted single-use link.
For encrypted backups, both files are also encrypted with the app's `encrypt` command and
downloaded through decrypting links. For S3 storages, moto's standalone S3 server on loopback
holds both files and their encrypted copies, which the app proxies; the reference there is boto3
reading the same objects from the same server.

The goals, from the issues: Oncelink serves at least 0.9x as fast as nginx, and a worker's memory
stays flat whatever the size of the file it sends; an encrypted backup, decrypted on the fly,
downloads at least 0.5x as fast as AES-256-GCM decrypts in process on one CPU, with memory just as
flat; a DBackup backup's first download, its whole-file tag check before the first byte included,
at least 0.5x as fast as the same plaintext in Oncelink's format, and a resume at its middle
within 1.5x of the time of the same range in Oncelink's format; an object of an S3 storage,
proxied as stored or decrypted, downloads at least 0.8x as fast as boto3 reads it directly, again
with flat memory. A folder of 100,000 files is browsed a page at a time: the explorer's pages
within 200 ms of server time in every order, the files API's within 100 ms with flat memory, and
the same for an S3 prefix; the reference there is nginx's JSON listing of the same folder. A
thousand slow downloads (200 KB/s each) all progress at once while the explorer and the mint API
keep their p95 under 300 ms, against nginx serving the same crowd. With a year of links kept
(1,000,000 links, 5,000,000 events), 8 API clients mint at least 150 links/s with a p99 under 100
ms, and a 4 KiB single-use download takes at most twice as long as the sign-in page. Several
hosts have no goal: one host on SQLite is set against two hosts sharing one PostgreSQL database
(a cluster the bench starts on loopback) and one backups folder, and the figures are their ratios.

The clients and the servers share the machine's CPUs, as may other work on it (the load
average below tells): the spread between runs can be wide, so compare the medians and the
ranges rather than single figures."""


def render_document(sections: list[Section], facts: list[tuple[str, str]], when: str, seconds: float) -> str:
    machine = "\n".join(f"- {name}: {value}" for name, value in facts)
    body = "\n\n".join(render_section(section) for section in sections)
    footer = (
        f"Produced by `make bench` on {when}; the run took {seconds:.0f} s. The target installs "
        "nginx when it is missing, then runs `.venv/bin/python bench/run.py`; the servers' logs "
        "and nginx.conf stay in `bench/work/` (gitignored) until the next run."
    )
    return f"{INTRO}\n\n## Machine\n\n{machine}\n\n{body}\n\n## How to reproduce\n\n{footer}\n"
