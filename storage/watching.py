"""inotify watches on local folders: which names of a folder changed since it was last asked, without
reading the folder again.

A kept scan of a folder of 100,000 files (core/snapshots.py) is otherwise checked by the folder's
version and, once that moves, by reading every name again. A watch tells the names that came, went or
changed (a write, a close after writing, new times or permissions) as they do, so a scan is brought
up to date by looking at those names alone, and its sizes and dates stay current meanwhile.

Only where this kernel sees every change: a folder on a local filesystem. On NFS, CIFS, FUSE and the
like, other machines change files without a word to this kernel; such folders get no watch, and
their scans are checked by the folder's version as before. A watch that loses track (the kernel's
queue overflowed, the folder itself was moved or removed, too many names piled up unasked) says so,
and its scan is checked the old way.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from threading import Lock

from inotify_simple import INotify, flags

# Filesystems whose every change goes through this kernel, which then tells inotify.
LOCAL_FILESYSTEMS = frozenset(
    {
        "bcachefs",
        "btrfs",
        "exfat",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "jfs",
        "ntfs3",
        "overlay",
        "reiserfs",
        "tmpfs",
        "vfat",
        "xfs",
        "zfs",
    }
)
CHANGES = (
    flags.CREATE
    | flags.DELETE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.MODIFY
    | flags.ATTRIB
    | flags.CLOSE_WRITE
)
LOST = flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED | flags.UNMOUNT
MASK = CHANGES | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
TOUCHED_LIMIT = 2000  # names piled up unasked, beyond which reading the folder again costs as much


def filesystem_of(fd: int) -> str | None:
    """The type of the filesystem that the open descriptor `fd` lies on (its mount, exactly: bind
    mounts and mounts within mounts included), from /proc; None where /proc does not tell."""
    try:
        fdinfo = Path(f"/proc/self/fdinfo/{fd}").read_text()
        mount_id = next(line.split()[1] for line in fdinfo.splitlines() if line.startswith("mnt_id:"))
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields, _, rest = line.partition(" - ")
            if fields.split(" ", 1)[0] == mount_id:
                return rest.split(" ", 1)[0]
    except (OSError, StopIteration, IndexError):
        return None
    return None


class FolderWatch:
    """One folder's watch, for one kept scan (several scans of one folder share the kernel's watch).

    `still_there` tells whether the folder's path still leads to the folder watched: a folder on
    the way renamed, or swapped for another, moves no event of this one."""

    def __init__(self, watcher: Watcher, wd: int, still_there: Callable[[], bool]):
        self._watcher, self.wd, self._still_there = watcher, wd, still_there
        self.pid = os.getpid()
        self.touched: set[str] = set()
        self.lost = False

    def changes(self) -> set[str] | None:
        """The names that came, went or changed since the last call; None once the watch lost track."""
        if self.pid != os.getpid():  # a forked process: the events go to its parent's instance
            return None
        self._watcher.drain()
        with self._watcher.lock:
            touched, self.touched = self.touched, set()
        if self.lost or not self._still_there():
            return None
        return touched

    def close(self) -> None:
        self._watcher.forget(self)


class Watcher:
    """This process's inotify instance and the watches on it; the events are read only when a
    watch is asked for its changes, never blocking (the kernel keeps them meanwhile)."""

    def __init__(self, touched_limit: int):
        self.touched_limit = touched_limit  # beyond this many names unasked, a watch gives up
        self.lock = Lock()
        self._inotify: INotify | None = None
        self._pid = 0
        self._watches: dict[int, list[FolderWatch]] = {}

    def watch(self, folder_fd: int, still_there: Callable[[], bool]) -> FolderWatch | None:
        """A watch on the open folder `folder_fd`, to be set before the folder is read so that no
        change after the reading is missed; None where its filesystem is not local or inotify
        refuses (no support, or the limit of watches reached)."""
        if filesystem_of(folder_fd) not in LOCAL_FILESYSTEMS:
            return None
        with self.lock:
            self._drain()  # what is queued (a move of this very folder...) is for the watches before it
            try:
                wd = self._instance().add_watch(f"/proc/self/fd/{folder_fd}", MASK)
            except OSError:
                return None
            watch = FolderWatch(self, wd, still_there)
            self._watches.setdefault(wd, []).append(watch)
            return watch

    def _instance(self) -> INotify:
        """The instance of this process: a worker forked with its parent's would read its events."""
        if self._pid != os.getpid():
            self._inotify, self._pid, self._watches = INotify(nonblocking=True), os.getpid(), {}
            atexit.register(self._inotify.close)
        return self._inotify

    def drain(self) -> None:
        """Every event waiting, handed to the watches it concerns."""
        with self.lock:
            self._drain()

    def _drain(self) -> None:
        if self._inotify is None or self._pid != os.getpid():
            return
        for event in self._inotify.read(timeout=0):
            self._handle(event.wd, event.mask, event.name)

    def _handle(self, wd: int, mask: int, name: str) -> None:
        if mask & flags.Q_OVERFLOW:
            self._lose(watch for watches in self._watches.values() for watch in watches)
            return
        watches = self._watches.get(wd, ())
        if mask & LOST:
            self._lose(watches)
            return
        for watch in watches if name else ():  # no name: the folder itself (its own times)
            watch.touched.add(name)
            if len(watch.touched) > self.touched_limit:
                self._lose([watch])

    @staticmethod
    def _lose(watches) -> None:
        for watch in watches:
            watch.lost, watch.touched = True, set()

    def forget(self, watch: FolderWatch) -> None:
        """The watch is no longer needed; the kernel's goes with the last scan that shares it."""
        with self.lock:
            watch.lost = True
            if watch.pid != os.getpid():  # its parent's watch: the parent removes it
                return
            sharing = self._watches.get(watch.wd, [])
            if watch not in sharing:
                return
            sharing.remove(watch)
            if sharing:
                return
            self._watches.pop(watch.wd, None)
            with suppress(OSError):  # EINVAL: the kernel removed it already (the folder went)
                self._inotify.rm_watch(watch.wd)


watcher = Watcher(TOUCHED_LIMIT)
