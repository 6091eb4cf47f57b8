"""Flask extensions, created unbound here and bound to the app in create_app(); and accessors for
the app's own services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

if TYPE_CHECKING:
    from core.attempts import FailureLimits
    from core.digests import DigestWorker
    from core.downloads import Serving
    from core.health import HealthMonitor
    from core.notifying import NotificationSender
    from core.purging import BackgroundPurge
    from encryption.keys import Keyring

csrf = CSRFProtect()
login_manager = LoginManager()


def keyring() -> Keyring:
    """The app's keyring: profile keys and storage secrets, opened with the master key."""
    return current_app.extensions["oncelink_keyring"]


def serving() -> Serving:
    """What the public download needs besides the database."""
    return current_app.extensions["oncelink_serving"]


def failure_limits() -> FailureLimits:
    """How many failed public downloads and sign-ins one address may make."""
    return current_app.extensions["oncelink_failure_limits"]


def digest_worker() -> DigestWorker:
    """Computes the SHA-256 of files in the background, for the link dialog and the landing page."""
    return current_app.extensions["oncelink_digests"]


def background_purge() -> BackgroundPurge:
    """The purge of long-dead links that a mint starts when one is due."""
    return current_app.extensions["oncelink_purge"]


def notification_sender() -> NotificationSender:
    """This worker's sender of queued notifications (its settings, its keyring)."""
    return current_app.extensions["oncelink_notify"]


def health_monitor() -> HealthMonitor:
    """This process's health checks and their latest answer."""
    return current_app.extensions["oncelink_health"]
