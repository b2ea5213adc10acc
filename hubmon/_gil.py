"""The stack dump for blocks made by a C call that holds the GIL.

While such a call runs no Python code can, hubmon's included. The native
thread notices the block without the GIL; if it cannot get the GIL soon
after, a timer sends the hub's thread the signal on which :mod:`faulthandler`
is registered here, and faulthandler writes every thread's Python stack
while the call still runs. hubmon's own signal handler writes a header
first. Linux only; turned off by ``HUBMON_GIL_SIGNAL=0``.
"""
from __future__ import annotations

import faulthandler
import sys
from typing import Any, Optional, Tuple

_registered: Optional[Tuple[int, int]] = None   # (signal, fd)


def _fileno(stream: Any) -> int:
    for candidate in (stream, sys.stderr, sys.__stderr__):
        try:
            fd = candidate.fileno()
        except Exception:
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return -1


def setup(signum: int, stream: Any) -> Tuple[int, int]:
    """Register faulthandler on ``signum`` writing to ``stream``'s file.

    Returns ``(fd, signum)`` for the tracer, or ``(-1, 0)`` when the dump is
    off or cannot work here. The first monitor's stream wins: faulthandler
    keeps one file per signal.
    """
    global _registered
    if not signum or not sys.platform.startswith("linux"):
        return (-1, 0)
    if _registered is not None:
        if _registered[0] == signum:
            return (_registered[1], signum)
        return (-1, 0)
    fd = _fileno(stream)
    if fd < 0:
        return (-1, 0)
    from . import _core
    faulthandler.register(signum, file=fd, all_threads=True, chain=False)
    _core.install_gil_handler(signum)
    _registered = (signum, fd)
    return (fd, signum)
