"""Scoped assertions for tests: :func:`assert_switches` and :exc:`FailedToSwitch`.

``assert_switches`` means what gevent's ``gevent.util.assert_switches``
means, so tests can move over unchanged, but it measures with hubmon's C
tracer and native thread: each scope adds its records to its thread's one
hubmon trace function (:mod:`hubmon._tracing`; nesting and stopping scopes
never lengthens the thread's chain), and the native thread measures the longest
stretch without progress. When that stretch outgrows the limit, the native
thread builds the report while the body is still blocked, so the report
shows the stack that blocked, not the stack of the ``with`` statement's end.

gevent is never imported here: ``hub=None`` uses gevent's hub only when the
program has imported gevent.
"""
from __future__ import annotations

import functools
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, List, Optional, Tuple, TypeVar

import greenlet

from . import _blocked, _core, _dispatch, _tracing
from ._threads import real_get_ident, real_sleep
from ._values import BOOL, THRESHOLD
from .config import config
from .report import prepare as prepare_report, format_run_info

__all__ = ["FailedToSwitch", "assert_switches"]

if TYPE_CHECKING:
    _F = TypeVar("_F", bound=Callable[..., Any])

# Where the stacks of a block that held the GIL are: a scope arms no dump.
_GIL_NOTE = "The stacks below are from after that call."

# The threshold given to a tracer that only counts (it is never sampled).
_COUNT_ONLY = 1.0

class FailedToSwitch(AssertionError):
    """The body of an :func:`assert_switches` scope did not switch as required.

    The message starts like gevent's (``To any greenlet in 0.5012 seconds
    (max allowed 0.1000 seconds)``) and goes on with the report: the stack
    that blocked and every thread and greenlet.
    """

    def __init__(self, message: str, *, duration: float = 0.0,
                 max_blocking_time: Optional[float] = None, hub_only: bool = False,
                 longest_gap: Optional[float] = None, report: Optional[List[str]] = None):
        super().__init__(message)
        #: Seconds the body ran.
        self.duration = duration
        #: The limit given, or None.
        self.max_blocking_time = max_blocking_time
        #: Whether only switches into the hub counted.
        self.hub_only = hub_only
        #: The longest stretch without a switch, as measured (None without a limit).
        self.longest_gap = longest_gap
        #: The report's lines.
        self.report = list(report or ())


def _check_limit(value: Any) -> Optional[float]:
    """``max_blocking_time``: None, or seconds as :data:`hubmon.config` takes them."""
    if value is None:
        return None
    if callable(value):
        raise TypeError("max_blocking_time must be a number of seconds or None, not %r; "
                        "as a decorator, write @assert_switches() with parentheses" % (value,))
    return THRESHOLD.from_code(value, "max_blocking_time")


def _root_of(glet: Any) -> Any:
    while glet.parent is not None:
        glet = glet.parent
    return glet


def _resolve_hub(hub: Any, hub_only: bool) -> Any:
    """The hub to watch in this thread, or None. Raises TypeError/ValueError."""
    if hub is None:
        if "gevent" in sys.modules:
            from gevent import get_hub
            return get_hub()
        if hub_only:
            raise TypeError("assert_switches(hub_only=True) needs a hub: gevent is not in use, "
                            "so pass hub=<the hub greenlet>")
        return None
    if not isinstance(hub, greenlet.greenlet):
        raise TypeError("hub must be a greenlet or None, not %r" % (hub,))
    if _root_of(hub) is not _root_of(greenlet.getcurrent()):
        raise ValueError("hub %r belongs to another thread: a scope sees only the switches "
                         "of the thread that enters it" % (hub,))
    return hub


