"""The real threading primitives, even when gevent has monkey-patched them.

hubmon's Python code also runs in its native thread, which has no gevent
hub and must never get one: gevent's patched ``get_ident`` answers with a
greenlet's id and its patched locks switch to the hub.
"""
from __future__ import annotations

import sys
from typing import Any, Callable


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


def real_sleep(seconds: float) -> None:
    """Sleep the OS thread, even where ``time.sleep`` is patched."""
    _original("time", "sleep")(seconds)
