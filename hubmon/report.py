"""Text reports about the threads and greenlets of this process.

This module is the public face of the reports: it builds the report hubmon
prints when a hub is blocked, and the same thread and greenlet report on
demand. Each report is made in two steps, so that the facts are taken
quickly, all at once, and the text can be made from them in more than one
form: `hubmon._collect` reads the live state of the interpreter into plain
data (where the notes on speed and on the safety of the program that is
reported on are), and `hubmon._render` turns that data into lines of text.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Iterable, TextIO

from ._collect import (collect_blocked_report, collect_run_info,
                       find_greenlet, find_greenlets, prepare)
from ._render import render_blocked_report, render_run_info

__all__ = [
    'format_run_info',
    'print_run_info',
    'format_blocked_report',
    'find_greenlets',
    'find_greenlet',
    'prepare',
]


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

def format_run_info(thread_stacks: bool = True,
                    greenlet_stacks: bool = True,
                    limit: int | None = None,
                    *,
                    max_greenlets: int | None = 0,
                    exclude_thread_ids: Iterable[int] = (),
                    current_thread_ident: int | None = None,
                    highlight: object = None,
                    _greenlets: list | None = None) -> list[str]:
    """Describe the threads and greenlets of this process, one line per entry.

    The result has a threads section (every Python thread from
    ``sys._current_frames()``: id, name, daemon flag when known, and its
    stack) and a greenlets section (every greenlet the garbage collector
    knows, as a tree by ``parent``: repr, state, stack, for gevent
    greenlets their name, spawning stack and spawn tree locals, and, when
    the program uses ``gevent.local``, the values of its locals set in each
    greenlet shown, as gevent's ``format_run_info`` shows them). Lines have
    no trailing newline; ``'\\n'.join(lines)`` is the printable form.

    :param thread_stacks: include the stack of each thread.
    :param greenlet_stacks: include the stack each greenlet is suspended in.
        Spawning stacks of gevent greenlets are always included.
    :param limit: the number of frames shown per stack, like the *limit* of
        ``traceback.format_stack``: a positive value keeps the newest frames,
        a negative one the oldest, ``None`` keeps all.
    :param max_greenlets: ``0`` (or ``None``, or negative) shows the full
        tree. ``N > 0`` shows the first N greenlets of the tree, depth first
        with parents before children (plus the path to *highlight*, always),
        and then a summary that counts the other greenlets by the code they
        run, without formatting their stacks.
    :param exclude_thread_ids: threads (by ``threading.get_ident()`` value)
        left out of the threads section, such as the monitor's own thread.
        The calling thread is not excluded unless listed here; when it is,
        its greenlet state is left alone (``greenlet.getcurrent()`` is not
        called, as it would create a main greenlet in a thread without one).
    :param current_thread_ident: the thread marked ``CURRENT``; defaults to
        the calling thread.
    :param highlight: a greenlet to mark as blocked. The path from its root
        to it is always shown in full and comes first; its thread is taken to
        be *current_thread_ident*.
    :return: the lines of the report. Once its arguments are checked
        (TypeError naming a wrong one), this function never raises; a
        section that fails is replaced by a line describing the error.
    """
    for name, value in (("limit", limit), ("max_greenlets", max_greenlets)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError("%s must be an int or None, not %r" % (name, value))
    return render_run_info(collect_run_info(
        thread_stacks, greenlet_stacks, limit,
        max_greenlets=max_greenlets,
        exclude_thread_ids=exclude_thread_ids,
        current_thread_ident=current_thread_ident,
        highlight=highlight,
        greenlets=_greenlets))


def print_run_info(thread_stacks: bool = True,
                   greenlet_stacks: bool = True,
                   limit: int | None = None,
                   file: TextIO | None = None,
                   **kwargs: Any) -> None:
    """Print the lines of `format_run_info` to *file* (default ``sys.stderr``).

    The report is built first and written with a single ``write`` call, so
    that it is not interleaved with other output line by line. Keyword
    arguments (*max_greenlets*, *exclude_thread_ids*,
    *current_thread_ident*, *highlight*) are passed to `format_run_info`.
    """
    lines = format_run_info(thread_stacks, greenlet_stacks, limit, **kwargs)
    stream = sys.stderr if file is None else file
    stream.write('\n'.join(lines) + '\n')
    flush = getattr(stream, 'flush', None)
    if flush is not None:
        flush()


def format_blocked_report(*,
                          greenlet: object,
                          thread_ident: int,
                          duration: float,
                          threshold: float,
                          hub: object = None,
                          max_greenlets: int | None = 50,
                          exclude_thread_ids: Iterable[int] = (),
                          monitor_repr: str | None = None,
                          limit: int | None = None,
                          _greenlets: list | None = None) -> list[str]:
    """Build the report printed when *greenlet* has blocked its hub too long.

    The report starts with a rule and a header line (UTC time, the greenlet,
    how long it has blocked and the threshold), then the stack of the
    blocked thread (*thread_ident*) taken from ``sys._current_frames()``,
    which ends in the call that blocks, and then ``Info:`` followed by
    `format_run_info` with the blocked greenlet highlighted.

    :param greenlet: the greenlet that did not switch back to its hub.
    :param thread_ident: the ``threading.get_ident()`` of the hub's thread.
    :param duration: seconds the greenlet has run without switching.
    :param threshold: the configured maximum blocking time, in seconds.
    :param hub: the blocked hub, if known; it is named in the report.
    :param max_greenlets: bound on the greenlets shown in full (see
        `format_run_info`); ``0`` or ``None`` shows them all.
    :param exclude_thread_ids: threads left out of the threads section,
        typically the monitor's own thread.
    :param monitor_repr: a description of the monitor that reports.
    :param limit: the number of frames shown per stack (see
        `format_run_info`).
    :return: the lines of the report, without trailing newlines. This
        function never raises.
    """
    return render_blocked_report(collect_blocked_report(
        greenlet=greenlet, thread_ident=thread_ident, duration=duration,
        threshold=threshold, hub=hub, max_greenlets=max_greenlets,
        exclude_thread_ids=exclude_thread_ids, monitor_repr=monitor_repr,
        limit=limit, greenlets=_greenlets))
