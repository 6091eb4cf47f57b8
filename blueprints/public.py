"""The public download: no cookie, no login; the token in the link is the only authority."""

from __future__ import annotations

import time
from urllib.parse import unquote_plus

from flask import Blueprint, Response, abort, redirect, request, url_for

from blueprints.guards import request_client
from blueprints.links import iso, public_url
from blueprints.pages import is_htmx, render_htmx
from blueprints.responses import file_response
from core import metrics
from core.attempts import TooManyAttempts
from core.commands import check_command, fetch_commands
from core.delivery import DeliveryMode
from core.digests import DigestState
from core.downloads import DownloadRequest, Serving, inspect_download, start_download
from core.landing import wants_landing_page
from core.tokens import admit_attempt
from db import get_db
from db.events import EventKind
from extensions import csrf, failure_limits, serving

bp = Blueprint("public", __name__)


def landing_page(asked: DownloadRequest, serving: Serving) -> Response:
    """Name, size and expiry, a Download button and the commands for a terminal; looking at it
    never uses the link. For htmx, only the link's state: the page re-reads it (core/landing.py)."""
    download = inspect_download(get_db(), asked, serving, time.time(), event=EventKind.PREVIEW)
    response = render_htmx(
        "public/landing.html",
        "public/_link_state.html",
        download=download,
        link=download.link,
        expires_at=iso(download.link.expires_at),
        server_now_ms=int(time.time() * 1000),
        download_url=url_for("public.download", token=asked.token),
        commands=fetch_commands(public_url(asked.token), download.delivery.filename),
        digest=DigestState(download.sha256),
        digest_decrypted=download.delivery.mode == DeliveryMode.DECRYPTED,
        check=check_command(download.sha256, download.delivery.filename) if download.sha256 else None,
    )
    response.vary.update(("Accept", "User-Agent"))
    return response


@bp.after_request
def keep_links_private(response: Response) -> Response:
    """No cache keeps a copy, and no page reached from here learns the link, errors included."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def literal_tokens(query: bytes) -> list[str]:
    """The values of the query's parameters spelled exactly `token`.

    Only that spelling is accepted, so the log filter, which redacts every spelling that decodes
    to `token`, covers more than what can download; and a link never carries two tokens.
    """
    pairs = (part.partition(b"=") for part in query.split(b"&"))
    return [unquote_plus(value.decode("latin-1")) for name, _, value in pairs if name == b"token"]


def limit_failures(token: str) -> None:
    """429 for an address that tried too many wrong or dead tokens; a token that opens a link passes."""
    limit = failure_limits().public
    if limit is None:
        return
    try:
        admit_attempt(get_db(), token, request.remote_addr, limit, time.time())
    except TooManyAttempts:
        metrics.transfer_rejected("too many attempts")
        raise


@bp.route("/api/storage/public-download", methods=["GET", "POST"])
@csrf.exempt  # the token in the URL is the only authority here; there is no session to protect
def download() -> Response:
    """GET: the file (a browser: the landing page). POST: the landing page's Download button.

    The button posts because mail scanners open every link in a page with a browser's headers,
    but do not submit forms: a GET never counts as someone pressing Download. An htmx request is
    the landing page re-reading the link's state: it never downloads either.
    """
    tokens = literal_tokens(request.query_string)
    token = tokens[0] if len(tokens) == 1 else ""
    limit_failures(token)
    if not token:
        abort(400, "The link must carry exactly one token.")
    asked = DownloadRequest(
        token,
        request.headers.get("Range"),
        request.headers.get("If-Range"),
        request_client(),
    )
    accept, user_agent = request.headers.get("Accept"), request.user_agent.string
    if is_htmx() or wants_landing_page(accept, user_agent, request.method == "POST"):
        return landing_page(asked, serving())
    if request.method == "HEAD":
        return file_response(inspect_download(get_db(), asked, serving(), time.time()))
    download = start_download(get_db(), asked, serving(), time.time())
    if download.redirect_url:
        return redirect(download.redirect_url, code=302)
    return file_response(download)
