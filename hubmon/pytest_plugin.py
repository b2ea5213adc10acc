"""hubmon's pytest plugin: fail the tests during which a hub stayed blocked.

Installed with hubmon (entry point ``pytest11``), off by default. Turned on
for every test by ``--hubmon-max-blocking-time=SECONDS`` or the ini option
``hubmon_max_blocking_time``, and for some tests by the marker
``@pytest.mark.hubmon(max_blocking_time=...)``; ``@pytest.mark.hubmon(
allow_blocking=True)`` exempts a test. The fixture ``hubmon_monitor`` gives a
test a running :class:`~hubmon.Monitor` for its thread's gevent hub.

How a test is watched, from the start of its setup to the end of its
teardown:

* hubmon's events are listened to; each :class:`~hubmon.events.EventLoopBlocked`
  that arrives during a phase fails that phase (setup and teardown become
  errors) and the failure shows its report. A phase ends only once the
  reports of the blocks the native thread detected have arrived (a C call
  that holds the GIL delays them);
* the gevent hub of the test's thread, if it exists, gets a monitor with the
  test's limit; every gevent hub that starts running during the test, in
  any thread, gets one too (hubmon's gevent drop-in is switched on for the
  test); monitors already running get the test's limit. Everything the
  plugin started is stopped, and every setting it changed is put back, after
  the teardown;
* the greenlet that runs the test is not blamed for a block of its own
  thread's hub as long as the test has not switched into that hub (a test
  that does not use gevent may take its time even where an earlier test
  created a hub), nor for a stretch that began before the test.

Nothing is watched, and gevent is never imported, for a test that is not
watched; the plugin itself imports gevent only for ``hubmon_monitor``.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import greenlet
import pytest

from . import _core, events
from ._threads import real_sleep
from ._values import THRESHOLD
from .config import ConfigError
from .config import config as _hubmon_config
from .monitor import Monitor, running_monitors, start

__all__ = ["hubmon_monitor"]

_OPTION = "--hubmon-max-blocking-time"
_INI = "hubmon_max_blocking_time"
_MARKER = "hubmon"
_MARKER_DOC = ("hubmon(max_blocking_time=None, allow_blocking=False): fail the test if a gevent "
               "hub stays blocked longer than max_blocking_time seconds; allow_blocking=True "
               "exempts it from --hubmon-max-blocking-time")
#: How many block reports a failure shows in full.
_MAX_REPORTS = 3
_MISSING = object()

_session_limit_key = pytest.StashKey[Optional[Tuple[float, str]]]()
_watch_key = pytest.StashKey["_Watch"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--hubmon-max-blocking-time`` and the ini option ``hubmon_max_blocking_time``."""
    group = parser.getgroup("hubmon", "hubmon: blocked gevent hubs")
    group.addoption(
        _OPTION, action="store", dest="hubmon_max_blocking_time", default=None,
        metavar="SECONDS",
        help="fail every test during which a gevent hub stays blocked longer than SECONDS "
             "(0 turns it off); the failure shows the blocked greenlet's stack")
    parser.addini(
        _INI, default="",
        help="like --hubmon-max-blocking-time: seconds a hub may stay blocked during a test "
             "(empty or 0: off)")


def _parse_seconds(text: Any, where: str, empty_is_off: bool) -> Optional[float]:
    """``text`` as seconds; None for 0, or for an empty text when ``empty_is_off`` (an
    ini option left unset). Raises pytest.UsageError naming ``where``."""
    if text is None or (empty_is_off and not str(text).strip()):
        return None
    try:
        if float(text) == 0:
            return None
    except (TypeError, ValueError):
        pass        # refused below, with the validator's explanation
    try:
        return THRESHOLD.from_env(str(text), where)
    except ConfigError as error:
        raise pytest.UsageError("%s (or 0 for off)" % (error,)) from None


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and read the session-wide limit."""
    config.addinivalue_line("markers", _MARKER_DOC)
    option = config.getoption("hubmon_max_blocking_time", None)
    if option is not None:
        limit = _parse_seconds(option, _OPTION, empty_is_off=False)
        source = _OPTION
    else:
        limit = _parse_seconds(config.getini(_INI), _INI, empty_is_off=True)
        source = "the ini option " + _INI
    config.stash[_session_limit_key] = None if limit is None else (limit, source)
    if limit is not None:
        # Every setting a monitor will use, now: a bad environment variable
        # is a usage error naming it, not an error in every test.
        try:
            _hubmon_config.settings()
        except ConfigError as error:
            raise pytest.UsageError(str(error)) from None


def _marker_seconds(value: Any) -> float:
    """The marker's ``max_blocking_time``, checked as :data:`hubmon.config` checks it."""
    try:
        return THRESHOLD.from_code(value, "max_blocking_time")
    except ConfigError:
        raise pytest.UsageError("@pytest.mark.hubmon(max_blocking_time=%r) is invalid: expected %s"
                                % (value, THRESHOLD.expected)) from None


