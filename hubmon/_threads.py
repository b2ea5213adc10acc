"""The real threading primitives, even when gevent has monkey-patched them,
and the registry of hubmon's own threads.

hubmon's Python code also runs in its own threads (the native thread, and the
delivery threads of :mod:`hubmon._delivery`), which have no gevent hub that
hubmon monitors: gevent's patched ``get_ident`` answers with a greenlet's id
and its patched locks switch to the hub, so hubmon uses the originals.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, Set


def _original(module_name: str, item_name: str) -> Any:
    """Return ``module_name.item_name`` as it was before gevent patched it."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            return monkey.get_original(module_name, item_name)
        except Exception:  # gevent not fully imported yet: fall through
            pass
    # Already imported (both modules are imported at start-up): a lookup,
    # which works even while the interpreter shuts down.
    module = sys.modules.get(module_name)
    if module is None:
        module = __import__(module_name)
    return getattr(module, item_name)


def real_get_ident() -> int:
    """The OS thread's identifier, as ``threading.get_ident`` gives it unpatched."""
    get_ident: Callable[[], int] = _original("_thread", "get_ident")
    return get_ident()


def real_lock() -> Any:
    """A new lock of the OS thread kind (never a gevent lock)."""
    return _original("_thread", "allocate_lock")()


def real_local() -> Any:
    """A new thread-local object of the OS thread kind (never gevent's greenlet-local)."""
    return _original("_thread", "_local")()


def real_sleep(seconds: float) -> None:
    """Sleep the OS thread, even where ``time.sleep`` is patched."""
    _original("time", "sleep")(seconds)


#: Identifiers of the threads that run hubmon's own code (the native thread,
#: once it has run Python, and the delivery threads).
_own_threads: Set[int] = set()


def mark_own_thread() -> None:
    """Record the calling thread as one of hubmon's own."""
    _own_threads.add(real_get_ident())


def own_thread_idents() -> Set[int]:
    """The identifiers of hubmon's own threads (a copy)."""
    return set(_own_threads)


def is_own_thread(ident: int = 0) -> bool:
    """Whether thread ``ident`` (default: the calling thread) is one of hubmon's own."""
    return (ident or real_get_ident()) in _own_threads


def forget_own_threads() -> None:
    """In a forked child: the threads recorded in the parent do not exist."""
    _own_threads.clear()


def start_thread(function: Callable[[], None]) -> int:
    """Start ``function`` in a new OS thread (never a greenlet); return its identifier.

    The thread is unknown to :mod:`threading`, so the interpreter does not
    wait for it at exit: hubmon's exit hook bounds how long it waits.
    """
    start_new_thread = _original("_thread", "start_new_thread")
    return start_new_thread(function, ())



def end_forked_child(pid: int) -> None:
    """If this process is not ``pid`` but a child forked by user code on one of
    hubmon's threads, end it: that thread is the child's only one, and must
    not go on running hubmon's loop (as multiprocessing ends a child whose
    target returned). ``sys.stdout`` and ``sys.stderr`` are flushed first."""
    import os

    if os.getpid() == pid:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)
