"""Work kept off gevent's hub: on an OS thread of its own under gevent's monkey patching (as gunicorn's
gevent worker runs the app), a plain call otherwise. Run in a child process: patching is for good."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

from core.offloading import Lane, in_background, let_connections_run, local_reads, off_the_hub, reads_of
from storage.local import LocalStorage

REPO = Path(__file__).resolve().parent.parent


def under_gevent(script: str) -> subprocess.CompletedProcess:
    """`script` run by a Python of its own, from the project's folder: gevent's patching is for good."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )


UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import threading
import gevent
from core.offloading import off_the_hub

ticks = []
def ticking():
    while True:
        ticks.append(1)
        gevent.sleep(0.001)

blocking_sleep = monkey.get_original("time", "sleep")  # a system call that blocks its OS thread

def blocking_work():
    for _ in range(30):
        blocking_sleep(0.01)
    return threading.get_native_id()

ticker = gevent.spawn(ticking)
hub_thread = threading.get_native_id()
assert off_the_hub(blocking_work) != hub_thread
assert len(ticks) > 10, len(ticks)
print("ok")
"""


def test_under_gevent_the_work_runs_on_another_os_thread_while_the_hub_goes_on():
    done = under_gevent(UNDER_GEVENT)
    assert done.stdout.strip() == "ok", done.stderr


LATER_UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import gevent
from core.offloading import in_background

done = []
in_background(lambda: done.append("background"), "test")
done.append("request")  # the request's work goes on, however long, before the background's
gevent.sleep(0)  # the request waits (for the network): the background's turn
print(",".join(done))
"""


def test_under_gevent_background_work_waits_for_the_request_to_wait():
    done = under_gevent(LATER_UNDER_GEVENT)
    assert done.stdout.strip() == "request,background", done.stderr


AFTER_THE_ANSWER_UNDER_GEVENT = """
import tempfile
from pathlib import Path
from gevent import monkey
monkey.patch_all()
import gevent
from core.offloading import in_background, let_connections_run
from tests.conftest import make_app

base = Path(tempfile.mkdtemp())
app = make_app(base / "instance", base / "backups")
done = []

@app.get("/schedules")
def schedules():  # as a first page schedules the sort of its folder
    in_background(lambda: done.append("background"), "test")
    let_connections_run()  # the page pauses for the worker's other connections
    gevent.sleep(0.01)  # and waits on something
    done.append("answered")
    return "ok"

assert app.test_client().get("/schedules").text == "ok"
gevent.sleep(0)  # the connection waits for its next request
print(",".join(done))
"""


def test_under_gevent_background_work_a_request_asks_for_starts_once_it_is_answered():
    """Not at the request's first pause, which would wait for it: a first page waited for the
    background sort of its 100,000-file folder."""
    done = under_gevent(AFTER_THE_ANSWER_UNDER_GEVENT)
    assert done.stdout.strip() == "answered,background", done.stderr


LANE_UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import threading
import gevent
from core.offloading import Lane, off_the_hub

blocking_sleep = monkey.get_original("time", "sleep")
lock = monkey.get_original("threading", "Lock")()
running, most, threads = [0], [0], set()

def reading():
    with lock:
        running[0] += 1
        most[0] = max(most[0], running[0])
    blocking_sleep(0.05)
    with lock:
        running[0] -= 1
    threads.add(threading.get_native_id())
    return 1

lane = Lane(2)
readers = [gevent.spawn(lane.run, reading) for _ in range(6)]
others = [gevent.spawn(off_the_hub, blocking_sleep, 0.05) for _ in range(4)]  # not in the lane
gevent.joinall(readers + others, raise_error=True)
assert sum(reader.value for reader in readers) == 6
print(most[0], threading.get_native_id() in threads)
"""


def test_under_gevent_a_lane_runs_so_many_at_once_off_the_hub_and_the_rest_in_turn():
    done = under_gevent(LANE_UNDER_GEVENT)
    assert done.stdout.strip() == "2 False", done.stderr


def test_elsewhere_a_lane_is_a_plain_call_and_a_turn_for_the_others_nothing():
    assert Lane(1).run(threading.get_native_id) == threading.get_native_id()
    assert let_connections_run() is None


TURNS_UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import json
import socket
import gevent
from core.offloading import let_connections_run

ours, theirs = socket.socketpair()
received = []

def connection():  # another request of the worker, waiting on its client
    while data := theirs.recv(16):
        received.append(data)

def busy(steps, between):
    seen = []
    for step in range(steps):
        ours.send(b"%d" % step)  # the other connection is ready from now on
        sum(range(200_000))  # a step of the page's work: no wait, so no switch
        between()
        seen.append(len(received))
    return seen

gevent.spawn(connection)
gevent.sleep(0.01)  # the connection waits on its socket
print(json.dumps([busy(5, lambda: None), busy(5, let_connections_run)]))
"""


def test_under_gevent_a_request_lets_the_ready_connections_run_between_its_steps():
    done = under_gevent(TURNS_UNDER_GEVENT)
    without, with_turns = json.loads(done.stdout or "null") or [None, None]
    assert without == [0, 0, 0, 0, 0], done.stderr  # the other connection never ran
    assert with_turns == sorted(set(with_turns)) and with_turns[0] > 0 and len(with_turns) == 5, done.stderr


def test_elsewhere_background_work_is_a_thread_of_its_own():
    ran = threading.Event()
    threads = []
    in_background(lambda: (threads.append(threading.get_native_id()), ran.set()), "test")
    assert ran.wait(10)
    assert threads != [threading.get_native_id()]


def test_elsewhere_the_work_is_a_plain_call():
    assert off_the_hub(threading.get_native_id) == threading.get_native_id()
    assert off_the_hub(divmod, 7, 2) == (3, 1)


def test_local_folders_are_read_in_their_lane_and_remote_ones_straight_off_the_hub(tmp_path):
    assert reads_of(LocalStorage(str(tmp_path))) == local_reads.run
    assert reads_of(SimpleNamespace(cheap_reads=False)) is off_the_hub
