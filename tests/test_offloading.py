"""Work kept off gevent's hub: on an OS thread of its own under gevent's monkey patching (as gunicorn's
gevent worker runs the app), a plain call otherwise. Run in a child process: patching is for good."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from core.offloading import in_background, off_the_hub

REPO = Path(__file__).resolve().parent.parent
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
    done = subprocess.run(
        [sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True, timeout=60, cwd=REPO
    )
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
    done = subprocess.run(
        [sys.executable, "-c", LATER_UNDER_GEVENT], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.stdout.strip() == "request,background", done.stderr


def test_elsewhere_background_work_is_a_thread_of_its_own():
    ran = threading.Event()
    threads = []
    in_background(lambda: (threads.append(threading.get_native_id()), ran.set()), "test")
    assert ran.wait(10)
    assert threads != [threading.get_native_id()]


def test_elsewhere_the_work_is_a_plain_call():
    assert off_the_hub(threading.get_native_id) == threading.get_native_id()
    assert off_the_hub(divmod, 7, 2) == (3, 1)
