"""hubmon's delivery threads: user code never holds up detection.

The native thread only detects blocks and captures the culprit's report
(holding the GIL for that alone); everything else runs here, in two OS
threads of hubmon's own, each with one persistent Python thread state:

* ``events`` runs event subscribers, monitoring functions and the memory
  check, in order. A subscriber that takes 30 s delays the next events, not
  the next detection.
* ``printer`` writes the reports. It waits for the subscribers of a report's
  event to finish (they may change ``info``, as gevent allows) for a bounded
  patience only, so a slow subscriber never delays a report by more.

Every job is contained: whatever it raises (``SystemExit``,
``KeyboardInterrupt``, ``GreenletExit`` included) is written once to stderr
and the thread goes on. A job that forks leaves a child whose only thread is
this one: the child ends with ``os._exit(0)`` as soon as the job returns.
At exit, :func:`shutdown` waits for the printer a bounded time and never for
the events thread; neither thread ends (they wait for the process to end,
like daemon threads), so no thread state is given back while the
interpreter finalizes.
"""
from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable

from . import _output
from ._threads import end_forked_child, mark_own_thread, real_lock, real_sleep, start_thread

__all__ = ["Flag", "events", "printer", "shutdown"]

try:
    from _queue import SimpleQueue as _SimpleQueue   # C, never patched by gevent
except ImportError:  # pragma: no cover - every supported CPython has it
    from queue import SimpleQueue as _SimpleQueue  # type: ignore[assignment]


class Flag:
    """A one-shot flag between threads, built on a real (never gevent) lock."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = real_lock()
        self._lock.acquire()

    def set(self) -> None:
        """Raise the flag (once)."""
        try:
            self._lock.release()
        except RuntimeError:
            pass

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; return whether the flag is up."""
        if self._lock.acquire(True, timeout):
            self._lock.release()
            return True
        return False


