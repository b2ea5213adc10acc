"""Writing hubmon's text (reports, error notes) without endangering the host.

A report for the interpreter's own stderr or stdout (``sys.__stderr__``,
``sys.__stdout__``) is written straight to a duplicate of its file
descriptor, so hubmon's thread never holds the stream's buffer lock while
the write waits for a slow reader: a ``fork()`` made by another thread
meanwhile would copy that lock, held, into the child, whose first write to
the stream would hang for ever. Every other stream gets ``stream.write``, as
gevent's monitor writes (a wrapper, a subclass or a file with its own
newline translation sees the report as it would from gevent); when it has a
descriptor, and so possibly an io buffer lock, the fork hook waits
(boundedly) for the write to end.
"""
from __future__ import annotations

import io
import os
import select
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Optional

from ._threads import real_get_ident, real_lock, real_sleep

__all__ = ["write", "write_error", "write_stderr", "format_error"]

#: The name of the logger of ``report_to='logging'``. logging is imported
#: when a report is logged (see hubmon._lifecycle for the order of the exit
#: hooks); traceback waits until it is needed too.
LOGGER_NAME = "hubmon"

# Held while hubmon logs a report or flushes a stream that has a descriptor
# (both may hold an io buffer lock for as long as the reader makes them
# wait); the fork hook takes it (boundedly) so that no such write is in
# progress while the process forks. Never held during hubmon's own write to
# a descriptor, nor while writing to a stream without one.
_gate = real_lock()
_FORK_PATIENCE = 1.0
_held_for_fork = False
_gate_owner = 0     # the thread that holds the gate for a write, or 0


# Set at exit once the printer has had its patience: from then on no write
# takes a stream's lock (it is checked under the gate), since a thread of
# hubmon's that the interpreter ends while it holds one (an io buffer lock)
# would make the interpreter's own last flush of that stream fail fatally.
_closed_for_exit = False


def close_for_exit(patience: float) -> None:
    """At exit: take no stream lock from now on; wait ``patience`` s at most for one held now. Never raises."""
    global _closed_for_exit
    _closed_for_exit = True
    try:
        if _gate.acquire(timeout=patience):
            _gate.release()
    except BaseException:
        pass


class _gated:
    """Hold the fork gate for a write, noting which thread holds it."""

    def __enter__(self) -> None:
        global _gate_owner
        _gate.acquire()
        _gate_owner = real_get_ident()

    def __exit__(self, *exc_info: Any) -> None:
        global _gate_owner
        _gate_owner = 0
        _gate.release()


def _fileno(stream: Any) -> Optional[int]:
    try:
        fd = stream.fileno()
    except Exception:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _direct_fileno(stream: Any) -> Optional[int]:
    """The descriptor to write ``stream``'s text to directly, or None to call its write().

    Only the interpreter's own stderr and stdout qualify: plain
    ``io.TextIOWrapper`` objects with the default newline handling, whose
    write() adds nothing to the bytes.
    """
    if stream is not sys.__stderr__ and stream is not sys.__stdout__:
        return None
    if type(stream) is not io.TextIOWrapper:
        return None
    try:
        # An encoding that starts each text with a byte order mark (utf-16,
        # utf-32) must go through the stream, which writes the mark once.
        if "\n".encode(stream.encoding) != b"\n":
            return None
    except Exception:
        return None
    return _fileno(stream)


# A piece of a report written through a stream's write(): at most this many
# characters, so that its bytes (4 at most per character in UTF-8) fit in
# PIPE_BUF (4096 on Linux), which a pipe with room takes whole.
_PIECE = 1000


def _pieces(data: str) -> list:
    """``data`` cut into pieces of at most ``_PIECE`` characters, at line ends where it can be."""
    pieces: list = []
    current = ""
    for line in data.splitlines(keepends=True):
        while len(line) > _PIECE:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:_PIECE])
            line = line[_PIECE:]
        if len(current) + len(line) > _PIECE:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    return pieces


