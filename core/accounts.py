"""Users, roles and API keys. Passwords are scrypt hashes; API keys are stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlite_utils import Database
from werkzeug.security import check_password_hash, generate_password_hash

from core.attempts import Limit, charge_attempt, refund_attempt
from db import users as queries
from db import write_transaction

ROLE_PERMISSIONS = {
    "admin": frozenset({"storage:read", "storage:download", "admin"}),
    "operator": frozenset({"storage:read", "storage:download"}),
    "viewer": frozenset({"storage:read"}),
}
API_KEY_PREFIX = "olk_"
# Checked against when a name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password")


class AccountError(ValueError):
    """A user or key request that cannot be carried out, with a message for the person asking."""


@dataclass(frozen=True)
class User:
    """A signed-in person or script; shaped for flask-login."""

    id: int
    name: str
    role: str
    disabled: bool = False
    session_epoch: int = 0

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role, frozenset())

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return not self.disabled

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What the session cookie holds: the id and the epoch it was signed in at (see load_user)."""
        return f"{self.id}:{self.session_epoch}"


def _user(record: queries.UserRecord) -> User:
    return User(record.id, record.name, record.role, record.disabled, record.session_epoch)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(db: Database, name: str, password: str, role: str, now: float) -> User:
    name = name.strip()
    if not name or len(name) > 64:
        raise AccountError("A user name is 1 to 64 characters.")
    if role not in ROLE_PERMISSIONS:
        raise AccountError(f"Unknown role {role!r}; choose one of {', '.join(ROLE_PERMISSIONS)}.")
    if len(password) < 8:
        raise AccountError("A password has at least 8 characters.")
    password_hash = generate_password_hash(password)  # slow on purpose: not inside the transaction
    with write_transaction(db):
        if queries.get_user_by_name(db, name) is not None:
            raise AccountError(f"A user named {name!r} exists already.")
        return _user(queries.insert_user(db, name, password_hash, role, now))


def load_user(db: Database, session_id: str) -> User | None:
    """The user a session cookie names (`get_id()`), if enabled and still at the epoch the cookie
    was signed in at: a copy of the cookie taken before a sign-out or a new password opens nothing."""
    user_id, _, epoch = session_id.partition(":")
    if not (user_id.isdigit() and epoch.isdigit()):
        return None  # also a cookie from before epochs existed: its owner signs in once more
    record = queries.get_user(db, int(user_id))
    if record is None or record.disabled or record.session_epoch != int(epoch):
        return None
    return _user(record)


def sign_out(db: Database, user: User) -> None:
    """End every session of the user, not just the browser's own, so a stolen copy of the cookie
    dies when its owner signs out."""
    queries.end_sessions(db, user.id)


def authenticate(db: Database, name: str, password: str) -> User | None:
    """The enabled user with that name and password, or None."""
    record = queries.get_user_by_name(db, name)
    if record is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(record.password_hash, password) or record.disabled:
        return None
    return _user(record)


def sign_in(
    db: Database, name: str, password: str, address: str | None, limit: Limit | None, now: float
) -> User | None:
    """authenticate(), each try counted against the address before the password is checked.

    Once the address has `limit` failures, every try is refused unchecked (TooManyAttempts), the
    right password too: were it let through, guessing would go on without limit and the one
    answer that is not 429 would name the password. Counting first keeps parallel tries within the
    limit; a success gives its own try back, but never the failures before it.
    """
    attempt = charge_attempt(db, f"sign-in:{address}", limit, now) if limit else None
    user = authenticate(db, name, password)
    if user is not None and attempt is not None:
        refund_attempt(db, attempt)
    return user


def create_api_key(
    db: Database, user_name: str, now: float, expires_days: int | None = None
) -> tuple[str, queries.ApiKeyRecord]:
    """A new key for a user: the key itself (shown once) and its stored record."""
    record = queries.get_user_by_name(db, user_name)
    if record is None:
        raise AccountError(f"No user named {user_name!r}.")
    if expires_days is not None and expires_days < 1:
        raise AccountError("A key expires after at least one day.")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + expires_days * 86400 if expires_days else None
    stored = queries.insert_api_key(db, record.id, hash_secret(key), key[:12], now, expires_at)
    return key, stored


def user_for_api_key(db: Database, key: str, now: float) -> User | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    record = queries.user_for_key_hash(db, hash_secret(key), now)
    return _user(record) if record else None


def _other_user(db: Database, user_id: int, acting: User) -> queries.UserRecord:
    """A user an admin may change; never themselves, so that nobody locks the last admin out."""
    record = queries.get_user(db, user_id)
    if record is None:
        raise AccountError(f"No user {user_id}.")
    if record.id == acting.id:
        raise AccountError("You cannot change your own role or access; ask another admin.")
    return record


def change_user(db: Database, user_id: int, role: str, disabled: bool, acting: User) -> User:
    """Set a user's role and whether they may sign in (a disabled user's API keys stop too).

    A real change ends the user's sessions (they sign in again with the new role, or cannot);
    saving the form unchanged leaves them signed in.
    """
    if role not in ROLE_PERMISSIONS:
        raise AccountError(f"Unknown role {role!r}; choose one of {', '.join(ROLE_PERMISSIONS)}.")
    with write_transaction(db):
        record = _other_user(db, user_id, acting)
        if (record.role, record.disabled) != (role, disabled):
            queries.update_user(db, user_id, role=role, disabled=int(disabled))
        return _user(queries.get_user(db, user_id))


def reset_password(db: Database, user_id: int, password: str) -> User:
    """Set a new password and end every session of the user: whoever signed in with the old one
    is out."""
    if len(password) < 8:
        raise AccountError("A password has at least 8 characters.")
    password_hash = generate_password_hash(password)  # slow on purpose: not inside the transaction
    with write_transaction(db):
        if queries.get_user(db, user_id) is None:
            raise AccountError(f"No user {user_id}.")
        queries.update_user(db, user_id, password_hash=password_hash)
        return _user(queries.get_user(db, user_id))


def set_password(db: Database, name: str, password: str) -> User:
    """reset_password() for the user with that name (the CLI knows users by name)."""
    record = queries.get_user_by_name(db, name)
    if record is None:
        raise AccountError(f"No user named {name!r}.")
    return reset_password(db, record.id, password)
