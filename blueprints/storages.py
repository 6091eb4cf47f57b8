"""Storages: the listing API and the `storages` CLI."""

from __future__ import annotations

import os
import time

import click
from flask import Blueprint, jsonify, request
from flask.cli import AppGroup

from blueprints.guards import api_permission
from blueprints.links import iso
from core.delivery import DeliveryMode
from core.digests import listed_sha256s
from core.explorer import ListedEntry, list_folder, parse_listing_request
from core.storages import (
    StorageConfigError,
    add_local_storage,
    add_s3_storage,
    check_storage,
    describe_storage,
    remove_storage,
)
from db import get_db
from db.links import count_working_links
from db.storages import get_storage, list_storages
from extensions import keyring
from storage.base import StorageError
from storage.s3 import S3Settings

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
        "profile": item.profile,
        **({} if entry.is_dir else digests),
    }


@storages_cli.command("add-local")
@click.argument("storage_id", metavar="ID")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", help="Display name (default: the id).")
def add_local_command(storage_id: str, path: str, name: str | None) -> None:
    """Add a folder on this machine as storage ID."""
    try:
        record = add_local_storage(get_db(), storage_id, path, name)
    except StorageConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Storage {record.id!r} serves {record.config['path']}.")


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
    try:
        record = add_s3_storage(get_db(), keyring(), storage_id, settings, name)
    except StorageConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Storage {record.id!r} serves {describe_storage(record)}. Check it: storages test {record.id}"
    )


@storages_cli.command("test")
@click.argument("storage_id", metavar="ID")
def test_command(storage_id: str) -> None:
    """Check that a storage answers, and say clearly what is wrong when it does not."""
    try:
        click.echo(check_storage(get_db(), storage_id, keyring()))
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
