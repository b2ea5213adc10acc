"""hubmon: find the greenlet that blocks a gevent hub.

``import hubmon`` in a gevent program, with ``GEVENT_MONITOR_THREAD_ENABLE=true``,
is all it takes: every gevent hub is then watched by hubmon's native thread
instead of gevent's Python monitor thread. Without gevent, watch any hub
greenlet with :func:`start`.
"""
from __future__ import annotations

import atexit as _atexit
import os as _os

from . import _core, _delivery, _dispatch, _gevent, _output, _threads
from . import events
from . import monitor as _monitor
from ._memory import MonitorWarning
from .assertions import FailedToSwitch, assert_switches
from .config import ConfigError, config
from .monitor import Monitor, MonitoringFunction, running_monitors, start
from .report import format_run_info, print_run_info

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FailedToSwitch",
    "Monitor",
    "MonitorWarning",
    "MonitoringFunction",
    "assert_switches",
    "config",
    "events",
    "format_run_info",
    "print_run_info",
    "running_monitors",
    "start",
]


def _shutdown() -> None:
    """At exit: stop and join the native thread for good, then let the reports
    being written finish for a bounded time; never wait for user code."""
    _core.shutdown()
    if not _delivery.shutdown():
        _output.flush_logging_boundedly(0.2)


def _before_fork() -> None:
    _output.before_fork()


def _after_fork_in_parent() -> None:
    _output.after_fork_in_parent()


def _after_fork_in_child() -> None:
    _output.after_fork_in_child()
    _threads.forget_own_threads()
    _delivery.after_fork_in_child()
    _monitor._after_fork_in_child()


# The native thread calls into Python through this one entry point.
_core.set_event_handler(_dispatch.native_event)
# Stop and join the native thread before the interpreter finalizes: a
# thread that asks for the GIL during finalization hangs or is killed.
_atexit.register(_shutdown)
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                         after_in_child=_after_fork_in_child)

_gevent.install()