def _item_limit(item: pytest.Item) -> Optional[Tuple[float, str]]:
    """The limit that applies to ``item`` and where it comes from, or None (not watched).

    The closest marker that sets a keyword wins for it (test, then class,
    then module); ``allow_blocking=True`` wins over a ``max_blocking_time``
    of the same or a farther marker.
    """
    allow: Optional[Tuple[int, bool]] = None
    limit: Optional[Tuple[int, float]] = None
    marked = False
    for depth, mark in enumerate(item.iter_markers(_MARKER)):
        marked = True
        if mark.args:
            raise pytest.UsageError("@pytest.mark.hubmon takes keywords only "
                                    "(max_blocking_time=..., allow_blocking=...), not %r"
                                    % (mark.args,))
        unknown = sorted(set(mark.kwargs) - {"max_blocking_time", "allow_blocking"})
        if unknown:
            raise pytest.UsageError("@pytest.mark.hubmon got unknown keywords %s; it takes "
                                    "max_blocking_time and allow_blocking" % (", ".join(unknown),))
        if allow is None and "allow_blocking" in mark.kwargs:
            flag = mark.kwargs["allow_blocking"]
            if not isinstance(flag, bool):
                raise pytest.UsageError("@pytest.mark.hubmon(allow_blocking=%r) is invalid: "
                                        "expected True or False" % (flag,))
            allow = (depth, flag)
        if limit is None and mark.kwargs.get("max_blocking_time") is not None:
            limit = (depth, _marker_seconds(mark.kwargs["max_blocking_time"]))
    if allow is not None and allow[1] and (limit is None or limit[0] >= allow[0]):
        return None
    if limit is not None:
        return (limit[1], "@pytest.mark.hubmon")
    session = item.config.stash.get(_session_limit_key, None)
    if session is not None:
        return session
    if marked:
        return (_hubmon_config.max_blocking_time, "hubmon.config.max_blocking_time")
    return None


def _gevent_hub_if_exists() -> Any:
    """This thread's gevent hub if gevent is imported and the hub exists; never imports gevent."""
    hub_local = sys.modules.get("gevent._hub_local")
    get_hub_if_exists = getattr(hub_local, "get_hub_if_exists", None)
    hub = get_hub_if_exists() if get_hub_if_exists is not None else None
    return None if hub is None or hub.dead else hub


