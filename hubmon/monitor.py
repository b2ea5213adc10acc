"""The Monitor: one watched hub, and :func:`start`.

A Monitor owns a C tracer (``hubmon._core.Tracer``) installed with
``greenlet.settrace`` in the hub's thread. The native thread samples the
tracer's counters; when the hub is blocked it calls :func:`_native_event`
holding the GIL, and the Monitor builds the report and fires the events.
"""
from __future__ import annotations

import logging
import operator
import sys
import weakref
from typing import Any, Callable, Dict, List, Optional, TextIO

import greenlet

from . import _core, _gil
from ._memory import memory_watch, watch_memory
from ._threads import real_get_ident
from .config import ConfigError, config
from .events import EventLoopBlocked, EventLoopUnblocked, notify
from .report import _find_greenlets, format_blocked_report

__all__ = ["Monitor", "MonitoringFunction", "start", "running_monitors"]

# Handlers of the native thread's events, by record id: Monitors and
# assertion scopes. Only running ones are here.
_handlers: Dict[int, Any] = {}
# Running monitors by id(hub).
_by_hub: Dict[int, "Monitor"] = {}

_logger = logging.getLogger("hubmon")


class MonitoringFunction:
    """A function the native thread calls with the hub every ``period`` seconds."""

    __slots__ = ("function", "period", "next_run")

    def __init__(self, function: Callable[[Any], Any], period: float, next_run: float):
        #: The callable; it receives the hub.
        self.function = function
        #: Seconds between calls.
        self.period = period
        #: Monotonic time of the next call.
        self.next_run = next_run

    def __repr__(self) -> str:
        return "MonitoringFunction(%r, period=%r)" % (self.function, self.period)


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number of seconds, not %r" % (name, value))
    value = float(value)
    if not (0 < value < float("inf")) or value != value or value > 86400:
        raise ValueError("%s must be a finite number of seconds > 0 and <= 86400, not %r" % (name, value))
    return value


def _root_of(glet: Any) -> Any:
    while glet.parent is not None:
        glet = glet.parent
    return glet


