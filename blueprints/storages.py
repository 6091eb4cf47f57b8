"""Storages: the listing API and the `storages` CLI."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import click
from flask import Blueprint, current_app, jsonify, request
from flask.cli import AppGroup

from blueprints.guards import api_permission
from blueprints.links import iso
from core.delivery import DeliveryMode
from core.digests import listed_sha256s
from core.explorer import ListedEntry, list_folder, parse_listing_request
from core.offloading import let_connections_run
from core.remote_storages import (
    add_sftp_storage,
    add_webdav_storage,
    known_hosts_entries,
    trust_host_key,
)
from core.storages import (
    LocalPlacement,
    StorageConfigError,
    add_local_storage,
    add_s3_storage,
    check_storage,
    describe_storage,
    remove_storage,
)
from db import get_db
from db.links import count_working_links
from db.storages import StorageRecord, get_storage, list_storages
from encryption.dbackup import Sidecar
from extensions import keyring
from storage.base import StorageError
from storage.s3 import S3Settings
from storage.sftp_connect import HostKeyUnknown, SFTPSettings
from storage.webdav import WebDAVSettings

bp = Blueprint("storages", __name__)
storages_cli = AppGroup("storages", help="Add, list, test and remove storages.")


@bp.get("/api/storages")
@api_permission("storage:read")
def index():
    return jsonify(
        success=True,
        storages=[
            {"id": record.id, "name": record.name, "kind": record.kind} for record in list_storages(get_db())
        ],
    )


@bp.get("/api/storage/<storage_id>/files")
@api_permission("storage:read")
def files(storage_id: str):
    listing = parse_listing_request(request.args)
    page = list_folder(get_db(), storage_id, listing, keyring())
    known = listed_sha256s(get_db(), storage_id, [item.entry for item in page.entries])
    let_connections_run()  # up to 5,000 entries as JSON are next
    return jsonify(
        success=True,
        storage=storage_id,
        path=listing.folder,
        entries=[entry_json(item, known) for item in page.entries],
        next=page.next,
    )


def entry_json(item: ListedEntry, known: dict[tuple[str, str], str]) -> dict:
    """A listed entry; a file's digests where known for the version listed: `sha256` of the stored
    bytes, `decryptedSha256` of an encrypted file's plaintext."""
    entry = item.entry
    digests = {
        "sha256": known.get((entry.path, DeliveryMode.STORED)),
        "decryptedSha256": known.get((entry.path, DeliveryMode.DECRYPTED)),
    }
    return {
        "name": entry.name,
        "path": entry.path,
        "size": entry.size,
        "modified": iso(entry.mtime),
        "isDir": entry.is_dir,
        "encrypted": item.encrypted,
        "format": item.format,
        "profile": item.profile,
        **({} if entry.is_dir else digests),
        **({"dbackup": backup_json(item.backup)} if item.backup else {}),
    }


def backup_json(sidecar: Sidecar) -> dict:
    """What a DBackup sidecar says of its backup, under DBackup's own field names."""
    return {
        "profileId": sidecar.profile_id,
        "jobName": sidecar.job_name,
        "sourceType": sidecar.source_type,
        "engineVersion": sidecar.engine_version,
        "databases": list(sidecar.databases),
        "timestamp": sidecar.timestamp,
        "compression": sidecar.compression,
    }


@storages_cli.command("add-local")
@click.argument("storage_id", metavar="ID")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", help="Display name (default: the id).")
@click.option("--shared", is_flag=True, help="Every host sees this folder at this path (a shared mount).")
def add_local_command(storage_id: str, path: str, name: str | None, shared: bool) -> None:
    """Add a folder on this machine as storage ID."""
    placement = LocalPlacement(several_hosts=current_app.config["SEVERAL_HOSTS"], shared=shared)
    report_added(lambda: add_local_storage(get_db(), storage_id, path, name, placement))


def report_added(add: Callable[[], StorageRecord]) -> None:
    """`add()`, and what the new storage serves, or why it was refused."""
    try:
        record = add()
    except StorageConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    where = describe_storage(record)
    click.echo(f"Storage {record.id!r} serves {where}. Check it: storages test {record.id}")


@storages_cli.command("add-s3")
@click.argument("storage_id", metavar="ID")
@click.option("--bucket", required=True)
@click.option("--prefix", default="", help="Only keys under this prefix are listed and served.")
@click.option("--region", help="The bucket's region (default us-east-1).")
@click.option("--endpoint-url", help="For S3-compatible services: MinIO, R2, B2, Hetzner...")
@click.option("--path-style", is_flag=True, help="Path-style addressing (MinIO and most self-hosted S3).")
@click.option("--redirect", is_flag=True, help="Hand out stored bytes as short-lived presigned URLs.")
@click.option("--name", help="Display name (default: the id).")
def add_s3_command(storage_id: str, name: str | None, **options) -> None:
    """Add an S3 bucket as storage ID (keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or prompts)."""
    access_key = os.environ.get("AWS_ACCESS_KEY_ID") or click.prompt("Access key id")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or click.prompt("Secret access key", hide_input=True)
    settings = S3Settings(**options, access_key_id=access_key, secret_access_key=secret)
    report_added(lambda: add_s3_storage(get_db(), keyring(), storage_id, settings, name))


