"""gevent as a drop-in: every gevent hub is monitored by hubmon.

``import hubmon`` replaces ``gevent.hub.Hub.start_periodic_monitoring_thread``,
the method every hub calls when it starts running, with one that starts a
hubmon :class:`~hubmon.monitor.Monitor` instead of gevent's Python thread.
If gevent is not imported yet, a finder on ``sys.meta_path`` waits for
``gevent.hub`` to be imported and patches it then; hubmon never imports
gevent itself.

Settings follow gevent's precedence (code, then environment, then default),
with hubmon's own code assignments on top: a value assigned in
``hubmon.config`` wins; else a value assigned through ``gevent.config`` (the
attribute, ``set()``, before or after ``import hubmon``); else the shared
environment variable; else the default. Changes made through
``gevent.config`` while the monitors run reach them at once for the
settings gevent reads while it runs (``max_blocking_time``,
``print_blocking_reports``, ``max_memory_usage``), and for
``memory_monitor_period`` too.
"""
from __future__ import annotations

import sys
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Optional

from .config import MAX_INT, MAX_SECONDS, ConfigError, config

_MARK = "_hubmon_patched"
_MISSING = object()

#: The gevent.config settings hubmon's drop-in reads.
_SHARED_SETTINGS = ("monitor_thread", "max_blocking_time", "print_blocking_reports",
                    "max_memory_usage", "memory_monitor_period")

#: Those a running drop-in monitor follows when they change in gevent.config.
_LIVE_SETTINGS = _SHARED_SETTINGS[1:]

# The shared settings assigned through gevent.config since hubmon patched it.
_assigned_in_gevent: set = set()


def _gevent_value(name: str) -> Any:
    """gevent.config's value of ``name``, or _MISSING when gevent has none to give."""
    gevent_config = getattr(sys.modules.get("gevent"), "config", None)
    if gevent_config is None:
        return _MISSING
    try:
        return getattr(gevent_config, name)
    except Exception:  # gevent's own parse of a bad environment value: hubmon names it below
        return _MISSING


def setting(name: str) -> Any:
    """The value a drop-in monitor uses for setting ``name`` (see the module's docstring).

    Raises ConfigError when the value that applies is invalid for hubmon,
    naming where it came from (``gevent.config.<name>`` or the environment
    variable).
    """
    if config.is_assigned(name):
        return getattr(config, name)
    theirs = _gevent_value(name)
    if theirs is not _MISSING and name in _assigned_in_gevent:
        return _from_gevent(name, theirs, "gevent.config." + name)
    try:
        ours = getattr(config, name)
    except ConfigError as refused:
        if theirs is _MISSING:
            raise
        # gevent took the environment's value, which hubmon's rules refuse:
        # take gevent's reading of it, within hubmon's bounds. If hubmon
        # cannot use that either, the error shows the variable's own text,
        # not gevent's reading of it.
        try:
            return _from_gevent(name, theirs, config.label(name))
        except ConfigError:
            raise refused from None
    if theirs is _MISSING or theirs == ours:
        return ours
    # gevent.config read the same environment, so a different value was
    # assigned in code before hubmon patched gevent.
    return _from_gevent(name, theirs, "gevent.config." + name)


def _from_gevent(name: str, value: Any, label: str) -> Any:
    """gevent's ``value`` for ``name``, brought within hubmon's bounds where its meaning survives.

    A duration beyond hubmon's bound (one day, infinity included) is taken as
    the bound, and a memory size beyond 2**63 - 1 bytes as that size: gevent
    would not act on such a value in a process's life either. A whole number
    of bytes given as a float is taken as an int; a memory period under 0.1 s
    as 0.1 s (gevent puts its own floor, 2 s, under it). Other values are
    checked by hubmon's rules: ConfigError, naming ``label``.
    """
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if real and name in ("max_blocking_time", "memory_monitor_period"):
        if value > MAX_SECONDS:
            value = MAX_SECONDS
        elif name == "memory_monitor_period" and 0 < value < 0.1:
            value = 0.1
    elif real and name == "max_memory_usage" and value > 0:
        value = MAX_INT if value > MAX_INT else int(value)
    return config.convert(name, value, label)


