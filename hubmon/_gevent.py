"""gevent as a drop-in: every gevent hub is monitored by hubmon.

``import hubmon`` replaces ``gevent.hub.Hub.start_periodic_monitoring_thread``,
the method every hub calls when it starts running, with one that starts a
hubmon :class:`~hubmon.monitor.Monitor` instead of gevent's Python thread.
If gevent is not imported yet, a finder on ``sys.meta_path`` waits for
``gevent.hub`` to be imported and patches it then; hubmon never imports
gevent itself.

Settings: a hubmon setting given in the environment or assigned in
``hubmon.config`` wins; otherwise gevent's value (``gevent.config``, which
reads the same environment variables) is used, so settings changed in code
through ``gevent.config`` are honoured, ``max_blocking_time`` even while the
monitors run.
"""
from __future__ import annotations

import importlib.abc
import sys
from typing import Any, Optional

from .config import config

_MARK = "_hubmon_patched"


def _setting(name: str) -> Any:
    """hubmon's value when explicit, else gevent.config's."""
    if config.is_explicit(name):
        return getattr(config, name)
    gevent_config = getattr(sys.modules.get("gevent"), "config", None)
    if gevent_config is not None:
        try:
            return getattr(gevent_config, name)
        except AttributeError:
            pass
    return getattr(config, name)


def monitoring_enabled() -> bool:
    """Whether gevent's hubs should be monitored (GEVENT_MONITOR_THREAD_ENABLE)."""
    return bool(_setting("monitor_thread"))


def _start_for_hub(hub: Any) -> Any:
    from .monitor import start
    memory = _setting("max_memory_usage") if getattr(hub, "main_hub", True) else None
    monitor = start(
        hub,
        max_blocking_time=_setting("max_blocking_time"),
        max_memory_usage=memory or None,
        memory_monitor_period=max(float(_setting("memory_monitor_period")), 0.1),
    )
    monitor._from_gevent = True
    return monitor


def _start_periodic_monitoring_thread(self: Any) -> Any:
    """hubmon's replacement of ``Hub.start_periodic_monitoring_thread``.

    A hub that user code made in one of hubmon's own threads (a subscriber
    calling ``gevent.get_hub()``, say) is never monitored.
    """
    from ._threads import is_own_thread
    if is_own_thread():
        return self.periodic_monitoring_thread
    if self.periodic_monitoring_thread is None and monitoring_enabled():
        from gevent.events import PeriodicMonitorThreadStartedEvent, notify_and_call_entry_points
        self.periodic_monitoring_thread = _start_for_hub(self)
        notify_and_call_entry_points(PeriodicMonitorThreadStartedEvent(self.periodic_monitoring_thread))
    return self.periodic_monitoring_thread


def _follow_gevent_config(gevent_config_module: Any) -> None:
    """Pass later changes of gevent.config.max_blocking_time to running monitors."""
    config_class = getattr(gevent_config_module, "Config", None)
    if config_class is None or getattr(config_class, _MARK, False):
        return
    original_set = config_class.set

    def set(self: Any, name: str, value: Any) -> None:  # noqa: A001 - gevent's name
        original_set(self, name, value)
        if name == "max_blocking_time" and not config.is_explicit("max_blocking_time"):
            from .monitor import running_monitors
            for monitor in running_monitors():
                if getattr(monitor, "_from_gevent", False):
                    monitor.set_max_blocking_time(getattr(self, name))

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
    current.kill()
    hub.periodic_monitoring_thread = None
    if bool(hub) and not hub.dead:  # the hub's loop is running
        hub.start_periodic_monitoring_thread()


class _GeventHubFinder(importlib.abc.MetaPathFinder):
    """Patches ``gevent.hub`` right after it is first imported."""

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


class _PatchingLoader(importlib.abc.Loader):
    """Wraps gevent.hub's loader to patch the module after it runs."""

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
