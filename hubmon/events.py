"""The events hubmon fires, and the list of their subscribers.

Every event goes to the callables in :data:`subscribers`. When the program
has imported gevent, the blocked and memory events are also sent through
``gevent.events.notify`` as gevent's own classes, so zope.event subscribers
written for gevent's monitor keep working. Subscribers run in hubmon's
``events`` thread, never in the thread that detects blocks. Whatever a
subscriber raises (``SystemExit``, ``KeyboardInterrupt`` and ``GreenletExit``
included) is written once to stderr, naming the subscriber, and does not stop
the other subscribers, the report or monitoring.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, List, Optional, Tuple

    from .cause import Cause

__all__ = [
    "subscribers",
    "report_filters",
    "notify",
    "wait_for_delivery",
    "EventLoopBlocked",
    "EventLoopUnblocked",
    "MemoryUsageThresholdExceeded",
    "MemoryUsageUnderThreshold",
]

#: Callables that receive every event object, in order.
subscribers: List[Callable[[Any], None]] = []

#: Callables ``f(greenlet, hub, duration) -> bool`` asked, in order, whether a
#: monitor's blocked report is wanted, before it is collected: ``greenlet``
#: is the culprit (None when not found), ``duration`` the seconds blocked so
#: far. The first that returns a false value vetoes it: the report is neither
#: collected nor printed, and :class:`EventLoopBlocked` still fires, with
#: ``info == []`` and ``report`` None. One that raises counts as True; the
#: error is written to stderr, naming the filter. They run in hubmon's native
#: thread, holding the GIL, while the hub is blocked, with greenlet switches
#: forbidden (one raises): keep them cheap. :class:`hubmon.assert_switches`
#: scopes do not use them.
report_filters: List[Callable[[Any, Any, float], bool]] = []


class EventLoopBlocked:
    """A hub has not run for longer than its threshold.

    Fired from hubmon's native thread (holding the GIL) before the report is
    printed, so a subscriber may change :attr:`info`.
    """

    def __init__(self, greenlet: Any, blocking_time: float, info: List[str], hub: Any = None):
        #: The greenlet that was running instead of the hub (may be None if it
        #: could not be found).
        self.greenlet = greenlet
        #: The threshold (``max_blocking_time``) in seconds, as in gevent.
        self.blocking_time = blocking_time
        #: The report, a list of lines; subscribers may change it.
        self.info = info
        #: The blocked hub.
        self.hub = hub
        #: Seconds the hub had been blocked when the block was reported.
        self.duration: Optional[float] = None
        #: Why: a :class:`hubmon.cause.Cause` (``kind``, ``detail``,
        #: ``cpu_time``) decided by the native thread, or None when unknown.
        self.cause: Optional[Cause] = None
        #: True when the hub itself was blocked: it ran a callback (of
        #: ``loop.run_callback``, a ``link``, a watcher) for longer than the
        #: threshold instead of waiting for events; :attr:`greenlet` is then
        #: the hub. gevent's monitor never reports these.
        self.hub_itself = False
        #: The culprit's code location, 16 hex digits (str): the same for every
        #: blockage by the same code, whatever the greenlet or its locals; None
        #: when a report filter vetoed the report.
        self.fingerprint: Optional[str] = None
        #: Where the culprit blocks: ``"file:line in function"`` of the
        #: innermost frame of the blocked stack (or a description of the C
        #: code it runs); None when a report filter vetoed the report.
        self.place: Optional[str] = None
        #: The collected report (``hubmon._collect.BlockedReport``: plain data,
        #: ``to_dict()`` for JSON) that ``info`` was rendered from; None when a
        #: report filter vetoed it.
        self.report: Any = None

    def __repr__(self) -> str:
        return "<%s greenlet=%s duration=%s blocking_time=%s>" % (
            type(self).__name__, _safe_repr(self.greenlet), self.duration, self.blocking_time)


class EventLoopUnblocked:
    """A blocked hub runs again; fired once per reported blockage."""

    def __init__(self, greenlet: Any, hub: Any, duration: float,
                 profile: Optional[List[Tuple[Tuple[str, ...], int]]] = None, samples: int = 0):
        #: The greenlet that had blocked the hub, or None if it is gone.
        self.greenlet = greenlet
        #: The hub that runs again.
        self.hub = hub
        #: Total seconds the blockage lasted.
        self.duration = duration
        #: Where the blockage went: ``[(stack, count), ...]``, the largest
        #: count first. ``stack`` is a tuple of ``"file:line:function"``
        #: strings, outermost first; ``count`` is the time it stood for, in
        #: sampling intervals (threshold / 4). Empty when nothing was sampled.
        self.profile: List[Tuple[Tuple[str, ...], int]] = list(profile or ())
        #: The sum of the counts: the blockage's sampled length in intervals.
        self.samples: int = samples

    def folded(self) -> str:
        """The :attr:`profile` in the folded format of flame-graph tools (``stack count`` lines), as a str."""
        from ._profile import folded
        return folded(self.profile)

    def __repr__(self) -> str:
        return "<%s greenlet=%s duration=%.3f>" % (
            type(self).__name__, _safe_repr(self.greenlet), self.duration)


class _MemoryEvent:
    def __init__(self, mem_usage: int, max_allowed: int, memory_info: Any):
        #: The memory in use now, in bytes (psutil's uss, else rss).
        self.mem_usage = mem_usage
        #: The limit (``max_memory_usage``) in bytes.
        self.max_allowed = max_allowed
        #: psutil's ``memory_full_info()`` result.
        self.memory_info = memory_info

    def __repr__(self) -> str:
        return "<%s used=%d max=%d>" % (type(self).__name__, self.mem_usage, self.max_allowed)


class MemoryUsageThresholdExceeded(_MemoryEvent):
    """The process uses more memory than allowed, and more than at the last such event."""


class MemoryUsageUnderThreshold(_MemoryEvent):
    """Memory usage is back under the limit after a MemoryUsageThresholdExceeded."""

    def __init__(self, mem_usage: int, max_allowed: int, memory_info: Any, max_memory_usage: int):
        super().__init__(mem_usage, max_allowed, memory_info)
        #: The highest usage reported while over the limit, in bytes.
        self.max_memory_usage = max_memory_usage


def wait_for_delivery(timeout: float = 5.0) -> bool:
    """Wait until every event hubmon has detected so far is delivered and every report written.

    The native thread detects a block without the GIL, captures its report
    once it has the GIL, and hands the events to hubmon's events thread and
    the report to its printer thread. A test that blocks a hub and then
    checks what its subscriber saw calls this first. ``timeout`` is in
    seconds; returns False when that work did not all finish in time (a
    subscriber still runs, the blocked thread still holds the GIL), True
    when it did; ``wait_for_delivery(0)`` tells, without waiting, whether
    it has. Raises :class:`~hubmon.ConfigError` (a ValueError) for a
    ``timeout`` that is not seconds from 0 to 86400, and RuntimeError when
    called in one of hubmon's own threads (a subscriber), which would wait
    for itself.
    """
    from . import _delivery
    from ._threads import is_own_thread
    from ._values import TIMEOUT
    seconds = TIMEOUT.from_code(timeout, "timeout")
    if is_own_thread():
        raise RuntimeError("wait_for_delivery() cannot be called in hubmon's own threads "
                           "(a subscriber or a monitoring function): it would wait for itself")
    return _delivery.drain(seconds)


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except BaseException:
        return "<unreprable %s at 0x%x>" % (type(obj).__name__, id(obj))


def _report_subscriber_error(subscriber: Any, event: Any) -> None:
    """Write, once, what ``subscriber`` raised on ``event`` (the exception being handled)."""
    from . import _output
    _output.write_error("subscriber %s raised %s on %s" % (
        _safe_repr(subscriber), type(sys.exc_info()[1]).__name__, _safe_repr(event)))


def _call_each(subscribers: Any, event: Any) -> None:
    """Call every subscriber with ``event``; contain whatever each raises."""
    for subscriber in subscribers:
        try:
            subscriber(event)
        except BaseException:  # SystemExit, KeyboardInterrupt, GreenletExit too
            _report_subscriber_error(subscriber, event)


def _gevent_events() -> Any:
    """The module gevent.events if the program imported it, else None.

    A module the hub's thread is still importing is in ``sys.modules``
    half-made; importing it here waits until it is whole.
    """
    if "gevent.events" not in sys.modules:
        return None
    try:
        __import__("gevent.events")
    except Exception:
        return None
    return sys.modules.get("gevent.events")


def _gevent_twin(event: Any) -> Any:
    """gevent's own event class for ``event``, or None (gevent not imported)."""
    gevent_events = _gevent_events()
    if gevent_events is None:
        return None
    if isinstance(event, EventLoopBlocked):
        try:
            return gevent_events.EventLoopBlocked(event.greenlet, event.blocking_time, event.info, hub=event.hub)
        except TypeError:  # gevent before 24.11 has no hub argument
            return gevent_events.EventLoopBlocked(event.greenlet, event.blocking_time, event.info)
    if isinstance(event, MemoryUsageUnderThreshold):
        return gevent_events.MemoryUsageUnderThreshold(
            event.mem_usage, event.max_allowed, event.memory_info, event.max_memory_usage)
    if isinstance(event, MemoryUsageThresholdExceeded):
        return gevent_events.MemoryUsageThresholdExceeded(event.mem_usage, event.max_allowed, event.memory_info)
    return None


def notify(event: Any) -> None:
    """Send ``event`` to every subscriber, then to gevent's subscribers.

    For :class:`EventLoopBlocked`, if a gevent subscriber replaces its
    event's ``info`` list, the replacement becomes ``event.info``.
    """
    _call_each(list(subscribers), event)
    twin = _gevent_twin(event)
    if twin is None:
        return
    gevent_events = _gevent_events()
    _call_each(list(getattr(gevent_events, "subscribers", ())), twin)
    if isinstance(event, EventLoopBlocked) and twin.info is not event.info:
        event.info = twin.info
