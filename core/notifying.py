"""Sending the queued notifications: a thread in each worker, never on a download's path.

The queue is a table (db/notifications.py): events add rows in their own transaction, and each
worker's sender takes due rows one at a time (one UPDATE decides who), posts them outside any
transaction, then records the outcome. A failure is tried again later, each wait three times
the one before, until the attempts run out; a receiver's answer of 4xx (but 408, 425 and 429)
fails at once. A worker that dies mid-send leaves its row to another sender once its claim
lapses, so a notification is sent at least once; the receiver drops repeats by `webhook-id`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import db as database
from core.notify_targets import open_target
from core.webhooks import WebhookFailed, WebhookMessage, post_webhook
from db import notifications as queries
from db.notifications import Delivery, DeliveryState
from encryption.keys import Keyring, ProfileError

log = logging.getLogger(__name__)

BACKOFF_FACTOR = 3
LONGEST_WAIT_SECONDS = 3600
CLAIM_MARGIN_SECONDS = 30  # a claim outlives the request's timeout by this much


@dataclass(frozen=True)
class NotifySettings:
    """ONCELINK_NOTIFY_* settings, read once at start-up."""

    timeout: float = 10.0  # seconds a receiver has to answer
    retry_seconds: float = 10.0  # the wait before the first retry
    attempts: int = 8  # tries in all: about three hours with the defaults
    poll_seconds: float = 2.0  # how often an idle sender looks for due notifications

    @classmethod
    def from_config(cls, config: Mapping) -> NotifySettings:
        return cls(
            timeout=float(config["NOTIFY_TIMEOUT"]),
            retry_seconds=float(config["NOTIFY_RETRY_SECONDS"]),
            attempts=int(config["NOTIFY_ATTEMPTS"]),
            poll_seconds=float(config["NOTIFY_POLL_SECONDS"]),
        )

    def retry_delay(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed try."""
        return min(self.retry_seconds * BACKOFF_FACTOR ** (attempts - 1), LONGEST_WAIT_SECONDS)


def _post(db, keyring: Keyring, delivery: Delivery, settings: NotifySettings) -> int:
    target = queries.get_target(db, delivery.target_id)
    if target is None:  # removed meanwhile (its rows go with it)
        raise WebhookFailed("the target was removed", retryable=False)
    try:
        url, secret = open_target(keyring, target)
    except ProfileError:
        raise WebhookFailed(
            "its URL or secret cannot be opened with this master key", retryable=False
        ) from None
    message = WebhookMessage(delivery.message_id, int(time.time()), delivery.payload.encode())
    return post_webhook(url, secret, message, settings.timeout)


def _settle_failure(
    db, delivery: Delivery, failure: WebhookFailed, settings: NotifySettings
) -> DeliveryState:
    now = time.time()
    last = not failure.retryable or delivery.attempts >= settings.attempts
    state = DeliveryState.FAILED if last else DeliveryState.PENDING
    retry_at = None if last else now + settings.retry_delay(delivery.attempts)
    queries.settle_delivery(db, delivery, state, now, failure.status, failure.reason, retry_at)
    log.warning(
        "Notification %s to target %s, attempt %d: %s%s",
        delivery.message_id,
        delivery.target_id,
        delivery.attempts,
        failure.reason,
        "; given up" if last else "; tried again later",
    )
    return state


def deliver_next(db, keyring: Keyring, settings: NotifySettings, claimer: str) -> Delivery | None:
    """Claim the oldest due notification, send it and record how it went; None when none is due."""
    now = time.time()
    delivery = queries.claim_due(db, claimer, now, now + settings.timeout + CLAIM_MARGIN_SECONDS)
    if delivery is None:
        return None
    try:
        status = _post(db, keyring, delivery, settings)
    except WebhookFailed as failure:
        _settle_failure(db, delivery, failure, settings)
        return delivery
    queries.settle_delivery(db, delivery, DeliveryState.SENT, time.time(), status)
    return delivery


def deliver_due(db, keyring: Keyring, settings: NotifySettings, claimer: str, limit: int = 1000) -> int:
    """Send what is due now, `limit` at most (`notify send`, and each round of a sender)."""
    count = 0
    while count < limit and deliver_next(db, keyring, settings, claimer) is not None:
        count += 1
    return count


class NotificationSender:
    """This worker's sender: a thread that sends what is due, then looks again every few seconds
    (a read, no write lock). Started by gunicorn's post_worker_init hook, not by create_app: a
    CLI command or a test's app must not start one."""

    def __init__(self, database_path: str, keyring: Keyring, settings: NotifySettings):
        self.database_path = database_path
        self.keyring = keyring
        self.settings = settings
        self.claimer = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except (*database.DatabaseError, OSError) as exc:
                log.warning("Sending notifications paused, tried again shortly: %s", exc)
            self._stop.wait(self.settings.poll_seconds)

    def _round(self) -> None:
        with database.pooled(self.database_path) as db:
            if queries.next_due(db, time.time()):
                deliver_due(db, self.keyring, self.settings, self.claimer)