def monitoring_enabled() -> bool:
    """Whether gevent's hubs should be monitored (GEVENT_MONITOR_THREAD_ENABLE)."""
    return bool(setting("monitor_thread"))


def _start_for_hub(hub: Any) -> Any:
    from .monitor import start_with
    arguments = dict(
        max_blocking_time=setting("max_blocking_time"),
        max_memory_usage=setting("max_memory_usage"),
        memory_monitor_period=setting("memory_monitor_period"),
        print_blocking_reports=setting("print_blocking_reports"),
        stream=None,
    )
    return start_with(hub, arguments, from_gevent=True)


def _start_periodic_monitoring_thread(self: Any) -> Any:
    """hubmon's replacement of ``Hub.start_periodic_monitoring_thread``.

    A hub that user code made in one of hubmon's own threads (a subscriber
    calling ``gevent.get_hub()``, say) is never monitored.

    gevent calls this as its hub starts running, so it never raises: a
    setting hubmon cannot use (a ConfigError naming the variable and the
    value) leaves the hub running without a monitor, and the error is
    written to stderr, once for each distinct error.
    """
    from ._threads import is_own_thread
    if is_own_thread():
        return self.periodic_monitoring_thread
    if self.periodic_monitoring_thread is None:
        try:
            if not monitoring_enabled():
                return None
            monitor = _start_for_hub(self)
        except Exception as error:
            _tell_once("hubmon: this gevent hub runs without a monitor: %s: %s"
                       % (type(error).__name__, error))
            return None
        from gevent.events import PeriodicMonitorThreadStartedEvent, notify_and_call_entry_points
        _declare_interface()
        for function, period in _carried_functions.pop(self, ()):
            try:
                monitor.add_monitoring_function(function, period)
            except ValueError as error:
                _tell_once("hubmon: a monitoring function of gevent's monitor was not carried "
                           "over: %s" % (error,))
        self.periodic_monitoring_thread = monitor
        notify_and_call_entry_points(PeriodicMonitorThreadStartedEvent(monitor))
    return self.periodic_monitoring_thread


_told: set = set()


def _declare_interface() -> None:
    """Declare that a Monitor provides gevent's ``IPeriodicMonitorThread`` (zope.interface).

    Done when the first gevent hub gets a monitor, since gevent.events (and
    zope.interface) are imported then anyway.
    """
    from gevent.events import IPeriodicMonitorThread
    from zope.interface import classImplements

    from .monitor import Monitor
    if not IPeriodicMonitorThread.implementedBy(Monitor):
        classImplements(Monitor, IPeriodicMonitorThread)


def _tell_once(message: str) -> None:
    """Write ``message`` to stderr unless it was written already."""
    if message in _told:
        return
    _told.add(message)
    from ._output import write_stderr
    write_stderr(message)


def _apply_to_running(name: str) -> None:
    """Pass the value of setting ``name`` that now applies to the running drop-in monitors."""
    from .monitor import running_monitors
    monitors = [monitor for monitor in running_monitors() if monitor.from_gevent]
    if not monitors:
        return
    try:
        value = setting(name)
        for monitor in monitors:
            if name == "max_blocking_time":
                monitor.set_max_blocking_time(value)
            elif name == "print_blocking_reports":
                monitor.print_blocking_reports = value
            elif name == "max_memory_usage":
                monitor.set_memory_limit(value)
            elif name == "memory_monitor_period":
                monitor.set_memory_limit(monitor.max_memory_usage, value)
    except Exception as error:
        # A value hubmon cannot use, or hubmon shut down at exit already.
        _tell_once("hubmon: the running monitors keep their %s: %s: %s"
                   % (name, type(error).__name__, error))


