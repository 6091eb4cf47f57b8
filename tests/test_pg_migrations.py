"""PostgreSQL's migrations (db/pg_migrations.py): from an empty database, once each however many
hosts start together, and to the same tables and columns as SQLite's migrations make."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from db import connect, migrate
from db.pg_migrations import MIGRATIONS, applied_versions, apply_pending

ALL = sorted(step.version for step in MIGRATIONS)


def columns_of_postgres(url: str) -> dict[str, set[str]]:
    db = connect(url)
    try:
        rows = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name <> 'schema_migrations'"
        ).fetchall()
    finally:
        db.close()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def columns_of_sqlite(path: str) -> dict[str, set[str]]:
    migrate(path)
    db = connect(path)
    try:
        names = [
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        ]
        names = [name for name in names if not name.startswith(("sqlite_", "_sqlite_"))]
        return {
            name: {row[1] for row in db.execute(f"PRAGMA table_info({name})").fetchall()} for name in names
        }
    finally:
        db.close()


def test_an_empty_database_gets_every_version_once(postgres):
    url = postgres.fresh_database(migrated=False)
    db = connect(url)
    try:
        assert apply_pending(db) == ALL
        assert apply_pending(db) == []  # nothing twice
        assert applied_versions(db) == set(ALL)
    finally:
        db.close()


def test_hosts_starting_together_apply_each_version_once(postgres):
    url = postgres.fresh_database(migrated=False)

    def start() -> list[int]:
        db = connect(url)
        try:
            return apply_pending(db)
        finally:
            db.close()

    with ThreadPoolExecutor(6) as pool:
        applied = [version for versions in pool.map(lambda _: start(), range(6)) for version in versions]
    assert sorted(applied) == ALL


def test_each_earlier_version_is_brought_up_to_date(postgres):
    for version in [0, *ALL[:-1]]:
        db = connect(postgres.fresh_database(migrated=False))
        try:
            apply_pending(db, upto=version)
            assert applied_versions(db) == {v for v in ALL if v <= version}
            apply_pending(db)
            assert applied_versions(db) == set(ALL)
        finally:
            db.close()


def test_postgresql_has_the_tables_and_columns_sqlite_has(postgres, tmp_path):
    """A migration added to one engine and not the other shows here."""
    assert columns_of_postgres(postgres.fresh_database()) == columns_of_sqlite(str(tmp_path / "o.sqlite3"))
