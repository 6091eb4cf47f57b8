"""Admin: notification targets (signed JSON webhooks) and what was sent to them; the `notify` CLI.

Plain forms, as on the API keys page: a secret generated for a new target is shown in the answer
to its form, once. A target's URL and secret are write-only: never put back into a page or an
answer, and an empty field on an edit keeps the stored one.
"""

from __future__ import annotations

import os
import time

import click
from flask import Blueprint, flash, render_template, request, url_for
from flask.cli import AppGroup
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from blueprints.pages import hx_redirect, page_permission
from core.notify_targets import (
    SavedTarget,
    TargetConfigError,
    TargetSettings,
    UnknownTarget,
    add_target,
    existing_target,
    remove_target,
    send_test,
    update_target,
)
from core.notifying import deliver_due
from db import get_db
from db.notifications import SUBSCRIBABLE, last_outcomes, list_targets, recent_deliveries
from extensions import keyring, notification_sender

bp = Blueprint("admin_notify", __name__, url_prefix="/admin/notifications")
notify_cli = AppGroup("notify", help="Webhooks told when links are used: add, list, test, remove, log.")

NOT_ECHOED = {"csrf_token", "url", "secret"}
DELIVERIES_SHOWN = 50
NOTICE_HELP = {
    "completed": "a download delivered the whole file",
    "aborted": "a download stopped short",
    "rejected": "someone tried a used, expired or revoked link",
    "addresses": "a link was fetched from more than one address",
}


def settings_from(form: MultiDict) -> TargetSettings:
    return TargetSettings(
        name=form.get("name", ""),
        url=form.get("url", "").strip() or None,
        secret=form.get("secret", "").strip() or None,
        events=tuple(form.getlist("events")),
        enabled=enabled_in(form),
    )


def enabled_in(form: MultiDict) -> bool:
    """The edit form sends a hidden 0 before the checkbox's 1; the add form sends neither."""
    return "1" in form.getlist("enabled") if "enabled" in form else True


def typed_values(form: MultiDict) -> dict:
    """What the person typed, to show again with an error; never the URL nor the secret."""
    values = {key: value for key, value in form.items() if key not in NOT_ECHOED}
    return {**values, "events": form.getlist("events")}


def index_page(status: int = 200, values: dict | None = None, error: str | None = None, saved=None):
    db = get_db()
    context = {
        "targets": list_targets(db),
        "outcomes": last_outcomes(db),
        "deliveries": recent_deliveries(db, DELIVERIES_SHOWN),
        "notices": NOTICE_HELP,
        "values": values or {"events": list(SUBSCRIBABLE)},
        "error": error,
        "saved": saved,
    }
    return render_template("admin/notifications.html", **context), status, {"Cache-Control": "no-store"}


@bp.get("")
@page_permission("admin")
def index():
    return index_page()


@bp.post("")
@page_permission("admin")
def create():
    """A generated secret is shown in this answer only, as a new API key is."""
    form = request.form
    target_id = form.get("target_id", "").strip()
    try:
        saved = add_target(get_db(), keyring(), target_id, settings_from(form), time.time())
    except TargetConfigError as exc:
        return index_page(400, typed_values(form), str(exc))
    if saved.new_secret:
        return index_page(201, saved=saved)
    flash(f"Target {target_id} added. Send it a test below.", "ok")
    return hx_redirect(url_for("admin_notify.index"))


def edit_page(record, status: int = 200, values: dict | None = None, error: str | None = None):
    values = values or {"name": record.name, "events": list(record.events), "enabled": record.enabled}
    page = render_template(
        "admin/notify_target.html", target=record, values=values, error=error, notices=NOTICE_HELP
    )
    return page, status


@bp.get("/<target_id>")
@page_permission("admin")
def edit(target_id: str):
    return edit_page(existing_target(get_db(), target_id))


@bp.post("/<target_id>")
@page_permission("admin")
def update(target_id: str):
    record, form = existing_target(get_db(), target_id), request.form
    try:
        update_target(get_db(), keyring(), target_id, settings_from(form), time.time())
    except TargetConfigError as exc:
        values = {**typed_values(form), "enabled": enabled_in(form)}
        return edit_page(record, 400, values, str(exc))
    flash(f"Target {target_id} saved.", "ok")
    return hx_redirect(url_for("admin_notify.index"))


