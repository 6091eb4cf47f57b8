"""Signed JSON webhooks, as the Standard Webhooks specification has them (standardwebhooks.com).

Each request carries `webhook-id` (the same on every retry, for the receiver to drop repeats),
`webhook-timestamp` (Unix seconds, for it to refuse replays) and `webhook-signature`:
`v1,` and the base64 HMAC-SHA256 of `ID.TIMESTAMP.BODY` under the target's secret. A secret
written `whsec_BASE64` is the key those bytes decode to (the spec's form, which its libraries
read); any other is taken as its UTF-8 bytes.

No redirect is followed (a webhook's address is configured once, and its body should not travel
on), and no message says the URL: it may hold a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105 (the spec's marker, not a secret)
SECRET_BYTES = 32
USER_AGENT = "Oncelink-Webhook/1"
ANSWER_READ_LIMIT = 4096  # what is read of an answer's body before the connection is closed
RETRYABLE_STATUSES = frozenset({408, 425, 429})
ADDRESS = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


class WebhookFailed(Exception):
    """The receiver did not take the notification; `retryable` unless it refused it for good."""

    def __init__(self, reason: str, status: int | None = None, retryable: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class WebhookMessage:
    message_id: str
    timestamp: int
    body: bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass  # not the spec's form after all: the text is the key
    return secret.encode()


def signature(secret: str, message: WebhookMessage) -> str:
    signed = f"{message.message_id}.{message.timestamp}.".encode() + message.body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:
        return None  # the 3xx is raised as an HTTPError


_opener = urllib.request.build_opener(_NoRedirect)


def _refusal(status: int, reason: str) -> WebhookFailed:
    if 300 <= status < 400:
        return WebhookFailed(f"answered {status} {reason}: webhooks are not redirected", status, False)
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    return WebhookFailed(f"answered {status} {reason}", status, retryable)


def _connection_failure(error: BaseException, timeout: float) -> WebhookFailed:
    """What went wrong, in words of our own: a library's message may quote the URL."""
    if isinstance(error, str):  # urllib's own reasons
        return WebhookFailed(f"could not connect: {ADDRESS.sub('[address]', error)}")
    if isinstance(error, TimeoutError | socket.timeout):
        return WebhookFailed(f"no answer within {timeout:g} s")
    if isinstance(error, socket.gaierror):
        return WebhookFailed("the host name was not found")
    if isinstance(error, ssl.SSLError):
        return WebhookFailed(f"TLS failed: {ADDRESS.sub('[address]', error.reason or 'error')}")
    if isinstance(error, OSError) and error.strerror:
        return WebhookFailed(f"could not connect: {error.strerror.lower()}")
    return WebhookFailed(f"could not connect: {type(error).__name__}")


def post_webhook(url: str, secret: str, message: WebhookMessage, timeout: float) -> int:
    """POST the message, signed; the status of a 2xx answer, else WebhookFailed."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message.message_id,
        "webhook-timestamp": str(message.timestamp),
        "webhook-signature": signature(secret, message),
    }
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookFailed("only http:// and https:// addresses are posted to", None, False)
    request = urllib.request.Request(url, data=message.body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as answer:
            answer.read(ANSWER_READ_LIMIT)
            return answer.status
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _refusal(exc.code, exc.reason) from None
    except urllib.error.URLError as exc:
        raise _connection_failure(exc.reason, timeout) from None
    except (OSError, ValueError) as exc:  # a timeout while reading; an answer that is not HTTP
        raise _connection_failure(exc, timeout) from None
