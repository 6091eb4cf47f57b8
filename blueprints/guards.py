"""Authentication and permission checks shared by the JSON API views."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps

from flask import Response, g, jsonify, request
from flask_login import current_user

from core.accounts import User, user_for_api_key
from db import get_db
from db.events import Client
from extensions import csrf

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_client() -> Client:
    return Client(request.remote_addr, request.user_agent.string or None)


def api_error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(success=False, error=message), status


def _bearer_user(header: str) -> User | None:
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return user_for_api_key(get_db(), key.strip(), time.time())


def _api_user() -> User | None:
    """The caller: by API key when an Authorization header is sent, else by session (with CSRF)."""
    header = request.headers.get("Authorization")
    if header is not None:
        return _bearer_user(header)
    if not current_user.is_authenticated:
        return None
    if request.method not in SAFE_METHODS:
        csrf.protect()  # a browser session must prove the request came from our pages
    return current_user._get_current_object()


def api_permission(permission: str) -> Callable:
    """Require a user with `permission`; sets g.user."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            user = _api_user()
            if user is None:
                return api_error(401, "Sign in, or send an API key as 'Authorization: Bearer KEY'.")
            if not user.can(permission):
                return api_error(403, f"Your role may not do this (it needs {permission}).")
            g.user = user
            return view(*args, **kwargs)

        return guarded

    return decorator
