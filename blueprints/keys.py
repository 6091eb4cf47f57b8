"""Encryption profiles and file encryption from the command line: `keys`, `encrypt`, `decrypt`."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import BinaryIO

import click
from flask.cli import AppGroup, with_appcontext

from core.digests import HashingReader, record_encrypted
from db import get_db
from encryption.format import (
    FormatError,
    IntegrityError,
    NotEncrypted,
    decrypt_stream,
    encrypt_stream,
    new_header,
    read_header,
)
from encryption.keys import ProfileError, ProfileMissing, list_profiles, parse_kit, recovery_kit
from extensions import keyring

keys_cli = AppGroup("keys", help="Manage encryption profiles.")


@keys_cli.command("create")
@click.argument("name")
def create_command(name: str) -> None:
    """Create a profile with a new random 256-bit key."""
    try:
        profile = keyring().create(get_db(), name, time.time())
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Profile {profile.name!r} created (key id {profile.id}). "
        "Export its recovery kit and keep it offline."
    )


@keys_cli.command("list")
def list_command() -> None:
    for profile in list_profiles(get_db()):
        click.echo(f"{profile.name}\t{profile.id}")


@keys_cli.command("export")
@click.argument("name")
@click.option("--output", "output", help="Write the kit to this new file, readable by its owner only.")
def export_command(name: str, output: str | None) -> None:
    """Print the profile's recovery kit: its key and how to decrypt without the server."""
    try:
        profile, key = keyring().by_name(get_db(), name)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    kit = recovery_kit(profile, key)
    if output is None:
        click.echo(kit, nl=False)
        return
    write_private(output, kit.encode())
    click.echo(f"Recovery kit of {profile.name!r} written to {output} (mode 0600): keep it offline.")


def write_private(path: str, data: bytes) -> None:
    """A new file only its owner can read, whatever the umask; an existing one is never overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as exc:
        raise click.ClickException(
            f"{path} exists already: choose another name, or remove it first."
        ) from exc
    except OSError as exc:
        raise click.ClickException(f"Cannot create {path}: {exc.strerror}.") from exc
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, 0o600)
        file.write(data)


@keys_cli.command("import")
@click.argument("name")
def import_command(name: str) -> None:
    """Add a profile from a recovery kit read on standard input."""
    try:
        key_id, key = parse_kit(sys.stdin.read())
        profile = keyring().create(get_db(), name, time.time(), key=key, key_id=key_id)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Profile {profile.name!r} imported (key id {profile.id}).")


@contextmanager
def output_file(path: str):
    """stdout for '-'; otherwise a temp file beside the target, renamed into place only on success."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".oncelink-")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


@click.command("encrypt")
@click.option("--profile", "profile_name", required=True, help="The profile whose key encrypts.")
@click.argument("source", type=click.File("rb"))
@click.argument("target")
@with_appcontext
def encrypt_command(profile_name: str, source: BinaryIO, target: str) -> None:
    """Encrypt SOURCE into TARGET ('-' for stdin / stdout), streaming; the plaintext's SHA-256 is kept
    (by the file's salt), so that links to TARGET carry it wherever the file is put."""
    try:
        profile, key = keyring().by_name(get_db(), profile_name)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    reader, header = HashingReader(source), new_header(bytes.fromhex(profile.id))
    with output_file(target) as out:
        size = encrypt_stream(reader, out, key, header)
    record_encrypted(get_db(), header, size, reader.hasher.hexdigest(), time.time())


@click.command("decrypt")
@click.argument("source", type=click.File("rb"))
@click.argument("target")
@with_appcontext
def decrypt_command(source: BinaryIO, target: str) -> None:
    """Decrypt SOURCE into TARGET ('-' for stdin / stdout); the profile is read from the file."""
    try:
        header = read_header(source)
        key = keyring().key_for(get_db(), header.key_id)
        with output_file(target) as out:
            for chunk in decrypt_stream(source, key, header):
                out.write(chunk)
    except (NotEncrypted, FormatError, IntegrityError, ProfileMissing, ProfileError) as exc:
        raise click.ClickException(f"Cannot decrypt: {exc}") from exc