class Monitor:
    """Watches one hub greenlet. Create it with :func:`hubmon.start`.

    It implements gevent's ``IPeriodicMonitorThread`` (``add_monitoring_function``),
    so gevent's hub can use it as its ``periodic_monitoring_thread``.
    """

    def __init__(self, hub: Any, *, max_blocking_time: float, max_memory_usage: Optional[int],
                 memory_monitor_period: float, print_blocking_reports: bool,
                 stream: Optional[TextIO]):
        self._hub_ref = weakref.ref(hub, self._on_hub_collected)
        self._hub_id = id(hub)
        self.max_blocking_time = max_blocking_time
        self.max_memory_usage = max_memory_usage
        self.memory_monitor_period = memory_monitor_period
        self.print_blocking_reports = print_blocking_reports
        self.stream = stream
        #: The identifier of the hub's thread.
        self.thread_ident = real_get_ident()
        self._functions: List[MonitoringFunction] = []
        self._blocked_greenlet: Any = None
        self._running = False
        self._tracer = _core.Tracer(hub, greenlet.getcurrent(), max_blocking_time, mode="hub")
        self._record_id = self._tracer.record_id

    # -- life cycle ---------------------------------------------------------

    def _start(self) -> None:
        self._tracer.install()
        fd, signum = _gil.setup(config.gil_signal, self._output_stream())
        self._tracer.set_gil_dump(fd, signum)
        _handlers[self._record_id] = self
        _by_hub[self._hub_id] = self
        self._running = True
        try:
            self._tracer.start()
        except BaseException:
            self.stop()
            raise
        watch_memory(self, self.max_memory_usage, self.memory_monitor_period)

    @property
    def hub(self) -> Any:
        """The watched hub greenlet, or None once it was garbage-collected."""
        return self._hub_ref()

    @property
    def running(self) -> bool:
        """Whether this monitor still watches its hub."""
        return self._running

    def stop(self) -> None:
        """Stop watching; put back the trace function installed before. Idempotent.

        Called in the hub's thread it uninstalls the tracer. Called from
        another thread it cannot touch that thread's trace function: the
        tracer stays installed but only forwards to the previous one.
        """
        if not self._running:
            return
        self._running = False
        _handlers.pop(self._record_id, None)
        if _by_hub.get(self._hub_id) is self:
            del _by_hub[self._hub_id]
        memory_watch.remove(self)
        if real_get_ident() == self.thread_ident:
            self._tracer.uninstall()
        else:
            self._tracer.detach()

    def kill(self) -> None:
        """Alias of :meth:`stop` (gevent's name)."""
        self.stop()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _on_hub_collected(self, _ref: Any) -> None:
        if sys.meta_path is None:
            # The interpreter is shutting down: the native thread is joined
            # already and there is nothing left to restore.
            self._running = False
            return
        self.stop()

    def _on_fork(self) -> None:
        """Called by gevent's hub after fork; the native side restarted already."""

    def _forget_after_fork(self) -> None:
        """In a forked child, for a monitor of a thread that does not exist there."""
        self._running = False
        _handlers.pop(self._record_id, None)
        if _by_hub.get(self._hub_id) is self:
            del _by_hub[self._hub_id]
        memory_watch.remove(self)
        self._tracer.detach()

    def __repr__(self) -> str:
        return "<hubmon.Monitor for %r threshold=%gs%s at 0x%x>" % (
            _safe_hub_repr(self.hub), self.max_blocking_time,
            "" if self._running else " stopped", id(self))

    # -- figures ---------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Figures of this monitor.

        ``switches`` (all greenlet switches in the hub's thread since the
        start), ``hub_switches`` (switches into the hub), ``blocks``
        (blockages reported), ``longest_block`` (seconds, including one going
        on), ``blocked_now``, ``max_blocking_time``, and ``histogram``: a dict
        from bucket upper bound in seconds (``float('inf')`` last) to the
        number of stretches the hub spent out of control for at most that
        long (not cumulative), measured by the native thread's samples.
        """
        if not self._tracer.counting:
            raise RuntimeError("this monitor was stopped after fork in another thread")
        raw = self._tracer.stats()
        bounds = list(_core.histogram_bounds()) + [float("inf")]
        return {
            "switches": raw["switches"],
            "hub_switches": raw["hub_switches"],
            "blocks": raw["blocks"],
            "longest_block": raw["longest_block"],
            "blocked_now": raw["blocked_now"],
            "max_blocking_time": raw["threshold"],
            "histogram": dict(zip(bounds, raw["histogram_counts"])),
        }

    def set_max_blocking_time(self, seconds: float) -> None:
        """Change the threshold of this running monitor."""
        seconds = _check_seconds("max_blocking_time", seconds)
        self._tracer.set_threshold(seconds)
        self.max_blocking_time = seconds

    # -- gevent's IPeriodicMonitorThread --------------------------------------

    def add_monitoring_function(self, function: Callable[[Any], Any], period: Optional[float]) -> None:
        """Call ``function(hub)`` about every ``period`` seconds from hubmon's thread.

        A ``period`` of None removes the function; the same function added
        again gets the new period. ``period <= 0`` or a non-callable raise
        ValueError. The function runs in hubmon's native thread holding the
        GIL, not in the hub's thread: it must not use gevent's blocking API.
        """
        if not callable(function):
            raise ValueError("function must be callable, not %r" % (function,))
        if period is None:
            self._functions = [f for f in self._functions if f.function != function]
        else:
            if isinstance(period, bool) or not isinstance(period, (int, float)) or not period > 0:
                raise ValueError("period must be a number of seconds > 0, not %r" % (period,))
            if period == float("inf"):
                raise ValueError("period must be finite, not %r" % (period,))
            entry = MonitoringFunction(function, float(period), _core.monotonic() + period)
            kept = [f for f in self._functions if f.function != function]
            self._functions = kept + [entry]
        self._schedule()

    def monitoring_functions(self) -> List[MonitoringFunction]:
        """The functions added with :meth:`add_monitoring_function`."""
        return list(self._functions)

    def ignore_current_greenlet_blocking(self) -> None:
        """Do not report the current greenlet's block until it switches."""
        self._tracer.ignore_current()

    def monitor_current_greenlet_blocking(self) -> None:
        """Undo :meth:`ignore_current_greenlet_blocking`."""
        self._tracer.monitor_current()

    def _schedule(self) -> None:
        when = min((f.next_run for f in self._functions), default=0.0)
        self._tracer.set_next_call(when)

    def _run_monitoring_functions(self) -> float:
        hub = self.hub
        if hub is None:
            self.stop()
            return 0.0
        now = _core.monotonic()
        for entry in list(self._functions):
            if entry.next_run <= now:
                entry.next_run = now + entry.period
                try:
                    entry.function(hub)
                except Exception:
                    _report_internal_error("monitoring function %r" % (entry.function,))
        return min((f.next_run for f in self._functions), default=0.0)

    # -- reports -----------------------------------------------------------------

    def _output_stream(self) -> Any:
        if self.stream is not None:
            return self.stream
        hub = self.hub
        stream = getattr(hub, "exception_stream", None) if hub is not None else None
        return stream if stream is not None else sys.stderr

    def _on_blocked(self, duration: float, current: int, gil_wait: float) -> None:
        hub = self.hub
        if hub is None or hub.dead:
            # A hub that finished its loop can never run again: nothing to watch.
            self.stop()
            return
        # One scan of the live greenlets serves the culprit and the report:
        # with 10,000 greenlets each scan holds the GIL for about 8 ms.
        greenlets = _find_greenlets()
        culprit = _find_greenlet(current, greenlets)
        self._blocked_greenlet = _weak(culprit)
        info = format_blocked_report(
            greenlet=culprit, thread_ident=self.thread_ident, duration=duration,
            threshold=self.max_blocking_time, hub=hub,
            max_greenlets=config.report_greenlet_limit or None,
            exclude_thread_ids=(real_get_ident(),), monitor_repr=repr(self),
            _greenlets=greenlets)
        del greenlets
        if gil_wait > 0.05:
            info.insert(2, "    The GIL was held for %.3f seconds before this report could be "
                           "built: a C call that does not release it was running. The stacks "
                           "written while it ran (faulthandler) are above." % gil_wait)
        event = EventLoopBlocked(culprit, self.max_blocking_time, info, hub=hub)
        event.duration = duration + gil_wait
        notify(event)
        if self.print_blocking_reports:
            self._write(event.info)

    def _write(self, lines: List[str]) -> None:
        text = "\n".join(lines)
        if config.report_to == "logging":
            _logger.warning("%s", text)
            return
        stream = self._output_stream()
        try:
            stream.write(text + "\n")
            stream.flush()
        except Exception:
            _report_internal_error("writing the report to %r" % (stream,))

    def _on_unblocked(self, duration: float) -> None:
        ref, self._blocked_greenlet = self._blocked_greenlet, None
        culprit = ref() if ref is not None else None
        notify(EventLoopUnblocked(culprit, self.hub, duration))


