"""Which code blocks the hubs: fingerprints of blockages, and each monitor's table of culprits.

A fleet of processes reports the same few blockages again and again. To
count them, and to print a repeat as one line, each blockage gets a
*fingerprint*: 16 hex digits that name the culprit's code location,
whatever the greenlet, the time, or the greenlet's locals. It is the
BLAKE2b digest (8 bytes) of the blocked stack of the collected report
(``BlockedReport.blocked_stack.stack``, oldest frame first):

* every outer frame as ``(file, line, function)``: call sites are stable;
* the innermost frame as ``(file, function)`` only: its line wanders inside
  the body of a loop that blocks.

When there is no Python stack (the culprit runs C code, or the blocked
thread runs no Python frame), the fingerprint is made from what the report
shows instead: the culprit's type and the function it runs, without the
arguments (``time.sleep`` for ``gevent.spawn(time.sleep, 1)``), or the state
of the stack when even that is unknown.

The *place* is the innermost frame as ``"file:line in function"`` (the line
of this blockage), or the description of the C code.

:class:`Table` is the culprit table of one monitor; :class:`Windows` decides,
where a report is printed, whether a blockage is printed in full or as a
one-line repeat.
"""
from __future__ import annotations

from ._collect import _qualified_type_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Dict, List, Optional, Tuple

__all__ = ["MAX_CULPRITS", "identify", "Table", "Windows"]

#: How many fingerprints a monitor's culprit table (and its table of repeat
#: windows) keeps at most. Beyond, the culprit with the smallest total time
#: is dropped to make room (never the blockage going on).
MAX_CULPRITS = 1000


def identify(report: Any, culprit: Any) -> Tuple[str, str]:
    """Return ``(fingerprint, place)`` of a collected ``BlockedReport``; never raises.

    ``culprit`` is the blocked greenlet (or None), whose type names a
    blockage without a Python stack.
    """
    try:
        return _identify(report, culprit)
    except BaseException:  # a report too broken to read: one fingerprint for all of them
        return _digest(("unreadable",)), "(unknown place)"


def _identify(report: Any, culprit: Any) -> Tuple[str, str]:
    stack = getattr(report, "blocked_stack", None)
    frames = [entry for entry in (getattr(stack, "stack", None) or ())
              if type(entry) is tuple and len(entry) == 3]
    if frames:
        filename, lineno, function = frames[-1]
        parts: List[Any] = [(str(f), l, str(fn)) for f, l, fn in frames[:-1]]
        parts.append((str(filename), str(function)))
        # The kind of cause tells apart two culprits of one function (a
        # sleep, then a loop), whose innermost line is left out above.
        cause = getattr(report, "cause", None)
        parts.append(str(getattr(cause, "kind", None)))
        place = "%s:%s in %s" % (filename, "?" if lineno is None else lineno, function)
        return _digest(parts), place
    # No Python frame: the culprit's type and the function it runs, not its arguments.
    kind = "<none>" if culprit is None else _qualified_type_name(culprit)
    call = getattr(stack, "call", None)
    state = getattr(stack, "state", None)
    if call:
        function = str(call).split("(", 1)[0].strip()
        place = "%s (not Python code, in a %s)" % (function, kind)
    else:
        function = ""
        place = "(no Python frame: %s, in a %s)" % (state or "unknown", kind)
    return _digest(("no stack", kind, function, str(state))), place


_blake2b: Any = None


def prepare() -> None:
    """Import ``hashlib`` now, in the calling thread (a monitor's start).

    Not at hubmon's import, which it would slow by milliseconds, and never
    in the native thread, which must not import while the blocked thread
    may hold an import lock.
    """
    global _blake2b
    if _blake2b is None:
        import hashlib
        _blake2b = hashlib.blake2b


def _digest(parts: Any) -> str:
    if _blake2b is None:
        prepare()   # only when a report is made without a monitor's start
    return _blake2b(repr(parts).encode("utf-8", "backslashreplace"),
                    digest_size=8).hexdigest()


class _Entry:
    __slots__ = ("place", "count", "total", "longest")

    def __init__(self, place: str) -> None:
        self.place = place
        self.count = 0
        self.total = 0.0
        self.longest = 0.0


