"""Opening a path beneath a folder's descriptor so that nothing on the way can lead out of it.

Checking a resolved path and then opening it leaves a window in which a folder on the way can be
swapped for a symlink. Here the check and the open are one step: the kernel resolves the path with
`openat2(RESOLVE_BENEATH)`, or, where it lacks that (before Linux 5.6), `walk_beneath` opens one
name at a time from the root's descriptor and never lets the kernel follow a symlink.
Errors are plain OSErrors; the caller says what they mean to its users.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

SYS_OPENAT2 = 437  # the same number on every architecture (the tables were unified at 424)
RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/<pid>/fd/... jumps
RESOLVE_BENEATH = 0x08  # `..`, absolute paths and symlinks may not leave the starting folder
MAX_LINKS = 40  # the kernel's MAXSYMLINKS: more than this is a loop (ELOOP)
PATH_MAX = 4096

# None until the first call finds out; the tests set it to False to exercise the walk.
use_openat2: bool | None = None


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_beneath(root_fd: int, path: str, flags: int) -> int:
    """A descriptor for `path` ("" is the folder itself), resolved beneath `root_fd`.

    Symlinks are followed while they stay beneath it; leaving it fails with EXDEV, too many links
    with ELOOP. The caller closes the descriptor.
    """
    if kernel_resolves(root_fd):
        try:
            return openat2(
                root_fd, path or ".", flags | os.O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
            )
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
            # A rename raced a `..` and the kernel would not vouch for the result: the walk decides.
    return walk_beneath(root_fd, path, flags)


def kernel_resolves(root_fd: int) -> bool:
    """Whether openat2 can be used: it fails with ENOSYS before Linux 5.6, and with EPERM under
    seccomp filters older than it (Docker before 20.10), on a path that cannot fail otherwise."""
    global use_openat2
    if use_openat2 is None:
        try:
            os.close(openat2(root_fd, ".", os.O_PATH | os.O_CLOEXEC, RESOLVE_BENEATH))
            use_openat2 = True
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
            use_openat2 = False
    return use_openat2


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """The openat2(2) system call, which the standard library does not wrap."""
    name = os.fsencode(path)
    if b"\0" in name:
        raise ValueError("embedded null byte")
    how = OpenHow(flags, 0, resolve)
    fd = _libc.syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(name),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def walk_beneath(root_fd: int, path: str, flags: int) -> int:
    """What `open_beneath` does, one name at a time: each is opened with O_NOFOLLOW from the
    descriptor of the folder before it, and symlinks are expanded here, so every step starts
    from a folder already known to be beneath the root."""
    if len(os.fsencode(path)) >= PATH_MAX:
        raise _error(errno.ENAMETOOLONG, path)
    walk = _Walk(root_fd, path)
    try:
        return walk.open(flags)
    finally:
        walk.close()


class _Walk:
    """One walk: the folder reached (a descriptor), the names still to go, the links followed."""

    def __init__(self, root_fd: int, path: str):
        self.root = _identity(root_fd)
        self.path = path
        self.pending = _names(path)
        self.links = 0
        self.folder = os.dup(root_fd)

    def close(self) -> None:
        os.close(self.folder)

    def open(self, flags: int) -> int:
        while self.pending:
            name = self.pending.pop()
            if name == "..":
                self._move(self._parent())
                continue
            fd, mode = _look(self.folder, name)
            if stat.S_ISLNK(mode):
                self._follow(_read_link(fd))
            elif self.pending:
                self._move(_as_folder(fd, mode, name))
            else:
                opened = _open_last(self.folder, fd, name, flags)
                if opened is not None:
                    return opened
                self._follow(name)  # it became a symlink since it was looked at: look again
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=self.folder)

    def _follow(self, target: str) -> None:
        """One more link: refused when absolute (as RESOLVE_BENEATH does) or one too many."""
        if target.startswith("/"):
            raise _error(errno.EXDEV, self.path)
        if self.links >= MAX_LINKS:
            raise _error(errno.ELOOP, self.path)
        self.links += 1
        self.pending.extend(_names(target))

    def _parent(self) -> int:
        """The folder above, refused at the root. Like the kernel, this is the real parent, not the
        folder the walk came through; it is beneath the root because the current one is."""
        if _identity(self.folder) == self.root:
            raise _error(errno.EXDEV, self.path)
        return os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.folder)

    def _move(self, folder: int) -> None:
        os.close(self.folder)
        self.folder = folder


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _names(path: str) -> list[str]:
    """The names of a relative path, last first (a stack: links push their target's names)."""
    return [name for name in reversed(path.split("/")) if name not in ("", ".")]


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _look(folder: int, name: str) -> tuple[int, int]:
    """A descriptor of `name` itself, never what it points to (O_PATH | O_NOFOLLOW), and its mode."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    try:
        return fd, os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise


def _read_link(fd: int) -> str:
    """The target of the very link `fd` was opened on, whatever its name holds by now."""
    try:
        return os.readlink("", dir_fd=fd)
    finally:
        os.close(fd)


def _as_folder(fd: int, mode: int, name: str) -> int:
    if stat.S_ISDIR(mode):
        return fd
    os.close(fd)
    raise _error(errno.ENOTDIR, name)


def _open_last(folder: int, fd: int, name: str, flags: int) -> int | None:
    """The last name with the caller's flags. A descriptor to look at is the one already open;
    anything more opens the name again, still with O_NOFOLLOW: None if it has become a symlink."""
    if flags == os.O_PATH:
        return fd
    os.close(fd)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
