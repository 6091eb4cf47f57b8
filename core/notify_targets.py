"""Notification targets: webhooks the admin adds (page or CLI), each with the notices it wants.

A target's URL and signing secret are sealed by the master key, like an S3 secret, and never
shown again: pages and the CLI show the URL's scheme and host alone (the rest may hold a token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlite_utils import Database

from core.webhooks import new_secret
from db import notifications as queries
from db.notifications import SUBSCRIBABLE, Notice, TargetRecord
from encryption.keys import Keyring

TARGET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_NAME = 100
MAX_URL = 2000
WEBHOOK = "webhook"


class TargetConfigError(ValueError):
    """A target that cannot be saved as asked, with a message for the person asking."""


class UnknownTarget(LookupError):
    pass


@dataclass(frozen=True)
class TargetSettings:
    """What the admin types; an empty URL or secret keeps the one stored (on an edit)."""

    name: str = ""
    url: str | None = None
    secret: str | None = None
    events: tuple[str, ...] = tuple(SUBSCRIBABLE)
    enabled: bool = True


@dataclass(frozen=True)
class SavedTarget:
    record: TargetRecord
    new_secret: str | None = None  # generated for this save: to show once, then never again


def url_label(target_id: str) -> str:
    return f"notify-url:{target_id}"  # a sealed URL cannot pass for a secret, nor for a storage's


def secret_label(target_id: str) -> str:
    return f"notify-secret:{target_id}"


def url_hint(url: str) -> str:
    """scheme://host[:port]: where a target points, without its path, query or credentials."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _checked_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise TargetConfigError("The URL is not a valid address.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise TargetConfigError("The URL must be an http:// or https:// address.")
    return url


def _checked_events(events: tuple[str, ...]) -> tuple[str, ...]:
    unknown = set(events) - set(SUBSCRIBABLE)
    if unknown:
        raise TargetConfigError(f"Unknown events: {', '.join(sorted(unknown))}.")
    if not events:
        raise TargetConfigError("Choose at least one event to be notified of.")
    return tuple(notice for notice in SUBSCRIBABLE if notice in events)


def _checked_name(name: str, target_id: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME:
        raise TargetConfigError(f"A name is at most {MAX_NAME} characters.")
    return name or target_id


def _record(
    keyring: Keyring, target_id: str, settings: TargetSettings, current: TargetRecord | None, now: float
) -> SavedTarget:
    """The target as stored: the URL and secret sealed, or the current ones kept when left empty."""
    if settings.url:
        url = _checked_url(settings.url)
        sealed_url, hint = keyring.seal_secret(url_label(target_id), url), url_hint(url)
    elif current is not None:
        sealed_url, hint = current.url, current.url_hint
    else:
        raise TargetConfigError("A URL is required.")
    generated = None if settings.secret or current is not None else new_secret()
    secret = settings.secret or generated
    sealed_secret = keyring.seal_secret(secret_label(target_id), secret) if secret else current.secret
    name = _checked_name(settings.name, target_id)
    events = _checked_events(settings.events)
    created = current.created_at if current else now
    record = TargetRecord(
        target_id, name, WEBHOOK, sealed_url, hint, sealed_secret, events, settings.enabled, created
    )
    return SavedTarget(record, generated)


def add_target(
    db: Database, keyring: Keyring, target_id: str, settings: TargetSettings, now: float
) -> SavedTarget:
    """A new webhook; without a secret given, one is generated (returned to be shown once)."""
    if not TARGET_ID.match(target_id):
        raise TargetConfigError("A target id is lower-case letters, digits, '-' and '_' (at most 64).")
    if queries.get_target(db, target_id) is not None:
        raise TargetConfigError(f"A target {target_id!r} exists already.")
    saved = _record(keyring, target_id, settings, None, now)
    queries.insert_target(db, saved.record)
    return saved


def existing_target(db: Database, target_id: str) -> TargetRecord:
    record = queries.get_target(db, target_id)
    if record is None:
        raise UnknownTarget(f"No notification target {target_id!r}.")
    return record


def update_target(
    db: Database, keyring: Keyring, target_id: str, settings: TargetSettings, now: float
) -> SavedTarget:
    """Change a target; an empty URL or secret keeps the stored one, so neither is ever shown."""
    saved = _record(keyring, target_id, settings, existing_target(db, target_id), now)
    queries.update_target(db, saved.record)
    return saved


def remove_target(db: Database, target_id: str) -> TargetRecord:
    """Forget a target and every notification queued or kept for it."""
    record = existing_target(db, target_id)
    queries.delete_target(db, target_id)
    return record


def send_test(db: Database, target_id: str, by: str, now: float) -> None:
    """Queue a test notification for the target; the senders deliver it like any other."""
    existing_target(db, target_id)
    data = {"message": f"A test from Oncelink, sent by {by}.", "target": target_id}
    queries.queue_test(db, target_id, queries.payload_of(Notice.TEST, now, data), now)


def open_target(keyring: Keyring, record: TargetRecord) -> tuple[str, str]:
    """The URL and the secret in clear, for the sender alone."""
    url = keyring.unseal_secret(url_label(record.id), record.url)
    return url, keyring.unseal_secret(secret_label(record.id), record.secret)
