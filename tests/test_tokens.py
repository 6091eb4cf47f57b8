"""The token store on the real SQLite database: hashing, the atomic claim, leases, uses, purge."""

from __future__ import annotations

import threading
import time

import pytest

from core import tokens
from core.links import LinkRequest, create_link, revoke_link
from core.purging import purge_dead_links
from db import connect
from db.events import Client, list_events, record_link_event
from db.links import get_link
from db.migrations import migrations
from encryption.keys import Keyring
from tests.helpers import database_text

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
    dump = database_text(db)
    assert minted.token not in dump
    assert tokens.hash_token(minted.token) in dump


WHOLE = tokens.Span(0, 4, 4)  # the whole of the 4-byte file: delivering it is a use
CLIENT = Client("127.0.0.1", "test")


def claim(db, token, now=NOW, span=WHOLE, lease=30):
    return tokens.claim_link(db, token, span, lease, now, CLIENT)


def complete(db, held, now=NOW):
    tokens.finish_claim(db, held, "completed", now, held.span.length, CLIENT)


def release(db, held, now=NOW):
    tokens.finish_claim(db, held, "aborted", now, 0, CLIENT)


def test_a_claim_is_exclusive_until_released(db, file):
    token = mint(db, file).token
    held = claim(db, token)
    with pytest.raises(tokens.TokenBusy):
        claim(db, token, NOW + 1)
    release(db, held)
    assert claim(db, token, NOW + 2).link.id == held.link.id


def test_completing_uses_up_a_single_use_link(db, file):
    token = mint(db, file).token
    complete(db, claim(db, token))
    with pytest.raises(tokens.TokenUnavailable) as raised:
        claim(db, token, NOW + 1)
    assert raised.value.reason == "used"


def test_a_link_for_three_uses_serves_three_transfers_at_once(db, file):
    minted = mint(db, file, uses=3)
    running = [claim(db, minted.token) for _ in range(3)]
    with pytest.raises(tokens.TokenBusy):
        claim(db, minted.token)
    for held in running:
        complete(db, held)
    with pytest.raises(tokens.TokenUnavailable):
        claim(db, minted.token)
    assert get_link(db, minted.link.id).uses == 3
    assert get_link(db, mint(db, file).link.id).uses == 0


def test_expired_revoked_and_unknown_tokens_are_refused(db, file):
    expired = mint(db, file, ttl=10).token
    with pytest.raises(tokens.TokenUnavailable) as raised:
        claim(db, expired, NOW + 11)
    assert raised.value.reason == "expired"
    revoked = mint(db, file)
    revoke_link(db, revoked.link.id, None, NOW)
    with pytest.raises(tokens.TokenUnavailable) as raised:
        claim(db, revoked.token)
    assert raised.value.reason == "revoked"
    for unknown in ("nope", tokens.new_token(), "x" * 10_000):
        with pytest.raises(tokens.TokenUnavailable) as raised:
            claim(db, unknown)
        assert raised.value.reason == "unknown"


def test_a_transfer_that_started_before_expiry_still_counts(db, file):
    minted = mint(db, file, ttl=10)
    complete(db, claim(db, minted.token, NOW + 9), NOW + 60)
    assert get_link(db, minted.link.id).uses == 1


def test_a_lapsed_claim_is_given_back(db, file):
    """A worker that died stops renewing; once its lease runs out the use it held is free again."""
    minted = mint(db, file)
    stranded = claim(db, minted.token, lease=5)
    with pytest.raises(tokens.TokenBusy):
        claim(db, minted.token, NOW + 4)
    fresh = claim(db, minted.token, NOW + 6)
    assert fresh.id != stranded.id
    complete(db, stranded, NOW + 7)  # the dead transfer's late end must neither count nor free the new claim
    assert get_link(db, minted.link.id).uses == 0
    with pytest.raises(tokens.TokenBusy):
        claim(db, minted.token, NOW + 7)
    events = [(e.event, e.reason) for e in list_events(db, minted.link.id)]
    assert ("lapsed", "returned") in events and ("completed", "claim already settled") in events


