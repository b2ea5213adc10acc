"""The Monitor: one watched hub, and :func:`start`.

A Monitor owns a record (``hubmon._core.Record``) counted by its thread's
hubmon trace function (:mod:`hubmon._tracing`) and sampled by the native
thread. When the hub is blocked, the native thread captures the report
(:meth:`Monitor._on_blocked`, routed by :mod:`hubmon._dispatch`); the events
fire and the report is printed in hubmon's delivery threads
(:mod:`hubmon._delivery`), so user code never holds up detection.
"""
from __future__ import annotations

import sys
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, Dict, List, Optional, TextIO

import greenlet

from . import (_blocked, _core, _culprits, _delivery, _dispatch, _filters, _gil, _output,
               _printing, _profile, _tracing)
from ._memory import memory_watch, watch_memory
from ._threads import is_own_thread, real_get_ident, real_lock, real_sleep
from ._values import BOOL, BYTES, MEMORY_PERIOD, PERIOD, REPEAT_WINDOW, THRESHOLD
from .config import ConfigError, config
from .events import EventLoopBlocked, EventLoopUnblocked, notify
from .report import prepare as prepare_report

__all__ = ["Monitor", "MonitoringFunction", "start", "running_monitors"]

_NO_STREAM = object()

# Running monitors by id(hub).
_by_hub: Dict[int, "Monitor"] = {}


class MonitoringFunction:
    """A function called with the hub every ``period`` seconds (gevent's ``_MonitorEntry``).

    :meth:`Monitor.monitoring_functions` lists them, hubmon's built-in checks
    first, as gevent's monitor does.
    """

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


def _root_of(glet: Any) -> Any:
    while glet.parent is not None:
        glet = glet.parent
    return glet


