"""Minting and managing download links: the JSON API and the `links` / `tokens` CLI."""

from __future__ import annotations

import os
import time

import click
from flask import Blueprint, current_app, g, jsonify, request, url_for
from flask.cli import AppGroup

from blueprints.formats import iso
from blueprints.guards import api_permission, request_client
from core.accounts import User
from core.digests import request_sha256
from core.history import LinkHistory, history_page, parse_link_query
from core.links import (
    LinkLimits,
    LinkRequest,
    MintedLink,
    create_link,
    describe_duration,
    parse_link_request,
    revoke_link,
    visible_link,
)
from core.purging import purge_dead_links
from db import get_db
from db.events import Client, Event, list_events
from db.links import Link, list_links
from extensions import background_purge, csrf, digest_worker, keyring

bp = Blueprint("links", __name__)
csrf.exempt(bp)  # checked in api_permission for session callers; API keys need none

API_PAGE_SIZE = 200  # what GET /api/links answered before it had pages
links_cli = AppGroup("links", help="Mint and revoke download links.")
tokens_cli = AppGroup("tokens", help="Maintain the token store.")


def cli_base_url() -> str:
    """Where `make serve` listens, for links minted from the command line without PUBLIC_URL."""
    return (
        current_app.config.get("PUBLIC_URL")
        or f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
    )


def link_limits() -> LinkLimits:
    config = current_app.config
    return LinkLimits(int(config["TOKEN_TTL"]), int(config["TOKEN_MAX_TTL"]), int(config["TOKEN_MAX_USES"]))


def public_url(token: str) -> str:
    """The absolute link: under ONCELINK_PUBLIC_URL when set, else the request's own root."""
    base = current_app.config.get("PUBLIC_URL")
    if base:
        return str(base).rstrip("/") + url_for("public.download", token=token)
    return url_for("public.download", token=token, _external=True)


def link_json(link: Link, now: float) -> dict:
    return {
        "id": link.id,
        "storage": link.storage_id,
        "file": link.path,
        "decrypt": link.decrypt,
        "state": link.state(now),
        "uses": link.max_uses,
        "usesDone": link.uses,
        "transfers": link.transfers,
        "createdAt": iso(link.created_at),
        "expiresAt": iso(link.expires_at),
        "revokedAt": iso(link.revoked_at),
        "mode": link.mode,
    }


def event_json(event: Event) -> dict:
    return {**event.__dict__, "at": iso(event.at)}


def history_json(history: LinkHistory, now: float) -> dict:
    """A link as the Links page shows it: with who made it and its newest events."""
    return {
        **link_json(history.link, now),
        "createdBy": history.creator,
        "eventCount": history.event_count,
        "events": [event_json(event) for event in history.events],
    }


def minted_json(minted: MintedLink, sha256: str | None = None) -> dict:
    link = minted.link
    ttl = round(link.expires_at - link.created_at)
    return {
        "success": True,
        "id": link.id,
        "url": public_url(minted.token),
        "expiresIn": describe_duration(ttl),
        "expiresAt": iso(link.expires_at),
        "singleUse": link.max_uses == 1,
        "uses": link.max_uses,
        "delivery": minted.handed_out_as,
        "mode": link.mode,
        "sha256": sha256,
    }


def purge_long_dead_links() -> None:
    """Run after minting: links dead for longer than ONCELINK_LINK_RETENTION go, and their events
    as old, in the background and at most once per ONCELINK_PURGE_INTERVAL in each worker."""
    background_purge().start_if_due()


def mint(
    storage_id: str, link_request: LinkRequest, creator: User | None, client: Client = Client()
) -> MintedLink:
    """Create the link, and have links long dead dropped if it is time."""
    minted = create_link(get_db(), storage_id, link_request, keyring(), creator, time.time(), client)
    purge_long_dead_links()
    return minted


@bp.post("/api/storage/<storage_id>/download-url")
@api_permission("storage:download")
def create_download_url(storage_id: str):
    link_request = parse_link_request(request.get_json(silent=True), link_limits())
    minted = mint(storage_id, link_request, g.user, request_client())
    digest = request_sha256(get_db(), minted.delivery, digest_worker())
    return jsonify(minted_json(minted, digest.sha256))


@bp.get("/api/links")
@api_permission("storage:download")
def links_index():
    """A page of links, newest first; `next` is the cursor of the page after it (null on the last)."""
    args = request.args
    query = parse_link_query(
        args.get("state"), args.get("q"), args.get("cursor"), None, args.get("limit") or str(API_PAGE_SIZE)
    )
    now = time.time()
    page = history_page(get_db(), g.user, query, now)
    links = [history_json(history, now) for history in page.histories]
    return jsonify(success=True, links=links, next=str(page.older) if page.older else None)


@bp.get("/api/links/<int:link_id>/events")
@api_permission("storage:download")
def link_events(link_id: int):
    db = get_db()
    visible_link(db, link_id, g.user)
    return jsonify(success=True, events=[event_json(event) for event in list_events(db, link_id)])


@bp.delete("/api/links/<int:link_id>")
@api_permission("storage:download")
def revoke(link_id: int):
    link = revoke_link(get_db(), link_id, g.user, time.time(), request_client())
    return jsonify(success=True, link=link_json(link, time.time()))


@links_cli.command("create")
@click.argument("storage_id")
@click.argument("file")
@click.option("--ttl", type=int, help="Seconds until the link expires (default ONCELINK_TOKEN_TTL).")
@click.option("--uses", type=int, default=1, show_default=True, help="How many complete downloads it allows.")
@click.option("--no-decrypt", is_flag=True, help="Serve an encrypted file as stored.")
def create_command(storage_id: str, file: str, ttl: int | None, uses: int, no_decrypt: bool) -> None:
    """Mint a link and print only its URL."""
    body = {"file": file, "uses": uses, "decrypt": not no_decrypt}
    if ttl is not None:
        body["ttl"] = ttl
    minted = mint(storage_id, parse_link_request(body, link_limits()), None)
    with current_app.test_request_context(base_url=cli_base_url()):
        click.echo(public_url(minted.token))


@links_cli.command("revoke")
@click.argument("link_id", type=int)
def revoke_command(link_id: int) -> None:
    """Revoke a link by its id."""
    revoke_link(get_db(), link_id, None, time.time())
    click.echo(f"Link {link_id} revoked.")


@links_cli.command("list")
def list_command() -> None:
    """Every link, newest first."""
    now = time.time()
    for link in list_links(get_db()):
        click.echo(
            f"{link.id}\t{link.state(now)}\t{link.uses}/{link.max_uses}\t{iso(link.expires_at)}\t"
            f"{link.storage_id}:{link.path}"
        )


@tokens_cli.command("purge")
def purge_command() -> None:
    """Delete every expired, revoked or used-up token now, with the events of links no longer kept."""
    count = purge_dead_links(get_db(), 0, time.time())
    click.echo(f"Purged {count} dead token(s).")
