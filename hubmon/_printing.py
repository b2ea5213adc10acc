"""What a monitor prints for a blockage: the full report, a one-line repeat, or JSON lines.

Runs in hubmon's printer thread only. The repeat decision is made here,
where the report is printed, not on the native thread: a blockage whose
fingerprint had a full report printed less than ``repeat_window`` seconds
before it (``HUBMON_REPEAT_WINDOW``) is printed as one line that names the
place, its count in that window (the full one counted as the first), its
duration and the full report it repeats (fingerprint and time). After the
window, the next one is printed in full again and opens a new window.

With ``report_format='json'`` (``HUBMON_REPORT_FORMAT``), every printed
event is one JSON object on one line instead (see ``docs/events.rst``).
"""
from __future__ import annotations

import time

from ._render import _utc_timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Optional

    from ._culprits import Windows

__all__ = ["blocked_text", "unblocked_text", "report_text", "ordinal"]


def report_text(info: Any) -> str:
    """The text of a report from ``event.info`` as subscribers left it.

    A list of lines (or any iterable of them, a generator included) gives
    one line each; a string is printed as it is; None prints nothing.
    """
    if info is None:
        return ""
    if isinstance(info, str):
        return info
    try:
        lines = iter(info)
    except TypeError:
        return str(info)
    return "\n".join(str(line) for line in lines)


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st`` ..."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return "%d%s" % (number, suffix)


def _unchanged(info: Any, original: Any) -> bool:
    """Whether the subscribers left ``event.info`` as the monitor made it."""
    made, lines = original
    try:
        return info is made and len(info) == len(lines) and tuple(info) == lines
    except BaseException:
        return False


def _emptied(info: Any) -> bool:
    """Whether a subscriber emptied ``event.info`` (None, or an empty list or string)."""
    try:
        return info is None or (isinstance(info, (list, tuple, str)) and len(info) == 0)
    except BaseException:
        return False


def _cause_of(event: Any) -> Any:
    report = event.report
    cause = getattr(report, "cause", None) if report is not None else None
    if cause is None:
        cause = getattr(event, "cause", None)
    return cause


def _cause_dict(cause: Any) -> Any:
    if cause is None:
        return None
    try:
        return cause.to_dict()
    except BaseException:
        return {"kind": "unknown", "detail": str(cause), "cpu_time": None}


def _dumps(record: dict) -> str:
    import json  # not at hubmon's import
    return json.dumps(record, default=repr, separators=(",", ":"))


def blocked_text(windows: Windows, event: Any, original: Any, *, repeat_window: float,
                 report_format: str) -> Optional[str]:
    """What to print for ``event`` (an EventLoopBlocked), as its subscribers left it.

    ``original`` is ``(info, tuple(info))`` as the monitor made them.
    Returns "" when nothing is to be printed (a report filter vetoed the
    report, or a subscriber emptied ``info``); else the text. In text mode a
    repeat whose ``info`` a subscriber changed prints what they left; a full
    report always prints ``info`` as they left it.
    """
    info = event.info
    report = event.report
    if _emptied(info):
        return ""
    if report is None or event.fingerprint is None:
        # No collected report: a report filter vetoed it (and the monitor
        # left info empty), or the subscribers put lines into an empty info.
        return "" if report_format == "json" else report_text(info)
    when = report.time if isinstance(report.time, float) else time.time()
    repeat = windows.decide(event.fingerprint, when, repeat_window)
    if report_format == "json":
        if repeat is None:
            record = {"event": "blocked", "time": _utc_timestamp(when),
                      "fingerprint": event.fingerprint, "place": event.place,
                      "duration": event.duration, "threshold": event.blocking_time,
                      "cause": _cause_dict(_cause_of(event)), "report": report.to_dict()}
        else:
            record = {"event": "blocked", "time": _utc_timestamp(when),
                      "repeat_of": {"fingerprint": event.fingerprint,
                                    "time": _utc_timestamp(repeat.time)},
                      "count": repeat.count, "place": event.place,
                      "duration": event.duration, "cause": _cause_dict(_cause_of(event))}
        return _dumps(record)
    if repeat is None or not _unchanged(info, original):
        return report_text(info)
    duration = event.duration
    return ("%s : hubmon: blocked again for %s seconds at %s (fingerprint %s, %s time within "
            "HUBMON_REPEAT_WINDOW=%g s of its full report at %s)" % (
                _utc_timestamp(when),
                "%.3f" % duration if isinstance(duration, float) else duration,
                event.place, event.fingerprint, ordinal(repeat.count), repeat_window,
                _utc_timestamp(repeat.time)))


def unblocked_text(event: Any, fingerprint: str, place: str) -> str:
    """The JSON line of ``event`` (an EventLoopUnblocked) ending a printed blockage."""
    record = {"event": "unblocked", "time": _utc_timestamp(time.time()),
              "fingerprint": fingerprint, "place": place, "duration": event.duration}
    profile = getattr(event, "profile", None)
    if profile:
        try:
            pairs = profile.items() if hasattr(profile, "items") else profile
            record["profile"] = [[list(stack), count] for stack, count in pairs]
        except BaseException:
            pass
    record["samples"] = getattr(event, "samples", None)
    return _dumps(record)