def _wait_writable(fd: int) -> None:
    """Wait, holding no lock, until ``fd`` takes a write without blocking (or errs). Never raises."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while not poller.poll(1000):
            pass
    except Exception:
        pass        # the write that follows reports what is wrong with the descriptor


def _write_stream(stream: Any, data: str) -> None:
    stream.write(data)
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


#: The lowest number of hubmon's passing copies of a descriptor: above the
#: numbers a program reuses, so that its ``os.close(n)`` followed by an
#: ``open()`` that expects ``n`` (the lowest free number, as POSIX promises)
#: never finds hubmon's copy there.
_COPY_FLOOR = 256


def _private_copy(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered ``_COPY_FLOOR`` or more when the limit allows."""
    try:
        import fcntl
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _COPY_FLOOR)
    except (ImportError, OSError):
        return os.dup(fd)       # no fcntl, or a descriptor limit at or below the floor


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a duplicate of ``fd``; a non-blocking fd is waited on."""
    copy = _private_copy(fd)
    try:
        view = memoryview(data)
        while view:
            try:
                written = os.write(copy, view)
            except BlockingIOError:
                real_sleep(0.01)
                continue
            view = view[written:]
    finally:
        os.close(copy)


def write(stream: Any, text: str, level: int = 30) -> None:
    """Write ``text`` (a newline is added) to ``stream``, or log it when stream is None.

    A logged text is one record of the logger ``hubmon`` at ``level``
    (logging's number: 30 is WARNING, 20 INFO). Raises what the stream
    raises; callers contain it.
    """
    data = text if text.endswith("\n") else text + "\n"
    if stream is None:
        with _gated():
            if not _closed_for_exit:
                import logging
                logging.getLogger(LOGGER_NAME).log(level, "%s", data.rstrip("\n"))
        return
    fd = _direct_fileno(stream)
    if fd is None:
        fd = _fileno(stream)
        if fd is None:
            # No descriptor, so no buffer lock of the io module that a fork
            # could copy held: no reason to make a fork wait for a slow stream.
            _write_stream(stream, data)
            return
        # The stream's write() holds its buffer lock for as long as the
        # descriptor makes it wait, and a fork meanwhile would copy that lock,
        # held, into the child. So the text goes in pieces that the
        # descriptor takes without waiting, each written under the gate only
        # once poll() says there is room (a pipe then takes a piece of up to
        # PIPE_BUF bytes whole); the waiting itself holds no lock. Whole
        # lines stay together, as gevent's monitor prints line by line.
        for piece in _pieces(data):
            _wait_writable(fd)
            with _gated():
                if _closed_for_exit:
                    return
                _write_stream(stream, piece)
        return
    # What the program left in the stream's buffer goes first. stderr is
    # line-buffered, so this rarely writes anything; the gate keeps a fork
    # from copying the buffer's lock while it does.
    _wait_writable(fd)
    with _gated():
        try:
            if not _closed_for_exit:
                stream.flush()
        except Exception:
            pass
    # No lock of any kind is held while the write waits for a slow reader.
    encoding = getattr(stream, "encoding", None) or "utf-8"
    _write_fd(fd, data.encode(encoding, "backslashreplace"))


def format_error(what: str) -> str:
    """``hubmon: <what>:`` and the traceback of the exception being handled."""
    try:
        import traceback
        return "hubmon: %s:\n%s" % (what, traceback.format_exc())
    except BaseException:
        return "hubmon: %s (the traceback could not be formatted)\n" % (what,)


def write_stderr(text: str) -> None:
    """Write ``text`` to stderr. Never raises."""
    try:
        write(sys.stderr if sys.stderr is not None else sys.__stderr__, text)
    except BaseException:
        pass


def write_error(what: str) -> None:
    """Write ``hubmon: <what>:`` and the exception being handled to stderr. Never raises."""
    write_stderr(format_error(what))


def flush_logging_boundedly(patience: float) -> None:
    """At exit, when one of hubmon's threads is still busy: flush and close
    the logging handlers now, skipping any whose lock is not free within
    ``patience`` seconds, and drop logging's own exit hook, which would wait
    for such a lock for as long as the busy thread holds it (a report logged
    through a handler that hangs, a subscriber that logs). Never raises.
    """
    logging_module = sys.modules.get("logging")
    if logging_module is None:
        return
    try:
        import atexit
        atexit.unregister(logging_module.shutdown)
        refs = list(getattr(logging_module, "_handlerList", ()))
    except BaseException:
        return
    for ref in reversed(refs):
        try:
            handler = ref()
            lock = getattr(handler, "lock", None)
            if handler is None or (lock is not None and not lock.acquire(True, patience)):
                continue
            try:
                if getattr(handler, "flushOnClose", True):
                    handler.flush()
                handler.close()
            finally:
                if lock is not None:
                    lock.release()
        except BaseException:
            pass


def before_fork() -> None:
    """os.register_at_fork(before=...): let a logged report or a flush end first.

    The wait is hubmon's, not the program's: the forking thread's monitors
    do not count it as a block.
    """
    global _held_for_fork
    if _gate.acquire(False):
        _held_for_fork = True
        return
    me = real_get_ident()
    if _gate_owner == me:
        # The write itself forks (a logging handler that starts a process):
        # waiting would wait for itself.
        _held_for_fork = False
        return
    from .monitor import running_monitors
    mine = [m for m in running_monitors() if m.thread_ident == me]
    for monitor in mine:
        monitor.ignore_current_greenlet_blocking()
    try:
        _held_for_fork = _gate.acquire(True, _FORK_PATIENCE)
    finally:
        for monitor in mine:
            monitor.monitor_current_greenlet_blocking()


def after_fork_in_parent() -> None:
    """os.register_at_fork(after_in_parent=...)."""
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _gate.release()


def after_fork_in_child() -> None:
    """os.register_at_fork(after_in_child=...): a fresh gate (the old one may be held)."""
    global _gate, _held_for_fork, _gate_owner
    _gate = real_lock()
    _held_for_fork = False
    _gate_owner = 0
