"""DBackup profile keys: imported from a recovery kit's master.key (command line, admin page) or a
whole kit, stored wrapped, found by the profile id that DBackup's sidecars name."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from app import create_app
from db import connect
from db.migrations import migrations
from encryption.keys import Keyring, ProfileError, ProfileMissing, dbackup_profile_names, list_profiles
from tests.helpers import cli_environment

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "dbackup" / "expected.json").read_text())
KEY_HEX, PROFILE_ID = VECTORS["keyHex"], VECTORS["profileId"]
OTHER_HEX = "0f" * 32
UUID = "8c7e3f52-4d1a-4b8e-9f0a-2e6b1c9d7a43"


def keyring_of(app) -> Keyring:
    return app.extensions["oncelink_keyring"]


def database_bytes(app) -> bytes:
    """The database as it lies on disk: the main file and its write-ahead log."""
    main = Path(app.config["DATABASE"])
    return b"".join(path.read_bytes() for path in main.parent.glob(main.name + "*") if path.is_file())


def write_kit(folder: Path, keys: dict[str, tuple[str, str, str]]) -> Path:
    """A kit of several profiles, laid out as DBackup builds it: {file: (profile id, name, hex key)}."""
    (folder / "keys").mkdir(parents=True)
    index = []
    for file, (profile_id, name, hex_key) in keys.items():
        (folder / "keys" / file).write_text(hex_key)
        index.append({"profileId": profile_id, "name": name, "file": file})
    (folder / "keys" / "keys.json").write_text(json.dumps({"version": 1, "keys": index}, indent=2))
    (folder / "dbackup-recover.js").write_text("// DBackup's recovery tool\n")
    (folder / "README.txt").write_text(f"# Recovery Kit for {len(keys)} Encryption Profiles\n")
    return folder


def zipped(folder: Path, target: Path, under: str = "") -> Path:
    """The kit as its zip: members at the root, as DBackup sends it, or under one folder."""
    with zipfile.ZipFile(target, "w") as kit:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                kit.write(path, under + path.relative_to(folder).as_posix())
    return target


def test_import_from_stdin_round_trips_the_vector_key(app, runner, db):
    result = runner.invoke(
        args=["keys", "import-dbackup", "vectors", "--profile-id", PROFILE_ID], input=KEY_HEX + "\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"Profile 'vectors' imported for DBackup profile {PROFILE_ID}.\n"
    assert keyring_of(app).key_for_dbackup(db, PROFILE_ID) == bytes.fromhex(KEY_HEX)
    assert dbackup_profile_names(db) == {PROFILE_ID: "vectors"}
    profile = list_profiles(db)[0]
    assert (
        profile.dbackup_id == PROFILE_ID and len(profile.id) == 32
    )  # a key id of our own, as `create` gives
    assert runner.invoke(args=["keys", "list"]).output == f"vectors\t{profile.id}\tDBackup {PROFILE_ID}\n"


def test_the_kits_master_key_file_is_read_from_redirected_stdin(app, tmp_path):
    """`flask keys import-dbackup ... < master.key`, as the README says, in a process of its own."""
    master_key = tmp_path / "master.key"
    master_key.write_text(KEY_HEX)  # DBackup writes the digits without a newline
    env = cli_environment(app)
    command = [sys.executable, "-m", "flask", "--app", "app", "keys", "import-dbackup", "shop"]
    with master_key.open("rb") as stdin:
        done = subprocess.run(
            [*command, "--profile-id", UUID], stdin=stdin, cwd=ROOT, env=env, capture_output=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert KEY_HEX.encode() not in done.stdout + done.stderr
    db = connect(app.config["DATABASE"])
    assert keyring_of(app).key_for_dbackup(db, UUID) == bytes.fromhex(KEY_HEX)
    db.close()


@pytest.mark.sqlite_only
def test_the_database_never_holds_the_key_in_clear(app, db):
    keyring_of(app).import_dbackup(db, "vectors", PROFILE_ID, KEY_HEX.upper(), time.time())
    stored = database_bytes(app)
    assert PROFILE_ID.encode() in stored  # the bytes searched are the ones written
    for form in (bytes.fromhex(KEY_HEX), KEY_HEX.encode(), KEY_HEX.upper().encode()):
        assert form not in stored
    with pytest.raises(ProfileError, match="cannot be opened"):
        Keyring(os.urandom(32)).key_for_dbackup(db, PROFILE_ID)  # wrapped by the master key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (KEY_HEX[:63], "this one has 63"),
        (KEY_HEX + "a", "this one has 65"),
        ("", "this one has 0"),
        ("zz" + KEY_HEX[2:], "other characters"),
        (KEY_HEX[:32] + " " + KEY_HEX[32:], "other characters"),
        (bytes.fromhex(KEY_HEX), "other characters"),  # the 32 raw bytes, not their digits
        ("0x" + KEY_HEX[:62], "other characters"),
    ],
)
def test_what_is_not_a_kits_master_key_is_refused_without_echoing_it(app, runner, db, key, problem):
    result = runner.invoke(args=["keys", "import-dbackup", "vectors", "--profile-id", PROFILE_ID], input=key)
    assert result.exit_code == 1
    assert "64 hex digits" in result.output and problem in result.output
    assert KEY_HEX[:32] not in result.output and KEY_HEX[32:] not in result.output
    assert list_profiles(db) == []


def test_taken_names_and_ids_and_unlikely_ids_are_refused(app, runner, db):
    keyring_of(app).create(db, "main", time.time())
    keyring_of(app).import_dbackup(db, "vectors", PROFILE_ID, KEY_HEX, time.time())

    def refusal(name: str, dbackup_id: str) -> str:
        result = runner.invoke(
            args=["keys", "import-dbackup", name, "--profile-id", dbackup_id], input=OTHER_HEX
        )
        assert result.exit_code == 1
        return result.output

    assert "A profile named 'main' exists already." in refusal("main", UUID)
    assert f"DBackup profile {PROFILE_ID} is here already, as 'vectors'." in refusal("again", PROFILE_ID)
    for hostile in ("../keys", "a b", "id;drop", "<b>", "x" * 129, ""):
        assert "A DBackup profile id is 1 to 128 letters" in refusal("other", hostile)
    assert "A profile name is 1 to 64" in refusal("bad name!", UUID)
    assert [p.name for p in list_profiles(db)] == ["main", "vectors"]
    assert keyring_of(app).key_for_dbackup(db, PROFILE_ID) == bytes.fromhex(KEY_HEX)  # left as it was


def test_a_sidecars_unknown_profile_is_missing(app, db):
    keyring_of(app).create(db, "main", time.time())  # our own profiles are not DBackup's
    with pytest.raises(ProfileMissing) as missing:
        keyring_of(app).key_for_dbackup(db, PROFILE_ID)
    assert str(missing.value) == (
        f"The backup is encrypted with DBackup profile {PROFILE_ID}, which no profile here holds."
    )
    assert dbackup_profile_names(db) == {}


def test_export_gives_dbackups_master_key_back(app, runner, tmp_path):
    runner.invoke(args=["keys", "import-dbackup", "vectors", "--profile-id", PROFILE_ID], input=KEY_HEX)
    exported = runner.invoke(args=["keys", "export", "vectors"])
    assert exported.exit_code == 0
    assert exported.stdout == KEY_HEX + "\n"  # what `> master.key` keeps: DBackup's tool reads it
    assert f"--profile-id {PROFILE_ID}" in exported.stderr
    written = runner.invoke(args=["keys", "export", "vectors", "--output", str(tmp_path / "master.key")])
    assert written.exit_code == 0 and KEY_HEX not in written.output
    assert (tmp_path / "master.key").read_text() == KEY_HEX + "\n"
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    elsewhere = create_app({"DATA_DIR": str(tmp_path / "elsewhere")})
    again = elsewhere.test_cli_runner().invoke(
        args=["keys", "import-dbackup", "vectors", "--profile-id", PROFILE_ID], input=exported.stdout
    )
    assert again.exit_code == 0, again.output
    other_db = connect(elsewhere.config["DATABASE"])
    assert keyring_of(elsewhere).key_for_dbackup(other_db, PROFILE_ID) == bytes.fromhex(KEY_HEX)
    other_db.close()


def test_the_migration_keeps_existing_profiles(tmp_path):
    keyring = Keyring(os.urandom(32))
    scratch = connect(str(tmp_path / "scratch.sqlite3"))
    migrations.apply(scratch)
    made = keyring.create(scratch, "main", 1.0)
    key = keyring.key_for(scratch, bytes.fromhex(made.id))
    row = scratch.execute("SELECT id, name, wrapped_key, created_at FROM encryption_profiles").fetchone()
    old = connect(str(tmp_path / "old.sqlite3"))
    migrations.apply(old, stop_before="m017_dbackup_profiles")
    old.execute(
        "INSERT INTO encryption_profiles (id, name, wrapped_key, created_at) VALUES (?, ?, ?, ?)", row
    )
    migrations.apply(old)
    assert list_profiles(old) == [made]
    assert made.dbackup_id is None and keyring.key_for(old, bytes.fromhex(made.id)) == key
    keyring.create(old, "second", 2.0)  # many profiles without a DBackup id
    keyring.import_dbackup(old, "vectors", PROFILE_ID, KEY_HEX, 3.0)
    with pytest.raises(sqlite3.IntegrityError):  # the index holds, whatever the code above it checks
        old.execute("UPDATE encryption_profiles SET dbackup_id = ? WHERE name = 'main'", [PROFILE_ID])
    old.close()
    scratch.close()


@pytest.mark.parametrize("form", ["folder", "zip", "zip under a folder"])
def test_a_kit_of_several_profiles_is_imported_in_one_go(app, runner, db, tmp_path, form):
    folder = write_kit(
        tmp_path / "recovery_kit_2_profiles",
        {
            "Production.key": (PROFILE_ID, "Production", KEY_HEX),
            "Legacy-2024.key": (UUID, "Legacy 2024", OTHER_HEX),
        },
    )
    kit = {
        "folder": folder,
        "zip": zipped(folder, tmp_path / "kit.zip"),
        "zip under a folder": zipped(folder, tmp_path / "kit.zip", under="recovery_kit_2_profiles/"),
    }[form]
    result = runner.invoke(args=["keys", "import-dbackup-kit", str(kit)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Production\tDBackup {PROFILE_ID}\timported",
        f"Legacy-2024\tDBackup {UUID}\timported",
    ]
    assert KEY_HEX not in result.output and OTHER_HEX not in result.output
    assert keyring_of(app).key_for_dbackup(db, PROFILE_ID) == bytes.fromhex(KEY_HEX)
    assert keyring_of(app).key_for_dbackup(db, UUID) == bytes.fromhex(OTHER_HEX)
    again = runner.invoke(args=["keys", "import-dbackup-kit", str(kit)])
    assert again.exit_code == 0 and again.output.count("here already") == 2
    assert len(list_profiles(db)) == 2


def test_a_kit_is_imported_whole_or_not_at_all(app, runner, db, tmp_path):
    keyring_of(app).create(db, "Production", time.time())
    kit = write_kit(
        tmp_path / "kit",
        {"Legacy.key": (UUID, "Legacy", OTHER_HEX), "Production.key": (PROFILE_ID, "Production", KEY_HEX)},
    )
    clash = runner.invoke(args=["keys", "import-dbackup-kit", str(kit)])
    assert clash.exit_code == 1
    assert "A profile named 'Production' exists already. Nothing from the kit was imported." in clash.output
    assert dbackup_profile_names(db) == {}  # Legacy, before it in the kit, is not left behind
    prefixed = runner.invoke(args=["keys", "import-dbackup-kit", str(kit), "--prefix", "dbackup-"])
    assert prefixed.exit_code == 0, prefixed.output
    assert dbackup_profile_names(db) == {UUID: "dbackup-Legacy", PROFILE_ID: "dbackup-Production"}
    (kit / "keys" / "Production.key").write_text(OTHER_HEX)
    changed = runner.invoke(args=["keys", "import-dbackup-kit", str(kit), "--prefix", "dbackup-"])
    assert changed.exit_code == 1
    assert f"DBackup profile {PROFILE_ID} is here already as 'dbackup-Production', with another key." in (
        changed.output
    )
    assert keyring_of(app).key_for_dbackup(db, PROFILE_ID) == bytes.fromhex(KEY_HEX)


def test_a_kit_of_one_profile_names_it_in_its_readme(app, runner, db, tmp_path):
    kit = tmp_path / "recovery_kit_shop"
    kit.mkdir()
    (kit / "master.key").write_text(KEY_HEX)
    readme = f"# Recovery Kit for Profile: Shop DB\nGenerated at: 2026-11-30\nProfile ID: {PROFILE_ID}\n"
    (kit / "README.txt").write_text(readme)
    result = runner.invoke(args=["keys", "import-dbackup-kit", str(zipped(kit, tmp_path / "kit.zip"))])
    assert result.exit_code == 0, result.output
    assert dbackup_profile_names(db) == {PROFILE_ID: "Shop-DB"}
    (kit / "README.txt").write_text("# Recovery Kit for Profile: Shop DB\n")  # a kit from before the id line
    unnamed = runner.invoke(args=["keys", "import-dbackup-kit", str(kit)])
    assert (
        unnamed.exit_code == 1 and "keys import-dbackup NAME --profile-id ID < master.key" in unnamed.output
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda kit: (kit / "keys" / "keys.json").write_text("{not json"), "not the index DBackup writes"),
        (lambda kit: (kit / "keys" / "keys.json").write_text('{"keys": []}'), "lists no keys"),
        (
            lambda kit: (kit / "keys" / "keys.json").write_text(
                json.dumps({"keys": [{"profileId": UUID, "name": "x", "file": "../../master.key"}]})
            ),
            "names no plain key file",
        ),
        (
            lambda kit: (kit / "keys" / "Legacy.key").unlink(),
            "names keys/Legacy.key, which the kit does not hold",
        ),
        (
            lambda kit: (kit / "keys" / "Legacy.key").write_text(OTHER_HEX[:40]),
            "keys/Legacy.key: A DBackup key",
        ),
        (lambda kit: (kit / "keys" / "keys.json").unlink(), "neither keys/keys.json nor master.key"),
    ],
)
def test_a_damaged_kit_is_refused_by_what_is_wrong(app, runner, db, tmp_path, damage, message):
    (tmp_path / "master.key").write_text(OTHER_HEX)  # beside the kit, never reached from it
    kit = write_kit(tmp_path / "kit", {"Legacy.key": (UUID, "Legacy", OTHER_HEX)})
    damage(kit)
    result = runner.invoke(args=["keys", "import-dbackup-kit", str(kit)])
    assert result.exit_code == 1 and message in result.output
    assert OTHER_HEX[:40] not in result.output
    assert list_profiles(db) == []


def test_a_file_that_is_not_a_kit(runner, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(args=["keys", "import-dbackup-kit", str(tmp_path / "notes.txt")])
    assert result.exit_code == 1 and "neither a folder nor a zip file" in result.output


def import_form(auth, **fields) -> dict:
    return {
        "name": "vectors",
        "dbackup_id": PROFILE_ID,
        "key": KEY_HEX,
        "csrf_token": auth.csrf_token,
        **fields,
    }


def test_the_admin_page_imports_a_dbackup_profile_without_showing_its_key(app, client, auth, db, caplog):
    auth.login("admin")
    caplog.set_level(logging.DEBUG)
    form = import_form(auth)
    refused = client.post(
        "/admin/profiles/dbackup", data={k: v for k, v in form.items() if k != "csrf_token"}
    )
    assert refused.status_code == 400 and list_profiles(db) == []  # CSRF
    response = client.post("/admin/profiles/dbackup", data=form)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/profiles"
    page = client.get("/admin/profiles").text
    assert f"Profile vectors imported for DBackup profile {PROFILE_ID}." in page
    assert ">DBackup</span>" in page and f"<code>{PROFILE_ID}</code>" in page
    assert keyring_of(app).key_for_dbackup(db, PROFILE_ID) == bytes.fromhex(KEY_HEX)
    again = client.post("/admin/profiles/dbackup", data=import_form(auth, name="other"))
    assert again.status_code == 400 and f"DBackup profile {PROFILE_ID} is here already" in again.text
    short = client.post(
        "/admin/profiles/dbackup", data=import_form(auth, name="short", dbackup_id=UUID, key=KEY_HEX[:63])
    )
    assert short.status_code == 400 and "this one has 63" in short.text
    for answer in (response, again, short):
        assert KEY_HEX[:32] not in answer.text and KEY_HEX[32:] not in answer.text
    assert KEY_HEX[:32] not in page and KEY_HEX[:32] not in caplog.text
    assert 'type="password" name="key"' in page


def test_the_admin_page_exports_a_dbackup_profile_as_master_key(app, client, auth, db):
    keyring_of(app).import_dbackup(db, "vectors", PROFILE_ID, KEY_HEX, time.time())
    auth.login("admin")
    assert "Export master.key" in client.get("/admin/profiles").text
    kit = client.post("/admin/profiles/vectors/kit", data={"csrf_token": auth.csrf_token})
    assert kit.status_code == 200 and kit.text == KEY_HEX + "\n"
    assert kit.headers["Content-Disposition"] == 'attachment; filename="master.key"'
    assert kit.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_import_dbackup_profiles(app, client, auth, db, role):
    auth.login(role)
    assert client.post("/admin/profiles/dbackup", data=import_form(auth)).status_code == 403
    assert list_profiles(db) == []