def test_a_lapsed_final_claim_counts_as_a_use(db, file):
    """Once a transfer has started its last piece, nobody can say it did not deliver: fail closed."""
    minted = mint(db, file)
    held = claim(db, minted.token, lease=5)
    assert tokens.secure_final(db, held, NOW + 1, 5)
    with pytest.raises(tokens.TokenUnavailable) as raised:
        claim(db, minted.token, NOW + 60)
    assert raised.value.reason == "used"
    complete(db, held, NOW + 61)  # its late completion is not counted a second time
    assert get_link(db, minted.link.id).uses == 1


def test_renewal_and_the_final_mark_need_a_claim_still_held(db, file):
    minted = mint(db, file, uses=2)
    lapsed, revoked = claim(db, minted.token, lease=5), claim(db, minted.token, lease=5)
    assert tokens.renew_claim(db, lapsed, NOW + 4, 5)
    assert not tokens.renew_claim(db, lapsed, NOW + 10, 5)
    assert not tokens.secure_final(db, lapsed, NOW + 10, 5)
    assert tokens.lost_reason(db, lapsed) == "lapsed"
    revoke_link(db, minted.link.id, None, NOW + 1)
    assert not tokens.renew_claim(db, revoked, NOW + 2, 5)
    assert not tokens.secure_final(db, revoked, NOW + 2, 5)
    assert tokens.lost_reason(db, revoked) == "revoked"


def test_the_byte_budget_counts_running_transfers(db, file):
    """Two copies' worth for a 1-use link, reserved when each transfer starts."""
    token = mint(db, file).token
    almost_all = tokens.Span(0, 3, 4)
    first = claim(db, token, span=almost_all)
    release(db, first)  # an aborted transfer that sent nothing gives its reservation back
    for _ in range(2):
        tokens.finish_claim(db, claim(db, token, span=almost_all), "partial", NOW, 3, CLIENT)
    with pytest.raises(tokens.TokenUnavailable) as raised:
        claim(db, token, span=almost_all)
    assert raised.value.reason == "bytes"
    assert claim(db, token, span=tokens.Span(2, 4, 4)).span.counts


@pytest.mark.parametrize("uses", [1, 5])
def test_fifty_racing_claims_give_exactly_as_many_as_uses(app, file, uses):
    database_path = app.config["DATABASE"]
    setup = connect(database_path)
    started = time.time()  # not NOW, taken when the module was imported: the link must be alive now
    token = mint(setup, file, uses=uses, now=started).token
    setup.close()
    barrier = threading.Barrier(50)
    outcomes = []

    def race():
        db = connect(database_path)
        barrier.wait()
        try:
            claim(db, token, started)
            outcomes.append("claimed")
        except tokens.TokenBusy:
            outcomes.append("busy")
        finally:
            db.close()

    threads = [threading.Thread(target=race) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["busy"] * (50 - uses) + ["claimed"] * uses


def test_purge_removes_dead_links_and_their_events_past_the_retention(db, file):
    used = mint(db, file)
    complete(db, claim(db, used.token))
    expired = mint(db, file, ttl=1)
    alive = mint(db, file, ttl=3600)
    leased = mint(db, file, ttl=1)
    claim(db, leased.token, lease=3600)
    assert purge_dead_links(db, 0, NOW + 10) == 2
    assert get_link(db, used.link.id) is None and get_link(db, expired.link.id) is None
    assert get_link(db, alive.link.id) is not None
    assert get_link(db, leased.link.id) is not None  # a running transfer is never purged
    assert list_events(db, used.link.id) == [] and list_events(db, expired.link.id) == []
    assert [e.event for e in list_events(db, alive.link.id)] == ["created"]  # its link is still there
    assert [e.event for e in list_events(db, leased.link.id)] == ["created", "started"]


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
