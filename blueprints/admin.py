"""Admin pages: users, API keys (shown once) and encryption profiles (create, import from DBackup,
export the recovery kit).

Plain forms with a redirect after each change (no htmx needed), all behind the `admin` permission.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, flash, render_template, request, url_for
from flask_login import current_user, login_user

from blueprints.pages import hx_redirect, page_permission
from core import accounts
from db import get_db
from db.users import list_api_keys, list_users, revoke_api_key
from encryption.keys import dbackup_master_key, list_profiles, recovery_kit
from extensions import keyring

bp = Blueprint("admin", __name__, url_prefix="/admin")


def users_page():
    return render_template(
        "admin/users.html", users=list_users(get_db()), roles=sorted(accounts.ROLE_PERMISSIONS)
    )


@bp.get("/users")
@page_permission("admin")
def users():
    return users_page()


@bp.post("/users")
@page_permission("admin")
def create_user():
    form = request.form
    user = accounts.create_user(
        get_db(), form.get("name", ""), form.get("password", ""), form.get("role", ""), time.time()
    )
    flash(f"User {user.name} created ({user.role}).", "ok")
    return hx_redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>")
@page_permission("admin")
def change_user(user_id: int):
    form = request.form
    user = accounts.change_user(
        get_db(), user_id, form.get("role", ""), form.get("disabled") == "1", current_user
    )
    flash(f"{user.name}: {user.role}" + (", disabled." if user.disabled else "."), "ok")
    return hx_redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/password")
@page_permission("admin")
def reset_password(user_id: int):
    """Ends the user's sessions; an admin who set their own password stays signed in here alone."""
    user = accounts.reset_password(get_db(), user_id, request.form.get("password", ""))
    if user.id == current_user.id:
        login_user(user)  # a cookie at the new epoch for this browser
    flash("Password changed.", "ok")
    return hx_redirect(url_for("admin.users"))


def keys_page(new_key: str | None = None):
    db = get_db()
    names = {user.id: user.name for user in list_users(db)}
    return render_template(
        "admin/keys.html", keys=list_api_keys(db), names=names, new_key=new_key, now=time.time()
    )


@bp.get("/keys")
@page_permission("admin")
def keys():
    return keys_page()


@bp.post("/keys")
@page_permission("admin")
def create_key():
    """The key is shown in this answer only: it is stored as a hash, so no redirect could show it."""
    days = request.form.get("expires_days", "").strip()
    if days and not days.isdigit():
        raise accounts.AccountError("Days until expiry must be a whole number.")
    key, _ = accounts.create_api_key(
        get_db(), request.form.get("user", ""), time.time(), int(days) if days else None
    )
    response = keys_page(new_key=key)
    return response, 201, {"Cache-Control": "no-store"}


@bp.post("/keys/<int:key_id>/revoke")
@page_permission("admin")
def revoke_key(key_id: int):
    if revoke_api_key(get_db(), key_id, time.time()):
        flash(f"Key {key_id} revoked.", "ok")
    return hx_redirect(url_for("admin.keys"))


@bp.get("/profiles")
@page_permission("admin")
def profiles():
    return render_template("admin/profiles.html", profiles=list_profiles(get_db()))


@bp.post("/profiles")
@page_permission("admin")
def create_profile():
    profile = keyring().create(get_db(), request.form.get("name", "").strip(), time.time())
    flash(f"Profile {profile.name} created. Export its recovery kit now and keep it offline.", "ok")
    return hx_redirect(url_for("admin.profiles"))


@bp.post("/profiles/dbackup")
@page_permission("admin")
def import_dbackup_profile():
    """The key arrives in a password field and goes to the keyring alone: no answer, message or
    log line holds it, and the database holds it wrapped."""
    name, dbackup_id = request.form.get("name", "").strip(), request.form.get("dbackup_id", "").strip()
    profile = keyring().import_dbackup(get_db(), name, dbackup_id, request.form.get("key", ""), time.time())
    flash(f"Profile {profile.name} imported for DBackup profile {profile.dbackup_id}.", "ok")
    return hx_redirect(url_for("admin.profiles"))


@bp.post("/profiles/<name>/kit")
@page_permission("admin")
def export_kit(name: str) -> Response:
    """A POST (CSRF-checked, never cached or prefetched) that downloads the kit as a text file: for a
    profile imported from DBackup, the master.key of DBackup's own kit, which its tools read."""
    profile, key = keyring().by_name(get_db(), name)
    if profile.dbackup_id:
        kit, filename = dbackup_master_key(key), "master.key"
    else:
        kit, filename = recovery_kit(profile, key), f"oncelink-kit-{profile.name}.txt"
    response = Response(kit, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
