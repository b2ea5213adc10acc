"""The program ``python -m hubmon demo`` runs: four ways to block a gevent hub.

Two ticker greenlets try to run every few milliseconds, as a server's
greenlets would. Then, one after the other, four greenlets keep the hub from
running for half a second each:

1. :func:`sleepy_handler` calls ``time.sleep``, which is not monkey-patched
   here, so the whole thread sleeps instead of switching to the hub;
2. :func:`busy_handler` computes in a pure-Python loop without ever yielding;
3. :func:`crunching_handler` makes one C call, ``sum(range(N))``, that holds
   the GIL from start to end, so that no Python code at all can run meanwhile;
4. :func:`query_handler` asks a local server (a stand-in for a database that
   answers late) over a plain socket, as a database driver that gevent
   cannot patch does.

hubmon reports each block once, with its cause (``sleep``, ``cpu``,
``gil``, ``io`` naming both ends of the connection), and prints where the
time went when the hub runs again. The third one is the hardest: no Python
thread can run during the call, so hubmon's native thread has a signal sent
to the blocked thread and :mod:`faulthandler` writes its stack while the call
still runs; the full report follows when the GIL is free.

gevent is imported by :func:`main` only, so that this module can be imported
(for its documentation, say) where gevent is not installed.
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any, Callable, List, Optional, TextIO, Tuple

__all__ = ["main", "sleepy_handler", "busy_handler", "crunching_handler", "query_handler",
           "SlowServer"]

#: How long each block lasts at least, in seconds.
BLOCK_SECONDS = 0.5
#: The periods of the two ticker greenlets, in seconds.
TICKER_PERIODS = (0.01, 0.025)


def sleepy_handler(seconds: float) -> None:
    """Block the hub the classic way: a blocking call that gevent did not patch."""
    time.sleep(seconds)  # the thread sleeps, and with it every greenlet


def busy_handler(seconds: float) -> int:
    """Block the hub with pure-Python computation that never yields."""
    deadline = time.perf_counter() + seconds
    checksum = 0
    while time.perf_counter() < deadline:
        for number in range(1000):
            checksum = (checksum * 31 + number) % 1_000_003
    return checksum


def crunching_handler(count: int) -> int:
    """Block the hub, and every thread, with a C call that holds the GIL."""
    return sum(range(count))  # one C call: no Python code runs until it returns


def query_handler(address: Tuple[str, int]) -> bytes:
    """Block the hub on I/O: a query over a socket that gevent did not patch."""
    with socket.create_connection(address) as connection:
        connection.sendall(b"SELECT 1\n")
        return connection.recv(64)  # the thread waits for the answer, and every greenlet with it


class SlowServer:
    """A local TCP server, in an OS thread of its own, that answers each query after ``delay`` seconds.

    ``address`` is its ``(host, port)`` on 127.0.0.1. :meth:`close` stops it.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: Tuple[str, int] = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="slow-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return      # closed
            with connection:
                if connection.recv(64):
                    time.sleep(self.delay)
                    connection.sendall(b"1\n")

    def close(self) -> None:
        """Stop accepting and wait for the thread."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)


def _size_of_sum(seconds: float) -> int:
    """Return the N for which ``sum(range(N))`` takes about *seconds* here.

    It measures for about 50 ms, so it must run before the hub is monitored.
    It measures the thread's CPU time, and the fastest of three runs counts:
    a busy machine that takes the CPU away makes the block longer, never
    shorter.
    """
    count = 100_000
    while True:
        start = time.thread_time()
        sum(range(count))
        took = time.thread_time() - start
        if took >= 0.015:
            break
        count *= 2
    for _ in range(2):
        start = time.thread_time()
        sum(range(count))
        took = min(took, time.thread_time() - start)
    return max(count, int(count * seconds / took))


def _gevent_missing(out: TextIO) -> bool:
    """Say how to get gevent and return True when it cannot be imported."""
    try:
        import gevent  # noqa: F401
    except ImportError as error:
        out.write("hubmon demo: the demo is a gevent program, and gevent cannot be "
                  "imported (%s).\nInstall it with: pip install hubmon[gevent]\n" % (error,))
        out.flush()
        return True
    return False


def main(max_blocking_time: float = 0.1, out: Optional[TextIO] = None) -> int:
    """Run the demo with the threshold *max_blocking_time*; return the exit status.

    The narration goes to *out* (default ``sys.stdout``); the reports go
    where hubmon prints them (the hub's exception stream, ``sys.stderr``).
    Returns 0 when each of the four blocks was reported once, 1 otherwise
    or when gevent is missing.
    """
    out = sys.stdout if out is None else out
    if _gevent_missing(sys.stderr):
        return 1

    from . import config, events

    config.monitor_thread = True
    config.max_blocking_time = max_blocking_time
    config.print_blocking_reports = True

    import gevent

    seconds = max(BLOCK_SECONDS, 2.5 * max_blocking_time)
    count = _size_of_sum(seconds)

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    blocked: List[Any] = []

    def on_event(event: Any) -> None:
        if isinstance(event, events.EventLoopBlocked):
            blocked.append(event)

    ticks = [0] * len(TICKER_PERIODS)

    def ticker(index: int, period: float) -> None:
        while True:
            gevent.sleep(period)
            ticks[index] += 1

    steps: List[tuple] = [
        ("sleepy_handler() calls time.sleep(%.1f), which gevent did not patch: "
         "the whole hub sleeps with it." % seconds, sleepy_handler, seconds),
        ("busy_handler() computes in a pure-Python loop for %.1f s without yielding."
         % seconds, busy_handler, seconds),
        ("crunching_handler() calls sum(range(%d)): one C call that holds the GIL for "
         "about %.1f s, so that no Python code runs at all until it returns."
         % (count, seconds),
         crunching_handler, count),
    ]
    server = SlowServer(seconds)
    steps.append(("query_handler() asks a local server, which answers after %.1f s, over a "
                  "plain socket that gevent did not patch (as an unpatched database driver "
                  "does)." % seconds, query_handler, server.address))

    events.subscribers.append(on_event)
    tickers = [gevent.spawn(ticker, index, period) for index, period in enumerate(TICKER_PERIODS)]
    try:
        where = ("the logger 'hubmon'" if config.report_to == "logging"
                 else "stderr")
        say("hubmon demo: %d ticker greenlets run every %s ms; four greenlets will now block "
            "the hub in turn. Threshold: max_blocking_time = %g s. Reports go to %s."
            % (len(tickers), " and ".join("%g" % (p * 1000) for p in TICKER_PERIODS),
               max_blocking_time, where))
        gevent.sleep(0.1)  # the hub starts, and hubmon with it
        for number, (intro, function, argument) in enumerate(steps, 1):
            say("")
            say("[%d/%d] %s" % (number, len(steps), intro))
            before = list(ticks)
            started = time.perf_counter()
            gevent.spawn(function, argument).join()
            took = time.perf_counter() - started
            ticked = sum(ticks) - sum(before)
            gevent.sleep(max(0.2, 2 * max_blocking_time))  # the hub catches up; the report ends
            due = sum(int(took / period) for period in TICKER_PERIODS)
            say("[%d/%d] %s() returned after %.2f s. The tickers ticked %d times meanwhile "
                "instead of about %d. hubmon has reported %d block%s so far."
                % (number, len(steps), _name(function), took, ticked, due,
                   len(blocked), "" if len(blocked) == 1 else "s"))
    finally:
        gevent.killall(tickers)
        events.subscribers.remove(on_event)
        server.close()

    say("")
    if len(blocked) == len(steps):
        say("Done: hubmon reported each of the %d blocks once. To watch your own program: "
            "python -m hubmon run your_app.py" % len(steps))
        return 0
    say("Done, but hubmon reported %d blocks instead of %d." % (len(blocked), len(steps)))
    return 1


def _name(function: Callable[..., Any]) -> str:
    """The name of *function*, for the narration."""
    return getattr(function, "__name__", repr(function))
