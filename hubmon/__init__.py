"""hubmon: find the greenlet that blocks a gevent hub.

``import hubmon`` in a gevent program, with ``GEVENT_MONITOR_THREAD_ENABLE=true``,
is all it takes: every gevent hub is then watched by hubmon's native thread
instead of gevent's Python monitor thread. Without gevent, watch any hub
greenlet with :func:`start`.
"""
from __future__ import annotations

import atexit as _atexit
import os as _os

from . import _core
from . import _gevent
from . import events
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

# Stop and join the native thread before the interpreter finalizes: a
# thread that asks for the GIL during finalization hangs or is killed.
_atexit.register(_core.shutdown)
if hasattr(_os, "register_at_fork"):
    from .monitor import _after_fork_in_child

    _os.register_at_fork(after_in_child=_after_fork_in_child)

_gevent.install()