def _follow_gevent_config(gevent_config_module: Any) -> None:
    """Note the shared settings assigned through gevent.config; pass changes to running monitors.

    ``gevent.config.name = value`` goes through ``Config.set`` too. A value
    gevent accepts and hubmon cannot use never makes the assignment raise
    (gevent's monitor would take it): the running monitors keep their
    value, and the ConfigError, naming ``gevent.config.<name>`` and the
    value, is written to stderr once.
    """
    config_class = getattr(gevent_config_module, "Config", None)
    if config_class is None or getattr(config_class, _MARK, False):
        return
    original_set = config_class.set

    def set(self: Any, name: str, value: Any) -> None:  # noqa: A001 - gevent's name
        original_set(self, name, value)
        if name in _SHARED_SETTINGS:
            _assigned_in_gevent.add(name)
        if name in _LIVE_SETTINGS:
            _apply_to_running(name)

    set.__doc__ = original_set.__doc__
    config_class.set = set
    setattr(config_class, _MARK, True)


def patch_hub_module(hub_module: Any) -> None:
    """Make ``hub_module.Hub`` start hubmon instead of gevent's monitor thread."""
    hub_class = hub_module.Hub
    if getattr(hub_class, _MARK, False):
        return
    hub_class.start_periodic_monitoring_thread = _start_periodic_monitoring_thread
    setattr(hub_class, _MARK, True)
    _follow_gevent_config(sys.modules.get("gevent._config"))
    _replace_running_gevent_monitor()


def _replace_running_gevent_monitor() -> None:
    """The current thread's hub may already run gevent's monitor: swap it."""
    hub_local = sys.modules.get("gevent._hub_local")
    get_hub_if_exists = getattr(hub_local, "get_hub_if_exists", None)
    hub = get_hub_if_exists() if get_hub_if_exists is not None else None
    if hub is None:
        return
    current = hub.periodic_monitoring_thread
    if current is None or type(current).__module__ != "gevent._monitor":
        return
    # The functions the program added to gevent's monitor go on in hubmon's.
    builtin = (current.monitor_blocking, current.monitor_memory_usage)
    _carried_functions[hub] = [(entry.function, entry.period) for entry in current.monitoring_functions()
                               if entry.function not in builtin]
    current.kill()
    hub.periodic_monitoring_thread = None
    if bool(hub) and not hub.dead:  # the hub's loop is running
        hub.start_periodic_monitoring_thread()


# Monitoring functions of gevent's monitor that hubmon replaced, by hub,
# waiting for the hub's hubmon monitor to start.
_carried_functions: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


class _GeventHubFinder:
    """Patches ``gevent.hub`` right after it is first imported.

    A meta path finder by protocol (``find_spec``), not by inheriting
    ``importlib.abc.MetaPathFinder``: importing ``importlib.abc`` would cost
    ``import hubmon`` several milliseconds."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[Any]:
        if fullname != "gevent.hub":
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            _uninstall_finder()
            patch_hub_module(module)

        spec.loader = _PatchingLoader(loader, exec_module)
        return spec


class _PatchingLoader:
    """Wraps gevent.hub's loader to patch the module after it runs (a loader by protocol)."""

    def __init__(self, loader: Any, exec_module: Any):
        self._loader = loader
        self._exec_module = exec_module

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_finder: Optional[_GeventHubFinder] = None


def _uninstall_finder() -> None:
    global _finder
    if _finder is not None:
        try:
            sys.meta_path.remove(_finder)
        except ValueError:
            pass
        _finder = None


def install() -> None:
    """Patch gevent now if it is imported, else when it is."""
    global _finder
    hub_module = sys.modules.get("gevent.hub")
    if hub_module is not None and hasattr(hub_module, "Hub"):
        patch_hub_module(hub_module)
        return
    if _finder is None:
        _finder = _GeventHubFinder()
        sys.meta_path.insert(0, _finder)
