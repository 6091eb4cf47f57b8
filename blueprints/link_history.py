"""The Links page: the signed-in user's links (an admin's: everyone's) a page at a time, filtered by
state and name, each with its events folded away; one link's whole history; revoking."""

from __future__ import annotations

import time
from functools import partial

from flask import Blueprint, render_template, request, url_for
from flask_login import current_user

from blueprints.formats import FILTERS
from blueprints.guards import request_client
from blueprints.pages import hx_redirect, page_permission, render_htmx
from core.history import PAGE_SIZE, LinkQuery, history_page, link_history, link_row, parse_link_query
from core.links import revoke_link
from db import get_db
from db.links import LinkState

bp = Blueprint("link_history", __name__)
for name, template_filter in FILTERS.items():
    bp.add_app_template_filter(template_filter, name)


def page_query() -> LinkQuery:
    args = request.args
    return parse_link_query(
        args.get("state"), args.get("q"), args.get("before"), args.get("after"), args.get("limit")
    )


def page_url(query: LinkQuery, **changes) -> str:
    """The Links page with `query`'s filters and page size, changed by `changes` (a cursor, a state)."""
    limit = query.limit if query.limit != PAGE_SIZE else None
    params = {"state": query.state, "q": query.name or None, "limit": limit, **changes}
    return url_for("link_history.index", **params)


@bp.get("/links")
@page_permission("storage:download")
def index():
    query = page_query()
    page = history_page(get_db(), current_user, query, time.time())
    return render_htmx(
        "links/page.html",
        "links/_table.html",
        links=page,
        query=query,
        states=list(LinkState),
        links_url=partial(page_url, query),
    )


@bp.get("/links/<int:link_id>")
@page_permission("storage:download")
def detail(link_id: int):
    """One link with every event; for htmx just the events, to unfold them in the Links page."""
    history = link_history(get_db(), link_id, current_user, time.time())
    return render_htmx("links/link.html", "links/_events.html", history=history)


def _revoke(link_id: int) -> None:
    revoke_link(get_db(), link_id, current_user._get_current_object(), time.time(), request_client())


@bp.delete("/links/<int:link_id>")
@page_permission("storage:download")
def revoke(link_id: int):
    """htmx: the row replaces itself, now revoked."""
    _revoke(link_id)
    history = link_row(get_db(), link_id, current_user, time.time())
    return render_template("links/_row.html", history=history)


@bp.post("/links/<int:link_id>/revoke")
@page_permission("storage:download")
def revoke_form(link_id: int):
    """The same without JavaScript: a form post, then back to the list."""
    _revoke(link_id)
    return hx_redirect(url_for("link_history.index"))
