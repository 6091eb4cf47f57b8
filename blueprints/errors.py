"""The one place where domain exceptions become HTTP answers: JSON under /api/, a page elsewhere."""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass

from flask import Flask, Response, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from blueprints.guards import api_error
from blueprints.pages import is_htmx
from core.accounts import AccountError
from core.attempts import TooManyAttempts
from core.cursors import InvalidCursor
from core.downloads import RangeNotSatisfiable, ResumeOfAnotherVersion
from core.explorer import InvalidListingRequest
from core.landing import prefers_html
from core.links import InvalidLinkRequest, LinkNotFound
from core.notify_targets import UnknownTarget
from core.storages import outage_reason
from core.tokens import TokenBusy, TokenUnavailable
from db import cannot_write, discard_db, postgres
from encryption.dbackup import SidecarError
from encryption.format import FormatError, IntegrityError
from encryption.keys import ProfileError, ProfileMissing
from storage.base import FileMissing, NotAFile, StorageError, UnknownStorage, Unreadable, UnsafePath

log = logging.getLogger(__name__)

LINK_UNAVAILABLE_MESSAGE = (
    "This link has been used up, has expired or was revoked, or it is not a link this server made."
)
UNWRITABLE_MESSAGE = "Oncelink cannot write to its database right now, so nothing was saved; try again later."
PUBLIC_UNWRITABLE_MESSAGE = "Downloads are unavailable for a moment; this link was not used. Try again later."
UNWRITABLE_RETRY_SECONDS = 30  # a full disk is freed by a person or a cron job, not in a second

# Exceptions whose message is safe and useful to show as it is.
STATUS_FOR = {
    UnsafePath: 400,
    NotAFile: 400,
    InvalidLinkRequest: 400,
    InvalidListingRequest: 400,
    InvalidCursor: 400,
    AccountError: 400,
    ProfileError: 400,
    Unreadable: 403,  # one file or folder the server may not read; the storage itself answers
    UnknownStorage: 404,
    FileMissing: 404,
    LinkNotFound: 404,
    UnknownTarget: 404,
    ProfileMissing: 422,
}


@dataclass(frozen=True)
class PublicRefusal:
    """How a refused public download reads: `reason` is the status line's phrase, which is all
    that wget prints ("ERROR 410: Link used up, ..."); `heading` titles the landing page."""

    reason: str | None
    heading: str


# One answer for every dead token (unknown ones included), so that a token cannot be probed.
PUBLIC_REFUSALS = {
    400: PublicRefusal("Incomplete link", "This link is incomplete"),
    404: PublicRefusal("File no longer in the storage", "The file is no longer there"),
    409: PublicRefusal("Link busy: a download of it is running", "This link is being downloaded right now"),
    410: PublicRefusal("Link used up, expired, revoked or unknown", "This link no longer works"),
    416: PublicRefusal(None, "That part of the file does not exist"),
    422: PublicRefusal(None, "The file cannot be sent"),
    429: PublicRefusal("Too many failed attempts, wait", "Too many failed attempts"),
    500: PublicRefusal(None, "The file could not be read"),
    503: PublicRefusal("Unavailable for a moment, link not used", "Downloads are unavailable for a moment"),
}
UNKNOWN_REFUSAL = PublicRefusal(None, "This download did not work")


def respond(status: int, message: str, heading: str | None = None) -> Response:
    """The answer for an error, as JSON, a page or a fragment depending on who asked; a page's
    heading says what happened in words (by default the status's own phrase)."""
    if request.blueprint == "public":
        return public_refusal(status, message)
    return make_response(*_respond(status, message, heading or HTTP_STATUS_CODES.get(status, "Error")))


def public_refusal(status: int, message: str) -> Response:
    """A refused public download: a page for a person in a browser (no session cookie), the new
    state for the landing page re-checking its link, JSON for scripts; a readable status line."""
    refusal = PUBLIC_REFUSALS.get(status, UNKNOWN_REFUSAL)
    context = {"status": status, "refusal": refusal, "message": message}
    if is_htmx():  # htmx and Chromium log any 4xx as a console error: this answer is the new state
        response = make_response(render_template("public/_link_state.html", **context))
        response.vary.add("HX-Request")
        return response
    if prefers_html(request.headers.get("Accept")):
        response = make_response(render_template("public/landing.html", **context), status)
    else:
        response = make_response(*api_error(status, message))
    if refusal.reason:
        response.status = f"{status} {refusal.reason}"
    return response


