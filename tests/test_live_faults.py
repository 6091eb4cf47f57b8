"""Exactly once under faults, against real gunicorn: frozen workers, resets before the last bytes,
slow and stalled readers, parallel uses, racing crowds and revocation mid-transfer."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.links import revoke_link
from db import connect
from tests.helpers import (
    MIB,
    RawDownload,
    claims_lapsed,
    curl,
    link_record,
    make_file,
    outcome_events,
    serving_worker,
    status_of,
    wait_for,
)


def events_of(server, url: str) -> list[tuple[str, str | None]]:
    return [(event.event, event.reason) for event in link_record(server, url)[1]]


def resume_with_curl(url: str, partial: bytes, target) -> str:
    """`curl -C -` on a file holding what an interrupted client received: the status it got."""
    target.write_bytes(partial)
    return curl("-C", "-", "-o", str(target), "-w", "%{http_code}", url).stdout


def test_a_worker_frozen_past_its_lease_never_delivers_a_second_copy(start_server, tmp_path):
    server = start_server()
    data = make_file(server.backups, "frozen.bin", 20 * MIB)
    url = server.link("frozen.bin")
    first = RawDownload(url)
    assert first.status == 200
    first.read(MIB, rate=4 * MIB)
    worker = serving_worker(server.worker_pids(), server.port, first.port)
    os.kill(worker, signal.SIGSTOP)
    try:
        wait_for(lambda: claims_lapsed(server, url), "the frozen worker's claim to lapse")
        assert status_of(url, tmp_path / "second") == 200
    finally:
        os.kill(worker, signal.SIGCONT)
    assert (tmp_path / "second").read_bytes() == data
    received = first.read_to_end()
    assert len(received) < len(data) and data.startswith(received)  # never a second full copy
    wait_for(lambda: ("lost", "lapsed") in events_of(server, url), "the frozen transfer to stop")
    link = link_record(server, url)[0]
    assert link.uses == 1 and link.max_uses == 1
    assert [kind for kind, _ in events_of(server, url)].count("completed") == 1
    assert status_of(url) == 410


def test_a_reset_before_the_last_bytes_leaves_the_link_usable(live_server, tmp_path):
    """Handed to the socket is not delivered: the client must acknowledge the end."""
    data = make_file(live_server.backups, "near-end.bin", 21 * MIB)
    url = live_server.link("near-end.bin")
    client = RawDownload(url)
    client.read(len(data) - 2 * MIB)
    client.reset()
    wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the reset transfer to be given back")
    assert link_record(live_server, url)[0].uses == 0
    assert resume_with_curl(url, bytes(client.body), tmp_path / "near-end.bin") == "206"
    assert (tmp_path / "near-end.bin").read_bytes() == data
    assert status_of(url) == 410


def test_a_slow_steady_reader_is_never_cut_off(start_server):
    """12 KB/s for six send timeouts: acknowledged bytes are progress, however full the buffers."""
    server = start_server(send_timeout=1)
    data = make_file(server.backups, "slow.bin", 2 * MIB)
    url = server.link("slow.bin")
    client = RawDownload(url, receive_buffer=4096)
    client.read(72 * 1024, rate=12 * 1024)
    assert client.ended is None
    assert client.read_to_end() == data and client.ended == "eof"
    wait_for(lambda: outcome_events(server, url) == ["completed"], "the slow transfer to complete")


def test_a_client_that_stops_reading_is_cut_off_and_can_resume(live_server, tmp_path):
    data = make_file(live_server.backups, "stalled.bin", 8 * MIB)
    url = live_server.link("stalled.bin")
    client = RawDownload(url, receive_buffer=4096)
    client.read(MIB)
    wait_for(
        lambda: ("aborted", "stalled") in events_of(live_server, url), "the stalled transfer to be cut off"
    )
    received = client.read_to_end()
    assert client.ended == "reset" and data.startswith(received) and len(received) < len(data)
    assert resume_with_curl(url, received, tmp_path / "stalled.bin") == "206"
    assert (tmp_path / "stalled.bin").read_bytes() == data
    assert "Traceback" not in live_server.error_log.read_text()


def test_a_three_use_link_serves_three_clients_at_once(live_server):
    data = make_file(live_server.backups, "three.bin", 8 * MIB)
    url = live_server.link("three.bin", uses=3)
    clients = [RawDownload(url) for _ in range(3)]
    assert [client.status for client in clients] == [200, 200, 200]
    for client in clients:
        client.read(MIB)
    fourth = curl("-o", "/dev/null", "-D", "-", url).stdout
    assert fourth.startswith("HTTP/1.1 409") and "Retry-After:" in fourth
    with ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(RawDownload.read_to_end, clients))
    assert bodies == [data] * 3
    wait_for(lambda: outcome_events(live_server, url) == ["completed"] * 3, "three completed transfers")
    assert status_of(url) == 410


@pytest.mark.parametrize("uses", [1, 5])
def test_fifty_racing_clients_get_exactly_as_many_copies_as_uses(live_server, uses):
    make_file(live_server.backups, "crowd.bin", 3 * MIB)
    url = live_server.link("crowd.bin", uses=uses)
    start = threading.Barrier(50)

    def fetch(_):
        start.wait()
        return status_of(url)

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(fetch, range(50)))
    assert codes.count(200) == uses, codes
    assert set(codes) <= {200, 410, 409}, codes
    wait_for(lambda: outcome_events(live_server, url) == ["completed"] * uses, "every transfer to finish")
    assert link_record(live_server, url)[0].uses == uses


def test_revoking_stops_a_running_transfer(live_server):
    data = make_file(live_server.backups, "revoked.bin", 16 * MIB)
    url = live_server.link("revoked.bin")
    client = RawDownload(url)
    client.read(MIB)
    link = link_record(live_server, url)[0]
    db = connect(live_server.app.config["DATABASE"])
    try:
        revoke_link(db, link.id, None, time.time())
    finally:
        db.close()
    received = client.read_to_end(rate=2 * MIB)  # 8 s for the whole file; revocation acts within 2 s
    assert client.ended == "reset" and len(received) < len(data)
    wait_for(lambda: ("stopped", "revoked") in events_of(live_server, url), "the transfer to be stopped")
    assert link_record(live_server, url)[0].uses == 0


def revoke(server, url: str) -> None:
    db = connect(server.app.config["DATABASE"])
    try:
        revoke_link(db, link_record(server, url)[0].id, None, time.time())
    finally:
        db.close()


@pytest.mark.parametrize(
    ("cut", "ending"), [("stall", ("aborted", "stalled")), ("revoke", ("stopped", "revoked"))]
)
def test_a_cut_transfer_records_what_the_client_acknowledged_not_what_was_queued(live_server, cut, ending):
    """A client that stops reading leaves megabytes queued in the server's socket buffers; cut off
    (stalled, or its link revoked), the event log says how much reached it, never more than it got."""
    make_file(live_server.backups, f"cut-{cut}.bin", 32 * MIB)
    url = live_server.link(f"cut-{cut}.bin")
    client = RawDownload(url, receive_buffer=256 * 1024)
    client.read(MIB)
    if cut == "revoke":
        revoke(live_server, url)
    wait_for(lambda: ending in events_of(live_server, url), "the transfer to be cut off")
    received = len(client.read_to_end())
    link, events = link_record(live_server, url)
    (ended,) = [event for event in events if event.event == ending[0]]
    assert MIB <= ended.bytes <= received
    assert link.bytes_sent > received  # handed to the kernel, and charged to the byte budget
    assert ended.start == 0 and ended.seconds > 0 and ended.mode == "stored"