def _safe_hub_repr(hub: Any) -> str:
    try:
        return repr(hub)
    except Exception:
        return "<hub at 0x%x>" % id(hub)


def _weak(obj: Any) -> Any:
    if obj is None:
        return None
    try:
        return weakref.ref(obj)
    except TypeError:
        return None


def _find_greenlet(identity: int, greenlets: Optional[List[Any]] = None) -> Any:
    """The live greenlet whose id() is ``identity``, or None.

    The native thread knows the running greenlet only by its address; it
    never holds a reference. The address is turned back into an object only
    by finding it among the live greenlets (``greenlets``, else all of them),
    so a greenlet that died meanwhile is never touched. The search runs in C.
    """
    if not identity:
        return None
    if greenlets is None:
        greenlets = _find_greenlets()
    try:
        return greenlets[operator.indexOf(map(id, greenlets), identity)]
    except ValueError:
        return None


def _report_internal_error(what: str) -> None:
    try:
        import traceback
        sys.stderr.write("hubmon: error in %s:\n" % what)
        traceback.print_exc(file=sys.stderr)
    except Exception:
        pass


def _native_event(kind: str, record_id: int, value: float, current: int, gil_wait: float) -> Any:
    """Entry point of the native thread (holding the GIL). Never raises."""
    try:
        if kind == "memory":
            return memory_watch.check()
        handler = _handlers.get(record_id)
        if handler is None:
            return 0.0
        if kind == "blocked":
            handler._on_blocked(value, current, gil_wait)
        elif kind == "unblocked":
            handler._on_unblocked(value)
        elif kind == "call":
            return handler._run_monitoring_functions()
    except Exception:
        _report_internal_error("handling the native %r event" % (kind,))
    return 0.0 if kind == "call" else None


