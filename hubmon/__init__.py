"""hubmon: find the greenlet that blocks a gevent hub.

``import hubmon`` in a gevent program, with ``GEVENT_MONITOR_THREAD_ENABLE=true``,
is all it takes: every gevent hub is then watched by hubmon's native thread
instead of gevent's Python monitor thread. Without gevent, watch any hub
greenlet with :func:`start`.
"""
from __future__ import annotations

from . import _lifecycle
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


_lifecycle.install()
