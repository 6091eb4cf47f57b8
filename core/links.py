"""Minting and revoking download links (core/purging.py deletes them once long dead)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlite_utils import Database

from core import metrics
from core.accounts import User
from core.delivery import Delivery, describe_delivery
from core.tokens import hash_token, new_token
from db import links as queries
from db import write_transaction
from db.events import Client, EventKind, record_link_event
from db.links import Link
from encryption.keys import Keyring


class InvalidLinkRequest(ValueError):
    """A link request whose fields are missing, of the wrong type or out of bounds."""


class LinkNotFound(LookupError):
    """No such link, or not one this user may manage."""


@dataclass(frozen=True)
class LinkLimits:
    default_ttl: int
    max_ttl: int
    max_uses: int


@dataclass(frozen=True)
class LinkRequest:
    file: str
    decrypt: bool
    ttl: int
    uses: int


@dataclass(frozen=True)
class MintedLink:
    token: str
    link: Link
    delivery: Delivery
    replaced: Link | None = None  # the link "Regenerate" was asked to retire, as it is now

    @property
    def revoked_replaced(self) -> bool:
        """Regenerate revoked the link it replaces (in the same transaction, so at the same time)."""
        return self.replaced is not None and self.replaced.revoked_at == self.link.created_at

    @property
    def handed_out_as(self) -> str:
        """ "proxy", or "redirect": a presigned URL, single use only approximately."""
        return "redirect" if self.delivery.redirects else "proxy"


def _bounded_int(data: dict, key: str, default: int, maximum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidLinkRequest(f"'{key}' must be a whole number from 1 to {maximum}.")
    return value


def parse_link_request(data: object, limits: LinkLimits) -> LinkRequest:
    """Check a JSON body such as {"file": "db.sql.gz", "ttl": 300, "uses": 1, "decrypt": true}."""
    if not isinstance(data, dict):
        raise InvalidLinkRequest("Send a JSON object.")
    file = data.get("file")
    if not isinstance(file, str) or not file:
        raise InvalidLinkRequest("'file' is required: the path of the file in the storage.")
    decrypt = data.get("decrypt", True)
    if not isinstance(decrypt, bool):
        raise InvalidLinkRequest("'decrypt' must be true or false.")
    ttl = _bounded_int(data, "ttl", limits.default_ttl, limits.max_ttl)
    uses = _bounded_int(data, "uses", 1, limits.max_uses)
    return LinkRequest(file, decrypt, ttl, uses)


def create_link(
    db: Database,
    storage_id: str,
    request: LinkRequest,
    keyring: Keyring,
    creator: User | None,
    now: float,
    client: Client = Client(),
) -> MintedLink:
    """Mint a link to a file that exists now; the token is returned here and never stored.

    A file encrypted under a profile this server lacks is refused now, not at download time.
    """
    delivery = describe_delivery(db, storage_id, request.file, keyring, request.decrypt)
    return _mint(db, delivery, request, creator, now, client)


def _mint(
    db: Database, delivery: Delivery, request: LinkRequest, creator: User | None, now: float, client: Client
) -> MintedLink:
    """The link and its `created` event, in one transaction."""
    token = new_token()
    with write_transaction(db):
        link = queries.insert_link(
            db,
            token_hash=hash_token(token),
            storage_id=delivery.storage_id,
            path=delivery.entry.path,
            decrypt=request.decrypt,
            created_by=creator.id if creator else None,
            created_at=now,
            expires_at=now + request.ttl,
            max_uses=request.uses,
            mode=delivery.handed_out,
        )
        record_link_event(db, EventKind.CREATED, link, now, client, reason=creator.name if creator else "cli")
    metrics.link_minted(delivery.handed_out)
    return MintedLink(token, link, delivery)


def visible_link(db: Database, link_id: int, user: User | None) -> Link:
    """A link the user may see and manage: their own, or any for an admin (or the CLI, user=None)."""
    link = queries.get_link(db, link_id)
    if link is None or (user is not None and not user.can("admin") and link.created_by != user.id):
        raise LinkNotFound(f"No link {link_id}.")
    return link


def revoke_link(db: Database, link_id: int, by: User | None, now: float, client: Client = Client()) -> Link:
    link = visible_link(db, link_id, by)
    with write_transaction(db):
        if queries.revoke_link(db, link_id, now):
            record_link_event(db, EventKind.REVOKED, link, now, client, reason=by.name if by else "cli")
    return queries.get_link(db, link_id)


def describe_duration(seconds: int) -> str:
    """'5 minutes', '1 hour', '90 seconds': the largest unit that divides evenly."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


def revoke_if_unused(db: Database, link_id: int, by: User, now: float, client: Client = Client()) -> Link:
    """Regenerating a link: the one it replaces is revoked unless somebody already used it."""
    link = visible_link(db, link_id, by)
    if link.uses == 0 and link.state(now) == "active":
        return revoke_link(db, link_id, by, now, client)
    return link


def issue_link(
    db: Database,
    storage_id: str,
    request: LinkRequest,
    keyring: Keyring,
    user: User,
    now: float,
    client: Client = Client(),
    replaces: int | None = None,
) -> MintedLink:
    """Mint a link for the link dialog; `replaces` is the link that "Regenerate" retires, in the
    same transaction: either the old link is retired and the new one exists, or neither."""
    delivery = describe_delivery(db, storage_id, request.file, keyring, request.decrypt)
    with write_transaction(db):
        replaced = revoke_if_unused(db, replaces, user, now, client) if replaces is not None else None
        return dataclasses.replace(_mint(db, delivery, request, user, now, client), replaced=replaced)
