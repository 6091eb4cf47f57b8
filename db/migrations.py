"""The schema, as an ordered list of sqlite-utils migrations."""

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("oncelink")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL,
            last_used_at REAL
        );
        CREATE TABLE storages (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            storage_id TEXT NOT NULL,
            path TEXT NOT NULL,
            decrypt INTEGER NOT NULL DEFAULT 1,
            created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            max_uses INTEGER NOT NULL DEFAULT 1,
            uses INTEGER NOT NULL DEFAULT 0,
            revoked_at REAL,
            last_used_at REAL,
            lease_id TEXT,
            lease_until REAL
        );
        CREATE INDEX links_expires_at ON links(expires_at);
        CREATE INDEX links_lease_id ON links(lease_id);
        CREATE TABLE link_events (
            id INTEGER PRIMARY KEY,
            link_id INTEGER,
            storage_id TEXT,
            path TEXT,
            event TEXT NOT NULL,
            bytes INTEGER,
            reason TEXT,
            at REAL NOT NULL,
            client_ip TEXT,
            user_agent TEXT
        );
        CREATE INDEX link_events_link_id ON link_events(link_id);
        """
    )


@migrations()
def m002_encryption_profiles(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE encryption_profiles (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            wrapped_key BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        """
    )


@migrations()
def m003_link_bytes_sent(db: Database) -> None:
    """Bytes handed out by every transfer of a link, finished or not: the budget partial ranges draw on."""
    db.execute("ALTER TABLE links ADD COLUMN bytes_sent INTEGER NOT NULL DEFAULT 0")
