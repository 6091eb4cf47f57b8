"""Encryption profiles and file encryption from the command line: `keys`, `encrypt`, `decrypt`."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
from flask.cli import AppGroup, with_appcontext

from core.digests import HashingReader, record_encrypted
from db import get_db
from encryption.dbackup_kit import read_dbackup_kit
from encryption.format import (
    FormatError,
    IntegrityError,
    NotEncrypted,
    decrypt_stream,
    encrypt_stream,
    new_header,
    read_header,
)
from encryption.keys import (
    Profile,
    ProfileError,
    ProfileMissing,
    dbackup_master_key,
    list_profiles,
    parse_kit,
    recovery_kit,
)
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
    """Name and key id of each profile, and the DBackup profile id of those imported from DBackup."""
    for profile in list_profiles(get_db()):
        dbackup = f"\tDBackup {profile.dbackup_id}" if profile.dbackup_id else ""
        click.echo(f"{profile.name}\t{profile.id}{dbackup}")


@keys_cli.command("export")
@click.argument("name")
@click.option("--output", "output", help="Write the kit to this new file, readable by its owner only.")
def export_command(name: str, output: str | None) -> None:
    """Print the profile's recovery kit: its key and how to decrypt without the server. A profile
    imported from DBackup is printed as DBackup's master.key, which DBackup's own tools read."""
    try:
        profile, key = keyring().by_name(get_db(), name)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    kit = dbackup_master_key(key) if profile.dbackup_id else recovery_kit(profile, key)
    if output is None:
        click.echo(kit, nl=False)
    else:
        write_private(output, kit.encode())
        click.echo(f"Recovery kit of {profile.name!r} written to {output} (mode 0600): keep it offline.")
    if profile.dbackup_id:
        click.echo(reimport_hint(profile, output or "master.key"), err=output is None)


def reimport_hint(profile: Profile, file: str) -> str:
    """What goes with a DBackup master.key, which holds the key alone: on stderr when the key is on stdout."""
    return (
        f"This is the key of DBackup profile {profile.dbackup_id}, as a recovery kit's master.key. To import"
        f" it again: flask --app app keys import-dbackup {profile.name} --profile-id {profile.dbackup_id}"
        f" < {file}"
    )


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


@keys_cli.command("import-dbackup")
@click.argument("name")
@click.option("--profile-id", "dbackup_id", required=True, help="The DBackup profile id its backups name.")
def import_dbackup_command(name: str, dbackup_id: str) -> None:
    """Add a DBackup profile's key, read on standard input (`< master.key` from its recovery kit;
    typed at a hidden prompt in a terminal), so that Oncelink decrypts its backups."""
    try:
        profile = keyring().import_dbackup(get_db(), name, dbackup_id, read_dbackup_key(), time.time())
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Profile {profile.name!r} imported for DBackup profile {profile.dbackup_id}.")


def read_dbackup_key() -> str:
    if sys.stdin.isatty():
        return click.prompt("DBackup key (64 hex digits)", hide_input=True)
    return sys.stdin.buffer.read(4096).decode("utf-8", errors="replace")


@keys_cli.command("import-dbackup-kit")
@click.argument("kit", type=click.Path(exists=True, path_type=Path))
@click.option("--prefix", default="", help="Put this before each profile's name, clear of the names here.")
def import_dbackup_kit_command(kit: Path, prefix: str) -> None:
    """Add every profile of a DBackup recovery kit (its zip, or the folder it unzips to), or none;
    those already here with the same key are left as they are."""
    try:
        outcomes = keyring().import_dbackup_kit(get_db(), read_dbackup_kit(kit, prefix), time.time())
    except ProfileError as exc:
        raise click.ClickException(f"{exc} Nothing from the kit was imported.") from exc
    for outcome in outcomes:
        done = "imported" if outcome.imported else "here already"
        click.echo(f"{outcome.profile.name}\tDBackup {outcome.profile.dbackup_id}\t{done}")


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