class Monitor:
    """Watches one hub greenlet. Create it with :func:`hubmon.start`.

    It implements gevent's ``IPeriodicMonitorThread`` (``add_monitoring_function``),
    so gevent's hub can use it as its ``periodic_monitoring_thread``. Every
    setting it uses was read and validated when it started.
    """

    def __init__(self, hub: Any, *, max_blocking_time: float, max_memory_usage: Optional[int],
                 memory_monitor_period: float, print_blocking_reports: bool,
                 stream: Optional[TextIO], report_to: str = "stream",
                 report_greenlet_limit: int = 50, gil_signal: int = 0, memory_check: bool = True,
                 from_gevent: bool = False, repeat_window: float = 60.0,
                 report_format: str = "text", unblocked_report_time: Optional[float] = None):
        self._hub_ref = weakref.ref(hub, self._on_hub_collected)
        self._hub_id = id(hub)
        self.max_blocking_time = max_blocking_time
        self.max_memory_usage = max_memory_usage
        self.memory_monitor_period = memory_monitor_period
        self._print_blocking_reports = print_blocking_reports
        #: The stream reports are written to; None: the hub's ``exception_stream``.
        self.stream = stream
        #: Where reports go: 'stream' or 'logging' (``HUBMON_REPORT_TO``).
        self.report_to = report_to
        #: Greenlets shown in full in a report; 0 for all (``HUBMON_REPORT_GREENLETS``).
        self.report_greenlet_limit = report_greenlet_limit
        #: The signal of the GIL-held stack dump, or 0 (``HUBMON_GIL_SIGNAL``).
        self.gil_signal = gil_signal
        #: Seconds from which a blockage gets an "unblocked" report with its
        #: profile; None for 4 x max_blocking_time (``HUBMON_UNBLOCKED_REPORT_TIME``).
        self.unblocked_report_time = unblocked_report_time
        #: Seconds after a full report during which a blockage with the same
        #: fingerprint prints one line; 0: every report in full (``HUBMON_REPEAT_WINDOW``).
        self.repeat_window = repeat_window
        #: 'text' or 'json' (``HUBMON_REPORT_FORMAT``).
        self.report_format = report_format
        self._culprits = _culprits.Table()
        self._windows = _culprits.Windows()     # the printer thread's only
        #: True when the gevent drop-in started it (``Hub.start_periodic_monitoring_thread``):
        #: then it follows changes made through ``gevent.config``.
        self.from_gevent = from_gevent
        #: The identifier of the hub's thread.
        self.thread_ident = real_get_ident()
        self._functions: List[MonitoringFunction] = []
        self._blocked_greenlet: Any = None
        self._blocked_info: Optional[List[str]] = None
        # Whether this monitor may watch memory (gevent: the main hub's only).
        self._memory_check = memory_check
        self._blocked_since: Optional[float] = None
        # Taken to end a blockage: by the native thread or by stop(), once.
        self._blockage_lock = real_lock()
        self._halted_at: Optional[float] = None
        self._profile: Optional[_profile.Profile] = None
        self._profile_switches = 0
        self._loop_watcher: Any = None
        self._blocked_repr = ""
        self._running = False
        self._gil_dump = False
        self._warned_blind = False
        self._record = _core.Record(hub, greenlet.getcurrent(), max_blocking_time, mode="hub")
        self._record_id = self._record.id

    # -- life cycle ---------------------------------------------------------

    def _start(self) -> None:
        if self.report_to == "logging":
            import logging  # noqa: F401 - now, so that on_start orders the exit hooks
        on_start()
        prepare_report()
        _culprits.prepare()
        _tracing.attach(self._record, self._thread_ended, self._tracer_dropped)
        try:
            stream = self._output_stream()
            self._gil_dump = _gil.acquire(self.gil_signal, stream if stream is not None else sys.stderr)
            self._update_gil_dump()
            _dispatch.register(self._record_id, self._on_blocked, self._on_unblocked,
                               self._on_call, self._on_sample)
            _watch_gc()
            self._count_loop_iterations(self.hub)
            _by_hub[self._hub_id] = self
            self._running = True
            self._record.start()
            if self._memory_check:
                watch_memory(self, self.max_memory_usage, self.memory_monitor_period)
        except BaseException:
            self._running = True
            self.stop()
            raise

    def _count_loop_iterations(self, hub: Any) -> None:
        """Count the iterations of the hub's event loop (a gevent hub's ``loop``).

        A prepare watcher, which the loop calls before each wait for events,
        calls the record's ``loop_iteration`` (a C function that increments a
        counter): the native thread can then tell a hub that runs one callback
        too long from one that waits for events or goes round its loop. A hub
        without a gevent loop is not judged that way. Hub's thread.
        """
        loop = getattr(hub, "loop", None)
        prepare = getattr(loop, "prepare", None)
        if prepare is None:
            return
        watcher = prepare(ref=False)
        watcher.start(self._record.loop_iteration)
        self._loop_watcher = watcher

    def _stop_counting_loop_iterations(self) -> None:
        """Stop the prepare watcher: at once in the hub's thread, else through the loop."""
        watcher, self._loop_watcher = self._loop_watcher, None
        if watcher is None:
            return
        try:
            if real_get_ident() == self.thread_ident:
                watcher.stop()
                return
            hub = self.hub
            if hub is not None and not hub.dead:
                hub.loop.run_callback_threadsafe(watcher.stop)
        except BaseException:
            pass    # a loop already destroyed has no watchers left to stop

    @property
    def hub(self) -> Any:
        """The watched hub greenlet, or None once it was garbage-collected."""
        return self._hub_ref()

    @property
    def running(self) -> bool:
        """Whether this monitor still watches its hub."""
        return self._running

    @property
    def print_blocking_reports(self) -> bool:
        """Whether a blocked report is printed (gevent's ``print_blocking_reports``).

        The events fire either way. Assignable while the monitor runs; so is
        the hub's ``exception_stream``, which gevent reads the same way: None
        (or another false value) there prints nothing either.
        """
        return self._print_blocking_reports

    @print_blocking_reports.setter
    def print_blocking_reports(self, value: bool) -> None:
        self._print_blocking_reports = BOOL.from_code(value, "print_blocking_reports")
        self._update_gil_dump()

    def _update_gil_dump(self) -> None:
        """The GIL-held stack dump is printing too: on only while reports are printed."""
        self._record.set_gil_dump(self._gil_dump and self._print_blocking_reports
                                  and self._output_stream() is not None)

    @property
    def should_run(self) -> bool:
        """gevent's name for :attr:`running` (``PeriodicMonitoringThread.should_run``)."""
        return self._running

    def stop(self) -> None:
        """Stop watching. Idempotent; callable from any thread.

        In the hub's thread, hubmon's trace function is taken out of the
        chain when nothing else of hubmon's uses it and it is on top; from
        another thread it stays, counting nothing and forwarding to the
        trace function it replaced, and serves the thread's next monitor.
        """
        self._halt(touch_tracer=True)

    def _halt(self, touch_tracer: bool) -> None:
        if not self._running:
            return
        self._running = False
        _dispatch.unregister(self._record_id)
        if _by_hub.get(self._hub_id) is self:
            del _by_hub[self._hub_id]
        memory_watch.remove(self)
        self._record.stop()
        self._stop_counting_loop_iterations()
        # A blockage reported and not ended: it ends with the monitor (its
        # thread ended, say), and its EventLoopUnblocked fires.
        self._halted_at = _core.monotonic()
        self._on_unblocked(None)
        if touch_tracer:
            _tracing.detach(self._record, self.thread_ident)
        if self._gil_dump:
            self._gil_dump = False
            _gil.release()

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

    def _thread_ended(self) -> None:
        """The hub's thread ended without stop(): stop, leaving its (gone) tracer alone."""
        self._halt(touch_tracer=False)

    def _on_fork(self) -> None:
        """Called by gevent's hub after fork; the native side is ready already."""

    def _forget_after_fork(self) -> None:
        """In a forked child, for a monitor of a thread that does not exist there."""
        self._halt(touch_tracer=False)

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
        long (not cumulative), measured by the native thread's samples;
        ``culprits``: a list of dicts ``{"fingerprint", "place", "count",
        "total", "longest"}``, one per culprit code location (blockages
        reported, and seconds blocked in all and at most, a blockage going on
        counting with its duration so far), largest total first; at most
        1000 (beyond, the culprit with the smallest total is dropped).
        Blockages whose report a report filter vetoed are not in it.
        """
        raw = self._record.stats()
        bounds = list(_core.histogram_bounds()) + [float("inf")]
        return {
            "switches": raw["switches"],
            "hub_switches": raw["hub_switches"],
            "blocks": raw["blocks"],
            "longest_block": raw["longest_block"],
            "blocked_now": raw["blocked_now"],
            "max_blocking_time": raw["threshold"],
            "histogram": dict(zip(bounds, raw["histogram_counts"])),
            "culprits": self._culprits.rows(_core.monotonic()),
        }

    def set_memory_limit(self, max_memory_usage: Optional[int],
                         memory_monitor_period: Optional[float] = None) -> None:
        """Change the memory limit (bytes, None for none) and, if given, the check's period (seconds).

        The memory check is process-wide: the lowest limit and the shortest
        period of the running monitors apply. A monitor of gevent's drop-in
        for another hub than the main one never watches memory, as in
        gevent. Raises :class:`~hubmon.ConfigError` (a ValueError) naming a
        bad argument.
        """
        if max_memory_usage is not None:
            max_memory_usage = BYTES.from_code(max_memory_usage, "max_memory_usage")
        if memory_monitor_period is not None:
            self.memory_monitor_period = MEMORY_PERIOD.from_code(memory_monitor_period,
                                                                 "memory_monitor_period")
        self.max_memory_usage = max_memory_usage
        if self._running and self._memory_check and max_memory_usage:
            # Replaces this monitor's limit in place: a limit raised while
            # over the old one still ends in MemoryUsageUnderThreshold.
            watch_memory(self, max_memory_usage, self.memory_monitor_period)
        else:
            memory_watch.remove(self)

    def set_max_blocking_time(self, seconds: float) -> None:
        """Change the threshold of this running monitor, in seconds.

        Raises :class:`~hubmon.ConfigError` (a ValueError) for a value that is
        not a number of seconds greater than 0 and at most a day.
        """
        seconds = THRESHOLD.from_code(seconds, "max_blocking_time")
        self._record.set_threshold(seconds)
        self.max_blocking_time = seconds

    # -- gevent's IPeriodicMonitorThread --------------------------------------

    def add_monitoring_function(self, function: Callable[[Any], Any], period: Optional[float]) -> None:
        """Call ``function(hub)`` about every ``period`` seconds from hubmon's events thread.

        gevent's ``IPeriodicMonitorThread.add_monitoring_function``. A new
        function (or one added again with another period) is first called at
        the native thread's next sample (within ``max_blocking_time / 8``
        seconds), as gevent's monitor calls it at its next wake-up; then
        every ``period`` seconds. A
        ``period`` of None removes the function.

        The function runs in hubmon's ``events`` thread, not in the hub's
        thread (as in gevent, where it runs in the monitor's thread):
        gevent's blocking API there runs that thread's own hub, not the
        watched one, and a function that blocks delays only the next events,
        never detection. Whatever it raises is written to stderr and it keeps
        being called at its period.

        Raises ValueError for a non-callable, a ``period`` that is not a
        finite number of seconds > 0, or one of the built-in checks
        (:meth:`monitor_blocking`, :meth:`monitor_memory_usage`), which are
        set by ``max_blocking_time`` and the memory settings instead.
        """
        if not callable(function):
            raise ValueError("function must be callable, not %r" % (function,))
        if function in self._builtin_functions():
            raise ValueError("%r is hubmon's built-in check: change max_blocking_time or the memory "
                             "settings instead" % (function,))
        if period is None:
            self._functions = [f for f in self._functions if f.function != function]
        else:
            seconds = PERIOD.from_code(period, "period")
            # Due now: gevent's monitor calls a new entry at its next wake-up.
            entry = MonitoringFunction(function, seconds, _core.monotonic())
            kept = [f for f in self._functions if f.function != function]
            self._functions = kept + [entry]
        self._schedule()

    def monitoring_functions(self) -> List[MonitoringFunction]:
        """The monitoring functions, as gevent's ``monitoring_functions()`` lists them.

        First hubmon's built-in checks, which the native thread performs:
        :meth:`monitor_blocking` (period ``max_blocking_time``) and, when
        psutil is installed and this monitor may watch memory (any monitor
        started with :func:`start`; with the gevent drop-in, the main hub's,
        as in gevent), :meth:`monitor_memory_usage` (period
        ``memory_monitor_period``); then the functions added with
        :meth:`add_monitoring_function`, oldest first. Returns a new list.
        """
        builtin = [MonitoringFunction(self.monitor_blocking, self.max_blocking_time, 0.0)]
        if self._memory_check and memory_watch.can_measure():
            builtin.append(MonitoringFunction(self.monitor_memory_usage, self.memory_monitor_period, 0.0))
        return builtin + list(self._functions)

    @property
    def _monitoring_functions(self) -> List[MonitoringFunction]:
        """gevent's private name for :meth:`monitoring_functions`, read by gevent's own tests."""
        return self.monitoring_functions()

    def _builtin_functions(self) -> tuple:
        return (self.monitor_blocking, self.monitor_memory_usage)

    def monitor_blocking(self, hub: Any = None) -> Optional[tuple]:
        """The blocking check (gevent's ``monitor_blocking``), done by hubmon's native thread.

        The native thread performs it about every ``max_blocking_time / 8``
        seconds without the GIL; calling this method only reads its result:
        ``(greenlet, info)`` of the blockage of this hub reported and not
        ended yet (``info``: the report's lines), or None. ``hub`` is
        accepted for gevent's signature and ignored.
        """
        ref, info = self._blocked_greenlet, self._blocked_info
        if self._blocked_since is None or info is None:
            return None
        return (ref() if ref is not None else None, info)

    def monitor_memory_usage(self, hub: Any = None) -> int:
        """The memory check (gevent's ``monitor_memory_usage``), done by hubmon's native thread.

        Calling it returns -1 when this monitor has no memory limit (gevent's
        value for "disabled"), else the process's memory usage now, in bytes
        (psutil's unique set size, or the resident set size where there is
        none). It fires no event: the events come from the periodic check.
        ``hub`` is accepted for gevent's signature and ignored.
        """
        if not self.max_memory_usage or not memory_watch.can_measure():
            return -1
        return memory_watch.usage()

    def ignore_current_greenlet_blocking(self) -> None:
        """Do not report the current greenlet's block until it switches."""
        self._record.ignore_current()

    def monitor_current_greenlet_blocking(self) -> None:
        """Undo :meth:`ignore_current_greenlet_blocking`."""
        self._record.monitor_current()

    def _next_due(self) -> float:
        return min((f.next_run for f in self._functions), default=0.0)

    def _schedule(self) -> None:
        self._record.set_next_call(self._next_due())

    def _on_call(self) -> None:
        """Native thread: the monitoring functions are due; run them in the events thread."""
        if not _delivery.events.post(self._run_monitoring_functions):
            self._record.call_done(0.0)

    def _run_monitoring_functions(self) -> None:
        """Events thread: call the due functions, each contained; acknowledge with the next time."""
        next_due = 0.0
        try:
            hub = self.hub
            if hub is None or not self._running:
                return
            now = _core.monotonic()
            for entry in list(self._functions):
                if entry.next_run <= now:
                    entry.next_run = now + entry.period
                    try:
                        entry.function(hub)
                    except BaseException:
                        _output.write_error("monitoring function %s raised %s" % (
                            _safe_hub_repr(entry.function), type(sys.exc_info()[1]).__name__))
            next_due = self._next_due()
        finally:
            self._record.call_done(next_due)

    # -- reports -----------------------------------------------------------------

    def _output_stream(self) -> Any:
        """Where a report is written now: ``stream``, else the hub's ``exception_stream``.

        None means do not print: gevent documents a false ``exception_stream``
        as "printing disabled". A hub without the attribute (not gevent's)
        prints to ``sys.stderr``.
        """
        if self.stream is not None:
            return self.stream
        hub = self.hub
        if hub is None:
            return sys.stderr
        try:
            stream = getattr(hub, "exception_stream", _NO_STREAM)
        except BaseException:
            stream = _NO_STREAM
        if stream is _NO_STREAM:
            return sys.stderr
        return stream if stream else None

    def _on_blocked(self, duration: float, current: int, gil_wait: float, switches: int,
                    cause: Any = None) -> bool:
        """Native thread, holding the GIL: capture the report and hand it on.

        Returns False (no report) when the evidence contradicts the block:
        the greenlet the trace function last saw is suspended, or the hub
        runs, while no switch was counted since (the thread's trace function
        no longer calls hubmon's).
        """
        hub = self.hub
        if hub is None or hub.dead:
            # A hub that finished its loop can never run again: nothing to watch.
            self.stop()
            return True

        def gil_note() -> str:
            if _core.gil_dump_lost():
                return ("No stack could be written while it ran: signal %d no longer has "
                        "hubmon's handler (the program replaced it), so the dump is off."
                        % (self.gil_signal,))
            if not self._gil_dump:
                return "The stack dump is off (HUBMON_GIL_SIGNAL)."
            target = _gil.dump_stream()
            if self.report_to != "logging" and target is self._output_stream():
                return "The stacks written while it ran (faulthandler) are above."
            return ("The stacks written while it ran (faulthandler) went to %s, this "
                    "monitor's stream when the dump was turned on." % (_safe_hub_repr(target),))

        def plausible(culprit: Any) -> bool:
            return _plausible(self._record, switches, hub, culprit)

        def want_report(culprit: Any, so_far: float) -> bool:
            return _filters.wanted(culprit, hub, so_far)

        self._blocked_info = None
        hub_itself = bool(cause[3]) if cause is not None else False
        captured = _blocked.capture(
            current=current, duration=duration, gil_wait=gil_wait,
            thread_ident=self.thread_ident, threshold=self.max_blocking_time, hub=hub,
            max_greenlets=self.report_greenlet_limit or None, owner_repr=repr(self),
            gil_note=gil_note, plausible=plausible,
            cause=_blocked.make_cause(cause, gil_wait), hub_itself=hub_itself,
            ended=None if hub_itself else (lambda: self._record.switches != switches),
            want_report=want_report if _filters.events.report_filters else None)
        if captured is None:
            _delivery.printer.post(self._warn_blind)
            return False
        culprit, info = captured.culprit, captured.lines
        self._blocked_greenlet = _weak(culprit)
        self._blocked_since = captured.started
        self._blocked_info = info
        # The repr the report collected: user code runs once per report.
        report = captured.report
        self._blocked_repr = (report.culprit if report is not None and report.culprit
                              else "<%s at 0x%x>" % (type(culprit).__name__, id(culprit)))
        # The report's stack stands for the blockage up to its detection. A
        # report a filter vetoed vetoes the profile's samples too.
        self._profile = None
        if report is not None:
            self._profile = _profile.Profile(self._profile_interval(), captured.started)
            self._profile_switches = switches
            self._profile.add(captured.stack, _core.monotonic())
        event = EventLoopBlocked(culprit, self.max_blocking_time, info, hub=hub)
        event.duration = captured.duration
        event.cause = captured.cause
        event.hub_itself = hub_itself
        event.report, event.fingerprint, event.place = (
            captured.report, captured.fingerprint, captured.place)
        if captured.fingerprint is not None:
            self._culprits.blocked(captured.fingerprint, captured.place, captured.started)
        else:
            self._culprits.forget_current()
        delivered = _delivery.Flag()
        if not _delivery.events.post(_deliver, event, delivered):
            delivered.set()
        if self.print_blocking_reports:
            _delivery.printer.post(self._print_report, event, delivered, (info, tuple(info)))
        if not self._running:
            # The monitor stopped while this report was built (its thread
            # ended then): the blockage ended with it.
            self._on_unblocked(None)
        return True

    def _warn_blind(self) -> None:
        if self._warned_blind:
            return
        self._warned_blind = True
        _output.write_stderr((
            "hubmon: the greenlet trace function of thread 0x%x no longer calls hubmon's "
            "(greenlet.settrace() replaced it without chaining to it): hubmon cannot see that "
            "thread's switches, so it reports no block there until its trace function is "
            "called again (hubmon.start() in that thread installs a new one)." % (self.thread_ident,)))

    def _tracer_dropped(self) -> None:
        """The thread's hubmon trace function was freed while this monitor ran.

        Judged by the printer, later: when the thread itself ended, the
        monitor has stopped by then, and there is nothing to say.
        """
        if self._running:
            _delivery.printer.post(self._warn_if_still_running)

    def _warn_if_still_running(self) -> None:
        if self._running:
            self._warn_blind()

    def _print_report(self, event: EventLoopBlocked, delivered: Any, original: Any) -> None:
        """Printer thread: wait (boundedly) for the subscribers, then write ``event.info``,
        its one-line repeat or its JSON line (:mod:`hubmon._printing`)."""
        delivered.wait(_subscriber_patience(self.max_blocking_time))
        if not self._print_blocking_reports:
            return
        text = _printing.blocked_text(self._windows, event, original,
                                      repeat_window=self.repeat_window,
                                      report_format=self.report_format)
        if not text:
            return      # a subscriber emptied the report: nothing to print, as in gevent
        self._write(text)

    def _write(self, text: str, level: int = 30) -> None:
        """Printer thread: write ``text`` where this monitor's reports go (logged at ``level``)."""
        if self.report_to == "logging":
            stream = None
        else:
            stream = self._output_stream()
            if stream is None:
                return
        try:
            _output.write(stream, text, level)
        except BaseException:
            where = ("logging.getLogger('hubmon')" if stream is None
                     else "the stream %s" % (_safe_hub_repr(stream),))
            _output.write_error("the report could not be written to %s (%s)" % (
                where, type(sys.exc_info()[1]).__name__))

    def _profile_interval(self) -> float:
        """The profile's base interval in seconds: threshold / 4, never under the sampling period."""
        return max(self.max_blocking_time / 4.0, _core.sampler_period())

    def _on_sample(self, interval: float, gil_wait: float) -> None:
        """Native thread, switches forbidden: one profile sample of the blockage going on."""
        profile = self._profile
        # A switch since the block was decided: the culprit let go, and the
        # stack now is no longer the blockage's.
        if profile is not None and self._record.switches == self._profile_switches:
            profile.add(_profile.take_stack(self.thread_ident), _core.monotonic())

    def _on_unblocked(self, duration: Optional[float]) -> None:
        """The blockage reported last ended ``duration`` seconds after it began (None: now).

        Native thread (the hub runs again), or the monitor's stop. Once per
        blockage, whichever comes first; the event fires in the events thread.
        """
        with self._blockage_lock:
            since, self._blocked_since = self._blocked_since, None
        if since is None:
            return
        if duration is None:
            # It ended when the monitor stopped (its thread ended then), at
            # the latest; a report still being built then ends it afterwards.
            end = self._halted_at if self._halted_at is not None else _core.monotonic()
            duration = max(0.0, end - since)
        ref, self._blocked_greenlet = self._blocked_greenlet, None
        self._blocked_info = None
        profile, self._profile = self._profile, None
        culprit = ref() if ref is not None else None
        counts = profile.result() if profile is not None else []
        event = EventLoopUnblocked(culprit, self.hub, duration, counts,
                                   sum(count for _, count in counts))
        delivered = _delivery.Flag()
        if not _delivery.events.post(_deliver, event, delivered):
            delivered.set()
        ended = self._culprits.unblocked(duration)
        if not self._print_blocking_reports:
            return
        if self.report_format == "json":
            if ended is not None:
                _delivery.printer.post(self._print_unblocked, event, ended, delivered)
            return
        limit = self.unblocked_report_time
        if limit is None:
            limit = 4 * self.max_blocking_time
        if profile is not None and duration >= limit:
            lines = _profile.render(
                culprit=self._blocked_repr, duration=duration, threshold=self.max_blocking_time,
                interval=profile.interval, profile=counts, samples=profile.samples,
                timestamp=_utc_now())
            _delivery.printer.post(self._print_profile, lines, delivered)

    def _print_unblocked(self, event: EventLoopUnblocked, ended: Any, delivered: Any) -> None:
        """Printer thread, JSON format: the line of a reported blockage's end."""
        delivered.wait(_subscriber_patience(self.max_blocking_time))
        self._write(_printing.unblocked_text(event, *ended), level=20)

    def _print_profile(self, lines: List[str], delivered: Any) -> None:
        """Printer thread: write the "unblocked" report of a long blockage, unless
        its blocked report was printed as a one-line repeat (then the profile
        stays in the event only)."""
        delivered.wait(_subscriber_patience(self.max_blocking_time))
        if not self._print_blocking_reports or self._windows.last_was_repeat:
            return
        self._write("\n".join(lines), level=20)


_report_text = _printing.report_text


def _utc_now() -> str:
    """The time now as the report header writes it (UTC, milliseconds)."""
    import time
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000,)


_gc_watched = False


def _watch_gc() -> None:
    """Let the native thread see garbage-collection passes (``gc.callbacks``), once per process."""
    global _gc_watched
    if not _gc_watched:
        import gc
        if _core.gc_callback not in gc.callbacks:
            gc.callbacks.append(_core.gc_callback)
        _gc_watched = True


def _subscriber_patience(threshold: float) -> float:
    """How long a report waits for its event's subscribers: the threshold, within [0.1, 1] s."""
    return min(1.0, max(0.1, threshold))


def _deliver(event: Any, delivered: Any) -> None:
    """Events thread: fire ``event``, then let its report be printed."""
    try:
        notify(event)
    finally:
        delivered.set()


#: How long, and how often, a contradicted block is looked at again before
#: it is taken for the sign of a blind trace function (seconds, times).
_RECHECK_PAUSE = 0.002
_RECHECKS = 5


def _plausible(record: Any, switches: int, hub: Any, culprit: Any) -> bool:
    """Whether the evidence allows "``culprit`` blocks ``hub``", the block decided at ``switches``.

    Native thread, holding the GIL. A contradiction (see :func:`_contradicted`)
    with no switch counted since means the thread's trace function no longer
    calls hubmon's, unless the hub's thread is in the middle of a switch:
    it gets the GIL a few times (``_RECHECKS`` pauses of ``_RECHECK_PAUSE``
    seconds) to finish it before the block is judged contradicted.
    """
    for attempt in range(_RECHECKS + 1):
        if record.switches != switches or not _contradicted(hub, culprit):
            return True
        if attempt < _RECHECKS:
            real_sleep(_RECHECK_PAUSE)
    return False


def _contradicted(hub: Any, culprit: Any) -> bool:
    """Whether the threads' state contradicts "``culprit`` runs instead of ``hub``".

    Called holding the GIL, when no switch was counted since the block was
    decided, so the greenlet the trace function saw last must still run.
    """
    try:
        if culprit is not None and culprit is not hub and culprit.gr_frame is not None:
            return True      # the culprit is suspended: someone else runs
        if culprit is not hub and bool(hub) and hub.gr_frame is None:
            return True      # the hub is started, alive and not suspended: it runs
    except BaseException:
        return False
    return False


def _safe_hub_repr(hub: Any) -> str:
    try:
        return repr(hub)
    except BaseException:
        return "<%s at 0x%x>" % (type(hub).__name__, id(hub))


def _weak(obj: Any) -> Any:
    if obj is None:
        return None
    try:
        return weakref.ref(obj)
    except TypeError:
        return None


def _gevent_hub_for_this_thread() -> Any:
    if "gevent" not in sys.modules:
        return None
    from gevent import get_hub
    return get_hub()


def _nothing() -> None:
    pass


#: Called with no argument when a monitor starts; hubmon._lifecycle sets it.
on_start: Callable[[], None] = _nothing


def running_monitors() -> List[Monitor]:
    """The monitors now running, in every thread."""
    return list(_by_hub.values())


def _settings_for(*, max_blocking_time: Optional[float], max_memory_usage: Optional[int],
                  memory_monitor_period: Optional[float], print_blocking_reports: Optional[bool],
                  stream: Optional[TextIO], repeat_window: Optional[float] = None) -> Dict[str, Any]:
    """Read and validate every setting a monitor uses, now.

    Arguments given win over :data:`hubmon.config` and are checked by the
    same validators (:mod:`hubmon._values`). Raises ConfigError naming the
    environment variable, the setting or the argument, and the value;
    TypeError for a ``stream`` without ``write()``.
    """
    def given(name: str, value: Any, kind: Any) -> Any:
        return getattr(config, name) if value is None else kind.from_code(value, name)

    threshold = given("max_blocking_time", max_blocking_time, THRESHOLD)
    memory_limit = given("max_memory_usage", max_memory_usage, BYTES)
    period = given("memory_monitor_period", memory_monitor_period, MEMORY_PERIOD)
    print_blocking_reports = given("print_blocking_reports", print_blocking_reports, BOOL)
    window = given("repeat_window", repeat_window, REPEAT_WINDOW)
    if stream is not None and not callable(getattr(stream, "write", None)):
        raise TypeError("stream must have a write() method, not %r" % (stream,))
    config.monitor_thread  # noqa: B018 - read to validate GEVENT_MONITOR_THREAD_ENABLE too
    gil_signal = config.gil_signal
    if gil_signal == "auto" and config.report_format == "json":
        # faulthandler's dump is plain text: a JSON-lines stream stays pure
        # unless the program asks for the dump by its signal.
        gil_signal = 0
    gil_signal = _gil.choose_signal(gil_signal, config.label("gil_signal"))
    return dict(max_blocking_time=threshold, max_memory_usage=memory_limit,
                memory_monitor_period=period, print_blocking_reports=print_blocking_reports,
                stream=stream, report_to=config.report_to,
                report_greenlet_limit=config.report_greenlet_limit, gil_signal=gil_signal,
                repeat_window=window, report_format=config.report_format,
                unblocked_report_time=config.unblocked_report_time)


def start(hub: Any = None, *, max_blocking_time: Optional[float] = None,
          max_memory_usage: Optional[int] = None, memory_monitor_period: Optional[float] = None,
          print_blocking_reports: Optional[bool] = None, stream: Optional[TextIO] = None,
          repeat_window: Optional[float] = None) -> Monitor:
    """Start monitoring ``hub`` and return its :class:`Monitor`.

    Must be called in the hub's thread. ``hub=None`` means gevent's hub for
    this thread when the program uses gevent. Arguments left as None come
    from :data:`hubmon.config`; every setting the monitor uses is read and
    validated now, so a bad one raises :class:`~hubmon.ConfigError` here
    (naming the environment variable and the value), never later. If the hub
    is already monitored, the running monitor is returned unchanged.

    Raises :class:`~hubmon.ConfigError` (a ValueError) for a bad
    ``max_blocking_time`` (seconds, greater than 0, at most 86400),
    ``max_memory_usage`` (bytes), ``memory_monitor_period`` (seconds, from
    0.1 to 86400), ``print_blocking_reports`` (a bool) or ``repeat_window``
    (seconds from 0 to 86400: see ``HUBMON_REPEAT_WINDOW``), naming the
    argument and the value, as :data:`hubmon.config` does; TypeError for a
    ``hub`` that is not a greenlet or a ``stream`` without ``write()``;
    ValueError for a dead hub; RuntimeError when
    called in another thread than the hub's, in one of hubmon's own threads,
    or after hubmon has shut down at exit.
    """
    return start_with(hub, dict(max_blocking_time=max_blocking_time, max_memory_usage=max_memory_usage,
                            memory_monitor_period=memory_monitor_period,
                            print_blocking_reports=print_blocking_reports, stream=stream,
                            repeat_window=repeat_window),
                  from_gevent=False)


def start_with(hub: Any, arguments: Dict[str, Any], from_gevent: bool) -> Monitor:
    """:func:`start` with its keyword arguments in ``arguments``; ``from_gevent``:
    started by gevent's drop-in (hubmon._gevent), for gevent's hub."""
    if is_own_thread():
        raise RuntimeError("hubmon.start() cannot monitor a hub in one of hubmon's own threads")
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
    settings = _settings_for(**arguments)
    # gevent's monitor watches memory for the main hub only.
    memory_check = not from_gevent or bool(getattr(hub, "main_hub", True))
    monitor = Monitor(hub, memory_check=memory_check, from_gevent=from_gevent, **settings)
    monitor._start()
    return monitor


def after_fork_in_child() -> None:
    """In a forked child: keep the monitors of the thread that forked; forget the others."""
    me = real_get_ident()
    _core.after_fork_child()
    _tracing.after_fork_in_child(me)
    for monitor in list(_by_hub.values()):
        if monitor.thread_ident != me:
            monitor._forget_after_fork()


__all__ += ["ConfigError"]
