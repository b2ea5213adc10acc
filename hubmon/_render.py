"""Render the collected facts of a report as lines of text.

This module has one job: turn the plain data of `hubmon._collect` into the
lines hubmon prints, without a trailing newline each. It reads nothing of
the program but source lines (``linecache``, imported by
``_collect.prepare``), so the text shows the state at the moment the facts
were collected, whenever it is rendered.

Rendering is done in the thread that collected the report, still holding
the GIL, so it is written for speed too: a stack entry is formatted once per
report (collected stacks share one frame entry per place, and the
rendered lines are memoised by it), and source lines are read with
``linecache.getline`` without ``linecache.checkcache`` (which
``traceback`` calls, and which stats every file). It never raises: each
section is guarded, and a part that could not be collected or rendered
gives one line that says so.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any

from . import _collect
from ._collect import Failure

#: The length of the separator lines.
_RULE = '*' * 80
#: Depth beyond which nested greenlets are no longer indented further.
_MAX_INDENT_DEPTH = 25


def render_run_info(info: _collect.RunInfo) -> list[str]:
    """Return the lines of a `_collect.RunInfo`; never raises."""
    lines: list[str] = []
    try:
        stacks = _Stacks()
        if info.threads is not None:
            _guarded(lines, 'threads', _render_threads, lines, info.threads,
                     stacks)
        if info.greenlets is not None:
            _guarded(lines, 'greenlets', _render_greenlets, lines,
                     info.greenlets, stacks)
        if info.failure is not None:
            lines.append(_failure_line(info.failure))
    except BaseException as ex:  # pylint:disable=broad-except
        lines.append(_error_line('the run info', ex))
    return lines


def render_blocked_report(report: _collect.BlockedReport) -> list[str]:
    """Return the lines of a `_collect.BlockedReport`; never raises."""
    lines = ['=' * 80]
    try:
        if report.culprit is not None:
            lines.append(
                '%s : Greenlet %s appears to be blocked for %s seconds '
                '(max_blocking_time %s seconds)' % (
                    _utc_timestamp(report.time), report.culprit,
                    _seconds(report.duration), _seconds(report.threshold)))
        if report.cause is not None:
            lines.append('    Cause: %s' % (report.cause,))
        if report.fingerprint is not None:
            lines.append('    Fingerprint: %s (its repeats within HUBMON_REPEAT_WINDOW'
                         ' print one line)' % (report.fingerprint,))
        if report.monitor is not None:
            lines.append('    Reported by %s' % (report.monitor,))
        if report.hub is not None:
            lines.append('    Hub: %s' % (report.hub,))
        if report.blocked_stack is not None:
            _guarded(lines, 'the blocked stack', _render_blocked_stack, lines,
                     report.blocked_stack)
        if report.run_info is not None:
            lines.append('Info:')
            lines.extend(render_run_info(report.run_info))
        if report.failure is not None:
            lines.append(_failure_line(report.failure))
    except BaseException as ex:  # pylint:disable=broad-except
        lines.append(_error_line('the blocked report', ex))
    return lines


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def _guarded(lines: list, what: str, func: Any, *args: Any) -> None:
    """Call ``func(*args)``; on an exception, add a line describing it."""
    try:
        func(*args)
    except BaseException as ex:  # pylint:disable=broad-except
        lines.append(_error_line(what, ex))


def _error_line(what: str, ex: BaseException) -> str:
    """Return the line that replaces a part that failed to render with *ex*."""
    return _failure_line(Failure(what, ex))


def _failure_line(failure: Failure) -> str:
    """Return the line that stands for a part that could not be collected."""
    if failure.error_type is None:
        return '!!! hubmon could not format %s' % (failure.what,)
    return '!!! hubmon could not format %s: %s: %s' % (
        failure.what, failure.error_type, failure.message)


def _seconds(value: Any) -> str:
    """Format a number of seconds with three decimals (or keep a repr)."""
    if isinstance(value, float):
        return '%.3f' % (value,)
    return str(value)


def _utc_timestamp(when: float) -> str:
    """Return the UTC time *when* as ``2026-11-23T13:36:58.123Z``."""
    millis = int((when % 1) * 1000)
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(when)) + (
        '.%03dZ' % (millis,))


def _source_line(filename: str, lineno: int) -> str:
    """Return the stripped source line, or ``''``; never raises.

    ``linecache.getline`` is used without ``linecache.checkcache``: a file
    that changed since it was cached may show a stale line, as with the
    interpreter's own tracebacks of code already running. A source that is
    not on disk is read through the loader the collector gave ``linecache``.
    """
    try:
        _collect.prepare()
        return _collect._linecache.getline(filename, lineno).strip()
    except BaseException:  # pylint:disable=broad-except
        return ''


class _Stacks:
    """Formats stacks the way ``traceback.format_stack`` does.

    Each frame gives the line ``  File "<file>", line <n>, in <function>``
    and, when the source is available, the stripped source line indented by
    four spaces. The lines are memoised per frame entry, which the
    collector shares between the stacks that pass at the same place.
    """

    __slots__ = ('_memo',)

    def __init__(self) -> None:
        # id(entry) -> (head, source). The entries live as long as the data
        # being rendered, so their ids are not reused meanwhile.
        self._memo: dict = {}

    def lines(self, stack: tuple, pad: str = '') -> list[str]:
        """Return the lines of *stack* (oldest first), each after *pad*."""
        out: list[str] = []
        for entry in stack:
            if type(entry) is Failure:  # pylint:disable=unidiomatic-typecheck
                out.append(pad + _failure_line(entry))
                continue
            got = self._memo.get(id(entry))
            if got is None:
                try:
                    got = self._memo[id(entry)] = self._entry(entry)
                except BaseException as ex:  # pylint:disable=broad-except
                    out.append(pad + _error_line('a frame', ex))
                    continue
            head, source = got
            out.append(pad + head)
            if source:
                out.append(pad + source)
        return out

    @staticmethod
    def _entry(frame: tuple) -> tuple:
        """Return ``(head, source)`` for a frame entry; *source* may be None."""
        filename, lineno, function = frame
        head = '  File "%s", line %s, in %s' % (
            filename, '?' if lineno is None else lineno, function)
        source = None
        if lineno:
            line = _source_line(filename, lineno)
            if line:
                source = '    ' + line
        return head, source


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------

def _render_blocked_stack(lines: list, stack: _collect.BlockedStack) -> None:
    """Append the header and stack of the blocked thread to *lines*."""
    thread = stack.thread
    ident_text = '0x%x' % (thread,) if isinstance(thread, int) else thread
    lines.append('Blocked Stack (for thread id %s):' % (ident_text,))
    state = stack.state
    if state == 'frames':
        lines.extend(_Stacks().lines(stack.stack or ()))
    elif state == 'exited':
        lines.append('  Unknown: no Python frame is running in thread %s,'
                     ' which is not among the live threads (it may have'
                     ' exited)' % (ident_text,))
    elif state == 'not python':
        if stack.call is None:
            lines.append('  No Python frame: the blocked greenlet runs'
                         ' code that is not Python (which function is'
                         ' not known)')
        else:
            lines.append('  No Python frame: the blocked greenlet runs %s,'
                         ' which is not Python code' % (stack.call,))
    elif state == 'no frame':
        lines.append('  No Python frame is running in thread %s' % (
            ident_text,))
    if stack.failure is not None:
        lines.append(_failure_line(stack.failure))


def _render_threads(lines: list, section: _collect.Threads,
                    stacks: _Stacks) -> None:
    """Append the threads section to *lines*."""
    lines.append(_RULE)
    lines.append('* Threads')
    lines.append(_RULE)
    for thread in section.threads:
        label = 'Thread 0x%x' % (thread.ident,)
        if thread.name is not None:
            label += ' (%s)' % (thread.name,)
        else:
            label += ' (unknown name)'
        if thread.daemon is not None:
            label += ' daemon=%s' % (thread.daemon,)
        if thread.current:
            label += ' (CURRENT)'
        lines.append(label)
        if not thread.python:
            lines.append('  (no Python frame is running in this thread)')
        elif thread.stack is not None:
            lines.extend(stacks.lines(thread.stack))
    excluded = section.excluded
    if excluded:
        lines.append('(%d thread%s excluded from this report)' % (
            excluded, '' if excluded == 1 else 's'))
    if section.failure is not None:
        lines.append(_failure_line(section.failure))


def _render_greenlets(lines: list, section: _collect.Greenlets,
                      stacks: _Stacks) -> None:
    """Append the greenlets section to *lines*."""
    lines.append(_RULE)
    if not section.available:
        lines.append('* Greenlets: greenlet is not installed')
        lines.append(_RULE)
        return
    if section.total is not None:
        lines.append('* Greenlets (%s live)' % (format(section.total, ','),))
        lines.append(_RULE)
    for facts in section.greenlets:
        _guarded(lines, 'a greenlet', _render_greenlet, lines, facts, stacks)
    summary = section.summary
    if type(summary) is Failure:  # pylint:disable=unidiomatic-typecheck
        lines.append(_failure_line(summary))
    elif summary is not None:
        _guarded(lines, 'the summary of other greenlets', _render_summary,
                 lines, summary)
    if section.failure is not None:
        lines.append(_failure_line(section.failure))


def _render_greenlet(lines: list, facts: _collect.Greenlet,
                     stacks: _Stacks) -> None:
    """Append the node of one greenlet (label and details) to *lines*."""
    pad = '    ' * min(facts.depth, _MAX_INDENT_DEPTH)
    data = pad + '    '
    if facts.repr is not None:
        label = pad + '+-- ' + facts.repr
        if facts.depth == 0 and facts.thread is not None:
            label += ' [main greenlet of thread 0x%x]' % (facts.thread,)
        state = facts.state
        if state == 'dead':
            label += ' (dead)'
        elif state == 'not started':
            label += ' (not started)'
        elif state == 'running':
            if facts.current:
                label += ' (CURRENT greenlet of the calling thread)'
            else:
                label += ' (running: the current greenlet of its thread)'
        if facts.blocked:
            label += ' <== BLOCKED'
        lines.append(label)
        name = facts.name
        if name is not None and '"%s"' % (name,) not in label:
            lines.append(data + 'Name: %s' % (name,))
    if facts.will_run is not None:
        lines.append(data + 'Not started; will run %s' % (facts.will_run,))
    _render_greenlet_stack(lines, facts, stacks, data)
    if facts.spawned_at is not None:
        lines.append(data + 'Spawned at:')
        lines.extend(stacks.lines(facts.spawned_at, data))
    tree_locals = facts.spawn_tree_locals
    if type(tree_locals) is Failure:  # pylint:disable=unidiomatic-typecheck
        lines.append(_failure_line(tree_locals))
    elif facts.spawn_tree_locals_of is not None:
        lines.append(data + "Spawn tree locals: its spawner's, the greenlet"
                     " at 0x%x" % (facts.spawn_tree_locals_of,))
    elif tree_locals is not None:
        lines.append(data + 'Spawn tree locals: %s' % (tree_locals,))
    found = facts.locals
    if type(found) is Failure:  # pylint:disable=unidiomatic-typecheck
        lines.append(_failure_line(found))
    elif found:
        lines.append(data + 'Greenlet Locals:')
        for entry in found:
            if type(entry) is Failure:  # pylint:disable=unidiomatic-typecheck
                lines.append(data + '    ' + _failure_line(entry))
            else:
                lines.append('%s    Local %s at 0x%x: %s' % ((data,) + entry))
    if facts.children_not_shown:
        lines.append(data + 'Children: %s (%s not shown, see the summary'
                     ' at the end)' % (format(facts.children, ','),
                                       format(facts.children_not_shown, ',')))
    if facts.failure is not None:
        lines.append(_failure_line(facts.failure))


def _render_greenlet_stack(lines: list, facts: _collect.Greenlet,
                           stacks: _Stacks, data: str) -> None:
    """Append the stack entry of one greenlet, if it has one."""
    kind = facts.stack_kind
    if kind is None:
        return
    thread = facts.stack_thread
    if kind == 'suspended':
        lines.append(data + 'Stack (suspended):')
        lines.extend(stacks.lines(facts.stack or (), data))
    elif kind == 'elsewhere':
        lines.append(data + 'Stack: running now; see the stack of its thread')
    elif kind == 'no frame':
        if facts.call is None:
            lines.append(data + 'Stack: none, thread 0x%x runs no Python'
                         ' frame' % (thread,))
        else:
            lines.append(data + 'Stack: none, it runs %s, which is not'
                         ' Python code' % (facts.call,))
    elif kind == 'shown above':
        lines.append(data + 'Stack: the stack of thread 0x%x, shown above'
                     % (thread,))
    else:
        lines.append(data + 'Stack (running in thread 0x%x):' % (thread,))
        lines.extend(stacks.lines(facts.stack or (), data))


def _describe_group(group: _collect.Group) -> str:
    """Return the human description of a group of the summary."""
    state = group.state
    if state == 'suspended':
        text = 'in %s (%s:%s)' % (group.function, group.filename, group.lineno)
        if group.runs is not None:
            text += ', spawned to run %s' % (group.runs,)
        return text
    if state == 'dead':
        return 'dead'
    if state == 'running':
        return 'running (the current greenlet of a thread)'
    if state == 'not started':
        return 'not started, to run %s' % (group.runs,)
    if state == 'error' and group.failure is not None:
        return _failure_line(group.failure)
    return 'in an unknown state'


def _render_summary(lines: list, summary: _collect.Summary) -> None:
    """Append the count of the greenlets not shown, grouped by activity."""
    lines.append('... and %s more greenlets, by what they run:' % (
        format(summary.count, ','),))
    for group in summary.groups:
        lines.append('    %s %s' % (format(group.count, ','),
                                    _describe_group(group)))
    if summary.other_places:
        lines.append('    %s in %s other places' % (
            format(summary.others, ','), format(summary.other_places, ',')))
