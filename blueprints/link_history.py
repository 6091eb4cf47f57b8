"""The Links page: the signed-in user's links (an admin's: everyone's), their events, and revoking."""

from __future__ import annotations

import time

from flask import Blueprint, request, url_for
from flask_login import current_user

from blueprints.guards import request_client
from blueprints.pages import hx_redirect, page_permission, render_htmx
from core.history import STATES, link_histories, link_history
from core.links import revoke_link
from db import get_db

bp = Blueprint("link_history", __name__)


@bp.get("/links")
@page_permission("storage:download")
def index():
    state = request.args.get("state")
    state = state if state in STATES else None
    histories = link_histories(get_db(), current_user, time.time(), state)
    return render_htmx(
        "links/page.html", "links/_table.html", histories=histories, state=state, states=STATES
    )


def _revoke(link_id: int) -> None:
    revoke_link(get_db(), link_id, current_user._get_current_object(), time.time(), request_client())


@bp.delete("/links/<int:link_id>")
@page_permission("storage:download")
def revoke(link_id: int):
    """htmx: the row replaces itself, now revoked."""
    _revoke(link_id)
    history = link_history(get_db(), link_id, current_user, time.time())
    return render_htmx("links/page.html", "links/_row.html", history=history)


@bp.post("/links/<int:link_id>/revoke")
@page_permission("storage:download")
def revoke_form(link_id: int):
    """The same without JavaScript: a form post, then back to the list."""
    _revoke(link_id)
    return hx_redirect(url_for("link_history.index"))