@bp.post("/<target_id>/test")
@page_permission("admin")
def test(target_id: str):
    send_test(get_db(), target_id, current_user.name, time.time())
    flash(f"A test notification to {target_id} is queued; its outcome shows below in a moment.", "ok")
    return hx_redirect(url_for("admin_notify.index"))


@bp.post("/<target_id>/remove")
@page_permission("admin")
def remove(target_id: str):
    """The page asks first (hx-confirm, in the app's own dialog)."""
    remove_target(get_db(), target_id)
    flash(f"Target {target_id} removed, with its notifications.", "ok")
    return hx_redirect(url_for("admin_notify.index"))


def echo_saved(saved: SavedTarget) -> None:
    record = saved.record
    click.echo(f"Target {record.id!r} posts to {record.url_hint}/… on: {', '.join(record.events)}.")
    if saved.new_secret:
        click.echo(
            f"Signing secret (shown once; the receiver checks webhook-signature with it): {saved.new_secret}"
        )


@notify_cli.command("add")
@click.argument("target_id", metavar="ID")
@click.option("--name", default="", help="Display name (default: the id).")
@click.option(
    "--events",
    default=",".join(SUBSCRIBABLE),
    show_default=True,
    help="What to be told of, comma-separated.",
)
def add_command(target_id: str, name: str, events: str) -> None:
    """Add a webhook as target ID. The URL comes from ONCELINK_NOTIFY_URL or a prompt (it may hold a
    token: never on the command line); the secret from ONCELINK_NOTIFY_SECRET, else one is generated."""
    url = os.environ.get("ONCELINK_NOTIFY_URL") or click.prompt("Webhook URL", hide_input=True)
    secret = os.environ.get("ONCELINK_NOTIFY_SECRET") or None
    chosen = tuple(event.strip() for event in events.split(",") if event.strip())
    settings = TargetSettings(name, url, secret, chosen)
    try:
        echo_saved(add_target(get_db(), keyring(), target_id, settings, time.time()))
    except TargetConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@notify_cli.command("list")
def list_command() -> None:
    """The targets: id, state, where (scheme and host only), events, name."""
    for record in list_targets(get_db()):
        state = "enabled" if record.enabled else "disabled"
        click.echo(f"{record.id}\t{state}\t{record.url_hint}\t{','.join(record.events)}\t{record.name}")


@notify_cli.command("test")
@click.argument("target_id", metavar="ID")
def test_command(target_id: str) -> None:
    """Queue a test notification for ID and send what is due now; say how it went."""
    try:
        send_test(get_db(), target_id, "cli", time.time())
    except UnknownTarget as exc:
        raise click.ClickException(str(exc)) from exc
    sender = notification_sender()
    deliver_due(get_db(), keyring(), sender.settings, sender.claimer)
    delivery = recent_deliveries(get_db(), 1, target_id)[0]
    if delivery.state != "sent":
        raise click.ClickException(f"Not delivered ({delivery.state}): {delivery.last_error}")
    click.echo(f"Delivered: the receiver answered {delivery.last_status}.")


@notify_cli.command("send")
def send_command() -> None:
    """Send the notifications due now (gunicorn's workers do it by themselves; `flask run` does not)."""
    sender = notification_sender()
    click.echo(
        f"{deliver_due(get_db(), keyring(), sender.settings, sender.claimer)} notification(s) handled."
    )


@notify_cli.command("log")
@click.option("--limit", default=20, show_default=True)
def log_command(limit: int) -> None:
    """The newest notifications: id, state, attempts, target, notice, link, last answer or error."""
    for item in recent_deliveries(get_db(), limit):
        outcome = item.last_error or (f"answered {item.last_status}" if item.last_status else "")
        click.echo(
            f"{item.message_id}\t{item.state}\t{item.attempts}\t{item.target_id}\t{item.notice}"
            f"\t{item.link_id or ''}\t{outcome}"
        )


@notify_cli.command("remove")
@click.argument("target_id", metavar="ID")
def remove_command(target_id: str) -> None:
    """Remove target ID and what is queued or kept for it."""
    try:
        remove_target(get_db(), target_id)
    except UnknownTarget as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Target {target_id!r} removed.")