class Worker:
    """One OS thread of hubmon's that runs queued jobs in order, started on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: Any = None
        self._pid = 0
        self._ended: Any = None
        self._closed = False
        self._starting = real_lock()
        # Jobs posted and not yet finished, under their own real lock.
        self._pending = 0
        self._pending_lock = real_lock()
        # Whether user code of a job made a gevent hub in this thread.
        self.made_hub = False

    @property
    def idle(self) -> bool:
        """Whether every job posted in this process has finished."""
        return self._pending == 0 or not self.started

    def _count(self, delta: int) -> None:
        with self._pending_lock:
            self._pending += delta

    @property
    def started(self) -> bool:
        """Whether the thread runs in this process."""
        return self._queue is not None and self._pid == os.getpid()

    def post(self, job: Callable[..., Any], *args: Any) -> bool:
        """Queue ``job(*args)``; return False when hubmon has shut down."""
        if self._closed:
            return False
        queue = self._queue
        if queue is None or self._pid != os.getpid():
            with self._starting:
                if self._queue is None or self._pid != os.getpid():
                    self._start()
                queue = self._queue
        self._count(1)
        queue.put((job, args))
        return True

    def _start(self) -> None:
        self._queue = _SimpleQueue()
        self._pid = os.getpid()
        queue, ended = self._queue, real_lock()
        ended.acquire()
        self._ended = ended
        # The thread gets its queue and lock now: after a fork in the child
        # the attributes are reset before a new thread could read them.
        start_thread(lambda: self._run(queue, ended))

    def _run(self, queue: Any, ended: Any) -> None:
        mark_own_thread()
        from . import _core
        _core.name_this_thread("hubmon-" + self.name)
        pid = os.getpid()
        try:
            while True:
                item = queue.get()
                if item is None:
                    return
                job, args = item
                try:
                    before_job()
                    job(*args)
                except BaseException:
                    _output.write_error("error in hubmon's %s thread, in %s" % (self.name, _name(job)))
                if not self.made_hub and _gevent_hub_exists():
                    self.made_hub = True
                self._count(-1)
                end_forked_child(pid)
                del item, job, args
        finally:
            ended.release()

    def shutdown(self, timeout: float) -> bool:
        """Refuse new jobs; wait ``timeout`` seconds at most for the queued ones.

        Returns whether they all ran in time (or the thread never ran). The
        thread itself is left waiting for a job that never comes: a thread
        that ended now would give back its thread state while the
        interpreter finalizes, and with it whatever user code left there (a
        gevent hub, say), which is not safe then.
        """
        self._closed = True
        if self._queue is None or self._pid != os.getpid() or self._pending == 0:
            return True
        if timeout <= 0:
            return False
        drained = Flag()
        self._count(1)
        self._queue.put((drained.set, ()))
        return drained.wait(timeout)

    def after_fork_in_child(self) -> None:
        """In a forked child: the thread does not exist there; start anew on demand."""
        self._queue = None
        self._pid = 0
        self._ended = None
        self._starting = real_lock()
        self._pending = 0
        self._pending_lock = real_lock()
        self.made_hub = False


def _nothing() -> None:
    pass


#: Called with no argument before each job; hubmon._lifecycle sets it.
before_job: Callable[[], None] = _nothing


def _name(job: Any) -> str:
    try:
        return getattr(job, "__qualname__", None) or repr(job)
    except Exception:
        return "a job"


#: Runs subscribers, monitoring functions and memory checks.
events = Worker("events")
#: Writes reports.
printer = Worker("printer")

#: How long exit waits for the reports being written, in seconds.
EXIT_PATIENCE = 1.0


def drain(timeout: float = 5.0) -> bool:
    """Wait until both threads have run every job posted so far, and the
    native thread hands Python no event (``timeout`` seconds at most).

    Returns whether they did; with ``timeout`` 0, whether they have.
    Events fire in hubmon's events thread, a little after the native thread
    detects what they tell, and a detected block may still be waiting for
    the GIL to be captured.
    """
    from . import _core
    deadline = time.monotonic() + timeout
    while True:
        if not _core.sampler_dispatching() and events.idle and printer.idle:
            return True
        if time.monotonic() >= deadline:
            return False
        real_sleep(0.002)


def _hub_local(name: str) -> Any:
    """``gevent._hub_local.<name>`` when the program has imported gevent, else None; never imports it."""
    return getattr(sys.modules.get("gevent._hub_local"), name, None)


def _gevent_hub_exists() -> bool:
    """Whether the calling thread has a gevent hub. Never raises."""
    get_hub_if_exists = _hub_local("get_hub_if_exists")
    try:
        return get_hub_if_exists is not None and get_hub_if_exists() is not None
    except BaseException:
        return False


def drop_gevent_hub() -> None:
    """Destroy the gevent hub that user code made in the calling thread, if any. Never raises."""
    get_hub_if_exists = _hub_local("get_hub_if_exists")
    if get_hub_if_exists is None:
        return
    try:
        hub = get_hub_if_exists()
        if hub is not None:
            hub.destroy(destroy_loop=True)
    except BaseException:
        pass
    set_hub = _hub_local("set_hub")
    if set_hub is not None:
        try:
            set_hub(None)
        except BaseException:
            pass


def shutdown() -> bool:
    """At exit: let the printer finish (``EXIT_PATIENCE`` at most); never wait for user code.

    Returns whether both threads are idle now (False: user code, or a
    stream, still holds one of them, and perhaps a lock with it).

    A gevent hub that user code made in one of hubmon's threads is
    destroyed in its thread before the interpreter finalizes (a hub left in
    a thread that outlives finalization is not safe to free then), unless
    user code there still runs after ``EXIT_PATIENCE``.
    """
    # Nothing is waited for when both threads are idle and made no hub: the
    # GIL is then never released here, so no other thread of the program
    # runs between this hook and the interpreter's finalization (a daemon
    # thread that ran then could be inside a greenlet when the interpreter
    # ends it, which greenlet does not survive).
    deadline = time.monotonic() + EXIT_PATIENCE
    events_done = Flag()
    if not (events.started and events.made_hub
            and events.post(lambda: (drop_gevent_hub(), events_done.set()))):
        events_done.set()
    if printer.started and printer.made_hub:
        printer.post(drop_gevent_hub)
    events.shutdown(0.0)
    printed = printer.shutdown(EXIT_PATIENCE)
    return events_done.wait(max(0.0, deadline - time.monotonic())) and printed and events.idle


def after_fork_in_child() -> None:
    """os.register_at_fork(after_in_child=...)."""
    events.after_fork_in_child()
    printer.after_fork_in_child()
