"""Opening an SFTP session: reach the server, verify its host key, authenticate, start SFTP.

Each step fails with a StorageError that says which step and why (DNS, refused, timeout, not an
SSH server, host key unknown or changed, authentication, no SFTP subsystem), which is what Test
connection shows. Built on paramiko: the SSH library most Python tools use (Ansible, Fabric), pure
Python over `cryptography`, and synchronous, so it fits gevent's patched sockets and the plain
threads of the other worker classes alike; asyncssh would need an event loop of its own per worker.
"""

from __future__ import annotations

import contextlib
import io
import socket
from dataclasses import dataclass

import paramiko

from storage.base import StorageError

CONNECT_SECONDS = 10.0
REPLY_SECONDS = 30.0  # an SFTP request unanswered this long means the server hung: the read fails
KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@dataclass(frozen=True)
class SFTPSettings:
    host: str
    user: str
    root: str = "."  # on the server; relative to the user's login folder unless it starts with "/"
    port: int = 22
    # The keys the server may show: "SHA256:..." fingerprints confirmed by the admin, or known_hosts
    # keys ("ssh-ed25519 AAAA..."). Empty: every connection is refused until one is confirmed.
    host_keys: tuple[str, ...] = ()
    password: str | None = None
    private_key: str | None = None  # an OpenSSH or PEM private key, as text
    passphrase: str | None = None


class HostKeyUnknown(StorageError):
    """The server's key has not been confirmed yet; `fingerprint` is the one it showed."""

    def __init__(self, fingerprint: str, key_type: str):
        super().__init__(
            f"The server's host key is not confirmed yet. It shows {key_type} {fingerprint}: "
            "confirm it if that is your server's (ssh-keyscan on the server, or its provider's page)."
        )
        self.fingerprint = fingerprint


class HostKeyChanged(StorageError):
    """The server shows a key other than the confirmed one: refused, never accepted silently."""


def fingerprint_of(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:" and the unpadded base64 of the key's SHA-256, as OpenSSH prints


def known_key(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def verify_host_key(settings: SFTPSettings, key: paramiko.PKey) -> None:
    """Accept only a key confirmed for this storage, by fingerprint or in full."""
    shown = {fingerprint_of(key), known_key(key)}
    if shown & set(settings.host_keys):
        return
    if not settings.host_keys:
        raise HostKeyUnknown(fingerprint_of(key), key.get_name())
    raise HostKeyChanged(
        f"The server's host key changed: it now shows {key.get_name()} {fingerprint_of(key)}, which is not "
        "the confirmed one. Refused: this is what a server in the middle would look like. If the server was "
        "reinstalled, check the new key with its admin and confirm it again."
    )


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """The key in `text`, whatever its type; a StorageError saying why when it cannot be read."""
    for key_class in KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase or None)
        except paramiko.PasswordRequiredException as exc:
            raise StorageError("The private key is encrypted: give its passphrase.") from exc
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise StorageError(
        "The private key cannot be read (wrong passphrase, or not an OpenSSH/PEM private key)."
    )


def reach(settings: SFTPSettings) -> socket.socket:
    where = f"{settings.host}:{settings.port}"
    try:
        return socket.create_connection((settings.host, settings.port), timeout=CONNECT_SECONDS)
    except socket.gaierror as exc:
        raise StorageError(
            f"The host name {settings.host!r} does not resolve (DNS: {exc.strerror})."
        ) from exc
    except ConnectionRefusedError as exc:
        raise StorageError(f"{where} refused the connection: no SSH server listens there.") from exc
    except TimeoutError as exc:
        raise StorageError(f"{where} did not answer within {CONNECT_SECONDS:.0f} s (a firewall?).") from exc
    except OSError as exc:
        raise StorageError(f"Cannot reach {where}: {exc.strerror or exc}.") from exc


# Packets that carry a whole 255 KiB read answer (sftp_file.py): fewer trips through gevent's hub.
PACKET_SIZE = 256 * 1024
CHANNEL_WINDOW = 4 * 1024 * 1024  # what the server may send ahead of the reader: memory per transfer


def handshake(settings: SFTPSettings, sock: socket.socket) -> paramiko.Transport:
    transport = paramiko.Transport(
        sock, default_window_size=CHANNEL_WINDOW, default_max_packet_size=PACKET_SIZE
    )
    full_keys = [entry.split()[0] for entry in settings.host_keys if not entry.startswith("SHA256:")]
    if full_keys and len(full_keys) == len(settings.host_keys):
        transport.get_security_options().key_types = full_keys  # ask for the key type we can check
    try:
        transport.start_client(timeout=CONNECT_SECONDS)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        where = f"{settings.host}:{settings.port}"
        raise StorageError(f"{where} does not speak SSH as expected: {exc or type(exc).__name__}.") from exc
    return transport


def authenticate(settings: SFTPSettings, transport: paramiko.Transport) -> None:
    try:
        if settings.private_key:
            key = load_private_key(settings.private_key, settings.passphrase)
            transport.auth_publickey(settings.user, key)
        elif settings.password:
            transport.auth_password(settings.user, settings.password)
        else:
            raise StorageError("Give a private key or a password.")
    except paramiko.AuthenticationException as exc:
        what = "key" if settings.private_key else "password"
        raise StorageError(f"The server refused user {settings.user!r} with this {what}.") from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise StorageError(f"Authentication broke off: {exc}.") from exc


def open_sftp(settings: SFTPSettings) -> paramiko.SFTPClient:
    """A ready SFTP session, its host key verified; a StorageError that names the failing step."""
    transport = handshake(settings, reach(settings))
    try:
        verify_host_key(settings, transport.get_remote_server_key())
        authenticate(settings, transport)
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, EOFError) as exc:
            raise StorageError(f"The server has no SFTP subsystem for this user: {exc}.") from exc
        sftp.get_channel().settimeout(REPLY_SECONDS)
        return sftp
    except BaseException:
        transport.close()
        raise


def close_sftp(sftp: paramiko.SFTPClient) -> None:
    transport = sftp.get_channel().get_transport()
    with contextlib.suppress(paramiko.SSHException, EOFError, OSError):  # dead: the transport is all left
        sftp.close()
    transport.close()


def sftp_alive(sftp: paramiko.SFTPClient) -> bool:
    transport = sftp.get_channel().get_transport()
    return transport is not None and transport.is_active()
