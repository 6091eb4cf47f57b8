"""A DBackup backup's tag, checked over the whole file before its first byte is sent.

GCM's one tag covers all of DBackup's file and sits in its sidecar, so nothing decrypted from it can
be trusted until every byte has been read: the check is one extra read of the file (a GET more on a
remote storage), decrypting and discarding, in constant memory. Its verdict is kept in the database
by the identity of what was checked (storage, path, size and version of the `.enc` file, the
sidecar's IV and tag, the key), so a resume on any worker, or a second link to the same backup, does
not pay it again, and a backup rewritten or re-tagged is checked afresh. A storage that gives files
no version cannot say they are unchanged: there every download checks again.
"""

from __future__ import annotations

import hashlib

from sqlite_utils import Database

from core.delivery import OpenedDelivery
from core.offloading import off_the_hub
from db.verdicts import save_tag_verdict, tag_verdict
from encryption import dbackup
from encryption.format import IntegrityError

REFUSAL = "the backup does not match the tag in its sidecar: wrong key, or altered"


def tag_identity(opened: OpenedDelivery) -> str | None:
    """What the verdict holds for; None where the storage gives the file no version."""
    delivery = opened.delivery
    entry, sidecar = delivery.entry, delivery.sidecar
    if not entry.version or sidecar is None:
        return None
    basis = hashlib.sha256(opened.key)  # a digest of the key, never the key: a profile re-imported is new
    for part in (delivery.storage_id, entry.path, str(entry.size), entry.version, sidecar.identity):
        basis.update(part.encode() + b"\0")
    return basis.hexdigest()


def check_tag(db: Database, opened: OpenedDelivery, now: float) -> None:
    """Raise IntegrityError unless the backup's tag is good; a no-op for other deliveries."""
    sidecar = opened.delivery.sidecar
    if sidecar is None:
        return
    identity = tag_identity(opened)
    intact = tag_verdict(db, identity) if identity else None
    if intact is None:
        intact = _read_and_check(opened)
        if identity:
            save_tag_verdict(db, identity, intact, now)
    if not intact:
        raise IntegrityError(REFUSAL)


def _read_and_check(opened: OpenedDelivery) -> bool:
    """Read the whole file (on one of gevent's OS threads: it is minutes of work for a large file)."""
    delivery = opened.delivery
    try:
        off_the_hub(dbackup.verify, opened.source, opened.key, delivery.sidecar, delivery.entry.size)
    except IntegrityError:
        return False
    return True
