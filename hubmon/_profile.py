"""Where a whole blockage went: the stacks hubmon's native thread samples while it lasts.

Once a blockage is reported, the native thread takes the GIL every
threshold / 4 (the interval doubles after every 256 samples, so that a
blockage of hours stays bounded) and reads the blocked thread's Python
stack; nothing is sampled while the hub runs. Each sample stands for the
time since the previous one (the first, the report's own stack, for the
blockage up to its detection), counted in base intervals, so the shares stay
true when the interval doubles or a sample had to wait for the GIL. A
:class:`Profile` holds them; ``EventLoopUnblocked.profile`` and ``.samples``
show them, and :func:`render` makes the text of the "unblocked" report.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Dict, List, Optional, Tuple

__all__ = ["Profile", "take_stack", "folded", "render", "callback_of"]

#: Frames kept per sampled stack (the innermost ones).
MAX_FRAMES = 200
#: Distinct stacks kept per blockage; the time of any further one is
#: counted under :data:`OTHER`.
MAX_STACKS = 1000
#: The stack that stands for the stacks beyond MAX_STACKS.
OTHER = ("(other stacks)",)
#: The stack that stands for the time before a blockage's report when the
#: culprit had switched away by then (a C call held the GIL until it ended).
UNSAMPLED = ("(not sampled: the block ended before the GIL was free; see the stack "
             "written while it ran)",)


def take_stack(thread_ident: int) -> Optional[Tuple[str, ...]]:
    """The Python stack of thread ``thread_ident`` as ``"file:line:function"`` strings, outermost first.

    Holding the GIL. None when the thread runs no Python code (it ended).
    """
    frame = sys._current_frames().get(thread_ident)
    if frame is None:
        return None
    entries = []
    while frame is not None and len(entries) < MAX_FRAMES:
        code = frame.f_code
        entries.append("%s:%s:%s" % (code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    del frame
    entries.reverse()
    return tuple(entries)


class Profile:
    """The sampled stacks of one blockage, each with its count of base intervals."""

    __slots__ = ("interval", "counts", "samples", "_last", "_carry")

    def __init__(self, interval: float, started: float) -> None:
        #: The base interval in seconds (threshold / 4).
        self.interval = interval
        #: Stack -> time it stood for, in base intervals (a float until read).
        self.counts: Dict[Tuple[str, ...], float] = {}
        #: Stacks actually taken.
        self.samples = 0
        self._last = started
        self._carry = 0.0

    def add(self, stack: Optional[Tuple[str, ...]], now: float) -> None:
        """Count ``stack`` (None: no Python stack) for the time since the previous sample (monotonic ``now``)."""
        weight = max(0.0, now - self._last) / self.interval
        self._last = now
        if stack is None:
            stack = ("(no Python frame)",)
        self.samples += 1
        if stack not in self.counts and len(self.counts) >= MAX_STACKS:
            stack = OTHER
        self.counts[stack] = self.counts.get(stack, 0.0) + weight

    def result(self) -> List[Tuple[Tuple[str, ...], int]]:
        """``[(stack, count), ...]``, the largest count first; counts are whole base intervals, at least 1."""
        items = [(stack, max(1, int(round(weight)))) for stack, weight in self.counts.items()]
        items.sort(key=lambda item: (-item[1], item[0]))
        return items


def folded(profile: List[Tuple[Tuple[str, ...], int]]) -> str:
    """The profile in the folded format flame-graph tools read (``flamegraph.pl``, speedscope).

    One line per stack: its frames outermost first joined by ``;`` (a ``;``
    inside a frame becomes ``,``), a space, and its count.
    """
    lines = []
    for stack, count in profile:
        lines.append("%s %d" % (";".join(frame.replace(";", ",") for frame in stack), count))
    return "\n".join(lines) + ("\n" if lines else "")


def _place(frame: str) -> str:
    """``"file:line:function"`` as the report writes it: ``file:line in function``.

    A label that stands for a stack (``"(no Python frame)"``, say) is kept as it is.
    """
    path, _, function = frame.rpartition(":")
    if not path.rpartition(":")[2].isdigit():
        return frame
    return "%s in %s" % (path, function)


def render(*, culprit: str, duration: float, threshold: float, interval: float,
           profile: List[Tuple[Tuple[str, ...], int]], samples: int,
           timestamp: str, top: int = 10) -> List[str]:
    """The lines of the "unblocked" report of a long blockage.

    It names the culprit and the duration, then the innermost frames that
    took the time with their shares of it, then the stack most sampled.
    """
    total = sum(count for _, count in profile) or 1
    lines = ["=" * 80,
             "%s : The hub ran again after %.3f seconds blocked by %s (max_blocking_time %.3f seconds)."
             % (timestamp, duration, culprit, threshold),
             "    Where the time went: %d samples of %.3f s (from %d stack%s read, each counting "
             "for the time since the one before); the innermost frames, by share of the time:"
             % (total, interval, samples, "" if samples == 1 else "s")]
    by_frame: Dict[str, int] = {}
    for stack, count in profile:
        key = stack[-1] if stack else "(empty)"
        by_frame[key] = by_frame.get(key, 0) + count
    ranked = sorted(by_frame.items(), key=lambda item: (-item[1], item[0]))
    for frame, count in ranked[:top]:
        lines.append("    %5.1f%%  %s" % (100.0 * count / total, _place(frame)))
    if len(ranked) > top:
        rest = sum(count for _, count in ranked[top:])
        lines.append("    %5.1f%%  (%d more places)" % (100.0 * rest / total, len(ranked) - top))
    if profile:
        stack, count = profile[0]
        lines.append("    The most sampled stack (%.1f%%), outermost first:" % (100.0 * count / total,))
        for frame in stack[-20:]:
            lines.append("      %s" % (_place(frame),))
    return lines


def callback_of(stack: Optional[Tuple[str, ...]], package_dir: Optional[str]) -> Optional[str]:
    """The callback a hub is running, as ``file:line in function``, from the hub thread's stack.

    The first frame, from the outermost, that follows the event loop's own
    frames and is not in ``package_dir`` (gevent's folder): the code the
    loop called. Without gevent's frames, the innermost frame. None for no stack.
    """
    if not stack:
        return None
    if package_dir:
        seen_loop = False
        for frame in stack:
            inside = frame.startswith(package_dir)
            if inside:
                seen_loop = True
            elif seen_loop:
                return _place(frame)
    return _place(stack[-1])