@storages_cli.command("test")
@click.argument("storage_id", metavar="ID")
def test_command(storage_id: str) -> None:
    """Check that a storage answers, and say clearly what is wrong when it does not."""
    try:
        click.echo(check_storage(get_db(), storage_id, keyring()))
    except HostKeyUnknown as exc:
        confirm = f"flask --app app storages trust-host-key {storage_id} {exc.fingerprint}"
        raise click.ClickException(f"{exc} Once checked: {confirm}") from exc
    except (StorageError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc


@storages_cli.command("list")
def list_command() -> None:
    for record in list_storages(get_db()):
        click.echo(f"{record.id}\t{record.kind}\t{record.name}\t{describe_storage(record)}")


@storages_cli.command("remove")
@click.argument("storage_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Remove without asking.")
def remove_command(storage_id: str, yes: bool) -> None:
    """Remove storage ID: its working links are revoked; their history and the files stay."""
    record = get_storage(get_db(), storage_id)
    if record is None:
        raise click.ClickException(f"No storage {storage_id!r}.")
    working = count_working_links(get_db(), time.time()).get(storage_id, 0)
    if not yes:
        where = describe_storage(record)
        click.confirm(
            f"Remove storage {storage_id!r} ({where}) and revoke its {working} working link(s)?", abort=True
        )
    removed = remove_storage(get_db(), storage_id, "cli", time.time())
    click.echo(f"Storage {storage_id!r} removed; {removed.revoked} working link(s) revoked. Its files stay.")


@storages_cli.command("add-sftp")
@click.argument("storage_id", metavar="ID")
@click.option("--host", required=True)
@click.option("--port", type=click.IntRange(1, 65535), default=22, show_default=True)
@click.option("--user", required=True)
@click.option(
    "--root", required=True, help="The folder on the server (relative to the login folder unless /...)."
)
@click.option("--key-file", type=click.File("r"), help="A private key (OpenSSH or PEM); else a password.")
@click.option(
    "--known-hosts", type=click.Path(exists=True, dir_okay=False), help="Trust the host's key in it."
)
@click.option("--fingerprint", help="Trust this host key: SHA256:... as ssh-keygen -lf prints it.")
@click.option("--name", help="Display name (default: the id).")
def add_sftp_command(storage_id: str, key_file, known_hosts: str | None, fingerprint: str | None, **options):
    """Add a folder on an SFTP server as storage ID (password from ONCELINK_STORAGE_PASSWORD or a prompt;
    a key's passphrase from ONCELINK_KEY_PASSPHRASE)."""
    name = options.pop("name")

    def add() -> StorageRecord:
        host_keys = sftp_host_keys(known_hosts, fingerprint, options["host"], options["port"])
        settings = SFTPSettings(**options, host_keys=host_keys, **sftp_credentials(key_file))
        return add_sftp_storage(get_db(), keyring(), storage_id, settings, name)

    report_added(add)


def sftp_host_keys(known_hosts: str | None, fingerprint: str | None, host: str, port: int) -> tuple[str, ...]:
    if known_hosts:
        return known_hosts_entries(known_hosts, host, port)
    return (fingerprint,) if fingerprint else ()


def sftp_credentials(key_file) -> dict:
    if key_file is not None:
        return {"private_key": key_file.read(), "passphrase": os.environ.get("ONCELINK_KEY_PASSPHRASE")}
    return {"password": storage_password()}


def storage_password() -> str:
    return os.environ.get("ONCELINK_STORAGE_PASSWORD") or click.prompt("Password", hide_input=True)


@storages_cli.command("add-webdav")
@click.argument("storage_id", metavar="ID")
@click.option(
    "--url", required=True, help="The WebDAV folder, e.g. https://cloud.example.org/remote.php/dav/..."
)
@click.option("--user", required=True)
@click.option(
    "--ca-file", type=click.Path(exists=True, dir_okay=False), help="The CA that signed the server's cert."
)
@click.option(
    "--no-verify-tls", is_flag=True, help="Do not check the server's certificate (private networks)."
)
@click.option("--name", help="Display name (default: the id).")
def add_webdav_command(storage_id: str, url: str, user: str, ca_file: str | None, no_verify_tls: bool, name):
    """Add a WebDAV folder as storage ID (password from ONCELINK_STORAGE_PASSWORD or a prompt)."""
    settings = WebDAVSettings(url, user, storage_password(), not no_verify_tls, ca_file)
    report_added(lambda: add_webdav_storage(get_db(), keyring(), storage_id, settings, name))


@storages_cli.command("trust-host-key")
@click.argument("storage_id", metavar="ID")
@click.argument("key", metavar="FINGERPRINT")
def trust_host_key_command(storage_id: str, key: str) -> None:
    """Confirm an SFTP server's host key (SHA256:... as `storages test` shows it, once checked)."""
    try:
        trust_host_key(get_db(), storage_id, key)
    except (StorageConfigError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Storage {storage_id!r} now accepts only that host key.")
