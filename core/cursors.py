"""Cursors of listing pages: opaque to clients, and checked like any other input.

A cursor says where the page before it ended (the last entry's kind, sort value and name) and
which listing it belongs to (storage, folder, order, filter). The next page starts after that
position wherever it now falls, so entries that were there all along are neither repeated nor
skipped when the folder changes between pages; it carries no offset that a change would shift.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

MAX_CURSOR = 4096  # a cursor holds one name (at most 1024 bytes on S3, 255 locally) and a little more
MAX_NAME = 1024


class InvalidCursor(ValueError):
    """A cursor this server did not give out for this listing: a 400, with a message that says so."""


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last entry's kind, its value in the order (size, date, or 0 in name
    order) and its name."""

    is_dir: bool
    value: int | float
    name: str


def encode_cursor(listing: list, position: Position) -> str:
    """`listing` names what the cursor belongs to, as JSON values (storage, folder, order...)."""
    payload = {"l": listing, "p": [position.is_dir, position.value, position.name]}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, listing: list) -> Position:
    """The position a cursor of `listing` holds; InvalidCursor for anything else."""
    payload = _payload(cursor)
    if not isinstance(payload, dict) or payload.get("l") != listing:
        raise InvalidCursor("The cursor belongs to another listing (another folder, order or filter).")
    return _position(payload.get("p"))


def _payload(cursor: str) -> object:
    if not isinstance(cursor, str) or not cursor.isascii() or len(cursor) > MAX_CURSOR:
        raise InvalidCursor("The cursor is not one this server gave out.")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        return json.loads(text)
    # UnicodeDecodeError and JSONDecodeError are ValueErrors; arrays nested a thousand deep, a RecursionError
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidCursor("The cursor is not one this server gave out.") from exc


def _position(fields: object) -> Position:
    """Only what a page could have ended on: a kind, a finite number (a size fits 64 bits) and a
    plain name."""
    if not isinstance(fields, list) or len(fields) != 3:
        raise InvalidCursor("The cursor is not one this server gave out.")
    is_dir, value, name = fields
    sane_value = (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63) or (
        isinstance(value, float) and math.isfinite(value)
    )
    sane_name = isinstance(name, str) and 0 < len(name) <= MAX_NAME and "/" not in name and "\0" not in name
    if not (isinstance(is_dir, bool) and sane_value and sane_name):
        raise InvalidCursor("The cursor is not one this server gave out.")
    return Position(is_dir, value, name)
