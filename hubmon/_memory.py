"""The process-wide memory watch.

The native thread reads the resident set size without the GIL every
``memory_monitor_period`` seconds and calls in here only when it is over
the limit (or was over it last time). Here psutil measures the unique set
size, as gevent's monitor does, and the memory events fire.
"""
from __future__ import annotations

import os
import warnings
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Optional

from . import _core
from .events import MemoryUsageThresholdExceeded, MemoryUsageUnderThreshold, notify

__all__ = ["MonitorWarning"]


class MonitorWarning(RuntimeWarning):
    """A monitoring feature cannot work here (for example, no psutil)."""


class _MemoryWatch:
    """Who wants memory watched, with what limit, and the state of the watch."""

    def __init__(self) -> None:
        self._owners: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()
        self._process: Any = None
        self._pid = 0
        self.limit = 0
        self.period = 0.0
        self._last_event_usage = 0   # usage at the last exceeded event; 0 = under

    def can_measure(self) -> bool:
        """Whether psutil is there to measure memory."""
        return self._get_process() is not None

    def _get_process(self) -> Any:
        if self._process is None or self._pid != os.getpid():
            try:
                import psutil
            except ImportError:
                return None
            self._process = psutil.Process()
            self._pid = os.getpid()
        return self._process

    def add(self, owner: Any, limit: int, period: float) -> None:
        """Watch memory for ``owner`` (a Monitor) with its limit and period."""
        if not self.can_measure():
            warnings.warn("hubmon cannot monitor memory usage: install psutil "
                          "(max_memory_usage=%d is ignored)" % limit, MonitorWarning, stacklevel=4)
            return
        self._owners[owner] = (limit, period)
        self._apply()

    def remove(self, owner: Any) -> None:
        """Stop watching for ``owner``."""
        if self._owners.pop(owner, None) is not None:
            self._apply()

    def _apply(self) -> None:
        wanted = list(self._owners.values())
        if wanted:
            self.limit = min(limit for limit, _ in wanted)
            self.period = min(period for _, period in wanted)
        else:
            # The last exceeded event is kept: a limit set again later ends
            # its run with MemoryUsageUnderThreshold, as in gevent.
            self.limit, self.period = 0, 0.0
        _core.set_memory_watch(float(self.limit), self.period or 1.0)

    def usage(self) -> int:
        """The process's memory usage now, in bytes: psutil's USS, else RSS (as gevent measures)."""
        info = self._get_process().memory_full_info()
        return getattr(info, "uss", 0) or info.rss

    def check(self) -> bool:
        """Measure now and fire the events; return whether usage is over the limit."""
        limit = self.limit
        process = self._get_process()
        if not limit or process is None:
            return False
        info = process.memory_full_info()
        usage = getattr(info, "uss", 0) or info.rss
        # The state changes before the events fire, so that nothing a
        # subscriber does (it may raise anything) repeats or loses an event.
        if usage > limit:
            if usage > self._last_event_usage:
                self._last_event_usage = usage
                notify(MemoryUsageThresholdExceeded(usage, limit, info))
            return True
        if self._last_event_usage:
            peak, self._last_event_usage = self._last_event_usage, 0
            notify(MemoryUsageUnderThreshold(usage, limit, info, peak))
        return False


memory_watch = _MemoryWatch()


def watch_memory(owner: Any, limit: Optional[int], period: float) -> None:
    """Start (limit set) or leave alone (limit None) the watch for ``owner``."""
    if limit:
        memory_watch.add(owner, limit, period)
