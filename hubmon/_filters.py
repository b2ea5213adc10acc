"""Running :data:`hubmon.events.report_filters` on the native thread.

A filter is user code run as a guest of the native thread (holding the GIL,
greenlet switches forbidden by :mod:`hubmon._dispatch`): whatever it raises is
contained, counts as "report wanted", and is written to stderr by the
printer thread, so the native thread never waits for a stream.
"""
from __future__ import annotations

import sys

from . import _delivery, _output, events
from .events import _safe_repr

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any

__all__ = ["wanted"]


def wanted(culprit: Any, hub: Any, duration: float) -> bool:
    """Whether every filter wants the report of ``culprit`` blocking ``hub`` for ``duration`` s.

    Native thread, holding the GIL. Never raises: a filter that raises is
    taken as returning True, and its error is written once to stderr.
    """
    for report_filter in list(events.report_filters):
        try:
            keep = bool(report_filter(culprit, hub, duration))
        except BaseException:  # SystemExit, KeyboardInterrupt, GreenletExit too
            text = _output.format_error("report filter %s raised %s; the report is kept" % (
                _safe_repr(report_filter), type(sys.exc_info()[1]).__name__))
            _delivery.printer.post(_output.write_stderr, text)
            continue
        if not keep:
            return False
    return True

