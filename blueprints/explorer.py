"""The storage explorer: folder listings, the signed-in user's own download, and the link dialog."""

from __future__ import annotations

import dataclasses
import time

from flask import Blueprint, Response, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from blueprints.guards import request_client
from blueprints.links import iso, link_limits, public_url, purge_long_dead_links
from blueprints.pages import (
    clock,
    escaped_controls,
    human_size,
    page_permission,
    render_htmx,
    utc_time,
    visible_name,
)
from blueprints.responses import file_response
from core.commands import check_command, fetch_commands
from core.delivery import Delivery, DeliveryMode, describe_delivery
from core.digests import DigestState, digest_state, request_sha256, target_of
from core.downloads import open_direct
from core.explorer import PAGE_SIZE, PAGE_SIZES, FolderQuery, breadcrumbs, browse_folder, describe_file
from core.links import (
    InvalidLinkRequest,
    LinkLimits,
    LinkRequest,
    describe_duration,
    issue_link,
    parse_link_request,
)
from core.listings import Sort
from db import get_db
from db.storages import list_storages
from extensions import digest_worker, keyring

bp = Blueprint("explorer", __name__)
bp.add_app_template_filter(human_size, "filesize")
bp.add_app_template_filter(utc_time, "utc")
bp.add_app_template_filter(clock, "clock")
bp.add_app_template_filter(visible_name, "visible")
bp.add_app_template_filter(escaped_controls, "escaped_controls")

TTL_PRESETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


def folder_query(args: MultiDict) -> FolderQuery:
    """The query string as a person's browser sends it; a value outside the choices is the default."""
    sort, size = args.get("sort", "name"), args.get("size", PAGE_SIZE, type=int)
    return FolderQuery(
        folder=args.get("path", ""),
        sort=Sort(sort) if sort in set(Sort) else Sort.NAME,
        descending=args.get("order") == "desc",
        filter=args.get("q", "").strip(),
        page=args.get("page", 1, type=int) or 1,
        after=args.get("after", ""),
        size=size if size in PAGE_SIZES else PAGE_SIZE,
        below=args.get("below") == "1",
    )


def folder_url(storage_id: str, query: FolderQuery, **changes) -> str:
    """The explorer URL for `query` with some fields changed; defaults are left out of the URL.
    A cursor (`after`) belongs to one page only: it is kept only when given with the changes."""
    q = dataclasses.replace(query, **{"after": "", **changes})
    args = {
        "path": q.folder,
        "sort": q.sort if q.sort != Sort.NAME else "",
        "order": "desc" if q.descending else "",
        "q": q.filter,
        "page": q.page if q.page > 1 else "",
        "after": q.after,
        "size": q.size if q.size != PAGE_SIZE else "",
        "below": "1" if q.below and q.filter else "",
    }
    return url_for("explorer.browse", storage_id=storage_id, **{k: v for k, v in args.items() if v})


@bp.get("/browse/<storage_id>")
@page_permission("storage:read")
def browse(storage_id: str):
    listing = browse_folder(get_db(), storage_id, folder_query(request.args), keyring())
    storages = list_storages(get_db())
    return render_htmx(
        "explorer/page.html",
        "explorer/_listing.html",
        storage_id=storage_id,
        storage_name=next((storage.name for storage in storages if storage.id == storage_id), storage_id),
        storages=storages,
        listing=listing,
        crumbs=breadcrumbs(listing.query.folder),
        folder_url=lambda **changes: folder_url(storage_id, listing.query, **changes),
        page_sizes=PAGE_SIZES,
    )


@bp.get("/browse/<storage_id>/file")
@page_permission("storage:download")
def download(storage_id: str) -> Response:
    response = file_response(open_direct(get_db(), storage_id, request.args.get("path", ""), keyring()))
    response.headers["Cache-Control"] = "private, no-store"
    return response


def ttl_choices(limits: LinkLimits) -> list[tuple[int, str]]:
    seconds = sorted({ttl for ttl in TTL_PRESETS if ttl <= limits.max_ttl} | {limits.default_ttl})
    return [(ttl, describe_duration(ttl)) for ttl in seconds]


def link_request_from_form(form: MultiDict, limits: LinkLimits) -> LinkRequest:
    """The dialog's fields as the JSON API would receive them, checked by the same rules."""
    data: dict = {"file": form.get("path", ""), "decrypt": form.get("decrypt", "1") != "0"}
    for field in ("ttl", "uses"):
        value = form.get(field, "").strip()
        if value:
            if not value.isdigit():
                raise InvalidLinkRequest(f"'{field}' must be a whole number.")
            data[field] = int(value)
    return parse_link_request(data, limits)


@bp.get("/browse/<storage_id>/link")
@page_permission("storage:download")
def link_form(storage_id: str):
    limits = link_limits()
    return render_htmx(
        "explorer/link.html",
        "explorer/_link_form.html",
        storage_id=storage_id,
        file=describe_file(get_db(), storage_id, request.args.get("path", ""), keyring()),
        ttl_choices=ttl_choices(limits),
        limits=limits,
    )


@bp.post("/browse/<storage_id>/link")
@page_permission("storage:download")
def mint_link(storage_id: str):
    link_request = link_request_from_form(request.form, link_limits())
    issued = issue_link(
        get_db(),
        storage_id,
        link_request,
        keyring(),
        current_user._get_current_object(),
        time.time(),
        request_client(),
        replaces=request.form.get("replaces", type=int),
    )
    purge_long_dead_links()
    url = public_url(issued.token)
    digest = request_sha256(get_db(), issued.delivery, digest_worker())
    return render_htmx(
        "explorer/link.html",
        "explorer/_link_result.html",
        storage_id=storage_id,
        issued=issued,
        link=issued.link,
        request_=link_request,
        url=url,
        expires_at=iso(issued.link.expires_at),
        server_now_ms=int(time.time() * 1000),
        commands=fetch_commands(url, issued.delivery.filename),
        **digest_context(issued.delivery, digest),
    )


def digest_context(delivery: Delivery, digest: DigestState) -> dict:
    """What `_digest.html` shows: the digest and its check line, or the progress it polls for."""
    target = target_of(delivery)
    return {
        "digest": digest,
        "digest_decrypted": delivery.mode == DeliveryMode.DECRYPTED,
        "check": check_command(digest.sha256, delivery.filename) if digest.sha256 else None,
        "digest_url": url_for(
            "explorer.digest", storage_id=target.storage_id, path=target.path, decrypt=int(target.decrypt)
        ),
    }


@bp.get("/browse/<storage_id>/digest")
@page_permission("storage:download")
def digest(storage_id: str):
    """The link dialog's SHA-256, polled while it is computed (a fragment: it lives in the dialog)."""
    decrypt = request.args.get("decrypt", "1") != "0"
    delivery = describe_delivery(get_db(), storage_id, request.args.get("path", ""), keyring(), decrypt)
    state = digest_state(get_db(), delivery, time.time())
    if not (state.sha256 or state.running or state.error):
        state = request_sha256(get_db(), delivery, digest_worker())
    return render_template("_digest.html", **digest_context(delivery, state))
