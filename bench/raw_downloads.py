"""Plain (not decrypted) downloads: Oncelink against nginx, and what its workers do meanwhile.

The goal from the issue: the app serves at least 0.9x as fast as nginx, and a worker's
memory stays flat, whatever the size of the file it sends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import median

from harness import MiB, Transfer, curl_download
from report import Section
from servers import Bench
from workers import KiB, WorkerUsage, opened, watch_workers

ROUNDS = 11  # a 100 MiB transfer on loopback lasts tens of ms: single rounds are mostly noise
GOAL_RATIO = 0.9
FLAT_GROWTH_MIB = 8.0  # a worker that buffered even the 100 MiB file would grow by far more
SENDFILE_READS_PER_MIB = 1.0  # a read loop in 256 KiB blocks makes 4; sendfile at most 4 MiB a call

Download = Callable[[Bench, Path], Transfer]


def through_app(bench: Bench, path: Path) -> Transfer:
    return curl_download(bench.oncelink.mint_link(path), path.stat().st_size)


def through_nginx(bench: Bench, path: Path) -> Transfer:
    return curl_download(bench.nginx.file_url(path), path.stat().st_size)


def alternating_rounds(bench: Bench, path: Path) -> tuple[list[Transfer], list[Transfer]]:
    """ROUNDS downloads through each server, taking turns at going first."""
    app: list[Transfer] = []
    reference: list[Transfer] = []
    turns: list[tuple[list[Transfer], Download]] = [(app, through_app), (reference, through_nginx)]
    for round_number in range(ROUNDS):
        for results, download in turns if round_number % 2 == 0 else reversed(turns):
            results.append(download(bench, path))
    return app, reference


def speed_cell(transfers: list[Transfer]) -> str:
    speeds = [transfer.mib_per_second for transfer in transfers]
    return f"{median(speeds):,.0f} ({min(speeds):,.0f}-{max(speeds):,.0f})"


def first_byte_cell(app: list[Transfer], reference: list[Transfer]) -> str:
    def ms(transfers: list[Transfer]) -> str:
        return f"{median(t.first_byte_seconds for t in transfers) * 1000:.1f}"

    return f"{ms(app)} / {ms(reference)}"


def throughput_row(label: str, app: list[Transfer], reference: list[Transfer]) -> tuple[list[str], float]:
    """A table row, and the ratio of the medians that the goal is about."""
    ratio = median(t.mib_per_second for t in app) / median(t.mib_per_second for t in reference)
    cells = [label, speed_cell(app), speed_cell(reference), f"{ratio:.2f}x", first_byte_cell(app, reference)]
    return cells, ratio


THROUGHPUT_NOTES = (
    "A 100 MiB download lasts only tens of milliseconds here, so the app's work before the "
    "first byte (checking and claiming the link in SQLite, recording the event: the *first byte* "
    "column, medians) and scheduling noise weigh more on it than on 1 GiB; the min-max spread "
    "shows how much noise there was. nginx runs one worker with Debian's defaults otherwise "
    "(sendfile_max_chunk 2m, so at most 2 MiB per sendfile call); Oncelink's transfers call "
    "sendfile on the client's socket themselves, at most 4 MiB a call, checking their claim "
    "between pieces (next section)."
)


def measure_throughput(bench: Bench) -> Section:
    """Median speed of ROUNDS downloads of each file through Oncelink and through nginx."""
    smallest = min(bench.files.values(), key=lambda path: path.stat().st_size)
    through_app(bench, smallest)  # warm-up, not counted: first requests, page cache, TCP
    through_nginx(bench, smallest)
    rows, ratios = [], []
    for label, path in bench.files.items():
        row, ratio = throughput_row(label, *alternating_rounds(bench, path))
        rows.append(row)
        ratios.append(ratio)
    met = min(ratios) >= GOAL_RATIO
    return Section(
        title="Throughput: Oncelink vs nginx",
        about=(
            f"MiB/s as curl reports it (bytes / total time, connection included), median of {ROUNDS} "
            "downloads per server and file, the two servers taking turns; min-max in brackets. "
            "Minting the link is not timed."
        ),
        columns=[
            "File",
            "Oncelink MiB/s",
            "nginx MiB/s",
            "Oncelink / nginx",
            "First byte, ms (Oncelink / nginx)",
        ],
        rows=rows,
        notes=THROUGHPUT_NOTES,
        verdict=(
            f"goal {'met' if met else 'NOT met'}: the slowest ratio is {min(ratios):.2f}x "
            f"(goal: Oncelink >= {GOAL_RATIO}x nginx)."
        ),
    )


WORKERS_ABOUT = (
    "Every gunicorn worker just before one download through Oncelink and during it. Memory is "
    "resident memory in MiB; its peak is the larger of VmRSS sampled every 5 ms and the kernel's "
    "VmHWM, reset just before the download. *Served* marks the worker that had the file open. "
    "*Read calls* are the worker's read system calls meanwhile (syscr in /proc/<pid>/io): "
    "sendfile counts one per call (at most 4 MiB each, fewer than one per MiB), a read loop one "
    "per block."
)


def memory_verdict(workers: list[WorkerUsage]) -> str:
    growth = max(w.growth for w in workers) / KiB
    flat = growth <= FLAT_GROWTH_MIB
    return (
        f"memory {'flat' if flat else 'NOT flat'}: no worker grew by more than {growth:.1f} MiB "
        f"during any download (goal: flat whatever the file size; threshold {FLAT_GROWTH_MIB:.0f} MiB)."
    )


def sendfile_verdict(server: WorkerUsage | None, size: int) -> str:
    """Whether the largest file left by sendfile, judged by the reads its worker made."""
    if server is None:
        return "Sendfile unclear: no worker was seen with the file open."
    per_mib = server.read_calls / (size / MiB)
    if per_mib < SENDFILE_READS_PER_MIB:
        return f"Sendfile in use: {server.read_calls:,} read calls for {size // MiB:,} MiB."
    return (
        f"Sendfile NOT in use: {server.read_calls:,} read calls for {size // MiB:,} MiB "
        f"({per_mib:.1f} per MiB), so the worker read the file block by block."
    )


def mib(kib: int) -> str:
    return f"{kib / KiB:.1f}"


def worker_row(label: str, w: WorkerUsage) -> list[str]:
    served = "yes" if w.served else "no"
    growth = f"{w.growth / KiB:+.1f}"
    return [label, str(w.pid), served, mib(w.rss_before), mib(w.peak), growth, f"{w.read_calls:,}"]


def watch_download(bench: Bench, path: Path) -> list[WorkerUsage]:
    url = bench.oncelink.mint_link(path)
    with watch_workers(bench.gunicorn_master, opened(path)) as workers:
        curl_download(url, path.stat().st_size)
    return list(workers.values())


def measure_workers(bench: Bench) -> Section:
    """Each gunicorn worker's memory and read calls during one download of each file."""
    observed = {label: watch_download(bench, path) for label, path in bench.files.items()}
    largest, path = max(bench.files.items(), key=lambda item: item[1].stat().st_size)
    server = next((w for w in observed[largest] if w.served), None)
    return Section(
        title="gunicorn workers during a download: memory and sendfile",
        about=WORKERS_ABOUT,
        columns=["File", "Worker PID", "Served", "RSS before", "Peak RSS", "Growth", "Read calls"],
        rows=[worker_row(label, w) for label, workers in observed.items() for w in workers],
        verdict=(
            f"{memory_verdict([w for workers in observed.values() for w in workers])} "
            f"{sendfile_verdict(server, path.stat().st_size)}"
        ),
    )
