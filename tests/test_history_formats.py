"""How the link history reads: times with seconds, durations, speeds, resume offsets and delivery
modes; and the migration that gave older links and events their modes and offsets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from blueprints.formats import (
    event_time,
    full_time,
    human_duration,
    human_speed,
    iso,
    mode_label,
    resumed_from,
)
from db import connect
from db.events import Event
from db.migrations import migrations

MIB = 1024 * 1024
MOMENT = datetime(2026, 11, 25, 4, 30, 12, 600000, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (0, "0 ms"),
        (0.3504, "350 ms"),
        (4.25, "4.2 s"),
        (0.9996, "1.0 s"),
        (9.96, "10 s"),
        (42.4, "42 s"),
        (65, "1 min 05 s"),
        (3599.6, "1 h 00 min"),
        (2 * 3600 + 3 * 60 + 59, "2 h 03 min"),
    ],
)
def test_durations(seconds, shown):
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("bytes_per_second", "shown"),
    [(None, ""), (0, "0 B/s"), (512.4, "512 B/s"), (1536, "1.5 KiB/s"), (1.4 * MIB, "1.4 MiB/s")],
)
def test_speeds(bytes_per_second, shown):
    assert human_speed(bytes_per_second) == shown


@pytest.mark.parametrize(
    ("start", "shown"), [(None, ""), (0, ""), (100, "from 100 B"), (int(9.7 * MIB), "from 9.7 MiB")]
)
def test_a_resume_reads_as_where_it_started(start, shown):
    assert resumed_from(start) == shown


def test_times_carry_seconds_and_the_date_when_the_day_changes():
    assert iso(MOMENT) == "2026-11-25T04:30:12Z" and iso(None) is None
    assert full_time(MOMENT) == "2026-11-25 04:30:12 UTC"
    assert event_time(MOMENT) == "2026-11-25 04:30:12"  # the first of a list
    assert event_time(MOMENT, MOMENT - 3600) == "04:30:12"
    assert event_time(MOMENT, MOMENT - 5 * 3600) == "2026-11-25 04:30:12"  # the day before


def test_modes_in_words():
    assert [mode_label(mode) for mode in ("decrypted", "stored", "redirect", None)] == [
        "decrypted",
        "as stored",
        "redirect",
        "",
    ]


@pytest.mark.parametrize(
    ("event", "speed"),
    [
        (Event("completed", 0, bytes=3 * MIB, seconds=2.0), 1.5 * MIB),
        (Event("aborted", 0, bytes=5, seconds=0.0), None),  # too short to tell
        (Event("completed", 0, bytes=5), None),  # recorded before durations were
        (Event("started", 0, start=5), None),
    ],
)
def test_an_events_average_speed(event, speed):
    assert event.bytes_per_second == speed


def test_the_migration_moves_offsets_out_of_bytes_and_guesses_old_links_modes(tmp_path):
    old = connect(str(tmp_path / "old.sqlite3"))
    migrations.apply(old, stop_before="m011_readable_history")
    for link_id, path, decrypt in [(1, "db.sql.gz.enc", 1), (2, "db.sql.gz.enc", 0), (3, "db.sql.gz", 1)]:
        old.execute(
            "INSERT INTO links (id, token_hash, storage_id, path, decrypt, created_at, expires_at)"
            " VALUES (?, ?, 'local', ?, ?, 0, 1)",
            [link_id, f"h{link_id}", path, decrypt],
        )
    old.execute("INSERT INTO link_events (link_id, event, bytes, at) VALUES (1, 'started', 700, 0)")
    old.execute("INSERT INTO link_events (link_id, event, bytes, at) VALUES (1, 'aborted', 300, 1)")
    migrations.apply(old)
    modes = old.execute("SELECT id, mode FROM links ORDER BY id").fetchall()
    assert modes == [(1, "decrypted"), (2, "stored"), (3, "stored")]
    events = old.execute("SELECT event, start, bytes FROM link_events ORDER BY id").fetchall()
    assert events == [("started", 700, None), ("aborted", None, 300)]
    old.close()
