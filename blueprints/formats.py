"""How times, durations and speeds read in the link history: pages show them, answers carry ISO times."""

from __future__ import annotations

from datetime import UTC, datetime

from blueprints.pages import human_size

MODE_LABELS = {"decrypted": "decrypted", "stored": "as stored", "redirect": "redirect"}


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def iso(timestamp: float | None) -> str | None:
    """2026-11-25T04:30:12Z: what answers carry, and a <time datetime> holds."""
    if timestamp is None:
        return None
    return _utc(timestamp).isoformat(timespec="seconds").replace("+00:00", "Z")


def full_time(timestamp: float) -> str:
    """2026-11-25 04:30:12 UTC, for a title that tells the whole moment."""
    return _utc(timestamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def event_time(timestamp: float, previous: float | None = None) -> str:
    """04:30:12, with the date in front when it is not the day of the event before."""
    moment = _utc(timestamp)
    if previous is not None and _utc(previous).date() == moment.date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def human_duration(seconds: float | None) -> str:
    """How long a transfer ran: '350 ms', '4.2 s', '42 s', '3 min 05 s', '2 h 03 min'."""
    if seconds is None:
        return ""
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)} ms"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02} min"


def human_speed(bytes_per_second: float | None) -> str:
    """An average speed in the units of sizes: '1.4 MiB/s'."""
    if bytes_per_second is None:
        return ""
    return f"{human_size(round(bytes_per_second))}/s"


def resumed_from(start: int | None) -> str:
    """Where a transfer's range began, when not at the start: 'from 9.7 MiB' (an offset, not an amount)."""
    return f"from {human_size(start)}" if start else ""


def mode_label(mode: str | None) -> str:
    """How a link delivers its file, in words: 'decrypted', 'as stored' or 'redirect'."""
    return MODE_LABELS.get(mode or "", "")


FILTERS = {
    "iso": iso,
    "full_time": full_time,
    "event_time": event_time,
    "duration": human_duration,
    "speed": human_speed,
    "resumed_from": resumed_from,
    "mode_label": mode_label,
}
