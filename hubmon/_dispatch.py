"""Routes the native thread's events to the records' owners.

The native thread calls :func:`native_event` holding the GIL, in its one
persistent Python thread state. Here only the culprit's report is captured
(on the native thread, so it shows the block as it is); subscribers,
monitoring functions, memory checks and printing are handed to
:mod:`hubmon._delivery`. The capture runs with a greenlet trace function that
forbids every switch in the native thread: code run by the report (a
``repr()`` that takes a gevent lock, say) can never make gevent create and
run a hub there; it raises instead, and the report shows the error.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, Dict, Optional

import greenlet

from . import _collect, _core, _delivery, _output
from ._memory import memory_watch
from ._threads import mark_own_thread

__all__ = ["register", "unregister", "native_event"]

# The handlers of the native thread's events, by record id, as the owners
# (Monitors, assertion scopes) gave them: (on_blocked, on_unblocked, on_call,
# on_sample).
# Only running owners are here.
_handlers: Dict[int, tuple] = {}
_marked = False


class SwitchForbidden(RuntimeError):
    """Raised into code that tries to switch greenlets in hubmon's native thread."""


def register(record_id: int, on_blocked: Callable[[float, int, float, int, Any], bool],
             on_unblocked: Callable[[float], None], on_call: Callable[[], None],
             on_sample: Optional[Callable[[float, float], None]] = None) -> None:
    """Send the events of record ``record_id`` to its owner's handlers.

    ``on_blocked(duration, current, gil_wait, switches, cause)`` runs on the
    native thread with every greenlet switch forbidden and returns False
    when the evidence contradicts the block (``cause`` is the native
    thread's ``(kind, detail, cpu_time, hub_itself)``);
    ``on_unblocked(duration)``, ``on_call()`` (monitoring functions due) and
    ``on_sample(interval, gil_wait)`` (a profile sample of a blockage is
    due; switches forbidden too) run on the native thread as well.
    Durations are seconds; ``current`` is the running greenlet's address.
    """
    _handlers[record_id] = (on_blocked, on_unblocked, on_call, on_sample)


def unregister(record_id: int) -> None:
    """Stop sending the events of record ``record_id``."""
    _handlers.pop(record_id, None)


def _forbid_switch(event: str, args: Any) -> None:
    raise SwitchForbidden("hubmon's native thread never switches greenlets (%s to %r)"
                          % (event, args[1] if isinstance(args, tuple) and len(args) > 1 else args))


def capture(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in the native thread with every greenlet switch forbidden."""
    _collect.capturing_pid = os.getpid()
    greenlet.settrace(_forbid_switch)
    try:
        return function(*args)
    finally:
        greenlet.settrace(None)
        _collect.capturing_pid = None
        # A hub that code of the capture made here could never run; left
        # alone it would be freed only when the thread gives back its state.
        _delivery.drop_gevent_hub()


def _check_memory() -> None:
    exceeded = -1
    try:
        exceeded = 1 if memory_watch.check() else 0
    finally:
        _core.memory_done(exceeded)


def native_event(kind: int, record_id: int, value: float, current: int,
                 gil_wait: float, switches: int, cause: Any = None) -> bool:
    """The native thread's entry point (holding the GIL). Never raises.

    Returns False only for a blocked event that the evidence contradicts
    (the sampler then withdraws it); True otherwise.
    """
    global _marked
    try:
        if not _marked:
            mark_own_thread()
            _marked = True
        if kind == _core.EVENT_MEMORY:
            if not _delivery.events.post(_check_memory):
                _core.memory_done(-1)
            return True
        handlers = _handlers.get(record_id)
        if handlers is None:
            return True
        on_blocked, on_unblocked, on_call, on_sample = handlers
        if kind == _core.EVENT_BLOCKED:
            return bool(capture(on_blocked, value, current, gil_wait, switches, cause))
        if kind == _core.EVENT_SAMPLE:
            if on_sample is not None:
                capture(on_sample, value, gil_wait)
            return True
        if kind == _core.EVENT_UNBLOCKED:
            on_unblocked(value)
        elif kind == _core.EVENT_CALL:
            on_call()
    except BaseException:
        # Written by the printer: the native thread never waits for a stream.
        text = _output.format_error("error in hubmon's native thread, handling event %r" % (kind,))
        _delivery.printer.post(_output.write_stderr, text)
    return True
