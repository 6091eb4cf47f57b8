"""DBackup's sidecars folded into their backups: in a listing, `X.enc.meta.json` beside `X.enc` is not
a row of its own but what the row of `X.enc` says (its profile, job, engine and time).

Folding is a function of a folder's names alone, so a scan folded and a scan patched name by name
agree: a sidecar that comes after its backup was listed is simply not a new row, and one whose
backup goes becomes a row again. A sidecar whose backup is missing, or a folder so named, stays.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import compress

from encryption.dbackup import SIDECAR_SUFFIX, backup_name, is_sidecar
from storage.base import Entry, FolderScan, Storage

_SIDECAR_END = ".enc" + SIDECAR_SUFFIX + "\0"


@dataclass(frozen=True)
class Folded:
    scan: FolderScan  # without the rows of sidecars whose backup is in the folder
    sidecars: frozenset[str]  # the paths of the backups that have one


def path_of(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def fold_partners(names: set[str]) -> set[str]:
    """`names`, and the names whose rows a change to them may fold or unfold: a sidecar's backup
    and a backup's sidecar."""
    backups = {backup_name(name) for name in names if is_sidecar(name)}
    return names | backups | {name + SIDECAR_SUFFIX for name in names if name.endswith(".enc")}


def folded_scan(storage: Storage, folder: str, stats: bool = False) -> Folded:
    """The folder scanned, its sidecars folded into their backups."""
    return fold_scan(storage.scan(folder, stats=stats))


def fold_scan(scan: FolderScan) -> Folded:
    names, folders = scan.names, scan.folders
    if _SIDECAR_END not in "\0".join(names) + "\0":  # a third of the time of asking each name
        return Folded(scan, frozenset())
    candidates = [row for row, name in enumerate(names) if is_sidecar(name) and not folders[row]]
    if not candidates:
        return Folded(scan, frozenset())
    files = set(compress(names, (not is_dir for is_dir in folders)))
    folded = {row for row in candidates if backup_name(names[row]) in files}
    if not folded:
        return Folded(scan, frozenset())
    keep = bytes(row not in folded for row in range(len(names)))
    return Folded(
        _kept_rows(scan, keep), frozenset(path_of(scan.folder, backup_name(names[row])) for row in folded)
    )


def _kept_rows(scan: FolderScan, keep: bytes) -> FolderScan:
    return replace(
        scan,
        names=list(compress(scan.names, keep)),
        folders=bytearray(compress(scan.folders, keep)),
        sizes=_kept(scan.sizes, keep),
        mtimes=_kept(scan.mtimes, keep),
        versions=_kept(scan.versions, keep),
    )


def _kept(column: array | list | None, keep: bytes) -> array | list | None:
    if column is None:
        return None
    values = compress(column, keep)
    return array(column.typecode, values) if isinstance(column, array) else list(values)


def fold_entries(entries: Sequence[Entry], before: str | None = None) -> tuple[list[Entry], frozenset[str]]:
    """A page of entries listed in the storage's own order, folded as far as the page tells: the
    backup is in it, or is the name the page starts after (the entry just before its sidecar)."""
    files = {entry.name for entry in entries if not entry.is_dir} | ({before} if before else set())
    folded = [e for e in entries if not e.is_dir and is_sidecar(e.name) and backup_name(e.name) in files]
    if not folded:
        return list(entries), frozenset()
    gone = {id(entry) for entry in folded}
    sidecars = frozenset(backup_name(entry.path) for entry in folded)
    return [entry for entry in entries if id(entry) not in gone], sidecars
