"""Log lines as JSON objects, one a line (ONCELINK_LOG_FORMAT=json), for log collectors.

Every string that goes out passes through the token redaction (core/redaction.py) here, at the
formatter, whatever logger it came from: the filters on gunicorn's and Flask's loggers see only
their own loggers' records. A gunicorn access line carries the request's fields by name, chosen
one by one: gunicorn's atoms also hold every request header, the Authorization header included.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from core.redaction import redact

# Our field name -> gunicorn's access log atom.
ACCESS_ATOMS = {
    "remote_addr": "h",
    "method": "m",
    "path": "U",
    "query": "q",
    "protocol": "H",
    "status": "s",
    "bytes": "B",
    "microseconds": "D",
    "referer": "f",
    "user_agent": "a",
}


def _access_fields(atoms: Mapping) -> dict:
    fields = {name: atoms.get(atom) for name, atom in ACCESS_ATOMS.items()}
    return {name: redact(value) if isinstance(value, str) else value for name, value in fields.items()}


class JsonLines(logging.Formatter):
    """{"time", "level", "logger", "message"}, an "exception" when there is one, and an access
    line's request fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            line.update(_access_fields(record.args))
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def wants_json(log_format: object) -> bool:
    return str(log_format or "").strip().lower() == "json"


def log_json_to_stderr() -> None:
    """The app's own loggers (those without a handler of their own) write JSON lines to stderr;
    once per process, however many apps it creates."""
    root = logging.getLogger()
    if any(isinstance(handler.formatter, JsonLines) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root.addHandler(handler)
