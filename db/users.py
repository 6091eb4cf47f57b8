"""Queries on users and their API keys (keys are stored only as SHA-256 hashes)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from db import inserted_id, select_rows


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    password_hash: str
    role: str
    disabled: bool
    created_at: float
    session_epoch: int = 0


@dataclass(frozen=True)
class ApiKeyRecord:
    id: int
    user_id: int
    prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


USER_COLUMNS = "id, name, password_hash, role, disabled, created_at, session_epoch"
KEY_COLUMNS = "id, user_id, prefix, created_at, expires_at, revoked_at, last_used_at"


def _user(row: dict) -> UserRecord:
    return UserRecord(**{**row, "disabled": bool(row["disabled"])})


def _one_user(db: Database, where: str, params: list) -> UserRecord | None:
    rows = select_rows(db, f"SELECT {USER_COLUMNS} FROM users WHERE {where}", params)
    return _user(rows[0]) if rows else None


def get_user(db: Database, user_id: int) -> UserRecord | None:
    return _one_user(db, "id = ?", [user_id])


def get_user_by_name(db: Database, name: str) -> UserRecord | None:
    return _one_user(db, "name = ?", [name])


def list_users(db: Database) -> list[UserRecord]:
    return [_user(row) for row in select_rows(db, f"SELECT {USER_COLUMNS} FROM users ORDER BY name")]


def count_users(db: Database) -> int:
    return db.execute("SELECT COUNT(*) FROM users").fetchone()[0]


def insert_user(db: Database, name: str, password_hash: str, role: str, now: float) -> UserRecord:
    sql = "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING id"
    return get_user(db, inserted_id(db, sql, [name, password_hash, role, now]))


def insert_api_key(
    db: Database, user_id: int, key_hash: str, prefix: str, now: float, expires_at: float | None
) -> ApiKeyRecord:
    key_id = inserted_id(
        db,
        "INSERT INTO api_keys (user_id, key_hash, prefix, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        [user_id, key_hash, prefix, now, expires_at],
    )
    return list_api_keys(db, key_id=key_id)[0]


def list_api_keys(db: Database, user_id: int | None = None, key_id: int | None = None) -> list[ApiKeyRecord]:
    clauses = [(c, v) for c, v in (("user_id = ?", user_id), ("id = ?", key_id)) if v is not None]
    where = " AND ".join(c for c, _ in clauses) or "TRUE"
    sql = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE {where} ORDER BY id"
    return [ApiKeyRecord(**row) for row in select_rows(db, sql, [v for _, v in clauses])]


KEY_USE_PRECISION_SECONDS = 60


def user_for_key_hash(db: Database, key_hash: str, now: float) -> UserRecord | None:
    """The enabled owner of a live key, marking the key as used.

    To the minute: a client minting many links a second would otherwise add a write to each
    request, half of a mint's, for a date the admin page shows to the minute anyway."""
    rows = select_rows(
        db,
        "SELECT api_keys.id AS key_id, api_keys.last_used_at AS key_used_at, users.* FROM api_keys"
        " JOIN users ON users.id = api_keys.user_id"
        " WHERE key_hash = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
        " AND users.disabled = 0",
        [key_hash, now],
    )
    if not rows:
        return None
    row = rows[0]
    key_id, used_at = row.pop("key_id"), row.pop("key_used_at")
    if used_at is None or now - used_at >= KEY_USE_PRECISION_SECONDS:
        db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now, key_id])
    return _user(row)


def revoke_api_key(db: Database, key_id: int, now: float) -> bool:
    cursor = db.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, key_id]
    )
    return cursor.rowcount == 1


def update_user(db: Database, user_id: int, **fields) -> None:
    """Set some of role, disabled, password_hash (the names are ours, never the caller's input).

    The same statement bumps the session epoch: every session signed in before a change to who
    the user is or what they may do ends with it.
    """
    allowed = {"role", "disabled", "password_hash"}
    assert set(fields) <= allowed, fields
    assignments = ", ".join(f"{name} = ?" for name in fields)
    db.execute(
        f"UPDATE users SET {assignments}, session_epoch = session_epoch + 1 WHERE id = ?",
        [*fields.values(), user_id],
    )


def end_sessions(db: Database, user_id: int) -> None:
    """Make every session cookie the user was given so far useless (sign-out)."""
    db.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?", [user_id])
