"""Key profiles, the master key, recovery kits, and the encrypt / decrypt commands and tools/decrypt.py."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import create_app
from db import connect
from encryption.keys import Keyring, ProfileError, ProfileMissing, load_master_key, parse_kit
from tests.helpers import cli_environment, database_text

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "decrypt.py"


def test_master_key_is_generated_once_and_private(tmp_path):
    first = load_master_key(str(tmp_path), None)
    assert load_master_key(str(tmp_path), None) == first and len(first) == 32
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    configured = base64.b64encode(os.urandom(32)).decode()
    assert load_master_key(str(tmp_path), configured) == base64.b64decode(configured)
    with pytest.raises(ProfileError):
        load_master_key(str(tmp_path), "too short")


def test_profile_keys_are_stored_wrapped(app, db):
    keyring = app.extensions["oncelink_keyring"]
    profile = keyring.create(db, "main", time.time())
    _, key = keyring.by_name(db, "main")
    assert key not in database_text(db).encode()
    assert base64.b64encode(key).decode() not in database_text(db)
    assert keyring.key_for(db, bytes.fromhex(profile.id)) == key
    with pytest.raises(ProfileError):
        Keyring(os.urandom(32)).by_name(db, "main")  # another master key cannot open it
    with pytest.raises(ProfileMissing):
        keyring.key_for(db, os.urandom(16))
    with pytest.raises(ProfileError):
        keyring.create(db, "main", time.time())
    with pytest.raises(ProfileError):
        keyring.create(db, "bad name!", time.time())


def test_kit_round_trip_keeps_the_key_id(app, db, tmp_path, backups):
    keyring = app.extensions["oncelink_keyring"]
    profile = keyring.create(db, "main", time.time())
    kit = app.test_cli_runner().invoke(args=["keys", "export", "main"]).output
    key_id, key = parse_kit(kit)
    assert key_id == profile.id and key == keyring.by_name(db, "main")[1]
    other = create_app({"DATA_DIR": str(tmp_path / "elsewhere")})
    result = other.test_cli_runner().invoke(args=["keys", "import", "restored"], input=kit)
    assert result.exit_code == 0, result.output
    other_db = connect(other.config["DATABASE"])
    assert other.extensions["oncelink_keyring"].key_for(other_db, bytes.fromhex(profile.id)) == key
    other_db.close()
    bad = other.test_cli_runner().invoke(args=["keys", "import", "x"], input="not a kit")
    assert bad.exit_code != 0 and "recovery kit" in bad.output


def flask(app, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = cli_environment(app)
    command = [sys.executable, "-m", "flask", "--app", "app", *args]
    return subprocess.run(command, input=stdin, cwd=ROOT, env=env, capture_output=True, timeout=120)


def decrypt_offline(kit: Path, source: Path, target: Path) -> subprocess.CompletedProcess:
    """tools/decrypt.py, as someone would run it with nothing but the kit."""
    return subprocess.run(
        [sys.executable, str(TOOL), "--kit", str(kit), str(source), str(target)], capture_output=True
    )


def test_pipeline_through_encrypt_and_decrypt_commands_and_the_offline_tool(app, tmp_path):
    assert app.test_cli_runner().invoke(args=["keys", "create", "main"]).exit_code == 0
    dump = os.urandom(300_000)
    encrypted = flask(app, "encrypt", "--profile", "main", "-", "-", stdin=dump)
    assert encrypted.returncode == 0, encrypted.stderr
    assert encrypted.stdout[:4] == b"OLNK" and dump not in encrypted.stdout
    (tmp_path / "dump.enc").write_bytes(encrypted.stdout)
    decrypted = flask(app, "decrypt", str(tmp_path / "dump.enc"), str(tmp_path / "dump"))
    assert decrypted.returncode == 0 and (tmp_path / "dump").read_bytes() == dump
    (tmp_path / "kit.txt").write_bytes(flask(app, "keys", "export", "main").stdout)
    offline = decrypt_offline(tmp_path / "kit.txt", tmp_path / "dump.enc", tmp_path / "offline")
    assert offline.returncode == 0 and (tmp_path / "offline").read_bytes() == dump
    piped = subprocess.run(
        [sys.executable, str(TOOL), "--kit", str(tmp_path / "kit.txt"), "-", "-"],
        input=encrypted.stdout,
        capture_output=True,
    )
    assert piped.stdout == dump


def test_damaged_files_are_refused_and_leave_no_output(app, tmp_path):
    app.test_cli_runner().invoke(args=["keys", "create", "main"])
    (tmp_path / "plain").write_bytes(os.urandom(200_000))
    assert (
        flask(
            app, "encrypt", "--profile", "main", str(tmp_path / "plain"), str(tmp_path / "x.enc")
        ).returncode
        == 0
    )
    damaged = bytearray((tmp_path / "x.enc").read_bytes())
    damaged[100_000] ^= 1
    (tmp_path / "bad.enc").write_bytes(bytes(damaged))
    result = flask(app, "decrypt", str(tmp_path / "bad.enc"), str(tmp_path / "out"))
    assert result.returncode != 0 and b"failed authentication" in result.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "kit.txt").write_bytes(flask(app, "keys", "export", "main").stdout)
    offline = decrypt_offline(tmp_path / "kit.txt", tmp_path / "bad.enc", tmp_path / "out")
    assert offline.returncode == 1 and not (tmp_path / "out").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    not_encrypted = flask(app, "decrypt", str(tmp_path / "plain"), "-")
    assert not_encrypted.returncode != 0 and b"not an Oncelink" in not_encrypted.stderr


def test_unknown_profile_is_a_clear_error(app):
    result = flask(app, "encrypt", "--profile", "nope", "-", "-", stdin=b"x")
    assert result.returncode != 0 and b"No profile named 'nope'" in result.stderr


def test_workers_starting_together_share_one_master_key(tmp_path):
    """Eight processes race to create master.key and secret_key: all read the same, whole files."""
    script = (
        "import sys; from app import create_app; a = create_app({'DATA_DIR': sys.argv[1]}); "
        "print(a.config['SECRET_KEY'], open(sys.argv[1] + '/master.key').read().strip())"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    outputs = {racer.communicate(timeout=60)[0] for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert len(outputs) == 1
    assert len(base64.b64decode(outputs.pop().split()[1])) == 32
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".secret-")) == []


def test_a_kit_written_to_a_file_is_readable_by_its_owner_only_and_never_overwrites(app, db, tmp_path):
    app.extensions["oncelink_keyring"].create(db, "main", time.time())
    runner, target = app.test_cli_runner(), tmp_path / "main-kit.txt"
    old_umask = os.umask(0o022)  # the usual umask, which would leave a redirected kit world-readable
    try:
        written = runner.invoke(args=["keys", "export", "main", "--output", str(target)])
    finally:
        os.umask(old_umask)
    assert written.exit_code == 0, written.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    kit = target.read_text()
    assert kit == runner.invoke(args=["keys", "export", "main"]).output and parse_kit(kit)
    target.write_text(kit + "a note the owner added\n")
    again = runner.invoke(args=["keys", "export", "main", "--output", str(target)])
    assert again.exit_code != 0 and "exists already" in again.output
    assert target.read_text() == kit + "a note the owner added\n"
