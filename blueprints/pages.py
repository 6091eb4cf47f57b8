"""What every browser page shares: htmx detection, page-or-fragment answers, role checks, filters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from urllib.parse import urlsplit

from flask import Response, abort, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import Markup

from core.downloads import invisible
from extensions import login_manager


def is_htmx() -> bool:
    """An htmx request wanting a fragment; a history restore wants the whole page."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render_htmx(page: str, fragment: str, status: int = 200, **context) -> Response:
    """The same URL answers the page or, for htmx, the fragment the page includes."""
    response = make_response(render_template(fragment if is_htmx() else page, **context), status)
    response.vary.add("HX-Request")
    return response


def hx_redirect(target: str) -> Response:
    """Move the browser elsewhere: htmx follows HX-Redirect, a plain browser a 303."""
    if is_htmx():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, code=303)


def page_permission(permission: str) -> Callable:
    """Signed in (else sign-in, HX-Redirect for htmx) and allowed (else 403)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(permission):
                abort(403, f"Your role ({current_user.role}) may not do this.")
            return view(*args, **kwargs)

        return guarded

    return decorator


def _page_address() -> str:
    """Where to come back after signing in: for htmx the page shown, not the fragment's URL."""
    current = request.headers.get("HX-Current-URL") if is_htmx() else None
    if current:
        parts = urlsplit(current)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return request.full_path.rstrip("?")


@login_manager.unauthorized_handler
def sign_in_first() -> Response:
    target = url_for("accounts.login", next=_page_address())
    if is_htmx():
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def human_size(size: int | None) -> str:
    """1536 -> '1.5 KiB': binary units, as the size of backups is usually read."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def utc_time(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def clock(seconds: float) -> str:
    """The countdown's starting text, as app.js writes it: mm:ss, or h:mm:ss from an hour on."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes:02}:{secs:02}"


def _shown(character: str) -> str:
    """Invisible and direction-changing characters (U+202E, zero-width spaces...) as escapes."""
    if invisible(character):
        return f"\\u{ord(character):04x}" if ord(character) <= 0xFFFF else f"\\U{ord(character):08x}"
    return character


def escaped_controls(name: str) -> str:
    """The name with its invisible and direction-changing characters as escapes (for a <title>)."""
    return "".join(map(_shown, str(name)))


def visible_name(name: str) -> Markup:
    """A file or folder name exactly as it is: its controls visibly escaped, and isolated in <bdi>
    so that right-to-left text cannot reorder what stands around it ("gpj.exe" posing as a photo)."""
    return Markup("<bdi>{}</bdi>").format(escaped_controls(name))