def _respond(status: int, message: str, heading: str):
    if request.path.startswith("/api/"):
        return api_error(status, message)
    template = "errors/_error.html" if is_htmx() else "errors/error.html"  # a fragment: the message
    return render_template(template, status=status, heading=heading, message=message), status


def database_unwritable(exc: Exception) -> Response:
    """503 while the database cannot be written (disk full, I/O error, PostgreSQL unreachable...):
    nothing was saved or counted, and the same request works again once it can. One line in the
    log, no traceback."""
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    log.warning("Database cannot be written on %s: %s (%s)", request.path, str(exc).strip(), name)
    discard_db()
    if request.blueprint == "public":  # whoever holds a link learns nothing about the server
        response = respond(503, PUBLIC_UNWRITABLE_MESSAGE)
    else:
        response = respond(503, f"{UNWRITABLE_MESSAGE} ({exc})")
    response.headers["Retry-After"] = str(UNWRITABLE_RETRY_SECONDS)
    return response


def storage_unavailable(exc: StorageError) -> Response:
    """503, not 500: the storage (an S3 endpoint, a local folder) did not answer, the app is fine.
    The message never holds the endpoint's address."""
    storage = (request.view_args or {}).get("storage_id")
    named = f"The storage {storage}" if storage else "The storage"
    message = (
        f"{named} did not answer: {outage_reason(exc)} Nothing was changed; try again later,"
        " or ask an admin to test its connection."
    )
    return respond(503, message, heading="Storage unavailable")


def register_error_handlers(app: Flask) -> None:
    for exception, status in STATUS_FOR.items():
        app.register_error_handler(exception, lambda exc, status=status: respond(status, str(exc)))

    @app.errorhandler(TokenUnavailable)
    def token_unavailable(_exc):
        return respond(410, LINK_UNAVAILABLE_MESSAGE)

    @app.errorhandler(TokenBusy)
    def token_busy(_exc):
        response = respond(409, "This link is being downloaded right now; try again when that ends.")
        response.headers["Retry-After"] = "10"
        return response

    @app.errorhandler(TooManyAttempts)
    def too_many_attempts(exc: TooManyAttempts):
        wait = max(1, math.ceil(exc.retry_after))
        response = respond(429, f"Too many failed attempts from your address; try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response

    @app.errorhandler(RangeNotSatisfiable)
    def range_not_satisfiable(exc: RangeNotSatisfiable):
        response = respond(416, "The requested range lies outside the file.")
        response.headers["Content-Range"] = f"bytes */{exc.size}"
        return response

    @app.errorhandler(ResumeOfAnotherVersion)
    def resume_of_another_version(_exc):
        return respond(
            412,
            "The file was replaced since this link's download started: the part you hold is of the "
            "old file. Delete it and download again (nothing was counted).",
        )

    @app.errorhandler(StorageError)
    def storage_error(exc: StorageError):
        log.error("Storage error on %s: %s", request.path, exc)
        if request.blueprint == "public":  # whoever holds a link learns nothing about the storage
            return respond(500, "The storage could not be read, nothing was counted; try again later.")
        return storage_unavailable(exc)

    @app.errorhandler(sqlite3.DatabaseError)
    @app.errorhandler(postgres.Error)
    def database_error(exc: Exception):
        if not cannot_write(exc):
            raise exc  # a bug: Flask logs its traceback and answers 500
        return database_unwritable(exc)

    @app.errorhandler(FormatError)
    def damaged_header(exc: FormatError):
        return respond(422, f"The file looks like an Oncelink encrypted file but is damaged: {exc}.")

    @app.errorhandler(SidecarError)
    def damaged_sidecar(exc: SidecarError):
        return respond(422, f"The backup's DBackup sidecar (.meta.json) cannot be used: {exc}.")

    @app.errorhandler(IntegrityError)
    def integrity_error(exc: IntegrityError):
        log.error("Integrity failure on %s: %s", request.path, exc)
        return respond(
            422, "The encrypted file failed its integrity check: nothing was sent and the link was not used."
        )

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return respond(400, f"The request was refused: {exc.description}")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is not None and exc.code < 400:  # routing redirects
            return exc
        return respond(exc.code or 500, exc.description or exc.name)
