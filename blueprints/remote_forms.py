"""The SFTP and WebDAV storage forms of the admin pages, read into settings (secrets only as typed:
an empty secret field keeps the stored one)."""

from __future__ import annotations

from werkzeug.datastructures import FileStorage, MultiDict

from storage.sftp_connect import SFTPSettings
from storage.webdav import WebDAVSettings

SECRET_FIELDS = {"password", "private_key", "passphrase"}
MAX_KEY_FILE = 64 * 1024


def text(form: MultiDict, name: str) -> str:
    return form.get(name, "").strip()


def port_of(form: MultiDict) -> int:
    digits = text(form, "port") or "22"
    return int(digits) if digits.isdigit() and len(digits) <= 5 else 0


def private_key_of(form: MultiDict, files: MultiDict) -> str | None:
    """The key pasted, or the key file uploaded (a key file is a few kB)."""
    upload: FileStorage | None = files.get("private_key_file")
    if upload is not None and upload.filename:
        return upload.read(MAX_KEY_FILE).decode("utf-8", "replace")
    return form.get("private_key", "").strip() or None


def sftp_settings_from(form: MultiDict, files: MultiDict) -> SFTPSettings:
    host_key = text(form, "host_key")
    return SFTPSettings(
        host=text(form, "host"),
        user=text(form, "user"),
        root=text(form, "root"),
        port=port_of(form),
        host_keys=(host_key,) if host_key else (),
        password=form.get("password") or None,
        private_key=private_key_of(form, files),
        passphrase=form.get("passphrase") or None,
    )


def webdav_settings_from(form: MultiDict) -> WebDAVSettings:
    return WebDAVSettings(
        url=text(form, "url"),
        user=text(form, "user"),
        password=form.get("password") or None,
        verify_tls=form.get("no_verify_tls") != "1",
        ca_file=text(form, "ca_file") or None,
    )
