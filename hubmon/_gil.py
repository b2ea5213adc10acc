"""The stack dump for blocks made by a C call that holds the GIL.

While such a call runs no Python code can, hubmon's included. The native
thread notices the block without the GIL; if it cannot get the GIL soon
after, a timer sends the hub's thread the signal on which :mod:`faulthandler`
is registered here, and faulthandler writes every thread's Python stack
while the call still runs. hubmon's own signal handler writes a header
first. Linux only; turned off by ``HUBMON_GIL_SIGNAL=0``.

What hubmon touches is its own: the dump goes to a duplicate of the first
monitor's stream's file descriptor, owned by hubmon and closed when the last
monitor using the dump stops; the signal is one without a standard meaning
(SIGUSR1, SIGUSR2, a real-time signal) that no handler of the program's
holds. ``'auto'`` picks the first real-time signal from SIGRTMIN + 6 on that
nobody handles.
"""
from __future__ import annotations

import faulthandler
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Union

from . import _core
from .config import ConfigError

__all__ = ["choose_signal", "acquire", "release"]

_users = 0          # monitors using the dump now
_signal = 0         # the signal hubmon's handler is installed on, or 0
_stream: Any = None  # the stream whose descriptor the dump writes to
_AUTO_FIRST_OFFSET = 6


def _with_fileno(stream: Any) -> tuple:
    """``(stream, fd)``: ``stream`` if it has a descriptor, else stderr; ``(None, -1)`` if none has."""
    for candidate in (stream, sys.stderr, sys.__stderr__):
        try:
            fd = candidate.fileno()
        except Exception:
            continue
        if isinstance(fd, int) and fd >= 0:
            return candidate, fd
    return None, -1


def dump_stream() -> Any:
    """The stream whose descriptor the dump writes to (as it was when the dump was turned on), or None."""
    return _stream if _users else None


def choose_signal(value: Union[int, str], label: str) -> int:
    """Resolve the ``gil_signal`` setting for a monitor that starts now.

    ``value`` is what :data:`hubmon.config` gives (a number, 0, or
    ``'auto'``), ``label`` the name to put in an error. Returns the signal to
    use, or 0 for no dump (off, not Linux, or no free real-time signal for
    'auto'). Raises :class:`~hubmon.ConfigError` when an explicit signal is
    already handled by the program.
    """
    if not value or not sys.platform.startswith("linux"):
        return 0
    if _signal and not _yielded and (value == "auto" or value == _signal):
        return _signal
    if value == "auto":
        import signal

        rtmin, rtmax = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
        if rtmin is None or rtmax is None:
            return 0
        for number in range(int(rtmin) + _AUTO_FIRST_OFFSET, int(rtmax) + 1):
            if _core.signal_disposition(number) == "default":
                return number
        return 0
    number = int(value)
    disposition = _core.signal_disposition(number)
    if disposition not in ("default", "hubmon"):
        raise ConfigError(
            f"{label}={value!r} is invalid: the program already handles signal {number} "
            f"(its disposition is {disposition!r}); choose a signal nobody handles, 'auto' or 'off'")
    return number


def acquire(signum: int, stream: Any) -> bool:
    """Use the dump for one more monitor, writing to ``stream``'s file the first time.

    Returns whether the dump is on for it. The first monitor's stream wins
    (faulthandler keeps one file per signal); a later monitor that asks for
    another signal than the one in use gets no dump.
    """
    global _users, _signal, _yielded, _stream
    if not signum or not sys.platform.startswith("linux"):
        return False
    if _users == 0:
        target, fd = _with_fileno(stream)
        if fd < 0:
            return False
        own_fd = _core.gil_dump_enable(fd)
        try:
            faulthandler.register(signum, file=own_fd, all_threads=True, chain=False)
            _core.install_gil_handler(signum)
        except BaseException:
            _core.gil_dump_disable()
            raise
        _signal = signum
        _stream = target
        _yielded = False
        _guard_faulthandler()
    elif signum != _signal or _yielded:
        return False
    _users += 1
    return True


def release() -> None:
    """One monitor fewer uses the dump; the last one turns it off, closes
    hubmon's descriptor and gives the signal back as it found it (no handler)."""
    global _users, _signal, _stream
    if _users <= 0:
        return
    _users -= 1
    if _users == 0:
        _core.gil_dump_disable()
        if not _yielded and _signal:
            _core.uninstall_gil_handler()
            _original_unregister(_signal)
        _signal = 0
        _stream = None


_yielded = False
_original_register = faulthandler.register
_original_unregister = faulthandler.unregister


def _yield_signal(signum: Any) -> None:
    """The program registers or unregisters faulthandler on hubmon's signal:
    give the signal up first (the dump stops; the reports say so), so that
    what the program asks for is what happens."""
    global _yielded
    if _signal and not _yielded and signum == _signal:
        _yielded = True
        _core.uninstall_gil_handler()


def _guard_faulthandler() -> None:
    """Wrap faulthandler.register/unregister once, to notice a program taking hubmon's signal.

    faulthandler.register on a signal it already handles keeps the handler in
    place, hubmon's in front of it: with ``chain=True`` faulthandler would
    then end the process at hubmon's next dump.
    """
    if getattr(faulthandler.register, "_hubmon_guard", False):
        return

    def register(signum: Any, *args: Any, **kwargs: Any) -> Any:
        _yield_signal(signum)
        return _original_register(signum, *args, **kwargs)

    def unregister(signum: Any) -> Any:
        _yield_signal(signum)
        return _original_unregister(signum)

    for wrapper, original in ((register, _original_register), (unregister, _original_unregister)):
        wrapper.__doc__ = original.__doc__
        wrapper.__name__ = original.__name__
        wrapper._hubmon_guard = True  # type: ignore[attr-defined]
    faulthandler.register = register
    faulthandler.unregister = unregister
