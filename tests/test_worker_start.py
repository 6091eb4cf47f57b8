"""What each gunicorn worker does once started, before its first request (gunicorn.conf.py)."""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT
from tests.helpers import wait_for


@pytest.fixture
def started(app):
    """gunicorn.conf.py's post_worker_init run for `app`, as gunicorn runs it in a fresh worker;
    the notification thread it starts stopped and the garbage collector's freeze undone after."""
    spec = importlib.util.spec_from_file_location("gunicorn_settings", ROOT / "gunicorn.conf.py")
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)
    settings.post_worker_init(SimpleNamespace(wsgi=app))
    yield app
    app.extensions["oncelink_notify"].stop(5)
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


@pytest.mark.live
def test_a_server_stopped_as_it_starts_stops_at_once(start_server):
    """SIGTERM as soon as the workers are forked, while they boot (a restart right after a start):
    each worker stops, so gunicorn exits then, not after graceful_timeout (made ten minutes here)
    with its workers killed. The signal used to be lost in a worker not yet holding its handlers."""
    server = start_server(settings={"GUNICORN_CMD_ARGS": "--graceful-timeout 600"})
    wait_for(lambda: len(server.worker_pids()) == 2, "the workers to be forked")
    os.kill(server.master_pid, signal.SIGTERM)
    wait_for(lambda: server.process.poll() is not None, "gunicorn to exit", timeout=60)
    assert server.process.returncode == 0
