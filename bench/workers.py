"""What gunicorn's workers do while a download runs: resident memory, read calls and CPU time, from /proc.

Two readings of the peak memory, so that neither a short spike between samples nor a
sampling artefact goes unseen: VmRSS sampled every few milliseconds, and VmHWM (the
kernel's own high-water mark) after it was reset just before the transfer. The count of
read calls (syscr in /proc/<pid>/io) tells whether the file went out by sendfile, which
is one call per piece of up to 4 MiB, or was read block by block. CPU time (utime and stime in
/proc/<pid>/stat) tells how much of a transfer the worker spent in its own code and how much
in the kernel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import connected_inodes, holds_socket

SAMPLE_SECONDS = 0.005
KiB = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Serves = Callable[[int], bool]  # whether the worker with this pid is the one serving the download


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent`: a gunicorn master's workers."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may hold spaces; the fields after it do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return sorted(children)


def proc_field(pid: int, file: str, name: str) -> int:
    """A number from /proc/<pid>/status (VmRSS, in KiB) or /proc/<pid>/io; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux 4.0+); False where we may not."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def has_open(pid: int, path: Path) -> bool:
    """Whether the process has the file open: tells which worker serves a download."""
    target = str(path)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def opened(path: Path) -> Serves:
    """A local file's download is served by the worker that has the file open."""
    target = path.resolve()
    return lambda pid: has_open(pid, target)


def connected_to(port: int) -> Serves:
    """An S3 object's download is served by the worker holding a connection to the S3 server."""
    return lambda pid: holds_socket(pid, connected_inodes(port))


@dataclass
class WorkerUsage:
    """One worker across one transfer; memory in KiB."""

    pid: int
    rss_before: int
    reads_before: int
    sampled_peak: int = 0
    kernel_peak: int | None = None
    reads_after: int = 0
    served: bool = False

    @property
    def peak(self) -> int:
        return max(self.rss_before, self.sampled_peak, self.kernel_peak or 0)

    @property
    def growth(self) -> int:
        return self.peak - self.rss_before

    @property
    def read_calls(self) -> int:
        return self.reads_after - self.reads_before


def usage_now(pid: int) -> WorkerUsage:
    return WorkerUsage(pid, proc_field(pid, "status", "VmRSS"), proc_field(pid, "io", "syscr"))


@dataclass
class Sampler:
    """Follows the workers' RSS in a thread until stopped."""

    workers: dict[int, WorkerUsage]
    serves: Serves
    stop: threading.Event = field(default_factory=threading.Event)

    def sample_once(self) -> None:
        for worker in self.workers.values():
            worker.sampled_peak = max(worker.sampled_peak, proc_field(worker.pid, "status", "VmRSS"))
            worker.served = worker.served or self.serves(worker.pid)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample_once()
            self.stop.wait(SAMPLE_SECONDS)


def finish(worker: WorkerUsage, peak_was_reset: bool) -> None:
    worker.reads_after = proc_field(worker.pid, "io", "syscr")
    if peak_was_reset:
        worker.kernel_peak = proc_field(worker.pid, "status", "VmHWM")


@contextmanager
def watch_workers(master: int, serves: Serves) -> Iterator[dict[int, WorkerUsage]]:
    """Each worker of `master` from entering the block (before) to leaving it (peak, read calls)."""
    workers = {pid: usage_now(pid) for pid in child_pids(master)}
    peaks_reset = all([reset_peak(pid) for pid in workers])
    sampler = Sampler(workers, serves)
    thread = threading.Thread(target=sampler.run, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield workers
    finally:
        sampler.stop.set()
        thread.join()
    for worker in workers.values():
        finish(worker, peaks_reset)


@dataclass
class CpuTime:
    """CPU seconds in user space and in the kernel."""

    user: float = 0.0
    system: float = 0.0

    def add(self, other: CpuTime) -> None:
        self.user += other.user
        self.system += other.system

    def since(self, earlier: CpuTime) -> CpuTime:
        return CpuTime(self.user - earlier.user, self.system - earlier.system)


def cpu_time(pid: int) -> CpuTime:
    """All the process's threads so far, counted in clock ticks (usually 10 ms); zero once it is gone."""
    try:
        # Fields 14 and 15 of stat; the count starts after the command name in parentheses.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return CpuTime()
    return CpuTime(int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS)


@contextmanager
def workers_cpu(master: int) -> Iterator[CpuTime]:
    """The CPU time all workers of `master` used during the block, filled in when it ends."""
    before = {pid: cpu_time(pid) for pid in child_pids(master)}
    used = CpuTime()
    yield used
    for pid, earlier in before.items():
        used.add(cpu_time(pid).since(earlier))
