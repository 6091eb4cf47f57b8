"""Admin: storages. List them with a "Test connection" button, add and edit local folders and S3 buckets,
remove them (their working links are revoked).

The forms are fragments that htmx swaps in place, so a refused form comes back with its message and
what was typed. The S3 secret is write-only: it is never put back into a page, and an empty secret
field keeps the one stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from blueprints.guards import request_client
from blueprints.pages import hx_redirect, page_permission, render_htmx
from blueprints.remote_forms import SECRET_FIELDS, sftp_settings_from, webdav_settings_from
from core.remote_storages import (
    add_sftp_storage,
    add_webdav_storage,
    trust_host_key,
    update_sftp_storage,
    update_webdav_storage,
)
from core.storages import (
    LocalPlacement,
    StorageConfigError,
    add_local_storage,
    add_s3_storage,
    check_storage,
    describe_storage,
    remove_storage,
    update_local_storage,
    update_s3_storage,
)
from db import get_db
from db.links import count_working_links
from db.storages import StorageRecord, get_storage, list_storages
from encryption.keys import ProfileError
from extensions import keyring
from storage.base import StorageError, UnknownStorage
from storage.s3 import S3Settings
from storage.sftp_connect import HostKeyUnknown

bp = Blueprint("admin_storages", __name__, url_prefix="/admin/storages")

KINDS = ("local", "s3", "sftp", "webdav")
NOT_ECHOED = {"csrf_token", "secret_access_key"} | SECRET_FIELDS


@dataclass
class StorageForm:
    """One add or edit form: the values shown (never the secret) and the error to show above them."""

    kind: str
    values: dict = field(default_factory=dict)
    storage_id: str | None = None  # the storage edited; None when adding
    has_secret: bool = False
    error: str | None = None

    @property
    def template(self) -> str:
        return f"admin/_{self.kind}_form.html"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    storage_id: str = ""
    fingerprint: str | None = None  # an SFTP host key shown for the admin to confirm


def typed_values(form: MultiDict) -> dict:
    """What the person typed, to show again with an error; never the secret."""
    return {key: value for key, value in form.items() if key not in NOT_ECHOED}


def s3_settings_from(form: MultiDict) -> S3Settings:
    def text(name: str) -> str:
        return form.get(name, "").strip()

    return S3Settings(
        bucket=text("bucket"),
        prefix=text("prefix"),
        region=text("region") or None,
        endpoint_url=text("endpoint_url") or None,
        path_style=form.get("path_style") == "1",
        redirect=form.get("redirect") == "1",
        access_key_id=text("access_key_id") or None,
        secret_access_key=form.get("secret_access_key") or None,
    )


def edit_form(record: StorageRecord) -> StorageForm:
    values = {key: value for key, value in record.config.items() if key not in NOT_ECHOED}
    has_secret = any(record.config.get(name) for name in NOT_ECHOED)
    return StorageForm(record.kind, {**values, "name": record.name}, record.id, has_secret)


def data_dir() -> Path:
    """Never served as a storage: it holds the master key and the database."""
    return Path(current_app.config["DATA_DIR"])


def placement_from(form) -> LocalPlacement:
    """Where the local folder may be: outside the data dir, and on a shared mount for several hosts."""
    return LocalPlacement(data_dir(), current_app.config["SEVERAL_HOSTS"], form.get("shared") == "1")


def index_context(form: StorageForm | None = None, checks: dict | None = None) -> dict:
    forms = {kind: StorageForm(kind) for kind in KINDS}
    if form is not None:
        forms[form.kind] = form
    rows = [(record, describe_storage(record)) for record in list_storages(get_db())]
    working = count_working_links(get_db(), time.time())
    return {"storages": rows, "working": working, "forms": forms, "form": form, "checks": checks or {}}


@bp.get("")
@page_permission("admin")
def index():
    return render_template("admin/storages.html", **index_context())


@bp.post("")
@page_permission("admin")
def create():
    kind = request.form.get("kind", "")
    if kind not in KINDS:
        abort(400, "Choose a local folder, an S3 bucket, an SFTP or a WebDAV server.")
    form = request.form
    storage_id, name = form.get("storage_id", "").strip(), form.get("name", "")
    try:
        if kind == "local":
            add_local_storage(get_db(), storage_id, form.get("path", ""), name, placement_from(form))
        elif kind == "sftp":
            add_sftp_storage(get_db(), keyring(), storage_id, sftp_settings_from(form, request.files), name)
        elif kind == "webdav":
            add_webdav_storage(get_db(), keyring(), storage_id, webdav_settings_from(form), name)
        else:
            add_s3_storage(get_db(), keyring(), storage_id, s3_settings_from(form), name)
    except StorageConfigError as exc:
        refused = StorageForm(kind, typed_values(form), error=str(exc))
        return render_htmx("admin/storages.html", refused.template, 400, **index_context(refused))
    flash(f"Storage {storage_id} added. Test its connection below.", "ok")
    return hx_redirect(url_for("admin_storages.index"))


def existing(storage_id: str) -> StorageRecord:
    record = get_storage(get_db(), storage_id)
    if record is None:
        raise UnknownStorage(f"No storage {storage_id!r}.")
    return record


@bp.get("/<storage_id>")
@page_permission("admin")
def edit(storage_id: str):
    return render_template("admin/storage.html", form=edit_form(existing(storage_id)))


@bp.post("/<storage_id>")
@page_permission("admin")
def update(storage_id: str):
    record, form = existing(storage_id), request.form
    try:
        if record.kind == "local":
            path, name = form.get("path", ""), form.get("name")
            update_local_storage(get_db(), storage_id, path, name, placement_from(form))
        elif record.kind == "sftp":
            settings = sftp_settings_from(form, request.files)
            update_sftp_storage(get_db(), keyring(), storage_id, settings, form.get("name"))
        elif record.kind == "webdav":
            update_webdav_storage(
                get_db(), keyring(), storage_id, webdav_settings_from(form), form.get("name")
            )
        else:
            update_s3_storage(get_db(), keyring(), storage_id, s3_settings_from(form), form.get("name"))
    except StorageConfigError as exc:
        has_secret = edit_form(record).has_secret
        refused = StorageForm(record.kind, typed_values(form), storage_id, has_secret, str(exc))
        return render_htmx("admin/storage.html", refused.template, 400, form=refused)
    flash(f"Storage {storage_id} saved.", "ok")
    return hx_redirect(url_for("admin_storages.index"))


@bp.post("/<storage_id>/check")
@page_permission("admin")
def check(storage_id: str):
    """htmx swaps the result in beside the button; without JavaScript the page comes back with it."""
    existing(storage_id)
    try:
        result = CheckResult(True, check_storage(get_db(), storage_id, keyring()), storage_id)
    except HostKeyUnknown as exc:
        result = CheckResult(False, str(exc), storage_id, exc.fingerprint)
    except (StorageError, ProfileError) as exc:
        result = CheckResult(False, str(exc), storage_id)
    return render_htmx(
        "admin/storages.html",
        "admin/_check.html",
        check=result,
        storage_id=storage_id,
        **index_context(checks={storage_id: result}),
    )


@bp.post("/<storage_id>/remove")
@page_permission("admin")
def remove(storage_id: str):
    """The page asks first (hx-confirm, in the app's own dialog); the files are never touched."""
    user = current_user._get_current_object()
    removed = remove_storage(get_db(), storage_id, user.name, time.time(), request_client())
    count = removed.revoked
    revoked = (
        f"{count} working link{'s' if count != 1 else ''} revoked" if count else "no working link to revoke"
    )
    flash(f"Storage {storage_id} removed ({revoked}; the history and the files are kept).", "ok")
    return hx_redirect(url_for("admin_storages.index"))


@bp.post("/<storage_id>/host-key")
@page_permission("admin")
def confirm_host_key(storage_id: str):
    """Trust the fingerprint the admin saw in Test connection (sent back by its form), not whatever
    the server shows at this moment."""
    existing(storage_id)
    try:
        trust_host_key(get_db(), storage_id, request.form.get("fingerprint", ""))
    except StorageConfigError as exc:
        abort(400, str(exc))
    flash(f"Host key of {storage_id} confirmed: connections to any other key are refused.", "ok")
    return hx_redirect(url_for("admin_storages.index"))
