"""Minting, revoking and purging download links."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from core.accounts import User
from core.downloads import decrypted_name
from core.explorer import ListedEntry, describe_file
from core.tokens import hash_token, new_token
from db import links as queries
from db.events import Client, delete_orphan_events, record_link_event
from db.links import Link
from encryption.format import layout_of
from encryption.keys import Keyring
from storage import load_storage


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
    delivery: str = "proxy"  # or "redirect": a presigned URL, single use only approximately


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
    """Mint a link to a file that exists now; the token is returned here and never stored."""
    storage = load_storage(db, storage_id, keyring)
    entry = storage.stat(request.file)
    layout = None
    if request.decrypt:
        with storage.open(entry.path, entry.size) as source:
            layout = layout_of(source, entry.size)
        if layout is not None:
            keyring.key_for(db, layout.header.key_id)  # no profile: refuse now, not a broken download later
    token = new_token()
    link = queries.insert_link(
        db,
        token_hash=hash_token(token),
        storage_id=storage_id,
        path=entry.path,
        decrypt=request.decrypt,
        created_by=creator.id if creator else None,
        created_at=now,
        expires_at=now + request.ttl,
        max_uses=request.uses,
    )
    record_link_event(db, "created", link, now, client, reason=creator.name if creator else "cli")
    return MintedLink(token, link, "redirect" if storage.redirects and layout is None else "proxy")


def visible_link(db: Database, link_id: int, user: User | None) -> Link:
    """A link the user may see and manage: their own, or any for an admin (or the CLI, user=None)."""
    link = queries.get_link(db, link_id)
    if link is None or (user is not None and not user.can("admin") and link.created_by != user.id):
        raise LinkNotFound(f"No link {link_id}.")
    return link


def revoke_link(db: Database, link_id: int, by: User | None, now: float, client: Client = Client()) -> Link:
    link = visible_link(db, link_id, by)
    if queries.revoke_link(db, link_id, now):
        record_link_event(db, "revoked", link, now, client, reason=by.name if by else "cli")
    return queries.get_link(db, link_id)


def purge_dead_links(db: Database, retention_seconds: float, now: float) -> int:
    """Delete links dead for the retention period, and events older than it that no link owns any more.

    A live link keeps all its events; a purged one's go once they are as old as the retention,
    so the log stays bounded without losing what a link's owner can still look at.
    """
    before = now - retention_seconds
    with db.atomic():
        count = queries.delete_dead_links(db, before, now)
        delete_orphan_events(db, before)
    return count


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


@dataclass(frozen=True)
class IssuedLink:
    """A link minted from the browser, with the name its download will carry (for the commands)."""

    minted: MintedLink
    file: ListedEntry
    filename: str


def issue_link(
    db: Database,
    storage_id: str,
    request: LinkRequest,
    keyring: Keyring,
    user: User,
    now: float,
    client: Client = Client(),
    replaces: int | None = None,
) -> IssuedLink:
    """Mint a link for the link dialog; `replaces` is the link that "Regenerate" retires."""
    file = describe_file(db, storage_id, request.file, keyring)
    if replaces is not None:
        revoke_if_unused(db, replaces, user, now, client)
    minted = create_link(db, storage_id, request, keyring, user, now, client)
    delivered = decrypted_name(file.entry.name) if file.encrypted and request.decrypt else file.entry.name
    return IssuedLink(minted, file, delivered)
