"""`flask --app app digests compute STORAGE [PATH]`: warm the digest cache from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from core.digests import DigestTarget, FileChanged, compute_sha256, files_below
from db import get_db
from extensions import keyring
from storage import load_storage
from storage.base import NotAFile, StorageError, UnsafePath

digests_cli = AppGroup("digests", help="SHA-256 digests of what links deliver.")


@digests_cli.command("compute")
@click.argument("storage_id", metavar="STORAGE")
@click.argument("path", default="")
@click.option("--as-stored", is_flag=True, help="Hash encrypted files as stored, not their plaintext.")
def compute_command(storage_id: str, path: str, as_stored: bool) -> None:
    """Compute and keep the SHA-256 of PATH, or of every file below it (default: the whole storage).

    Prints `HEX  PATH` lines, as sha256sum does; an encrypted file's line is its plaintext's.
    """
    try:
        paths = list(paths_at(storage_id, path))
    except (StorageError, LookupError, UnsafePath) as exc:
        raise click.ClickException(str(exc)) from exc
    failed = 0
    for each in paths:
        try:
            target = DigestTarget(storage_id, each, decrypt=not as_stored)
            sha256 = compute_sha256(get_db(), target, keyring())
        except (FileChanged, StorageError, LookupError, ValueError) as exc:
            click.echo(f"{each}: {exc}", err=True)
            failed += 1
            continue
        click.echo(f"{sha256}  {each}")
    if failed:
        raise click.ClickException(f"{failed} of {len(paths)} file(s) have no digest.")


def paths_at(storage_id: str, path: str):
    """PATH itself when it is a file, else every file below it."""
    storage = load_storage(get_db(), storage_id, keyring())
    if path.strip("/"):
        try:
            return [storage.stat(path).path]
        except NotAFile:
            pass
    return files_below(storage, path)
