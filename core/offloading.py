"""Work that makes many system calls in a row, kept from holding up the other requests of a worker.

Under gunicorn's gevent worker every request of a process is a greenlet on one OS thread, and a
greenlet that stats 100,000 files keeps every other one waiting until it is done. Such work goes to
gevent's pool of OS threads, where its system calls release the GIL and the hub goes on serving;
the greenlet that asked waits for the result alone. Local folders are read two at a time per worker
(Lane): a read builds its names while holding the GIL, which the hub needs too. And a request that
builds a large page pauses between its steps for the worker's ready connections to go first
(let_connections_run): the hub switches only where a greenlet waits. Work a request leaves for
after its answer (in_background) starts once it is answered, not in those pauses. Under the other
worker classes, and in tests, each request has an OS thread of its own, and the work is a plain call.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

Result = TypeVar("Result")

TURN_SECONDS = 0.002  # the longest a request waits for the others when it lets them run


def under_gevent() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def off_the_hub(work: Callable[..., Result], *args, **kwargs) -> Result:
    """`work(*args, **kwargs)`, on one of gevent's OS threads where the worker is gevent's."""
    if not under_gevent():
        return work(*args, **kwargs)
    from gevent import get_hub

    return get_hub().threadpool.apply(work, args, kwargs)


class Lane:
    """At most `width` pieces of work of one kind at once on gevent's OS threads; the greenlets that
    ask for more wait their turn, and the hub goes on meanwhile.

    Reading a folder of 100,000 names builds 100,000 objects while holding the GIL, which the hub
    needs to serve every connection of the worker: with ten such reads at once (gevent's pool has ten
    threads), a crowd searching large folders left a worker's downloads without a turn for seconds."""

    def __init__(self, width: int):
        self.width = width
        self._turns = None
        self._pid = 0

    def run(self, work: Callable[..., Result], *args, **kwargs) -> Result:
        """`work(*args, **kwargs)` off the hub in its turn, where the worker is gevent's."""
        if not under_gevent():
            return work(*args, **kwargs)
        if self._pid != os.getpid():  # made in the worker: a semaphore of gevent's hub
            from gevent.lock import BoundedSemaphore

            self._turns, self._pid = BoundedSemaphore(self.width), os.getpid()
        with self._turns:
            return off_the_hub(work, *args, **kwargs)


local_reads = Lane(2)  # local folders read (and stat'ed) at once, per worker


def reads_of(storage) -> Callable[..., Result]:
    """How work that reads the folders of `storage` goes off the hub: a local one's in the lane of
    local reads, where the cost is the GIL's more than the disk's; a remote one's (`cheap_reads`
    false) to a thread at once, where it waits on the network and hardly holds the GIL."""
    return local_reads.run if storage.cheap_reads else off_the_hub


def let_connections_run() -> None:
    """A pause between the steps of a request that builds a large page: under gevent, the worker's
    other connections that are ready (a download whose client took the last piece) go first. The
    hub switches only where a greenlet waits, so sixteen clients asking at once for pages of 1,000
    entries held a worker's downloads for seconds without it. The pause lasts until the loop has
    nothing ready (gevent.idle: about 20 µs on a quiet worker), TURN_SECONDS at most, which a
    thousand busy downloads might otherwise never leave. Elsewhere each request has a thread."""
    if under_gevent():
        from gevent import Timeout, idle

        with Timeout(TURN_SECONDS, False):
            idle()


# Under gevent, the background work each request asked for, by the request's greenlet: started
# once its answer is out (answered), not at the request's first pause, which would then wait for it.
_after_answer: WeakKeyDictionary = WeakKeyDictionary()


def answering() -> None:
    """A request begins: background work it asks for waits for its answer (in_background)."""
    if under_gevent():
        from gevent import getcurrent

        _after_answer[getcurrent()] = []


def answered(_error: BaseException | None = None) -> None:
    """The request is answered (or failed: a teardown's argument): the background work it asked for starts."""
    if under_gevent():
        from gevent import getcurrent, spawn

        for work in _after_answer.pop(getcurrent(), ()):
            spawn(work)


def in_background(work: Callable[[], None], name: str) -> None:
    """`work()` after this request rather than in it: a thread, or under gevent a greenlet started
    once the request is answered (answered), or, outside a request, once the greenlet that asked
    waits. Started at once, it would run at the request's first pause (let_connections_run): a
    sort of 100,000 rows scheduled by a first page took 150 ms of that page. A patched
    threading.Thread would not do: its start() waits for the new greenlet to run, which then runs
    until it waits itself, the request's answer held up meanwhile."""
    if under_gevent():
        from gevent import getcurrent, spawn

        pending = _after_answer.get(getcurrent())
        if pending is None:
            spawn(work)
        else:
            pending.append(work)
        return
    threading.Thread(target=work, name=name, daemon=True).start()


class Started(Generic[Result]):
    """Work running on another OS thread, whose result one can wait for with a bound: the waiter
    gives up after `timeout`, the work goes on until it ends (no thread can be stopped)."""

    def __init__(self, work: Callable[[], Result]):
        if under_gevent():
            from gevent import get_hub

            # The work's exception comes back as its result: gevent would print a failed task's
            # traceback, arguments and all, to stderr.
            self._result = get_hub().threadpool.spawn(self._caught, work)  # a gevent AsyncResult
        else:
            self._result = Future()
            threading.Thread(target=self._run, args=(work,), daemon=True).start()

    def _run(self, work: Callable[[], Result]) -> None:
        try:
            self._result.set_result(work())
        except BaseException as exc:
            self._result.set_exception(exc)

    @staticmethod
    def _caught(work: Callable[[], Result]) -> tuple[Result | None, BaseException | None]:
        try:
            return work(), None
        except BaseException as exc:
            return None, exc

    def running(self) -> bool:
        return not (self._result.done() if isinstance(self._result, Future) else self._result.ready())

    def result(self, timeout: float) -> Result:
        """The work's result (or its exception), or TimeoutError once `timeout` seconds have passed."""
        if isinstance(self._result, Future):
            return self._result.result(timeout=max(timeout, 0))
        from gevent import Timeout

        try:
            result, error = self._result.get(timeout=max(timeout, 0))
        except Timeout as exc:
            raise TimeoutError from exc
        if error is not None:
            raise error
        return result
