"""One hubmon trace function per thread, serving every record of that thread.

greenlet keeps one trace function per thread. hubmon installs at most one
``_core.ThreadTracer`` in a thread, chained to the trace function found
there, and adds to it the records of that thread (a Monitor's, the scopes of
``assert_switches``). Starting, nesting and stopping records only changes
that tracer's small array, from whichever thread, so the thread's chain of
trace functions never grows however often monitors start and stop.

A thread that ends takes its thread-local guard with it: the guard tells the
owners of the thread's records (monitors, scopes) that their thread is gone,
so they stop themselves instead of reporting a dead hub.
"""
from __future__ import annotations

import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, Dict, Optional

from . import _core
from ._threads import real_get_ident, real_local

__all__ = ["attach", "detach", "tracer_of"]

# A weak reference to the ThreadTracer of each thread that has one, by thread
# identifier. Weak, so that a tracer the program dropped from its thread's
# chain (greenlet.settrace(None), say) is gone: while one is alive, someone
# holds it (greenlet, or a later trace function that chains to it).
_tracers: Dict[int, Any] = {}
_local: Any = None
# Each watched thread's guard, weakly, by thread identifier.
_guards: "weakref.WeakValueDictionary[int, _ThreadGuard]" = weakref.WeakValueDictionary()


class _ThreadGuard:
    """Lives in a real thread-local of a watched thread, so it dies with the thread."""

    def __init__(self, ident: int) -> None:
        self.ident = ident
        # Each owner, weakly, with the functions it asked to be called with:
        # (on_thread_end, on_tracer_dropped or None).
        self.owners: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()

    def notify(self, which: int) -> None:
        """Call each owner's callback number ``which`` (0: thread ended, 1: tracer dropped)."""
        for owner, callbacks in list(self.owners.items()):
            function = callbacks[which]
            if function is not None:
                try:
                    function(owner)
                except BaseException:
                    pass

    def __del__(self) -> None:
        # Also runs while the interpreter tears modules down: never raise.
        try:
            self.notify(0)
            _tracers.pop(self.ident, None)
        except BaseException:
            pass


def _guard() -> _ThreadGuard:
    global _local
    if _local is None:
        _local = real_local()
    guard = getattr(_local, "guard", None)
    if guard is None:
        guard = _local.guard = _ThreadGuard(real_get_ident())
        _guards[guard.ident] = guard
    return guard


def _dropped_callback(ident: int) -> Any:
    """The weak reference's callback: the thread's tracer is gone while in use?

    A tracer is freed when nothing holds it any more: its thread ended, or
    the program replaced it (greenlet.settrace) without keeping it to chain
    to. The records it counted for are no longer judged (the native thread
    sees that no tracer counts into them); their owners hear of it.
    """
    def dropped(ref: Any) -> None:
        try:
            if _tracers.get(ident) is ref:
                del _tracers[ident]
            guard = _guards.get(ident)
            if guard is not None:
                guard.notify(1)
        except BaseException:
            pass
    return dropped


def tracer_of(ident: int) -> Optional[Any]:
    """The ThreadTracer of thread ``ident``, or None."""
    ref = _tracers.get(ident)
    return ref() if ref is not None else None


def attach(record: Any, on_thread_end: Callable[[], None],
           on_tracer_dropped: Optional[Callable[[], None]] = None) -> None:
    """Count the calling thread's switches into ``record``.

    ``on_thread_end`` and ``on_tracer_dropped`` are bound methods of the
    record's owner, held weakly (through the owner): the first is called
    when the thread ends, the second when the thread's tracer is freed while
    in use. Installs the thread's tracer if needed. Raises what
    greenlet.settrace raises.
    """
    owner = on_thread_end.__self__  # type: ignore[attr-defined]
    callbacks = (on_thread_end.__func__,  # type: ignore[attr-defined]
                 None if on_tracer_dropped is None else on_tracer_dropped.__func__)  # type: ignore[attr-defined]
    ident = real_get_ident()
    tracer = tracer_of(ident)
    if tracer is None:
        tracer = _core.ThreadTracer()
        _tracers[ident] = weakref.ref(tracer, _dropped_callback(ident))
    tracer.add(record)
    try:
        tracer.install()
    except BaseException:
        tracer.remove(record)
        raise
    _guard().owners[owner] = callbacks


def detach(record: Any, ident: int) -> None:
    """Stop counting into ``record``, which belongs to thread ``ident``; callable from any thread.

    In the record's own thread, a tracer left with no record is taken out of
    the chain when it is on top; elsewhere it stays as a forwarder, to be
    used again by the next record of its thread.
    """
    tracer = tracer_of(ident)
    if tracer is None:
        return
    tracer.remove(record)
    if tracer.record_count == 0 and real_get_ident() == ident:
        if tracer.uninstall():
            _tracers.pop(ident, None)


def after_fork_in_child(survivor: int) -> None:
    """In a forked child only the forking thread exists: forget the others' tracers."""
    for ident in list(_tracers):
        if ident != survivor:
            del _tracers[ident]
