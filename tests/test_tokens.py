"""The token store on the real SQLite database: hashing, the atomic claim, leases, uses, purge."""

from __future__ import annotations

import threading
import time

import pytest

from core import tokens
from core.links import LinkRequest, create_link, purge_dead_links, revoke_link
from db import connect
from db.events import list_events, record_link_event
from db.links import get_link
from db.migrations import migrations
from encryption.keys import Keyring

NOW = time.time()


@pytest.fixture
def file(backups):
    (backups / "db.sql.gz").write_bytes(b"dump")
    return "db.sql.gz"


def mint(db, file, ttl=300, uses=1, now=NOW):
    return create_link(db, "local", LinkRequest(file, True, ttl, uses), Keyring(bytes(32)), None, now)


def test_only_the_hash_is_stored(app, db, file):
    minted = mint(db, file)
    assert len(minted.token) >= 43
    dump = "\n".join(db.iterdump())
    assert minted.token not in dump
    assert tokens.hash_token(minted.token) in dump


def test_a_claim_is_exclusive_until_released(db, file):
    token = mint(db, file).token
    claim = tokens.claim_link(db, token, 30, NOW)
    with pytest.raises(tokens.TokenBusy):
        tokens.claim_link(db, token, 30, NOW + 1)
    tokens.release_transfer(db, claim)
    assert tokens.claim_link(db, token, 30, NOW + 2).link.id == claim.link.id


def test_completing_uses_up_a_single_use_link(db, file):
    token = mint(db, file).token
    tokens.complete_transfer(db, tokens.claim_link(db, token, 30, NOW), NOW)
    with pytest.raises(tokens.TokenUnavailable) as raised:
        tokens.claim_link(db, token, 30, NOW + 1)
    assert raised.value.reason == "used"


def test_a_link_for_three_uses_works_three_times(db, file):
    token = mint(db, file, uses=3).token
    for _ in range(3):
        tokens.complete_transfer(db, tokens.claim_link(db, token, 30, NOW), NOW)
    with pytest.raises(tokens.TokenUnavailable):
        tokens.claim_link(db, token, 30, NOW)
    assert get_link(db, mint(db, file).link.id).uses == 0


def test_expired_revoked_and_unknown_tokens_are_refused(db, file):
    expired = mint(db, file, ttl=10).token
    with pytest.raises(tokens.TokenUnavailable) as raised:
        tokens.claim_link(db, expired, 30, NOW + 11)
    assert raised.value.reason == "expired"
    revoked = mint(db, file)
    revoke_link(db, revoked.link.id, None, NOW)
    with pytest.raises(tokens.TokenUnavailable) as raised:
        tokens.claim_link(db, revoked.token, 30, NOW)
    assert raised.value.reason == "revoked"
    for unknown in ("nope", tokens.new_token(), "x" * 10_000):
        with pytest.raises(tokens.TokenUnavailable) as raised:
            tokens.claim_link(db, unknown, 30, NOW)
        assert raised.value.reason == "unknown"


def test_a_transfer_that_started_before_expiry_still_counts(db, file):
    minted = mint(db, file, ttl=10)
    claim = tokens.claim_link(db, minted.token, 30, NOW + 9)
    tokens.complete_transfer(db, claim, NOW + 60)
    assert get_link(db, minted.link.id).uses == 1


def test_a_lapsed_lease_frees_the_link(db, file):
    """A worker that died stops renewing; after the lease runs out the link can be claimed again."""
    token = mint(db, file).token
    stranded = tokens.claim_link(db, token, 5, NOW)
    with pytest.raises(tokens.TokenBusy):
        tokens.claim_link(db, token, 5, NOW + 4)
    fresh = tokens.claim_link(db, token, 5, NOW + 6)
    assert fresh.lease_id != stranded.lease_id
    tokens.release_transfer(db, stranded)  # the dead transfer's late release must not free the new lease
    with pytest.raises(tokens.TokenBusy):
        tokens.claim_link(db, token, 5, NOW + 7)


def test_thirty_racing_claims_give_exactly_one_lease(app, file):
    database_path = app.config["DATABASE"]
    setup = connect(database_path)
    token = mint(setup, file).token
    setup.close()
    barrier = threading.Barrier(30)
    outcomes = []

    def race():
        db = connect(database_path)
        barrier.wait()
        try:
            tokens.claim_link(db, token, 30, time.time())
            outcomes.append("claimed")
        except tokens.TokenBusy:
            outcomes.append("busy")
        finally:
            db.close()

    threads = [threading.Thread(target=race) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["busy"] * 29 + ["claimed"]


def test_purge_removes_dead_links_and_their_events_past_the_retention(db, file):
    used = mint(db, file)
    tokens.complete_transfer(db, tokens.claim_link(db, used.token, 30, NOW), NOW)
    expired = mint(db, file, ttl=1)
    alive = mint(db, file, ttl=3600)
    leased = mint(db, file, ttl=1)
    tokens.claim_link(db, leased.token, 3600, NOW)
    assert purge_dead_links(db, 0, NOW + 10) == 2
    assert get_link(db, used.link.id) is None and get_link(db, expired.link.id) is None
    assert get_link(db, alive.link.id) is not None
    assert get_link(db, leased.link.id) is not None  # a running transfer is never purged
    assert list_events(db, used.link.id) == [] and list_events(db, expired.link.id) == []
    assert [e.event for e in list_events(db, alive.link.id)] == ["created"]  # its link is still there
    assert [e.event for e in list_events(db, leased.link.id)] == ["created"]


def test_events_outlive_their_purged_link_while_the_retention_lasts(db, file):
    """A refusal after the link died is younger than the retention: it stays until it is as old."""
    expired = mint(db, file, ttl=1)
    record_link_event(db, "rejected", expired.link, NOW + 8, reason="expired")
    assert purge_dead_links(db, 5, NOW + 10) == 1
    assert [e.event for e in list_events(db, expired.link.id)] == ["rejected"]
    purge_dead_links(db, 5, NOW + 14)
    assert list_events(db, expired.link.id) == []


def test_purge_respects_the_retention_period(db, file):
    expired = mint(db, file, ttl=1)
    assert purge_dead_links(db, 3600, NOW + 10) == 0
    assert purge_dead_links(db, 3600, NOW + 3602) == 1
    assert get_link(db, expired.link.id) is None


def test_a_purged_links_id_is_never_given_again(db, file):
    """Its recent events stay, under its id: a new link must not inherit them."""
    first = mint(db, file, ttl=1)
    record_link_event(db, "rejected", first.link, NOW + 8, reason="expired")
    assert purge_dead_links(db, 5, NOW + 10) == 1
    second = mint(db, file)
    assert second.link.id > first.link.id
    assert [e.event for e in list_events(db, first.link.id)] == ["rejected"]
    assert [e.event for e in list_events(db, second.link.id)] == ["created"]


def test_the_migration_keeps_ids_above_every_event(tmp_path):
    """A database from before AUTOINCREMENT: ids already freed by a purge are not handed out again."""
    old = connect(str(tmp_path / "old.sqlite3"))
    migrations.apply(old, stop_before="m004_link_ids_never_reused")
    old.execute("INSERT INTO link_events (link_id, event, at) VALUES (41, 'completed', 0)")
    migrations.apply(old)
    cursor = old.execute(
        "INSERT INTO links (token_hash, storage_id, path, created_at, expires_at)"
        " VALUES ('h', 's', 'p', 0, 1)"
    )
    assert cursor.lastrowid == 42
    old.close()