class assert_switches:  # noqa: N801 - gevent's name, used as a context manager
    """Assert that a block of code switches greenlets; a context manager and a decorator.

    Without *max_blocking_time*, leaving the body raises
    :exc:`FailedToSwitch` if it did not switch at all: to any greenlet, or
    into the hub when *hub_only* is true. With *max_blocking_time* (seconds),
    it raises if the longest stretch without a switch exceeded it; time the
    hub spends in its event loop is not a stretch (``gevent.sleep(1)``
    passes), and with *hub_only* the stretch ends only by switching into the
    hub. A body that does not switch but ends in time passes.

    An exception raised by the body propagates unchanged, and no assertion
    is made. Scopes nest, inside each other and inside a running
    :class:`~hubmon.Monitor`: each counts the switches of its own scope, and
    on exit the trace function in force before it is back.

    *hub* is the hub greenlet; None means gevent's hub for this thread when
    gevent is imported. Without gevent and without *hub*, ``hub_only=True``
    raises TypeError and ``hub_only=False`` watches plain greenlets.

    Raises :class:`~hubmon.ConfigError` (a ValueError) for a
    *max_blocking_time* that is not a number of seconds greater than 0 and at
    most 86400, or a *hub_only* that is not a bool, as :data:`hubmon.config`
    checks them; TypeError for a *hub* that is not a greenlet.

    After the scope, the instance tells what was measured: :attr:`duration`,
    :attr:`switches`, :attr:`hub_switches` and :attr:`longest_gap`.
    """

    def __init__(self, max_blocking_time: Optional[float] = None, hub_only: bool = False,
                 hub: Any = None):
        self.max_blocking_time = _check_limit(max_blocking_time)
        hub_only = BOOL.from_code(hub_only, "hub_only")
        if hub is not None and not isinstance(hub, greenlet.greenlet):
            raise TypeError("hub must be a greenlet or None, not %r" % (hub,))
        self.hub_only = hub_only
        self._hub_arg = hub
        #: Seconds the last body ran (None before the first exit).
        self.duration: Optional[float] = None
        #: Greenlet switches in this thread during the last body.
        self.switches: Optional[int] = None
        #: Switches into the hub during the last body (0 without a hub).
        self.hub_switches: Optional[int] = None
        #: The longest stretch without a switch in the last body, in seconds,
        #: measured by the native thread (None without *max_blocking_time*).
        self.longest_gap: Optional[float] = None
        self._active = False
        self._records: List[Any] = []
        self._judged: List[Any] = []
        # The records whose blocks this scope reports (registered with _dispatch).
        self._reporters: List[Any] = []
        self._hub: Any = None
        self._entered = 0.0
        self._thread_ident = 0
        # Reports built by the native thread: the one of the longest block
        # that ended, as (duration, lines), and the one of the block going
        # on, as (monotonic time it started, lines).
        self._best: Optional[Tuple[float, List[str]]] = None
        self._pending: Optional[Tuple[float, List[str]]] = None
        # Reports asked for by the native thread so far, and how many of
        # them to accept (None: all) once the body has ended.
        self._delivered = 0
        self._accepted: Optional[int] = None

    def __repr__(self) -> str:
        return "hubmon.assert_switches(max_blocking_time=%r, hub_only=%r)" % (
            self.max_blocking_time, self.hub_only)

    # -- decorator ---------------------------------------------------------------

    def __call__(self, function: _F) -> _F:
        """Decorate ``function``: each call runs in a fresh scope of the same settings."""
        if not callable(function):
            raise TypeError("assert_switches() decorates a callable, not %r" % (function,))

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with assert_switches(self.max_blocking_time, self.hub_only, self._hub_arg):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # -- context manager ------------------------------------------------------------

    def __enter__(self) -> "assert_switches":
        if self._active:
            raise RuntimeError("%r is already active; nest a new assert_switches() instead"
                               % (self,))
        hub = _resolve_hub(self._hub_arg, self.hub_only)
        current = greenlet.getcurrent()
        limit = self.max_blocking_time
        prepare_report()
        # (mode, threshold, reports, judged): the records of this scope. The
        # longest stretch is the lowest of the judged records' stretches.
        if limit is None:
            # Only the counters matter: nothing for the native thread.
            specs = [("any", _COUNT_ONLY, False, False)]
        elif self.hub_only:
            # The 'any' record is not judged: it keeps the native thread
            # from dozing while the hub runs (it dozes only when every record
            # is a hub's), because a stretch read with stats(finish=True)
            # just after a doze would start at the doze's start.
            specs = [("any", limit, False, False), ("hub", limit, True, True)]
        elif hub is None:
            specs = [("any", limit, True, True)]
        else:
            # "Any switch, but the hub's own time is no stretch": the lower
            # of an 'any' record (which counts the hub's time) and a 'hub'
            # record (which ignores switches that bypass the hub) is never
            # below the true stretch, and equals it unless both kinds of
            # stretch happen in one body. The 'any' record reports, and its
            # reports of the hub's own time are dropped (_on_blocked).
            specs = [("any", limit, True, True), ("hub", limit, False, True)]
        self._best = self._pending = None
        self._delivered = 0
        self._accepted = None
        self._hub = hub
        self._thread_ident = real_get_ident()
        self._records = []
        self._judged = []
        self._reporters = []
        try:
            for mode, threshold, report, judged in specs:
                record = _core.Record(hub, current, threshold, mode=mode, report=report)
                _tracing.attach(record, self._thread_ended)
                self._records.append(record)
                if judged:
                    self._judged.append(record)
                if limit is not None:
                    if report:
                        _dispatch.register(record.id, self._on_blocked, self._on_unblocked,
                                           self._on_call)
                        self._reporters.append(record)
                    record.start()
        except BaseException:
            self._teardown()
            raise
        self._active = True
        self._entered = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        __tracebackhide__ = True  # pytest shows the user's with statement instead
        duration = time.perf_counter() - self._entered
        if not self._active:
            raise RuntimeError("%r was not entered" % (self,))
        limit = self.max_blocking_time
        try:
            counts = self._records[0].stats()
            if limit is not None:
                gaps = [t.stats(finish=True)["longest_gap"] for t in self._judged]
                self.longest_gap = min(gaps)
                if exc_type is None and self.longest_gap > limit:
                    self._await_reports()
        finally:
            self._teardown()
        self.duration = duration
        self.switches = counts["switches"]
        self.hub_switches = counts["hub_switches"]
        if exc_type is not None:
            return None
        if limit is None:
            count = self.hub_switches if self.hub_only else self.switches
            if count == 0:
                self._fail(duration, self._report_no_switch())
        elif self.longest_gap is not None and self.longest_gap > limit:
            self._fail(duration, self._report_blocked())
        return None

    def _await_reports(self, patience: float = 1.0) -> None:
        """Let the reports of the blocks already detected reach Python.

        The native thread detects a block without the GIL but builds its
        report holding the GIL: a C call that held the GIL until the body
        ended leaves its report on the way. Waits for it (without the GIL),
        ``patience`` seconds at most; reports of later blocks (this wait's
        own) are refused.
        """
        reporters = self._reporters
        if not reporters:
            return
        self._accepted = reporters[0].stats()["blocks"]
        deadline = _core.monotonic() + patience
        while self._delivered < self._accepted and _core.monotonic() < deadline:
            real_sleep(0.005)

    def _teardown(self) -> None:
        """Remove this scope's records, newest first; callable from any thread."""
        self._active = False
        records, self._records = self._records, []
        self._judged = []
        self._reporters = []
        for record in reversed(records):
            _dispatch.unregister(record.id)
            record.stop()
            _tracing.detach(record, self._thread_ident)
        self._hub = None

    def _thread_ended(self) -> None:
        """The scope's thread ended inside the scope: stop sampling its records."""
        self._reporters = []
        for record in self._records:
            _dispatch.unregister(record.id)
            record.stop()

    # -- the failure ----------------------------------------------------------------

    def _fail(self, duration: float, report: List[str]) -> None:
        __tracebackhide__ = True
        message = "To the hub" if self.hub_only else "To any greenlet"
        message += " in %.4f seconds" % (duration,)
        if self.max_blocking_time is not None:
            message += " (max allowed %.4f seconds)" % (self.max_blocking_time,)
        raise FailedToSwitch(message + "\n" + "\n".join(report), duration=duration,
                             max_blocking_time=self.max_blocking_time, hub_only=self.hub_only,
                             longest_gap=self.longest_gap, report=report)

    def _target(self) -> str:
        return "into the hub" if self.hub_only else "to any greenlet"

    def _report_no_switch(self) -> List[str]:
        lines = ["The body never switched %s; it ran in %s. The threads and greenlets at its end:"
                 % (self._target(), _safe_repr(greenlet.getcurrent()))]
        lines.extend(format_run_info(max_greenlets=config.report_greenlet_limit or None,
                                     highlight=greenlet.getcurrent()))
        return lines

    def _report_blocked(self) -> List[str]:
        lines = ["The longest stretch without a switch %s lasted %.4f seconds." % (
            self._target(), self.longest_gap)]
        best = self._best
        pending = self._pending
        if pending is not None:
            going_on = _core.monotonic() - pending[0]
            if best is None or going_on > best[0]:
                best = (going_on, pending[1])
        if best is not None:
            lines.extend(best[1])
        else:
            # The native thread could not build the report in time (the
            # block held the GIL until the body ended, say).
            lines.append("hubmon could not take the stack while the body was blocked; "
                         "the threads and greenlets at its end:")
            lines.extend(format_run_info(max_greenlets=config.report_greenlet_limit or None,
                                         highlight=greenlet.getcurrent()))
        return lines

    # -- the native thread's events (called holding the GIL, never raising) ------------

    def _on_blocked(self, duration: float, current: int, gil_wait: float, switches: int,
                    cause: Any = None) -> bool:
        try:
            if self._accepted is not None and self._delivered >= self._accepted:
                return True  # a block of the wait in _await_reports
            if self._hub is not None and current == id(self._hub):
                return True  # the hub waiting in its loop: not a block
            captured = _blocked.capture(
                current=current, duration=duration, gil_wait=gil_wait,
                thread_ident=self._thread_ident, threshold=self.max_blocking_time or 0.0,
                hub=self._hub, max_greenlets=config.report_greenlet_limit or None,
                owner_repr=repr(self), gil_note=lambda: _GIL_NOTE,
                cause=_blocked.make_cause(cause, gil_wait))
            self._pending = (captured.started, captured.lines)
            return True
        finally:
            # Counted once the report is in place: the body's thread may run
            # while it is built, and _await_reports waits for this count.
            self._delivered += 1

    def _on_unblocked(self, duration: float) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and (self._best is None or duration > self._best[0]):
            self._best = (duration, pending[1])

    def _on_call(self) -> None:
        """A scope has no monitoring functions."""


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except BaseException:
        return "<%s at 0x%x>" % (type(obj).__name__, id(obj))