def _gevent_hub_for_this_thread() -> Any:
    if "gevent" not in sys.modules:
        return None
    from gevent import get_hub
    return get_hub()


def running_monitors() -> List[Monitor]:
    """The monitors now running, in every thread."""
    return list(_by_hub.values())


def start(hub: Any = None, *, max_blocking_time: Optional[float] = None,
          max_memory_usage: Optional[int] = None, memory_monitor_period: Optional[float] = None,
          print_blocking_reports: Optional[bool] = None, stream: Optional[TextIO] = None) -> Monitor:
    """Start monitoring ``hub`` and return its :class:`Monitor`.

    Must be called in the hub's thread. ``hub=None`` means gevent's hub for
    this thread when the program uses gevent. Arguments left as None come
    from :data:`hubmon.config`. If the hub is already monitored, the running
    monitor is returned unchanged.
    """
    if hub is None:
        hub = _gevent_hub_for_this_thread()
        if hub is None:
            raise TypeError("hubmon.start() needs hub=<the hub greenlet> when gevent is not in use")
    if not isinstance(hub, greenlet.greenlet):
        raise TypeError("hub must be a greenlet, not %r" % (hub,))
    if hub.dead:
        raise ValueError("hub %r is dead" % (hub,))
    if _root_of(hub) is not _root_of(greenlet.getcurrent()):
        raise RuntimeError("hubmon.start() must be called in the hub's thread: %r belongs "
                           "to another thread" % (hub,))
    existing = _by_hub.get(id(hub))
    if existing is not None and existing.hub is hub and existing.running:
        return existing

    threshold = _check_seconds("max_blocking_time", config.max_blocking_time
                               if max_blocking_time is None else max_blocking_time)
    if max_memory_usage is None:
        memory_limit = config.max_memory_usage
    else:
        if isinstance(max_memory_usage, bool) or not isinstance(max_memory_usage, int) or max_memory_usage <= 0:
            raise ValueError("max_memory_usage must be a number of bytes > 0, not %r" % (max_memory_usage,))
        memory_limit = max_memory_usage
    period = config.memory_monitor_period if memory_monitor_period is None else memory_monitor_period
    period = _check_seconds("memory_monitor_period", period)
    if period < 0.1:
        raise ValueError("memory_monitor_period must be at least 0.1 seconds, not %r" % (period,))
    if print_blocking_reports is None:
        print_blocking_reports = config.print_blocking_reports
    elif not isinstance(print_blocking_reports, bool):
        raise TypeError("print_blocking_reports must be a bool, not %r" % (print_blocking_reports,))
    if stream is not None and not callable(getattr(stream, "write", None)):
        raise TypeError("stream must have a write() method, not %r" % (stream,))

    monitor = Monitor(hub, max_blocking_time=threshold, max_memory_usage=memory_limit,
                      memory_monitor_period=period, print_blocking_reports=print_blocking_reports,
                      stream=stream)
    monitor._start()
    return monitor


def _after_fork_in_child() -> None:
    """Keep the monitors of the thread that forked; forget the others."""
    _core.after_fork_child()
    me = real_get_ident()
    for monitor in list(_by_hub.values()):
        if monitor.thread_ident != me:
            monitor._forget_after_fork()


__all__ += ["ConfigError"]
