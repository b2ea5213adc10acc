"""The process's life as hubmon sees it: start-up, fork and exit.

:func:`install` runs once, when the package initialises: it hands ``_core``
the one entry point of the native thread's events (calls go one way: C never
looks Python up by name), registers the exit hook and the fork hooks, and
installs gevent's drop-in. Every other module exposes what these hooks call
as plain functions; none reaches into another's private names.

Exit order: :func:`shutdown` must run before ``logging``'s own exit hook,
which waits for every handler's lock, possibly held by a report or a
subscriber in one of hubmon's threads. atexit runs hooks in reverse order of
registration, and ``logging`` is no longer imported with hubmon (it costs
milliseconds), so :func:`keep_exit_hook_first` registers hubmon's hook again
after ``logging`` has come in: when a monitor starts and before each job of
hubmon's threads.
"""
from __future__ import annotations

import atexit
import os
import sys

import greenlet

from . import _core, _delivery, _dispatch, _gevent, _output, _threads
from . import monitor

__all__ = ["install", "keep_exit_hook_first", "shutdown"]

_after_logging = False


def shutdown() -> None:
    """At exit: stop and join the native thread for good, then let the reports
    being written finish for a bounded time; never wait for user code."""
    _core.shutdown()
    if not _delivery.shutdown():
        _output.close_for_exit(0.2)
        _output.flush_logging_boundedly(0.2)


def keep_exit_hook_first() -> None:
    """Once ``logging`` is imported, make :func:`shutdown` run before its exit hook. Never raises."""
    global _after_logging
    if _after_logging or "logging" not in sys.modules:
        return
    _after_logging = True
    try:
        atexit.unregister(shutdown)
        atexit.register(shutdown)
    except BaseException:
        pass


def _before_fork() -> None:
    _output.before_fork()


def _after_fork_in_parent() -> None:
    _output.after_fork_in_parent()


def _after_fork_in_child() -> None:
    _output.after_fork_in_child()
    _threads.forget_own_threads()
    _delivery.after_fork_in_child()
    monitor.after_fork_in_child()


def install() -> None:
    """Set hubmon up in this process; called once, by ``hubmon/__init__.py``."""
    # C calls Python only through what Python hands it here: the native
    # thread's one entry point, and greenlet's trace functions.
    _core.set_event_handler(_dispatch.native_event)
    _core.set_trace_functions(greenlet.gettrace, greenlet.settrace)
    # Stop and join the native thread before the interpreter finalizes: a
    # thread that asks for the GIL during finalization hangs or is killed.
    atexit.register(shutdown)
    keep_exit_hook_first()
    monitor.on_start = keep_exit_hook_first
    _delivery.before_job = keep_exit_hook_first
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
    _gevent.install()
