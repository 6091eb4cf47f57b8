"""Keeps link tokens out of every log line, including gunicorn's access and error logs."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message carries a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
