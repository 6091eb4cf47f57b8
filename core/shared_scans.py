"""Folder scans shared by the workers of a host, and kept across restarts, in the data dir.

Each worker keeps its scans in memory (core/snapshots.py), so a page from a worker that has not
listed a large folder would scan it again, however recently the other worker did: a first page by
size or date of 100,000 files costs a stat of each. A fresh scan is therefore also written here, and
a worker with no scan of a folder reads it before scanning. It is the scan as it was when made: its
names serve while the folder's version holds (and are patched when it moved, like a kept scan's),
its sizes and dates as long as a kept scan's would since they were looked at.

A file holds one scan: a line of JSON (what it is of, when it was made, its sections' lengths), then
the names (UTF-8, NUL between them: no file name holds one), the kinds, the sizes and the dates as
raw arrays, and the orders the worker had sorted it in before writing it (each a raw array of rows):
the other worker's first page in such an order is then a slice, with no sort and no selection. It
is written to a temporary file and renamed over the old one, so a reader finds one whole scan or
another; a file that is not what it says is ignored and overwritten by the next scan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from core.orderings import Ordering, Sort
from storage.base import FolderScan

log = logging.getLogger(__name__)

FORMAT = 2
ROWS = "I"  # the typecode of an ordering's rows (core/orderings.py)
BUDGET_BYTES = 64 * 1024 * 1024  # all files together, the least recently written removed beyond it
ABANDONED_SECONDS = 3600.0  # a file still being written after this long was left by a killed worker
ENCODING = ("utf-8", "surrogateescape")  # names read from disk may hold bytes no UTF-8 decodes


@dataclass(frozen=True)
class SharedScan:
    scan: FolderScan
    taken_at: float  # when the names were read
    stats_at: float  # when the sizes and dates were
    sidecars: frozenset[str]  # paths of the backups whose DBackup sidecar is folded in
    orderings: dict[Sort, Ordering] = field(default_factory=dict)  # of every row: the scan has no dead rows


class SharedScans:
    """The scans in one folder of the data dir; none anywhere until `keep_in` names it."""

    def __init__(self):
        self.folder: Path | None = None

    def keep_in(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder

    def path_of(self, key: tuple[str, str]) -> Path:
        digest = hashlib.sha256("\0".join(key).encode(*ENCODING)).hexdigest()[:32]
        return self.folder / f"{digest}.scan"

    def save(self, key: tuple[str, str], shared: SharedScan) -> None:
        """Written whole or not at all; an error writing it (a full disk) costs nothing but the file."""
        if self.folder is None:
            return
        try:
            self._write(self.path_of(key), encoded(key, shared))
            self._prune()
        except OSError as exc:
            log.warning("A folder's scan could not be kept in the data dir: %s", exc)

    def load(self, key: tuple[str, str]) -> SharedScan | None:
        if self.folder is None:
            return None
        try:
            data = self.path_of(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("A kept folder scan could not be read: %s", exc)
            return None
        return decoded(key, data)

    def _write(self, path: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _prune(self) -> None:
        """The least recently written files removed until all fit the budget, and what a worker
        killed while writing left behind."""
        files, now = [], time.time()
        for entry in os.scandir(self.folder):
            try:
                info = entry.stat()
            except FileNotFoundError:  # another worker pruned it meanwhile
                continue
            if entry.name.endswith(".scan"):
                files.append((info.st_mtime, info.st_size, entry.path))
            elif entry.name.endswith(".part") and now - info.st_mtime > ABANDONED_SECONDS:
                Path(entry.path).unlink(missing_ok=True)
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= BUDGET_BYTES:
                break
            Path(path).unlink(missing_ok=True)
            total -= size


def encoded(key: tuple[str, str], shared: SharedScan) -> bytes:
    scan = shared.scan
    names = "\0".join(scan.names).encode(*ENCODING)
    sizes = scan.sizes.tobytes() if scan.sizes is not None else b""
    mtimes = scan.mtimes.tobytes() if scan.mtimes is not None else b""
    header = {
        "format": FORMAT,
        "key": list(key),
        "version": scan.version,
        "changed_at": scan.changed_at,
        "taken_at": shared.taken_at,
        "stats_at": shared.stats_at,
        "rows": len(scan),
        "stats": scan.sizes is not None,
        "names_bytes": len(names),
        "sidecars": sorted(shared.sidecars),
        "orderings": [[sort.value, ordering.split] for sort, ordering in shared.orderings.items()],
    }
    line = json.dumps(header, ensure_ascii=True).encode() + b"\n"
    orderings = [array(ROWS, ordering.rows).tobytes() for ordering in shared.orderings.values()]
    return b"".join([line, names, bytes(scan.folders), sizes, mtimes, *orderings])


def decoded(key: tuple[str, str], data: bytes) -> SharedScan | None:
    """The scan `data` holds, if it is whole and of the folder `key` names; None otherwise."""
    try:
        line, _, body = data.partition(b"\n")
        header = json.loads(line)
        if header["format"] != FORMAT or header["key"] != list(key):
            return None
        rows, names_bytes = header["rows"], header["names_bytes"]
        stats_bytes = 8 * rows if header["stats"] else 0
        order_bytes = array(ROWS).itemsize * rows
        stats_end = names_bytes + rows + 2 * stats_bytes
        if len(body) != stats_end + len(header["orderings"]) * order_bytes:
            return None
        names = body[:names_bytes].decode(*ENCODING).split("\0") if rows else []
        folders = bytearray(body[names_bytes : names_bytes + rows])
        sizes = mtimes = None
        if header["stats"]:
            start = names_bytes + rows
            sizes = array("q", body[start : start + stats_bytes])
            mtimes = array("d", body[start + stats_bytes : stats_end])
        orderings = {}
        for number, (sort, split) in enumerate(header["orderings"]):
            start = stats_end + number * order_bytes
            orderings[Sort(sort)] = Ordering(array(ROWS, body[start : start + order_bytes]), split)
        if len(names) != rows or not all(fits(order, sort, rows, sizes) for sort, order in orderings.items()):
            return None
        scan = FolderScan(
            key[1], names, folders, sizes, mtimes, None, header["version"], header["changed_at"]
        )
        sidecars = frozenset(header["sidecars"])
        return SharedScan(scan, header["taken_at"], header["stats_at"], sidecars, orderings)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def fits(ordering: Ordering, sort: Sort, rows: int, sizes: array | None) -> bool:
    """Whether an ordering read back orders rows of the scan, and the scan has what it orders by."""
    in_range = not ordering.rows or max(ordering.rows) < rows
    return in_range and 0 <= ordering.split <= rows and (sort is Sort.NAME or sizes is not None)


shared_scans = SharedScans()
