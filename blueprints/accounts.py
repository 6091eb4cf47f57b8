"""Signing in and out, and the `users` and `apikeys` CLI."""

from __future__ import annotations

import sys
import time
from urllib.parse import urlsplit

import click
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.cli import AppGroup
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from core import accounts
from db import get_db
from db.storages import list_storages
from db.users import list_api_keys, list_users, revoke_api_key
from extensions import failure_limits, login_manager

bp = Blueprint("accounts", __name__)
users_cli = AppGroup("users", help="Manage users.")
apikeys_cli = AppGroup("apikeys", help="Manage API keys for scripts.")


class SignInForm(FlaskForm):
    name = StringField("User name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


@login_manager.user_loader
def load_user(session_id: str) -> accounts.User | None:
    return accounts.load_user(get_db(), session_id)


def safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme, no host, no '//' or backslash tricks."""
    if target and any(ord(c) < 32 or ord(c) == 127 for c in target):
        return url_for("accounts.home")  # CR/LF would split the Location header
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("accounts.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form, status = SignInForm(), 200
    if form.validate_on_submit():
        user = accounts.sign_in(
            get_db(),
            form.name.data,
            form.password.data,
            request.remote_addr,
            failure_limits().sign_in,
            time.time(),
        )
        if user is not None:
            login_user(user)
            return redirect(safe_next(request.args.get("next")), code=303)
        flash("Wrong user name or password.", "error")
        status = 401
    return render_template("accounts/login.html", form=form), status


@bp.post("/logout")
def logout():
    """Ends every session of the user; if that cannot be saved (503) this one stays, to try again."""
    if current_user.is_authenticated:
        accounts.sign_out(get_db(), current_user)
    logout_user()
    return redirect(url_for("accounts.login"), code=303)


@bp.get("/")
@login_required
def home():
    return render_template("home.html", storages=list_storages(get_db()), user=current_user)


@users_cli.command("create")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(sorted(accounts.ROLE_PERMISSIONS)), default="operator", show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user_command(name: str, role: str, password_stdin: bool) -> None:
    """Create a user; the password is prompted for unless --password-stdin."""
    try:
        user = accounts.create_user(get_db(), name, read_password(password_stdin), role, time.time())
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"User {user.name!r} created with role {user.role}.")


@users_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password_command(name: str, password_stdin: bool) -> None:
    """Give a user a new password and end all their sessions; prompted for unless --password-stdin."""
    try:
        user = accounts.set_password(get_db(), name, read_password(password_stdin))
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Password of {user.name!r} changed; their sessions have ended.")


def read_password(from_stdin: bool) -> str:
    """One line of standard input (for scripts), or a hidden prompt typed twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_cli.command("list")
def list_users_command() -> None:
    for user in list_users(get_db()):
        click.echo(f"{user.id}\t{user.name}\t{user.role}" + ("\tdisabled" if user.disabled else ""))


@apikeys_cli.command("create")
@click.option("--user", "user_name", required=True, help="The user the key acts as.")
@click.option("--expires-days", type=int, help="Days until the key stops working (default: never).")
def create_key_command(user_name: str, expires_days: int | None) -> None:
    """Create a key and print only the key; it is not shown again."""
    try:
        key, _ = accounts.create_api_key(get_db(), user_name, time.time(), expires_days)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(key)


@apikeys_cli.command("list")
def list_keys_command() -> None:
    for key in list_api_keys(get_db()):
        state = "revoked" if key.revoked_at else "active"
        click.echo(f"{key.id}\tuser {key.user_id}\t{key.prefix}…\t{state}")


@apikeys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_key_command(key_id: int) -> None:
    if not revoke_api_key(get_db(), key_id, time.time()):
        raise click.ClickException(f"No active key {key_id}.")
    click.echo(f"Key {key_id} revoked.")
