"""What each gunicorn worker does once started, before its first request (gunicorn.conf.py)."""

from __future__ import annotations

import gc
import importlib.util
from types import SimpleNamespace

import pytest

import db as database
from db import postgres
from tests.conftest import ROOT


@pytest.fixture
def started(app, monkeypatch):
    """gunicorn.conf.py's post_worker_init run for `app`, as gunicorn runs it in a fresh worker;
    the threads it starts stopped, the garbage collector's freeze undone and the connections this
    process opens checkpointing again, after."""
    monkeypatch.setattr(database, "AUTOCHECKPOINT_PAGES", database.AUTOCHECKPOINT_PAGES)
    spec = importlib.util.spec_from_file_location("gunicorn_settings", ROOT / "gunicorn.conf.py")
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)
    settings.post_worker_init(SimpleNamespace(wsgi=app))
    yield app
    app.extensions["oncelink_notify"].stop(5)
    app.extensions["oncelink_checkpoints"].stop(5)
    gc.unfreeze()


def compiled(app) -> set[str]:
    return {name for _, name in app.jinja_env.cache}


def test_a_fresh_app_has_compiled_no_template(app):
    assert not compiled(app) & set(app.jinja_env.list_templates())


def test_a_started_worker_has_compiled_every_page_template_and_frozen_what_it_loaded(started):
    pages = set(started.jinja_env.list_templates(extensions=["html"]))
    assert {"explorer/page.html", "explorer/_listing.html", "public/landing.html"} <= pages
    assert pages <= compiled(started)
    assert gc.get_freeze_count() > 0


def test_a_started_worker_checkpoints_the_sqlite_log_itself(started):
    sqlite = not postgres.is_postgres(started.config["DATABASE"])
    pages = 0 if sqlite else 1000  # PostgreSQL has no such log
    assert pages == database.AUTOCHECKPOINT_PAGES
    with database.pooled(started.config["DATABASE"]) as db:
        if sqlite:
            assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