class _Watch:
    """What the plugin does for one watched test. Lives in the test's thread."""

    def __init__(self, limit: float, source: str):
        self.limit = limit
        self.source = source
        self.phase: Optional[str] = None
        self.failures: Dict[str, List[Any]] = {}
        self._events: List[Tuple[str, Any, float]] = []
        self._runner = greenlet.getcurrent()
        self._started = 0.0
        self._owned: List[Monitor] = []
        self._existing: List[Tuple[Monitor, float, bool]] = []
        self._hub_switches_at_start: Dict[int, int] = {}
        self._blocks_at_start: Dict[int, int] = {}
        self._delivered: Dict[int, int] = {}
        self._saved_config: Dict[str, Any] = {}
        self._monitor_thread_was_on = False

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        self._started = _core.monotonic()
        events.subscribers.append(self._on_event)
        for name, value in (("monitor_thread", True), ("max_blocking_time", self.limit),
                            ("print_blocking_reports", False)):
            self._saved_config[name] = (getattr(_hubmon_config, name)
                                        if _hubmon_config.is_assigned(name) else _MISSING)
            if name == "monitor_thread":
                self._monitor_thread_was_on = _gevent_monitoring_enabled()
            setattr(_hubmon_config, name, value)
        for monitor in running_monitors():
            self._existing.append((monitor, monitor.max_blocking_time,
                                   monitor.print_blocking_reports))
            monitor.set_max_blocking_time(self.limit)
            self._note_hub_switches(monitor)
        hub = _gevent_hub_if_exists()
        if hub is not None and not any(m.hub is hub for m, _, _ in self._existing):
            monitor = start(hub, max_blocking_time=self.limit, print_blocking_reports=False)
            self._owned.append(monitor)
            self._note_hub_switches(monitor)

    def stop(self) -> None:
        try:
            events.subscribers.remove(self._on_event)
        except ValueError:
            pass
        for name, value in self._saved_config.items():
            if value is _MISSING:
                delattr(_hubmon_config, name)
            else:
                setattr(_hubmon_config, name, value)
        existing = {id(m) for m, _, _ in self._existing}
        for monitor in running_monitors():
            # Started during the test by the plugin, or by the gevent drop-in
            # that the plugin switched on (the fixture stops its own). When
            # the program had the drop-in on already, the hubs keep theirs.
            if id(monitor) in existing:
                continue
            if self._monitor_thread_was_on and monitor.from_gevent:
                from ._gevent import setting
                monitor.set_max_blocking_time(setting("max_blocking_time"))
                monitor.print_blocking_reports = bool(setting("print_blocking_reports"))
            elif monitor in self._owned or monitor.from_gevent:
                monitor.stop()
        for monitor, threshold, printing in self._existing:
            if monitor.running:
                monitor.set_max_blocking_time(threshold)
                monitor.print_blocking_reports = printing

    def adopt(self, monitor: Monitor) -> bool:
        """The fixture takes over a monitor the plugin started; returns whether it did."""
        if monitor in self._owned:
            self._owned.remove(monitor)
            self._existing.append((monitor, monitor.max_blocking_time, False))
            return True
        return False

    # -- events ----------------------------------------------------------------------

    def _note_hub_switches(self, monitor: Monitor) -> None:
        try:
            stats = monitor.stats()
        except Exception:
            return
        self._hub_switches_at_start[id(monitor.hub)] = stats["hub_switches"]
        self._blocks_at_start[id(monitor.hub)] = stats["blocks"]

    def _on_event(self, event: Any) -> None:
        # Called by hubmon's native thread holding the GIL: keep it short.
        if isinstance(event, events.EventLoopBlocked):
            key = id(event.hub)
            self._delivered[key] = self._delivered.get(key, 0) + 1
            if self.phase is not None:
                self._events.append((self.phase, event, _core.monotonic()))

    def _await_reports(self, patience: float = 2.0) -> Optional[float]:
        """Let the reports of blocks already detected reach Python.

        The native thread detects a block without the GIL, but reports it
        holding the GIL: after a C call that held the GIL to the end of the
        test, the report may still be on its way. Waits (without the GIL)
        until every monitor has delivered as many reports as it counted
        blocks, for ``patience`` seconds at most. Returns when it began to
        wait, or None if it did not.
        """
        began = None
        deadline = _core.monotonic() + patience
        while True:
            behind = False
            for monitor in running_monitors():
                try:
                    blocks = monitor.stats()["blocks"]
                except Exception:
                    continue
                key = id(monitor.hub)
                if blocks - self._blocks_at_start.get(key, 0) > self._delivered.get(key, 0):
                    behind = True
                    break
            if not behind or _core.monotonic() > deadline:
                return began
            if began is None:
                began = _core.monotonic()
            real_sleep(0.005)

    def _hub_used(self, hub: Any) -> bool:
        """Whether the test has switched into ``hub`` since it started."""
        for monitor in running_monitors():
            if monitor.hub is hub:
                try:
                    now = monitor.stats()["hub_switches"]
                except Exception:
                    return True
                return now > self._hub_switches_at_start.get(id(hub), 0)
        return True

    def end_phase(self) -> None:
        """Keep the blocks reported during the phase that ends, but those of a test not using gevent."""
        waited = self._await_reports()
        phase, self.phase = self.phase, None
        reported, self._events = self._events, []
        blamed = []
        for when, event, arrived in reported:
            if when != phase:
                continue
            # The greenlet that runs the test blocks its own thread's hub
            # whenever it does not yield. That is the test's fault only once
            # the test has used that hub, and not for a stretch that began
            # before the test (in pytest's own code, under a monitor that
            # was running already) or that reached the limit only while
            # the plugin waited for reports.
            began = arrived - (event.duration or 0.0)
            if event.greenlet is self._runner and (
                    began < self._started
                    or (waited is not None and began + self.limit >= waited)
                    or not self._hub_used(event.hub)):
                continue
            blamed.append(event)
        if blamed and phase is not None:
            self.failures[phase] = blamed

    def describe(self, blamed: List[Any], when: str) -> str:
        lines = ["hubmon: a hub stayed blocked longer than %.3f seconds during the test's %s "
                 "(max_blocking_time from %s); %d block%s reported:"
                 % (self.limit, when, self.source, len(blamed), "" if len(blamed) == 1 else "s")]
        for event in blamed[:_MAX_REPORTS]:
            lines.extend(str(line) for line in (event.info or ()))
        if len(blamed) > _MAX_REPORTS:
            lines.append("... and %d more blocks" % (len(blamed) - _MAX_REPORTS,))
        return "\n".join(lines)


