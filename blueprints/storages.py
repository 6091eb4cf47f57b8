"""Storages: the listing API and the `storages` CLI."""

from __future__ import annotations

import re
from pathlib import Path

import click
from flask import Blueprint, jsonify, request
from flask.cli import AppGroup

from blueprints.guards import api_permission
from blueprints.links import iso
from core.explorer import ListedEntry, list_folder
from db import get_db
from db.storages import StorageRecord, get_storage, insert_storage, list_storages

bp = Blueprint("storages", __name__)
storages_cli = AppGroup("storages", help="Add and list storages.")

STORAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


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
    folder = request.args.get("path", "")
    listed = list_folder(get_db(), storage_id, folder)
    return jsonify(
        success=True, storage=storage_id, path=folder, entries=[entry_json(item) for item in listed]
    )


def entry_json(item: ListedEntry) -> dict:
    entry = item.entry
    return {
        "name": entry.name,
        "path": entry.path,
        "size": entry.size,
        "modified": iso(entry.mtime),
        "isDir": entry.is_dir,
        "encrypted": item.encrypted,
        "profile": item.profile,
    }


def add_local_storage(db, storage_id: str, path: str, name: str | None = None) -> StorageRecord:
    """Register a folder; it is created when missing."""
    if not STORAGE_ID.match(storage_id):
        raise click.BadParameter("use lower-case letters, digits, '-' and '_'", param_hint="ID")
    if get_storage(db, storage_id) is not None:
        raise click.ClickException(f"A storage {storage_id!r} exists already.")
    root = Path(path).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    record = StorageRecord(storage_id, name or storage_id, "local", {"path": str(root)})
    insert_storage(db, record)
    return record


@storages_cli.command("add-local")
@click.argument("storage_id", metavar="ID")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", help="Display name (default: the id).")
def add_local_command(storage_id: str, path: str, name: str | None) -> None:
    """Add a folder on this machine as storage ID."""
    record = add_local_storage(get_db(), storage_id, path, name)
    click.echo(f"Storage {record.id!r} serves {record.config['path']}.")


@storages_cli.command("list")
def list_command() -> None:
    for record in list_storages(get_db()):
        click.echo(f"{record.id}\t{record.kind}\t{record.name}\t{record.config.get('path', '')}")