class Table:
    """The culprit table of one monitor: blockages counted and timed by fingerprint.

    :meth:`blocked` and :meth:`unblocked` run on the native thread (or in
    ``Monitor.stop()``, once the native thread no longer sends this monitor's
    events), :meth:`rows` in any thread. There is no lock: only one thread
    writes at a time, and readers copy the dict in one step under the GIL.
    A lock would also be a hazard, since a ``fork()`` made while the native
    thread held it would leave it held in the child.
    """

    def __init__(self, limit: int = MAX_CULPRITS) -> None:
        self._limit = limit
        self._entries: Dict[str, _Entry] = {}
        # The blockage going on: (fingerprint, place, monotonic start), or None.
        self._current: Optional[Tuple[str, str, float]] = None

    def blocked(self, fingerprint: str, place: str, started: float) -> None:
        """A blockage of ``fingerprint`` began at monotonic time ``started`` and was reported."""
        entry = self._entries.get(fingerprint)
        if entry is None:
            if len(self._entries) >= self._limit:
                self._drop_smallest()
            entry = self._entries[fingerprint] = _Entry(place)
        entry.count += 1
        entry.place = place
        self._current = (fingerprint, place, started)

    def _drop_smallest(self) -> None:
        current = self._current[0] if self._current is not None else None
        victims = [(entry.total, key) for key, entry in list(self._entries.items())
                   if key != current]
        if victims:
            del self._entries[min(victims)[1]]

    def unblocked(self, duration: float) -> Optional[Tuple[str, str]]:
        """The reported blockage ended after ``duration`` seconds in all.

        Returns its ``(fingerprint, place)``, or None when no reported
        blockage was going on (one a report filter vetoed).
        """
        current, self._current = self._current, None
        if current is None:
            return None
        entry = self._entries.get(current[0])
        if entry is not None:
            entry.total += duration
            entry.longest = max(entry.longest, duration)
        return current[0], current[1]

    def forget_current(self) -> None:
        """No reported blockage goes on (a new one was vetoed by a filter)."""
        self._current = None

    def rows(self, now: float) -> List[Dict[str, Any]]:
        """The table as ``Monitor.stats()["culprits"]`` gives it, at monotonic time ``now``.

        The blockage going on counts with its duration so far.
        """
        current = self._current
        rows = [{"fingerprint": key, "place": entry.place, "count": entry.count,
                 "total": entry.total, "longest": entry.longest}
                for key, entry in list(self._entries.items())]
        if current is not None:
            so_far = max(0.0, now - current[2])
            for row in rows:
                if row["fingerprint"] == current[0]:
                    row["total"] += so_far
                    row["longest"] = max(row["longest"], so_far)
        rows.sort(key=lambda row: row["total"], reverse=True)
        return rows


class Window:
    """The full report a fingerprint's repeats refer to: its time and the count since."""

    __slots__ = ("time", "count")

    def __init__(self, time: float) -> None:
        #: ``time.time()`` of the full report's collection.
        self.time = time
        #: Blockages of the fingerprint since, the full one included.
        self.count = 1


class Windows:
    """The repeat windows of one monitor, used only by the printer thread.

    :meth:`decide` returns None for a blockage to print in full (which opens
    a new window), or the :class:`Window` it repeats.
    """

    def __init__(self, limit: int = MAX_CULPRITS) -> None:
        self._limit = limit
        self._windows: Dict[str, Window] = {}
        #: Whether the last blockage decided was a repeat (its end's profile
        #: report is then not printed either).
        self.last_was_repeat = False

    def decide(self, fingerprint: str, when: float, window: float) -> Optional[Window]:
        """Whether the blockage of ``fingerprint`` collected at ``when`` (``time.time()``)
        repeats a full report of the last ``window`` seconds (0: never)."""
        found = self._windows.get(fingerprint)
        if found is not None and window > 0 and found.time <= when < found.time + window:
            found.count += 1
            self.last_was_repeat = True
            return found
        self.last_was_repeat = False
        self._windows.pop(fingerprint, None)
        if len(self._windows) >= self._limit:
            self._expire(when, window)
        self._windows[fingerprint] = Window(when)
        return None

    def _expire(self, now: float, window: float) -> None:
        """Make room: drop the windows that are over, else the oldest one."""
        for key in [key for key, found in self._windows.items() if found.time + window <= now]:
            del self._windows[key]
        if len(self._windows) >= self._limit:
            del self._windows[next(iter(self._windows))]