def _gevent_monitoring_enabled() -> bool:
    from ._gevent import monitoring_enabled
    return monitoring_enabled()


# A phase starts in a ``tryfirst`` hook (before the fixtures and the test run)
# and ends where its report is made. The setup hook may raise (a bad
# marker): that makes the setup an error, as for any plugin.


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    limit = _item_limit(item)
    if limit is not None:
        # Every setting a monitor will use, now: a bad environment variable
        # fails the watched test, naming it, instead of leaving the hub
        # unmonitored (gevent's hub starts without a monitor then).
        try:
            _hubmon_config.settings()
        except ConfigError as error:
            pytest.fail("hubmon cannot watch this test: %s" % (error,), pytrace=False)
        watch = _Watch(*limit)
        item.stash[_watch_key] = watch
        watch.phase = "setup"
        watch.start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    watch = item.stash.get(_watch_key, None)
    if watch is not None:
        watch.phase = "call"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    watch = item.stash.get(_watch_key, None)
    if watch is not None:
        watch.phase = "teardown"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    watch = item.stash.get(_watch_key, None)
    if watch is not None:
        try:
            watch.end_phase()
        finally:
            if call.when == "teardown":
                del item.stash[_watch_key]
                watch.stop()
    outcome = yield
    blamed = watch.failures.pop(call.when, None) if watch is not None else None
    if not blamed:
        return
    report = outcome.get_result()
    text = watch.describe(blamed, call.when)
    if report.passed and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("hubmon: blocked hub (%s)" % (call.when,), text))


@pytest.fixture
def hubmon_monitor(request: pytest.FixtureRequest) -> Iterator[Monitor]:
    """A running :class:`~hubmon.Monitor` for the gevent hub of the test's thread.

    Its ``max_blocking_time`` is the test's limit (marker, option, ini) or
    else ``hubmon.config.max_blocking_time``. It is stopped after the test
    unless it was running before (GEVENT_MONITOR_THREAD_ENABLE). Imports
    gevent.
    """
    try:
        import gevent
    except ImportError:  # pragma: no cover - gevent is an optional dependency
        raise RuntimeError("the hubmon_monitor fixture needs gevent") from None
    hub = gevent.get_hub()
    limit = _item_limit(request.node)
    already = [m for m in running_monitors() if m.hub is hub]
    monitor = start(hub, max_blocking_time=None if limit is None else limit[0])
    watch = request.node.stash.get(_watch_key, None)
    owned = not already or (watch is not None and watch.adopt(monitor))
    try:
        yield monitor
    finally:
        if owned:
            monitor.stop()

