"""What the native thread does when a hub is blocked: one path for every owner.

A :class:`~hubmon.Monitor` and an :class:`~hubmon.assert_switches` scope
both hear of a block from the native thread, holding the GIL, through
:mod:`hubmon._dispatch`. Both then need the same thing done the same way:
find the culprit among the live greenlets by the address the trace function
stored (never holding a reference), capture the report while the block
lasts, say so when the GIL was held before it could be built, and know when
the block started. :func:`capture` does it; the owners only decide what to
do with the result.
"""
from __future__ import annotations

from . import _core, _culprits
from ._collect import collect_blocked_report
from ._profile import UNSAMPLED, callback_of, take_stack
from ._render import render_blocked_report
from ._threads import own_thread_idents
from .cause import Cause
from .report import find_greenlet, find_greenlets

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Callable, List, Optional

__all__ = ["Capture", "GIL_NOTED", "capture", "make_cause"]

#: A wait for the GIL longer than this (seconds) is told in the report: the
#: native thread's own patience before it asks for the stack dump
#: (HM_GIL_PATIENCE in src/callbacks.c).
GIL_NOTED = 0.05


class Capture:
    """One blocked report, captured on the native thread while the block lasted.

    ``culprit`` is the greenlet found running (None when it is not a live
    greenlet of this process), ``lines`` the report, ``duration`` how long
    the hub had been blocked when the report was built (seconds, the wait for
    the GIL included) and ``started`` the monotonic time the block began.
    ``report`` is the collected ``BlockedReport`` the lines were rendered
    from, with its ``fingerprint``, and ``place`` the culprit's place (see
    :mod:`hubmon._culprits`); all three are None (and ``lines`` empty) when
    ``want_report`` vetoed the report.
    """

    __slots__ = ("culprit", "lines", "duration", "started", "report", "fingerprint", "place",
                 "cause", "stack")

    def __init__(self, culprit: Any, lines: List[str], duration: float, started: float,
                 report: Any = None, fingerprint: Optional[str] = None,
                 place: Optional[str] = None, cause: Optional[Cause] = None,
                 stack: Optional[tuple] = None) -> None:
        self.culprit = culprit
        self.lines = lines
        self.duration = duration
        self.started = started
        self.report = report
        self.fingerprint = fingerprint
        self.place = place
        #: The cause (hubmon.cause.Cause), or None.
        self.cause = cause
        #: The blocked thread's stack when captured, "file:line:function" strings; None when
        #: it runs no Python frame or the report was vetoed; _profile.UNSAMPLED when the
        #: block ended before the capture.
        self.stack = stack


def make_cause(raw: Optional[tuple], gil_wait: float) -> Optional[Cause]:
    """The :class:`~hubmon.cause.Cause` of a block from the native thread's ``raw`` facts.

    ``raw`` is ``(kind, detail, cpu_time or None, hub_itself)`` as
    ``src/callbacks.c`` passes it, or None. A wait for the GIL longer than
    :data:`GIL_NOTED` makes the kind ``'gil'`` (a C call held it while the
    hub was blocked), keeping what the kernel showed in the detail, unless a
    garbage-collection pass was seen, which is the more precise answer.
    """
    if raw is None:
        return None
    kind, detail, cpu_time = raw[0], raw[1], raw[2]
    if gil_wait > GIL_NOTED and kind != "gc":
        seen = detail if detail.startswith(("running", "in ")) or not detail else "in " + detail
        detail = ("a C call held the GIL for %.3f s after the block was detected; the kernel "
                  "showed the thread %s" % (gil_wait, seen or kind))
        kind = "gil"
    return Cause(kind, detail, cpu_time)


def capture(*, current: int, duration: float, gil_wait: float, thread_ident: int,
            threshold: float, hub: Any, max_greenlets: Optional[int], owner_repr: str,
            gil_note: Callable[[], str],
            plausible: Optional[Callable[[Any], bool]] = None,
            want_report: Optional[Callable[[Any, float], bool]] = None,
            cause: Optional[Cause] = None, hub_itself: bool = False,
            ended: Optional[Callable[[], bool]] = None) -> Optional[Capture]:
    """Capture the report of a block; native thread, holding the GIL. Raises what the report's
    guards let through (nothing in practice); :mod:`hubmon._dispatch` contains it.

    ``current`` is the running greenlet's address as the trace function
    stored it, ``duration`` how long the sampler saw no progress and
    ``gil_wait`` how long it then waited for the GIL (seconds);
    ``thread_ident`` the hub's thread. ``gil_note()`` gives the sentence
    that says where the stacks taken while the GIL was held went.
    ``plausible(culprit)``, when given, may return False: the evidence
    contradicts the block, and None is returned with nothing captured.
    ``want_report(culprit, duration)``, when given, may return False: the
    report is neither collected nor rendered (``lines`` is empty). ``cause``
    (a :class:`hubmon.cause.Cause` or None) goes into the report.
    ``ended()``, when given, tells whether a switch was counted since the
    block was decided: the report then says the block ended before it, as
    it does for a culprit that is dead.
    """
    # The block began `duration + gil_wait` seconds before now, however long
    # the capture itself then takes (user reprs, filters).
    began = _core.monotonic() - duration - gil_wait
    # One scan of the live greenlets serves the culprit and the report: with
    # 10,000 greenlets each scan holds the GIL for about 8 ms.
    greenlets = find_greenlets()
    culprit = find_greenlet(current, greenlets)
    if plausible is not None and not plausible(culprit):
        return None
    # Asked after plausible(), which may have let the hub's thread finish a
    # switch. A culprit that is dead has returned: its block is over, the
    # switch that follows may just not be counted yet.
    block_over = ((ended is not None and ended())
                  or bool(culprit is not None and getattr(culprit, "dead", False)))
    total = duration + gil_wait
    if want_report is not None and not want_report(culprit, total):
        return Capture(culprit, [], total, began, cause=cause)
    report = collect_blocked_report(
        greenlet=culprit, thread_ident=thread_ident, duration=total, threshold=threshold,
        hub=hub, max_greenlets=max_greenlets, exclude_thread_ids=own_thread_idents(),
        monitor_repr=owner_repr, greenlets=greenlets)
    del greenlets
    report.cause = cause
    fingerprint, place = _culprits.identify(report, culprit)
    report.fingerprint = fingerprint
    lines = render_blocked_report(report)
    stack = take_stack(thread_ident)
    # Under the header, and under the Cause line that belongs to it.
    at = 2 if cause is None else 3
    if hub_itself:
        lines.insert(at, "    The hub itself has not waited for events for %.3f seconds: it runs "
                         "a callback of its loop, %s" % (total, callback_of(stack, _gevent_dir())
                                                         or "(no Python frame)"))
        at += 1
    if gil_wait > GIL_NOTED:
        lines.insert(at, "    The GIL was held for %.3f seconds before this report could be "
                         "built: a C call that does not release it was running. %s"
                         % (gil_wait, gil_note()))
        at += 1
    if block_over:
        # The culprit switched away before the report was built: its stack
        # below is no longer the block's, nor may it count in the profile.
        lines.insert(at, "    The block ended before this report could be built: the stacks "
                         "below are from just after it.")
        stack = UNSAMPLED
    return Capture(culprit, lines, total, began, report, fingerprint, place, cause, stack)


def _gevent_dir() -> Optional[str]:
    """gevent's package folder, when the program has imported gevent; never imports it."""
    import sys
    module = sys.modules.get("gevent")
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return None
    import os
    return os.path.dirname(path) + os.sep
