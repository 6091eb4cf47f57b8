"""What a failed WebDAV request means, in the person's terms: which of DNS, the connection, TLS,
the credentials, the folder or the server's permissions is wrong."""

from __future__ import annotations

import requests
import urllib3

from storage.base import FileMissing, StorageError, Unreadable


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and those it wraps (requests wraps urllib3's, which wrap the socket's)."""
    found: list[BaseException] = []
    pending = [exc]
    while pending and len(found) < 20:
        seen = pending.pop()
        if not isinstance(seen, BaseException) or seen in found:
            continue
        found.append(seen)
        pending += [seen.__cause__, seen.__context__, getattr(seen, "reason", None), *seen.args[:1]]
    return found


def explain_failure(exc: requests.RequestException, base: str) -> StorageError:
    """A request that got no answer."""
    host = requests.utils.urlparse(base).netloc
    chain = causes(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return StorageError(
            f"The TLS certificate of {host} was refused ({exc.args[0] if exc.args else exc}): give the CA "
            "file that signed it, or turn certificate checks off for a server you trust on a private network."
        )
    if any(isinstance(cause, urllib3.exceptions.NameResolutionError) for cause in chain):
        return StorageError(f"The host name in {base} does not resolve (DNS).")
    if any(isinstance(cause, ConnectionRefusedError) for cause in chain):
        return StorageError(f"{host} refused the connection: no server listens there.")
    if isinstance(exc, requests.Timeout):
        return StorageError(f"{host} did not answer in time.")
    return StorageError(f"Cannot reach {base}: {exc}.")


def explain_status(status: int, what: str, user: str) -> Exception:
    """An answer with an error status about `what` (a path below the base)."""
    if status == 401:
        return StorageError(f"The WebDAV server refused user {user!r} with this password.")
    if status == 403:
        return Unreadable(f"The WebDAV server does not let {user!r} read {what}.")
    if status == 404:
        return FileMissing(f"No such file or folder: {what}")
    if status == 412:
        return StorageError(f"{what} was replaced while it was read; its link works on the new one.")
    if status == 405:
        return StorageError("The server does not allow PROPFIND there: is the URL a WebDAV folder?")
    return StorageError(f"The WebDAV server answered {status} for {what}.")
