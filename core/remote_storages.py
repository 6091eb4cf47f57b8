"""Registering SFTP and WebDAV storages: their settings as stored, secrets sealed by the master key.

A password, private key or passphrase is sealed for the storage's id and never leaves the server
again: pages and answers show only that one is stored, and an empty field when editing keeps it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from urllib.parse import urlsplit

import paramiko
from sqlite_utils import Database

from core.storages import StorageConfigError, _existing, save_storage
from db.storages import StorageRecord, update_storage
from encryption.keys import Keyring
from storage import SFTP_SECRETS
from storage.sftp_connect import SFTPSettings
from storage.webdav import WebDAVSettings

FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
KNOWN_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=*$")
HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]+\]?$")


def host_key_entry(text: str) -> str:
    """A fingerprint ("SHA256:...") or a known_hosts key ("ssh-ed25519 AAAA...", host names dropped)."""
    text = text.strip()
    if FINGERPRINT.match(text):
        return text
    fields = text.split()
    for start in range(len(fields) - 1):
        candidate = f"{fields[start]} {fields[start + 1]}"
        if KNOWN_KEY.match(candidate):
            return candidate
    raise StorageConfigError(
        "A host key is a SHA256 fingerprint (SHA256: and 43 characters) or a known_hosts line."
    )


def known_hosts_entries(path: str, host: str, port: int) -> tuple[str, ...]:
    """The keys a known_hosts file holds for host (or [host]:port); hashed names are matched too."""
    try:
        known = paramiko.HostKeys(path)
    except OSError as exc:
        raise StorageConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    name = host if port == 22 else f"[{host}]:{port}"
    keys = known.lookup(name) or {}
    if not keys:
        raise StorageConfigError(f"{path} holds no key for {name}.")
    return tuple(f"{kind} {key.get_base64()}" for kind, key in keys.items())


def sealed(keyring: Keyring, storage_id: str, settings, names: tuple[str, ...], kept: dict) -> dict:
    """The settings as stored: each secret sealed, or the stored one kept when none was given."""
    config = dataclasses.asdict(settings)
    for name in names:
        secret = config.pop(name)
        if secret:
            config[name] = keyring.seal_secret(storage_id, secret)
        elif kept.get(name):
            config[name] = kept[name]
    return config


def _sftp_config(keyring: Keyring, storage_id: str, settings: SFTPSettings, kept: dict) -> dict:
    if not HOST.match(settings.host):
        raise StorageConfigError("A host name or address is required (no user@ or port in it).")
    if not settings.user.strip():
        raise StorageConfigError("A user name is required.")
    if not 0 < settings.port < 65536:
        raise StorageConfigError("The port is a number from 1 to 65535.")
    config = sealed(keyring, storage_id, settings, SFTP_SECRETS, kept)
    if not config.get("password") and not config.get("private_key"):
        raise StorageConfigError("Give a private key or a password.")
    config["host_keys"] = [host_key_entry(entry) for entry in settings.host_keys]
    config["root"] = settings.root.strip() or "."
    return config


def add_sftp_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: SFTPSettings, name: str | None = None
) -> StorageRecord:
    """Register a folder on an SFTP server; without a confirmed host key it refuses to connect."""

    def config_of(_: None) -> dict:
        return _sftp_config(keyring, storage_id, settings, {})

    return save_storage(db, storage_id, "sftp", name, config_of, new=True)


def update_sftp_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: SFTPSettings, name: str | None = None
) -> StorageRecord:
    """Change an SFTP storage; empty secrets keep the stored ones, no host key keeps the confirmed ones."""

    def config_of(current: StorageRecord) -> dict:
        kept_keys = settings.host_keys or tuple(current.config.get("host_keys", ()))
        changed = dataclasses.replace(settings, host_keys=kept_keys)
        return _sftp_config(keyring, storage_id, changed, current.config)

    return save_storage(db, storage_id, "sftp", name, config_of, new=False)


def trust_host_key(db: Database, storage_id: str, key: str) -> StorageRecord:
    """Confirm the host key the admin checked (the fingerprint Test connection showed them)."""
    current = _existing(db, storage_id, "sftp")
    record = dataclasses.replace(current, config={**current.config, "host_keys": [host_key_entry(key)]})
    update_storage(db, record)
    return record


def _webdav_config(keyring: Keyring, storage_id: str, settings: WebDAVSettings, kept: dict) -> dict:
    url = urlsplit(settings.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise StorageConfigError("The URL must be an http:// or https:// address of a WebDAV folder.")
    if url.username or url.password or url.query or url.fragment:
        raise StorageConfigError("Give the user and password in their own fields, and no ?query in the URL.")
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise StorageConfigError(f"No CA file at {settings.ca_file}.")
    config = sealed(keyring, storage_id, settings, ("password",), kept)
    config["ca_file"] = str(Path(settings.ca_file).resolve()) if settings.ca_file else None
    return config


def add_webdav_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: WebDAVSettings, name: str | None = None
) -> StorageRecord:
    """Register a WebDAV folder; the password is stored sealed by the master key."""

    def config_of(_: None) -> dict:
        return _webdav_config(keyring, storage_id, settings, {})

    return save_storage(db, storage_id, "webdav", name, config_of, new=True)


def update_webdav_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: WebDAVSettings, name: str | None = None
) -> StorageRecord:
    """Change a WebDAV storage; an empty password keeps the stored one."""

    def config_of(current: StorageRecord) -> dict:
        return _webdav_config(keyring, storage_id, settings, current.config)

    return save_storage(db, storage_id, "webdav", name, config_of, new=False)


def describe_remote(record: StorageRecord) -> str:
    """Where an SFTP or WebDAV storage points, for listings; never a secret."""
    config = record.config
    if record.kind == "sftp":
        where = f"sftp://{config['user']}@{config['host']}:{config.get('port', 22)}/{config.get('root', '')}"
        return where + ("" if config.get("host_keys") else " (host key not confirmed)")
    return config.get("url", "") + ("" if config.get("verify_tls", True) else " (TLS not verified)")
