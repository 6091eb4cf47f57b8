"""Keeps link tokens out of every log line, including gunicorn's access and error logs.

A parameter is redacted when its name, percent-decoded as often as it takes, reads `token` in any
case: `?token=`, `?tok%65n=`, `?%74oken=`, `?TOKEN=`. The public download only accepts the plain
spelling, so this covers more than what can download.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

# name=value inside a query string or form body, as far as a log line lets one tell.
_PARAMETER = re.compile(r"(?P<name>[^\s?&;=\"'/]+)=(?P<value>[^&;\s\"']*)")
_DECODING_ROUNDS = 3  # %2574 -> %74 -> t: a name encoded twice is still caught


def _decoded(name: str) -> str:
    for _ in range(_DECODING_ROUNDS):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name


def _redacted(match: re.Match) -> str:
    if _decoded(match["name"]).casefold() != "token":
        return match[0]
    return f"{match['name']}=[redacted]"


def redact(text: str) -> str:
    return _PARAMETER.sub(_redacted, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message carries a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
