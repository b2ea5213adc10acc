"""Why a hub was blocked: the cause hubmon's native thread gives each blockage.

The native thread decides it without the GIL from what the kernel says
about the hub's thread at the moment the blockage is detected (Linux:
``/proc/self/task/<tid>/syscall`` and ``stat``, the thread's CPU clock, and
for a file descriptor ``getsockname``/``getpeername`` or its
``/proc/self/fd`` link), so that it is known even while a C call holds the
GIL. Two kinds are decided from hubmon's own evidence: ``gil`` when the
native thread waited for the GIL longer than its patience, ``gc`` when a
garbage-collection pass ran in the hub's thread at detection
(``gc.callbacks``). The table of kinds is in ``docs/reading-a-report.rst``.
"""
from __future__ import annotations

__all__ = ["Cause", "KINDS"]

#: The kinds of cause, in the order of the C side's HM_CAUSE_* numbers.
KINDS = ("unknown", "cpu", "sleep", "io", "lock", "gil", "gc")


class Cause:
    """The cause of one blockage (``EventLoopBlocked.cause``).

    ``kind`` is one of :data:`KINDS`: ``'cpu'`` (the thread was running),
    ``'sleep'`` (in a sleep call, an unpatched ``time.sleep``), ``'io'``
    (waiting in a read, recv, connect or poll-like call), ``'lock'`` (waiting
    on a futex: an OS lock, an unpatched ``threading.Lock``), ``'gil'`` (a
    C call held the GIL), ``'gc'`` (a garbage-collection pass) or
    ``'unknown'``. ``detail`` (str) says what the kernel showed, for example
    ``'recvfrom on fd 7: TCP 127.0.0.1:41012 -> 127.0.0.1:5432'``.
    ``cpu_time`` is the CPU time in seconds the hub's thread used from the
    first sample that saw the blockage to its detection (at most one
    sampling period shorter than the blockage so far), or None where the
    thread's CPU clock cannot be read. Plain data: it holds no object of the
    program.
    """

    __slots__ = ("kind", "detail", "cpu_time")

    def __init__(self, kind: str, detail: str, cpu_time: float | None) -> None:
        if kind not in KINDS:
            raise ValueError("kind=%r is invalid: expected one of %s" % (kind, ", ".join(KINDS)))
        self.kind = kind
        self.detail = detail
        self.cpu_time = cpu_time

    def to_dict(self) -> dict:
        """Return ``{'kind': str, 'detail': str, 'cpu_time': float or None}``, JSON-serialisable."""
        return {"kind": self.kind, "detail": self.detail, "cpu_time": self.cpu_time}

    def __str__(self) -> str:
        """The text of the report's ``Cause:`` line, after the label."""
        text = self.kind
        if self.detail:
            text += ": " + self.detail
        if self.cpu_time is not None:
            text += " (the thread ran %.3f s of CPU meanwhile)" % (self.cpu_time,)
        return text

    def __repr__(self) -> str:
        return "Cause(kind=%r, detail=%r, cpu_time=%r)" % (self.kind, self.detail, self.cpu_time)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cause):
            return NotImplemented
        return (self.kind, self.detail, self.cpu_time) == (other.kind, other.detail, other.cpu_time)

    __hash__ = None  # type: ignore[assignment]
