"""The public download: no cookie, no login; the token in the link is the only authority."""

from __future__ import annotations

import time
from urllib.parse import unquote_plus

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from blueprints.guards import api_error, request_client
from blueprints.links import iso
from blueprints.responses import file_response
from core.downloads import DownloadRequest, Serving, inspect_download, start_download
from core.landing import wants_landing_page
from db import get_db
from db.events import EventKind
from extensions import csrf, limiter, serving

bp = Blueprint("public", __name__)


def landing_page(asked: DownloadRequest, serving: Serving) -> Response:
    """Name, size and expiry, and a Download button; looking at it never uses the link."""
    download = inspect_download(get_db(), asked, serving, time.time(), event=EventKind.PREVIEW)
    page = render_template(
        "public/landing.html",
        download=download,
        expires_at=iso(download.link.expires_at),
        server_now_ms=int(time.time() * 1000),
        download_url=url_for("public.download", token=asked.token),
    )
    response = Response(page, mimetype="text/html")
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


def failed_attempt(response: Response) -> bool:
    return response.status_code in (400, 401)


@bp.route("/api/storage/public-download", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["PUBLIC_FAILURE_LIMIT"], deduct_when=failed_attempt)
@csrf.exempt  # the token in the URL is the only authority here; there is no session to protect
def download() -> Response:
    """GET: the file (a browser: the landing page). POST: the landing page's Download button.

    The button posts because mail scanners open every link in a page with a browser's headers,
    but do not submit forms: a GET never counts as someone pressing Download.
    """
    tokens = literal_tokens(request.query_string)
    if len(tokens) != 1 or not tokens[0]:
        return api_error(400, "The link must carry exactly one token.")
    token = tokens[0]
    asked = DownloadRequest(
        token,
        request.headers.get("Range"),
        request.headers.get("If-Range"),
        request_client(),
    )
    if wants_landing_page(request.headers.get("Accept"), request.user_agent.string, request.method == "POST"):
        return landing_page(asked, serving())
    if request.method == "HEAD":
        return file_response(inspect_download(get_db(), asked, serving(), time.time()))
    download = start_download(get_db(), asked, serving(), time.time())
    if download.redirect_url:
        return redirect(download.redirect_url, code=302)
    return file_response(download)
