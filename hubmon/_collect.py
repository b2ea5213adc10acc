"""Collect the facts of a thread and greenlet report from the live interpreter.

This module has one job: read the state of this process (its threads and
their stacks, every greenlet the garbage collector knows, the blocked
greenlet) into plain data, the small classes below. Their fields hold only
``None``, bools, ints, floats, strings, lists, and more such objects: no
frame, greenlet or other object of the program is kept. Every ``repr`` and
attribute of user objects is read here, so the data shows the state at the
moment it was collected however the program changes before it is rendered
(`hubmon._render` turns it into text).

The facts are collected while holding the GIL, so for as long as it takes,
the application is blocked too. The code is written for speed accordingly:

* greenlets are found with one pass over ``gc.get_objects()`` done in C
  (gevent's compiled helper when gevent is loaded, else ``map`` and
  ``itertools.compress`` on the exact types of greenlet classes), never
  with ``gc.get_referrers`` and never with a Python-level loop;
* the tree and the summary are built with ``map``, ``compress`` and
  ``collections.Counter``, which loop in C, and code objects are grouped by
  identity and instruction offset, not by hash or ``f_lineno``;
* stacks are walked by ``f_back``, and each (code object, line) gives one
  frame entry, shared by every stack that passes there: in a process with
  many greenlets most stacks repeat the same frames. Stacks and their
  entries are exact tuples of strings and ints, which the garbage collector
  stops tracking at its next pass, so that the facts of 10,000 greenlets do
  not make it scan the whole heap while the report is built. Source lines
  are not read
  here: as ``traceback.StackSummary`` does, ``linecache.lazycache`` only
  remembers the module's loader, for a source not on disk, and the renderer
  reads the line;
* with a bounded report (*max_greenlets* > 0) only the greenlets shown in
  full are described; the rest are only counted, grouped by the place they
  are suspended at (and the function a gevent greenlet was spawned to run),
  without walking any stack or even reading a caller's frame.

Collecting never raises: each section is guarded, and a section that fails
holds a `Failure` in place of (or after) its facts. Nothing is imported
while collecting: gevent is looked up in ``sys.modules`` only (a report may
be collected by a monitoring thread while the blocked thread holds an import
lock), and ``linecache`` is imported by `prepare`, ahead of time. Output is
bounded by the ``_MAX_*`` limits.
"""

from __future__ import annotations

import _thread
import collections
import gc
import itertools
import operator
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; annotations stay strings here
    from typing import Any, Iterable

from ._threads import end_forked_child
from .cause import Cause

try:
    import greenlet as _greenlet_module
except ImportError:  # pragma: no cover - greenlet is a dependency of hubmon
    _greenlet_module = None

#: Longest repr shown for any user object; longer ones are cut.
_MAX_REPR = 500
#: Safety bound on the number of frames walked in one stack.
_MAX_FRAMES = 100_000
#: How many groups the summary of greenlets not shown lists.
_MAX_SUMMARY_GROUPS = 20
#: Longest repr of one argument shown in a call without a Python frame.
_MAX_ARGUMENT_REPR = 60
#: How many arguments of such a call are shown.
_MAX_ARGUMENTS = 6
#: Marker for an exhausted iterator in the depth-first walk.
_END = object()

if _greenlet_module is not None:
    _GREENLET = _greenlet_module.greenlet
    _getcurrent = _greenlet_module.getcurrent
    # The C descriptors of the base type, used directly so that a subclass
    # that overrides these names (with a property that raises, say) cannot
    # change or break what the report sees.
    _parent_of = vars(_GREENLET)['parent'].__get__
    _frame_of = vars(_GREENLET)['gr_frame'].__get__
    _dead_of = vars(_GREENLET)['dead'].__get__
    _active_of = _GREENLET.__bool__
    _GREENLET_REPR = _GREENLET.__repr__
else:  # pragma: no cover
    _GREENLET = None

_F_CODE = operator.attrgetter('f_code')
_F_LASTI = operator.attrgetter('f_lasti')


# ---------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------

class Data:
    """Base of the plain data of a report: slots only, no behaviour."""

    __slots__ = ()

    def to_dict(self) -> dict:
        """Return the fields as a dict of plain values, recursively."""
        return {name: _plain(getattr(self, name)) for name in self.__slots__}

    def __repr__(self) -> str:
        return '%s(%s)' % (type(self).__name__, ', '.join(
            '%s=%r' % (name, getattr(self, name)) for name in self.__slots__))


def _plain(value: Any) -> Any:
    if isinstance(value, Data):
        return value.to_dict()
    if isinstance(value, Cause):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class Failure(Data):
    """A part of the report that could not be collected, and why."""

    __slots__ = ('what', 'error_type', 'message')

    def __init__(self, what: str, ex: BaseException) -> None:
        self.what = what
        try:
            self.error_type = type(ex).__name__
            self.message = _safe_str(ex)
        except BaseException:  # pylint:disable=broad-except
            self.error_type = self.message = None


# A stack is a tuple of entries, oldest first: each is a frame, the tuple
# ``(filename, lineno, function)`` (*lineno* may be None), or a `Failure`
# for a frame that could not be read. The source line of a frame is read
# when the stack is rendered (``linecache`` was told the module's loader,
# when the source is not a file).


class Thread(Data):
    """A thread of the threads section.

    *python* is false for a thread that runs no Python frame; *stack* is
    ``None`` when it has none or thread stacks were not asked for.
    """

    __slots__ = ('ident', 'name', 'daemon', 'current', 'python', 'stack')

    def __init__(self, ident: int, name: str | None, daemon: bool | None,
                 current: bool) -> None:
        self.ident = ident
        self.name = name
        self.daemon = daemon
        self.current = current
        self.python = True
        self.stack: tuple | None = None


class Threads(Data):
    """The threads section: the threads shown, and how many were excluded."""

    __slots__ = ('threads', 'excluded', 'failure')

    def __init__(self) -> None:
        self.threads: list = []
        self.excluded = 0
        self.failure: Failure | None = None


class Greenlet(Data):
    """A greenlet shown in full.

    *state* is ``'suspended'``, ``'running'``, ``'not started'`` or
    ``'dead'``. *depth* and *parent* place it in the tree by parent;
    *thread* is the thread of its root, when known. *stack_kind* says what
    its stack entry is: ``None`` (none shown), ``'suspended'`` or
    ``'running'`` (the frames in *stack*, running in *stack_thread*),
    ``'shown above'`` (the stack of *stack_thread* in the threads section),
    ``'elsewhere'`` (its thread is not known), ``'no frame'`` (it runs *call*,
    or unknown C code when that is ``None``). A field that could not be
    collected holds a `Failure`; *failure* is set when the rest could not.
    """

    __slots__ = ('identity', 'type_name', 'repr', 'depth', 'parent',
                 'thread', 'state', 'current', 'blocked', 'name', 'will_run',
                 'stack_kind', 'stack_thread', 'stack', 'call', 'spawned_at',
                 'spawn_tree_locals', 'spawn_tree_locals_of',
                 'locals', 'children', 'children_not_shown', 'failure')

    def __init__(self, identity: int, depth: int) -> None:
        self.identity = identity
        self.depth = depth
        self.type_name: str | None = None
        self.repr: str | None = None
        self.parent: int | None = None
        self.thread: int | None = None
        self.state: str | None = None
        self.current = False
        self.blocked = False
        self.name: str | None = None
        self.will_run: str | None = None
        self.stack_kind: str | None = None
        self.stack_thread: int | None = None
        self.stack: tuple | None = None
        self.call: str | None = None
        self.spawned_at: tuple | None = None
        #: The safe repr of its spawn tree locals, or a Failure.
        self.spawn_tree_locals: Any = None
        #: When they are those of its spawner, shown in this report: its id.
        self.spawn_tree_locals_of: int | None = None
        #: The ``gevent.local`` objects that hold values in it: a tuple of
        #: ``(type name, id of the local, safe repr of its values)`` and
        #: `Failure` entries; a Failure; None when gevent.local is not in use.
        self.locals: Any = None
        self.children = 0
        self.children_not_shown = 0
        self.failure: Failure | None = None


class Group(Data):
    """Greenlets not shown in full that do the same thing, counted.

    *state* is ``'suspended'`` (in *function* at *filename*:*lineno*, and
    for a gevent greenlet spawned to run *runs*), ``'not started'`` (to run
    *runs*), ``'running'``, ``'dead'``, ``'unknown'``, or ``'error'`` (then
    *failure* says why it could not be described).
    """

    __slots__ = ('count', 'state', 'function', 'filename', 'lineno', 'runs',
                 'failure')

    def __init__(self, count: int, key: tuple) -> None:
        self.count = count
        (self.state, self.function, self.filename, self.lineno, self.runs,
         self.failure) = key


class Summary(Data):
    """The greenlets not shown in full: how many, and the largest groups.

    *others* greenlets in *other_places* more groups are not listed.
    """

    __slots__ = ('count', 'groups', 'others', 'other_places')

    def __init__(self, count: int) -> None:
        self.count = count
        self.groups: list = []
        self.others = 0
        self.other_places = 0


class Greenlets(Data):
    """The greenlets section.

    *available* is false when greenlet is not installed. *total* greenlets
    are live; *greenlets* are those shown in full, depth first (a `Failure`
    stands for one that could not be described at all); *summary* counts
    the others (a `Summary`, a `Failure`, or ``None`` when all are shown).
    """

    __slots__ = ('available', 'total', 'greenlets', 'summary', 'failure')

    def __init__(self) -> None:
        self.available = _GREENLET is not None
        self.total: int | None = None
        self.greenlets: list = []
        self.summary: Any = None
        self.failure: Failure | None = None


class RunInfo(Data):
    """The threads and greenlets of the process (`collect_run_info`)."""

    __slots__ = ('current_thread', 'threads', 'greenlets', 'failure')

    def __init__(self) -> None:
        self.current_thread: int | None = None
        self.threads: Threads | None = None
        self.greenlets: Greenlets | None = None
        self.failure: Failure | None = None


class BlockedStack(Data):
    """The stack of the blocked thread.

    *thread* is its ident (or, if that is not an int, its repr). *state* is
    ``'frames'`` (*stack*), ``'exited'`` (no frame, not a live thread),
    ``'not python'`` (the blocked greenlet runs *call*, or unknown C code
    when that is ``None``) or ``'no frame'``.
    """

    __slots__ = ('thread', 'state', 'stack', 'call', 'failure')

    def __init__(self, thread: Any) -> None:
        self.thread = thread
        self.state: str | None = None
        self.stack: tuple | None = None
        self.call: str | None = None
        self.failure: Failure | None = None


class BlockedReport(Data):
    """The facts reported when a greenlet blocked its hub.

    *time* is when they were collected (``time.time()``); *duration* and
    *threshold* are seconds (a float, or the repr of a value that is not a
    number); *culprit* is the repr of the blocked greenlet. *fingerprint*
    (16 hex digits, see `hubmon._culprits`) names the culprit's code
    location, and *cause* is the `hubmon.cause.Cause` of the blockage; either
    is None when not known. ``to_dict()`` gives plain values that
    ``json.dumps`` takes (the cause as ``Cause.to_dict()``).
    """

    __slots__ = ('time', 'culprit', 'culprit_identity', 'duration',
                 'threshold', 'monitor', 'hub', 'blocked_stack', 'run_info',
                 'failure', 'fingerprint', 'cause')

    def __init__(self) -> None:
        self.time: float | None = None
        self.culprit: str | None = None
        self.culprit_identity: int | None = None
        self.duration: Any = None
        self.threshold: Any = None
        self.monitor: str | None = None
        self.hub: str | None = None
        self.blocked_stack: BlockedStack | None = None
        self.run_info: RunInfo | None = None
        self.failure: Failure | None = None
        self.fingerprint: str | None = None
        self.cause: Cause | None = None


# ---------------------------------------------------------------------------
# Collecting
# ---------------------------------------------------------------------------

def collect_run_info(thread_stacks: bool = True,
                     greenlet_stacks: bool = True,
                     limit: int | None = None,
                     *,
                     max_greenlets: int | None = 0,
                     exclude_thread_ids: Iterable[int] = (),
                     current_thread_ident: int | None = None,
                     highlight: object = None,
                     greenlets: list | None = None) -> RunInfo:
    """Collect the threads and greenlets of this process.

    The arguments are those of `hubmon.report.format_run_info`, checked by
    it; *greenlets*, if given, is the list `find_greenlets` returned. Never
    raises.
    """
    info = RunInfo()
    ctx = None
    try:
        ctx = _Context(thread_stacks, greenlet_stacks, limit,
                       exclude_thread_ids, current_thread_ident, highlight)
        info.current_thread = ctx.current_ident
        info.threads = Threads()
        _fill(info.threads, 'threads', _collect_threads, ctx)
        info.greenlets = Greenlets()
        _fill(info.greenlets, 'greenlets', _collect_greenlets, ctx,
              max_greenlets, greenlets)
    except BaseException as ex:  # pylint:disable=broad-except
        info.failure = Failure('the run info', ex)
    finally:
        if ctx is not None:
            # The frames include our own, so keeping them would make a
            # reference cycle through this function's locals.
            ctx.release()
    return info


def collect_blocked_report(*,
                           greenlet: object,
                           thread_ident: int,
                           duration: float,
                           threshold: float,
                           hub: object = None,
                           max_greenlets: int | None = 50,
                           exclude_thread_ids: Iterable[int] = (),
                           monitor_repr: str | None = None,
                           limit: int | None = None,
                           greenlets: list | None = None) -> BlockedReport:
    """Collect what is reported when *greenlet* has blocked its hub too long.

    The arguments are those of `hubmon.report.format_blocked_report`.
    Never raises.
    """
    report = BlockedReport()
    try:
        gevent_greenlet = _loaded_gevent_attr('gevent', 'Greenlet')
        if isinstance(gevent_greenlet, type) and issubclass(
                type(greenlet), gevent_greenlet):
            # Asking for the name makes gevent's repr include it, here and
            # in the tree below.
            _getattr(greenlet, 'name')
        now = time.time()
        culprit = _culprit_repr(greenlet)
        duration = _seconds(duration)
        threshold = _seconds(threshold)
        (report.time, report.culprit, report.duration,
         report.threshold) = now, culprit, duration, threshold
        report.culprit_identity = None if greenlet is None else id(greenlet)
        if monitor_repr is not None:
            report.monitor = _safe_str(monitor_repr)
        if hub is not None:
            report.hub = _safe_repr(hub, 'hub')
        stack = report.blocked_stack = BlockedStack(
            thread_ident if isinstance(thread_ident, int)
            else _safe_repr(thread_ident))
        _fill(stack, 'the blocked stack', _collect_blocked_stack,
              thread_ident, limit, greenlet, hub)
        report.run_info = collect_run_info(
            thread_stacks=True,
            greenlet_stacks=True,
            limit=limit,
            max_greenlets=max_greenlets,
            exclude_thread_ids=exclude_thread_ids,
            current_thread_ident=thread_ident,
            highlight=greenlet,
            greenlets=greenlets)
    except BaseException as ex:  # pylint:disable=broad-except
        report.failure = Failure('the blocked report', ex)
    return report


def _fill(section: Any, what: str, func: Any, *args: Any) -> None:
    """Call ``func(section, *args)``; on an exception, note it in *section*.

    What *func* put in *section* before it failed is kept.
    """
    try:
        func(section, *args)
    except BaseException as ex:  # pylint:disable=broad-except
        section.failure = Failure(what, ex)


# ---------------------------------------------------------------------------
# Defensive helpers
# ---------------------------------------------------------------------------

def _type_name(obj: object) -> str:
    """Return the name of the type of *obj*; never raises."""
    try:
        name = type(obj).__name__
        return name if isinstance(name, str) else 'object'
    except BaseException:  # pylint:disable=broad-except
        return 'object'


def _qualified_type_name(obj: object) -> str:
    """Return ``module.QualName`` of the type of *obj*; never raises."""
    name = _getattr(type(obj), '__qualname__')
    module = _getattr(type(obj), '__module__')
    if isinstance(name, str) and isinstance(module, str):
        return '%s.%s' % (module, name)
    return _type_name(obj)


#: While hubmon captures a report in one of its own threads: the process id
#: then. User code run by the report (a repr) that forks leaves a child whose
#: only thread is hubmon's: it ends there, as soon as that code returns.
capturing_pid: int | None = None


def _end_forked_child() -> None:
    if capturing_pid is not None:
        end_forked_child(capturing_pid)


def _safe_repr(obj: object, kind: str | None = None) -> str:
    """Return ``repr(obj)`` cut to a sane length; never raises.

    If the repr raises, the result names the type (or *kind*), the id and
    what the repr raised.
    """
    try:
        text = repr(obj)
    except BaseException as ex:  # pylint:disable=broad-except
        _end_forked_child()
        try:
            why = '%s: %s' % (type(ex).__name__, str(ex)[:_MAX_REPR])
        except BaseException:  # pylint:disable=broad-except
            why = type(ex).__name__
        return '<unreprable %s at 0x%x (repr raised %s)>' % (
            kind or _type_name(obj), id(obj), why)
    _end_forked_child()
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + '...'
    return text


def _safe_dict_repr(obj: object) -> str:
    """Return the repr of a dict, one safe repr per key and value.

    A value whose repr raises spoils only its own place, and no more items
    are formatted than fit in the sane length. Anything but a plain dict
    gets `_safe_repr`. Never raises.
    """
    if type(obj) is not dict:  # pylint:disable=unidiomatic-typecheck
        return _safe_repr(obj)
    try:
        parts = []
        size = 0
        for key, value in itertools.islice(obj.items(), _MAX_REPR):
            if size > _MAX_REPR:
                parts.append('...')
                break
            part = '%s: %s' % (_safe_repr(key), _safe_repr(value))
            size += len(part) + 2
            parts.append(part)
        text = '{%s}' % (', '.join(parts),)
    except BaseException:  # pylint:disable=broad-except
        # The dict changed size while its items were read.
        return _safe_repr(obj)
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + '...'
    return text


def _safe_str(obj: object) -> str:
    """Return ``str(obj)`` cut to a sane length; never raises."""
    try:
        text = str(obj)
    except BaseException:  # pylint:disable=broad-except
        _end_forked_child()
        return _safe_repr(obj)
    _end_forked_child()
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + '...'
    return text


def _safe_len(obj: object) -> int:
    """Return ``len(obj)``, or 1 if it has no length or raises."""
    try:
        return len(obj)  # type: ignore[arg-type]
    except BaseException:  # pylint:disable=broad-except
        return 1


def _getattr(obj: object, name: str, default: Any = None) -> Any:
    """Return ``getattr(obj, name, default)``, or *default* on any error."""
    try:
        return getattr(obj, name, default)
    except BaseException:  # pylint:disable=broad-except
        return default


def _seconds(value: object) -> Any:
    """Return a number of seconds as a float, if it formats as one.

    Anything that ``'%.3f'`` cannot format is kept as its safe repr.
    Never raises.
    """
    try:
        '%.3f' % (value,)
        return float(value)  # type: ignore[arg-type]
    except BaseException:  # pylint:disable=broad-except
        return _safe_repr(value)


def _callable_name(func: object) -> str:
    """Return the qualified name of a callable, for humans; never raises."""
    if func is None:
        return 'nothing'
    name = _getattr(func, '__qualname__')
    if not isinstance(name, str):
        inner = _getattr(func, 'func')  # functools.partial
        if inner is not None and inner is not func:
            return 'partial(%s)' % (_callable_name(inner),)
        name = _getattr(type(func), '__qualname__')
        if not isinstance(name, str):
            return _type_name(func)
    module = _getattr(func, '__module__')
    if isinstance(module, str) and module not in ('builtins', '__main__'):
        return '%s.%s' % (module, name)
    return name


# ---------------------------------------------------------------------------
# Stacks
# ---------------------------------------------------------------------------

def _walk_frames(frame: Any, limit: int | None) -> list:
    """Return the frames of the stack ending at *frame*, oldest first.

    *limit* follows ``traceback.format_stack``: positive keeps the newest
    frames, negative the oldest, ``None`` all. Works with real frames and
    with gevent's spawning stack records (anything with ``f_back``).
    """
    if limit is not None and limit >= 0:
        cap = min(limit, _MAX_FRAMES)
    else:
        cap = _MAX_FRAMES
    frames = []
    while frame is not None and len(frames) < cap:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    if limit is not None and limit < 0:
        del frames[-limit:]
    return frames


class _Stacks:
    """Turns stacks into tuples of frame entries, one shared entry per place.

    Entries are memoised per (code object, line), because in a process
    with many greenlets most stacks repeat the same frames.
    """

    __slots__ = ('_memo',)

    def __init__(self) -> None:
        # (id(code), lineno) -> (code, entry). The code object is kept so
        # that an id reused by a new object during the report is detected.
        self._memo: dict = {}

    def collect(self, frame: Any, limit: int | None) -> tuple:
        """Return the stack ending at *frame*, oldest first.

        A frame that cannot be read is a `Failure` in the tuple.
        """
        try:
            frames = _walk_frames(frame, limit)
        except BaseException as ex:  # pylint:disable=broad-except
            return (Failure('a stack', ex),)
        out = []
        for f in frames:
            try:
                out.append(self._entry(f))
            except BaseException as ex:  # pylint:disable=broad-except
                out.append(Failure('a frame', ex))
        return tuple(out)

    def _entry(self, frame: Any) -> tuple:
        code = frame.f_code
        lineno = frame.f_lineno
        key = (id(code), lineno)
        entry = self._memo.get(key)
        if entry is not None and entry[0] is code:
            return entry[1]
        filename = code.co_filename
        found = (filename, lineno, code.co_name)
        if lineno:
            _remember_loader(filename, _getattr(frame, 'f_globals'))
        self._memo[key] = (code, found)
        return found


_linecache: Any = None


def prepare() -> None:
    """Import what a report needs (``linecache``), in the calling thread.

    Monitors and assert_switches call it when they start, in the program's
    thread, so that the native thread never imports while it captures a
    report (the blocked thread may hold an import lock), and so that
    ``import hubmon`` does not pay for ``linecache`` and ``tokenize``.
    """
    global _linecache
    if _linecache is None:
        import linecache
        _linecache = linecache


def _remember_loader(filename: str, module_globals: Any) -> None:
    """Tell ``linecache`` the loader of a source that may not be on disk.

    ``linecache.lazycache`` reads no file; it keeps the module's
    ``get_source`` for the lines asked later, when the report is rendered.
    Never raises.
    """
    try:
        if isinstance(module_globals, dict):
            prepare()
            _linecache.lazycache(filename, module_globals)
    except BaseException:  # pylint:disable=broad-except
        pass


def _skip_own_frames(frame: Any) -> Any:
    """Return the newest frame of *frame*'s stack that is not hubmon's report.

    A thread that is building a report shows where it asked for the report,
    not the report's own frames (those of this module and of
    `hubmon.report`).
    """
    own = globals()
    facade = sys.modules.get(__name__.rpartition('.')[0] + '.report')
    other = _getattr(facade, '__dict__', own)
    newest = frame
    while newest is not None and (newest.f_globals is own
                                  or newest.f_globals is other):
        newest = newest.f_back
    return frame if newest is None else newest


def _collect_blocked_stack(stack: BlockedStack, thread_ident: int,
                           limit: int | None, culprit: object = None,
                           hub: object = None) -> None:
    """Collect the stack of the blocked thread.

    A thread that runs no Python frame is not necessarily gone: a greenlet
    whose function is C code (``gevent.spawn(time.sleep, 1)``: gevent's
    ``Greenlet.run`` is compiled too) runs without one. Then the function the
    *culprit* runs is named, and the thread is said to have exited only when
    it is not among the live threads.
    """
    frames = sys._current_frames()
    frame = _skip_own_frames(frames.get(thread_ident))
    try:
        if frame is not None:
            stack.state = 'frames'
            stack.stack = _Stacks().collect(frame, limit)
        elif not _thread_is_alive(thread_ident, hub):
            stack.state = 'exited'
        elif _is_running(culprit):
            stack.state = 'not python'
            stack.call = _frameless_call(culprit)
        else:
            stack.state = 'no frame'
    finally:
        del frame, frames


def _thread_is_alive(ident: object, hub: object = None) -> bool:
    """Tell whether *ident* is a live thread known to ``threading`` or gevent.

    A thread without a Python frame is missing from
    ``sys._current_frames()``; ``threading`` knows the threads it started
    (and the main thread), and a started gevent hub that is not dead knows
    its own (greenlet marks the greenlets of an exited thread dead).
    """
    if ident in _thread_info():
        return True
    if hub is None or _GREENLET is None or not isinstance(hub, _GREENLET):
        return False
    return (ident == _getattr(hub, 'thread_ident') and _active_of(hub)
            and not _dead_of(hub))


def _is_running(g: object) -> bool:
    """Tell whether greenlet *g* is running (started, alive, no saved frame).

    Never raises; false for anything that is not a greenlet.
    """
    try:
        return bool(_active_of(g) and not _dead_of(g)
                    and _frame_of(g) is None)
    except BaseException:  # pylint:disable=broad-except
        return False


def _short_repr(obj: object) -> str:
    """Return the safe repr of *obj*, cut to a few words."""
    text = _safe_repr(obj)
    if len(text) > _MAX_ARGUMENT_REPR:
        text = text[:_MAX_ARGUMENT_REPR - 3] + '...'
    return text


def _call_arguments(args: object, kwargs: object) -> str:
    """Return ``'(1, b=2)'`` for a tuple *args* and a dict *kwargs*.

    Each repr is safe and short; ``'(...)'`` stands for arguments that cannot
    be read.
    """
    if type(args) is not tuple or type(kwargs) is not dict:  # pylint:disable=unidiomatic-typecheck
        return '(...)'
    parts = list(map(_short_repr, args[:_MAX_ARGUMENTS]))
    for key, value in list(kwargs.items())[:_MAX_ARGUMENTS - len(parts)]:
        parts.append('%s=%s' % (_safe_str(key), _short_repr(value)))
    if len(parts) < len(args) + len(kwargs):
        parts.append('...')
    return '(%s)' % (', '.join(parts),)


def _frameless_call(g: object) -> str | None:
    """Describe what greenlet *g* runs when it has no Python frame.

    That is the function it was started with: ``'time.sleep(0.3) (its
    _run)'`` for a gevent greenlet (with its arguments), ``'f (its run)'`` for
    a raw greenlet whose class defines ``run`` (greenlet forgets a ``run``
    passed to the constructor once it starts). Returns ``None`` when the
    function is not known. Never raises.
    """
    gevent_greenlet = _loaded_gevent_attr('gevent', 'Greenlet')
    if isinstance(gevent_greenlet, type) and issubclass(type(g),
                                                        gevent_greenlet):
        func = _getattr(g, '_run')
        if func is not None:
            return '%s%s (its _run)' % (_callable_name(func), _call_arguments(
                _getattr(g, 'args'), _getattr(g, 'kwargs')))
    func = _getattr(g, 'run')
    if func is None:
        return None
    return '%s (its run)' % (_callable_name(func),)


def _greenlet_repr_is_default(g: object) -> bool:
    """Tell whether the type of *g* uses ``greenlet.greenlet.__repr__``."""
    return (_GREENLET is not None
            and _getattr(type(g), '__repr__') is _GREENLET_REPR)


def _culprit_repr(g: object) -> str:
    """Return the repr of the blocked greenlet *g*; never raises.

    greenlet's own repr (that of raw greenlets, and of subclasses that do
    not define one, such as eventlet's ``GreenThread``) calls "suspended"
    every started greenlet that is not the current one of the calling
    thread, and the report is built in hubmon's thread: the blocked greenlet
    running in its own thread would be called suspended. Its state word is
    replaced by "running" when it is running.
    """
    text = _safe_repr(g, 'greenlet')
    if (' suspended' not in text or not _is_running(g)
            or not _greenlet_repr_is_default(g)):
        return text
    # greenlet formats "<T object at 0x.. (otid=0x..) suspended active ...>".
    marker = ') suspended active'
    if marker in text:
        return text.replace(marker, ') running active', 1)
    return '<%s object at 0x%x (running)>' % (_qualified_type_name(g), id(g))


# ---------------------------------------------------------------------------
# The state one report needs
# ---------------------------------------------------------------------------

def _loaded_gevent_attr(module_name: str, attr: str) -> Any:
    """Return ``attr`` of an already imported gevent module, else ``None``.

    Never imports: a report may be built in a monitoring thread while the
    blocked thread holds an import lock.
    """
    if 'gevent' not in sys.modules:
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    return _getattr(module, attr)


def _threading_maps() -> tuple:
    """Return ``(threading._active, threading._limbo, patched)``.

    With gevent's monkey-patching of threading in effect (*patched* is
    true), the unpatched maps are asked for; empty maps stand in for
    anything that cannot be read.
    """
    threading_module = sys.modules.get('threading')
    active = _getattr(threading_module, '_active')
    limbo = _getattr(threading_module, '_limbo')
    patched = False
    is_patched = _loaded_gevent_attr('gevent.monkey', 'is_module_patched')
    get_original = _loaded_gevent_attr('gevent.monkey', 'get_original')
    if is_patched is not None and get_original is not None:
        try:
            if is_patched('threading'):
                patched = True
                active = get_original('threading', '_active')
                limbo = get_original('threading', '_limbo')
        except BaseException:  # pylint:disable=broad-except
            pass
    return (active if isinstance(active, dict) else {},
            limbo if isinstance(limbo, dict) else {},
            patched)


class _Context:
    """What the sections of one report share, computed once."""

    def __init__(self, thread_stacks: bool, greenlet_stacks: bool,
                 limit: int | None, exclude_thread_ids: Iterable[int],
                 current_thread_ident: int | None, highlight: object) -> None:
        self.thread_stacks = thread_stacks
        self.greenlet_stacks = greenlet_stacks
        self.limit = limit
        self.highlight = highlight
        self.stacks = _Stacks()
        # id(type) -> its qualified name (the types live as long as their
        # greenlets, which the report holds).
        self.type_names: dict = {}
        try:
            self.excluded = set(exclude_thread_ids or ())
        except BaseException:  # pylint:disable=broad-except
            self.excluded = set()
        # The calling thread is the one whose top frame is this very frame:
        # exact even when gevent has patched ``_thread.get_ident``.
        me = sys._getframe()
        self.frames = sys._current_frames()
        self.own_ident = None
        for ident, top in list(self.frames.items()):
            if top is me:
                self.own_ident = ident
                # Show the calling thread from the caller of the report on,
                # not the report's own frames.
                self.frames[ident] = _skip_own_frames(me)
                break
        me = top = None
        if self.own_ident is None:  # pragma: no cover - defensive
            self.own_ident = _thread.get_ident()
        self.current_ident = (self.own_ident if current_thread_ident is None
                              else current_thread_ident)
        self.gevent_greenlet = _loaded_gevent_attr('gevent', 'Greenlet')
        if not isinstance(self.gevent_greenlet, type):
            self.gevent_greenlet = None
        # Only when the program uses gevent.local: then its locals are shown.
        self.local_dicts = _loaded_gevent_attr('gevent.local',
                                               'all_local_dicts_for_greenlet')
        if not callable(self.local_dicts):
            self.local_dicts = None
        self.gevent_local = _loaded_gevent_attr('gevent.local', 'local')
        # ``greenlet.getcurrent()`` creates greenlet state for a thread that
        # never used greenlets. A monitor excludes its own thread; there the
        # calling thread's greenlet is of no interest, so leave it alone.
        self.current_greenlet = None
        if _GREENLET is not None and self.own_ident not in self.excluded:
            self.current_greenlet = _getcurrent()

    def release(self) -> None:
        """Drop the references to frames and objects of the report."""
        self.frames = {}
        self.highlight = None
        self.current_greenlet = None


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------

def _thread_facts(thread: object) -> tuple:
    """Return ``(ident, name, daemon)`` of a ``threading.Thread``.

    The private attributes are read first: they are plain values, where the
    public properties of a subclass could run code.
    """
    ident = _getattr(thread, '_ident')
    if not isinstance(ident, int):
        ident = _getattr(thread, 'ident')
    name = _getattr(thread, '_name')
    if not isinstance(name, str):
        name = _getattr(thread, 'name')
    daemon = _getattr(thread, '_daemonic')
    if not isinstance(daemon, bool):
        daemon = _getattr(thread, 'daemon')
    return (ident if isinstance(ident, int) else None,
            name if isinstance(name, str) else None,
            daemon if isinstance(daemon, bool) else None)


def _thread_info() -> dict:
    """Return ``{ident: (name, daemon)}`` for the threads threading knows."""
    info = {}
    active, limbo, patched = _threading_maps()
    for thread in itertools.chain(list(limbo.values()),
                                  list(active.values())):
        ident, name, daemon = _thread_facts(thread)
        if ident is not None:
            info[ident] = (name, daemon)
    if patched:
        # gevent re-keys the main thread under the ident of the main
        # greenlet; gevent.hub remembers the real one.
        real = _loaded_gevent_attr('gevent.hub', 'MAIN_THREAD_IDENT')
        main = _getattr(sys.modules.get('threading'), '_main_thread')
        if isinstance(real, int) and real not in info and main is not None:
            info[real] = _thread_facts(main)[1:]
    return info


def _collect_threads(section: Threads, ctx: _Context) -> None:
    """Collect the threads, the current one first."""
    known = _thread_info()
    idents = list(ctx.frames)
    # A thread that runs no Python frame (a greenlet running a C function)
    # is missing from sys._current_frames(): the current one is still shown.
    frameless = ctx.current_ident not in ctx.frames and (
        ctx.current_ident in known)
    if frameless:
        idents.append(ctx.current_ident)
    # The current thread first, then the others in the interpreter's order.
    idents.sort(key=lambda ident: ident != ctx.current_ident)
    for ident in idents:
        if ident in ctx.excluded:
            section.excluded += 1
            continue
        name, daemon = known.get(ident, (None, None))
        thread = Thread(ident, name, daemon, ident == ctx.current_ident)
        section.threads.append(thread)
        if ident not in ctx.frames:
            thread.python = False
        elif ctx.thread_stacks:
            thread.stack = ctx.stacks.collect(ctx.frames[ident], ctx.limit)


# ---------------------------------------------------------------------------
# Greenlets
# ---------------------------------------------------------------------------

def _subclasses(cls: type) -> set:
    """Return *cls* and all its live subclasses.

    Uses ``type.__subclasses__`` unbound, so that no metaclass can run code.
    """
    found = {cls}
    todo = [cls]
    while todo:
        for sub in type.__subclasses__(todo.pop()):
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def find_greenlets() -> list:
    """Return every greenlet the garbage collector tracks.

    When gevent is loaded and compiled, its Cython helper does this in a
    few milliseconds (an exact type check in C over ``gc.get_objects()``).
    Otherwise the filter runs in C too, through ``map`` and
    ``itertools.compress`` on the exact type of each object. Neither calls
    ``isinstance`` from Python, which may read a ``__class__`` property or
    run a ``__getattribute__`` of some unrelated object for every object in
    the process.
    """
    finder = _loaded_gevent_attr('gevent._gevent_c_greenlet_primitives',
                                 'get_reachable_greenlets')
    if finder is not None:
        try:
            found = finder()
            if type(found) is list:  # pylint:disable=unidiomatic-typecheck
                return found
        except BaseException:  # pylint:disable=broad-except
            pass
    if _GREENLET is None:  # pragma: no cover
        return []
    types = _subclasses(_GREENLET)
    objects = gc.get_objects()
    try:
        try:
            return list(itertools.compress(
                objects, map(types.__contains__, map(type, objects))))
        except BaseException:  # pylint:disable=broad-except
            # A metaclass whose __hash__ raises: compare ids instead.
            type_ids = set(map(id, types))
            return list(itertools.compress(objects, map(
                type_ids.__contains__, map(id, map(type, objects)))))
    finally:
        del objects


def find_greenlet(identity: int, greenlets: list | None = None) -> Any:
    """Return the live greenlet whose ``id()`` is *identity*, or ``None``.

    The native thread knows the running greenlet only by its address; it
    never holds a reference. The address is turned back into an object only
    by finding it among the live greenlets (*greenlets*, else all of them,
    from `find_greenlets`), so a greenlet that died meanwhile is never
    touched.
    """
    if not identity:
        return None
    if greenlets is None:
        greenlets = find_greenlets()
    try:
        # The search runs in C: a report may scan 10,000 greenlets.
        return greenlets[operator.indexOf(map(id, greenlets), identity)]
    except ValueError:
        return None


def _safe_parent(g: Any) -> Any:
    """Return the parent of greenlet *g*, or ``None`` on any error."""
    try:
        return _parent_of(g)
    except BaseException:  # pylint:disable=broad-except
        return None


class _Forest:
    """The greenlets as trees by ``parent``, and the order to show them."""

    def __init__(self, greenlets: list, highlight: object,
                 current: object) -> None:
        by_id = dict(zip(map(id, greenlets), greenlets))
        children: dict = {}
        roots = []
        try:
            parents = list(map(_parent_of, greenlets))
        except BaseException:  # pylint:disable=broad-except
            parents = [_safe_parent(g) for g in greenlets]
        missing = []
        for g, parent in zip(greenlets, parents):
            if parent is None:
                roots.append(g)
                continue
            kids = children.get(id(parent))
            if kids is None:
                children[id(parent)] = [g]
                if id(parent) not in by_id:
                    missing.append(parent)
            else:
                kids.append(g)
        # Parents the garbage collector did not report (there should be
        # none) are added to the forest, walking up.
        for g in missing:
            if id(g) in by_id:
                continue
            by_id[id(g)] = g
            parent = _safe_parent(g)
            if parent is None:
                roots.append(g)
            else:
                children.setdefault(id(parent), []).append(g)
                missing.append(parent)
        del missing, parents
        self.by_id = by_id
        self.children = children
        self.path = self.path_to(highlight)
        self.path_ids = {id(g) for g in self.path}
        current_root = self.path_to(current)
        self.current_root = current_root[0] if current_root else None
        # Roots: the highlighted greenlet's first, then the calling thread's,
        # then those of other live threads (those with children first), and
        # last the main greenlets of threads that have exited.
        dead = list(map(_dead_of, roots))
        roots = (self._arrange(list(itertools.compress(
            roots, map(operator.not_, dead))))
            + self._arrange(list(itertools.compress(roots, dead))))
        if self.current_root is not None and (
                not self.path or self.path[0] is not self.current_root):
            roots = [r for r in roots if r is not self.current_root]
            roots.insert(1 if self.path else 0, self.current_root)
        self.roots = roots

    def path_to(self, g: object) -> list:
        """Return the greenlets from the root of *g* down to *g*.

        Empty if *g* is not a greenlet of the forest.
        """
        if g is None or id(g) not in self.by_id:
            return []
        path = []
        seen = set()
        while g is not None and id(g) not in seen:
            seen.add(id(g))
            path.append(g)
            try:
                g = _parent_of(g)
            except BaseException:  # pylint:disable=broad-except
                break
        path.reverse()
        return path

    def _arrange(self, kids: list) -> list:
        """Order siblings: the highlighted path, then subtrees, then leaves.

        Stable otherwise, so that the order of creation is kept. Written
        with ``map`` and ``compress`` because a hub may have 10,000 children.
        """
        ids = list(map(id, kids))
        first: list = []
        if self.path_ids:
            in_path = list(map(self.path_ids.__contains__, ids))
            if any(in_path):
                first = list(itertools.compress(kids, in_path))
                keep = list(map(operator.not_, in_path))
                kids = list(itertools.compress(kids, keep))
                ids = list(itertools.compress(ids, keep))
        has_kids = list(map(self.children.__contains__, ids))
        inner = list(itertools.compress(kids, has_kids))
        leaves = list(itertools.compress(
            kids, map(operator.not_, has_kids)))
        return first + inner + leaves

    def walk(self, want: int | None) -> list:
        """Return ``[(greenlet, depth)]``, depth first, at most *want* long.

        The highlighted path comes first, so it is always included.
        """
        if want is not None:
            want = max(want, len(self.path))
        order = []
        seen = set()
        stack = [(iter(self.roots), 0)]
        while stack:
            if want is not None and len(order) >= want:
                break
            it, depth = stack[-1]
            g = next(it, _END)
            if g is _END:
                stack.pop()
                continue
            if id(g) in seen:
                continue
            seen.add(id(g))
            order.append((g, depth))
            kids = self.children.get(id(g))
            if kids:
                stack.append((iter(self._arrange(kids)), depth + 1))
        return order


def _thread_of_roots(forest: _Forest, greenlets: list, ctx: _Context) -> dict:
    """Return ``{id(root): thread ident}`` for the roots whose thread is known.

    A gevent hub knows its thread (``thread_ident``), and so does the root
    above it. The root of the calling thread and the root of the highlighted
    greenlet are known too.
    """
    threads = {}
    hub_class = _loaded_gevent_attr('gevent.hub', 'Hub')
    if isinstance(hub_class, type):
        hub_types = _subclasses(hub_class)
        hubs = list(itertools.compress(
            greenlets, map(hub_types.__contains__, map(type, greenlets))))
        for hub in hubs:
            ident = _getattr(hub, 'thread_ident')
            path = forest.path_to(hub)
            if path and isinstance(ident, int) and not isinstance(
                    ident, bool):
                threads[id(path[0])] = ident
    if forest.current_root is not None:
        threads[id(forest.current_root)] = ctx.own_ident
    if forest.path:
        threads[id(forest.path[0])] = ctx.current_ident
    return threads


def _collect_greenlets(section: Greenlets, ctx: _Context,
                       max_greenlets: int | None,
                       greenlets: list | None = None) -> None:
    """Collect the greenlets shown in full, and the summary of the others."""
    if _GREENLET is None:  # pragma: no cover
        return
    if greenlets is None:
        greenlets = find_greenlets()
    if ctx.own_ident in ctx.excluded:
        # A monitor's own thread (hubmon's) is left out: so is its greenlet.
        own = _getcurrent()
        greenlets = list(itertools.compress(
            greenlets, map(operator.is_not, greenlets, itertools.repeat(own))))
        own = None
    try:
        current = ctx.current_greenlet
        forest = _Forest(greenlets, ctx.highlight, current)
        total = section.total = len(forest.by_id)
        want = max_greenlets if max_greenlets and max_greenlets > 0 else None
        order = forest.walk(want)
        shown = {id(g) for g, _ in order}
        root_threads = _thread_of_roots(forest, greenlets, ctx)
        thread = None
        for g, depth in order:
            if depth == 0:
                thread = root_threads.get(id(g))
            facts = Greenlet(id(g), depth)
            section.greenlets.append(facts)
            try:
                _collect_greenlet(facts, ctx, forest, g, thread, current,
                                  shown)
            except BaseException as ex:  # pylint:disable=broad-except
                facts.failure = Failure('a greenlet', ex)
        if len(shown) < total:
            # In the order of the garbage collector's list, which is close
            # to the order in memory: this pass is bound by cache misses.
            everyone = list(forest.by_id.values())
            hidden = list(itertools.compress(everyone, map(
                operator.not_, map(shown.__contains__, map(id, everyone)))))
            del everyone
            spawn_types = (_subclasses(ctx.gevent_greenlet)
                           if ctx.gevent_greenlet is not None else set())
            try:
                section.summary = _summarize(hidden, spawn_types)
            except BaseException as ex:  # pylint:disable=broad-except
                section.summary = Failure('the summary of other greenlets', ex)
    finally:
        del greenlets


def _collect_greenlet(facts: Greenlet, ctx: _Context, forest: _Forest,
                      g: Any, thread: int | None, current: object,
                      shown: set) -> None:
    """Collect the facts of greenlet *g*, shown in full."""
    dead = _dead_of(g)
    active = _active_of(g)
    frame = _frame_of(g)
    running = active and frame is None
    is_gevent = (ctx.gevent_greenlet is not None
                 and issubclass(type(g), ctx.gevent_greenlet))
    # The name first: once known, gevent's repr includes it.
    name = _getattr(g, 'name') if is_gevent else None
    facts.name = None if name is None else _safe_str(name)
    facts.blocked = g is ctx.highlight and g is not None
    facts.repr = (_culprit_repr(g) if facts.blocked
                  else _safe_repr(g, 'greenlet'))
    kind = type(g)
    facts.type_name = ctx.type_names.get(id(kind))
    if facts.type_name is None:
        facts.type_name = ctx.type_names[id(kind)] = _qualified_type_name(g)
    kind = None
    parent = _safe_parent(g)
    facts.parent = None if parent is None else id(parent)
    parent = None
    facts.thread = thread
    if dead:
        facts.state = 'dead'
    elif not active:
        facts.state = 'not started'
    elif running:
        facts.state = 'running'
        facts.current = g is current and current is not None
    else:
        facts.state = 'suspended'
    if not active and not dead:
        run = _getattr(g, '_run') if is_gevent else None
        if run is None:
            run = _getattr(g, 'run')
        facts.will_run = _callable_name(run)
    if ctx.greenlet_stacks and not dead:
        if frame is not None:
            facts.stack_kind = 'suspended'
            facts.stack = ctx.stacks.collect(frame, ctx.limit)
        elif running:
            _collect_running_stack(facts, ctx, g, thread, current)
    del frame
    if is_gevent:
        spawning = _getattr(g, 'spawning_stack')
        if spawning is not None:
            facts.spawned_at = ctx.stacks.collect(spawning, ctx.limit)
        del spawning
    if ctx.gevent_greenlet is not None:
        try:
            _collect_spawn_tree_locals(facts, g, shown)
        except BaseException as ex:  # pylint:disable=broad-except
            facts.spawn_tree_locals = Failure('the spawn tree locals', ex)
    if ctx.local_dicts is not None:
        try:
            facts.locals = _collect_greenlet_locals(ctx, g)
        except BaseException as ex:  # pylint:disable=broad-except
            facts.locals = Failure('the greenlet locals', ex)
    kids = forest.children.get(id(g))
    if kids:
        facts.children = len(kids)
        facts.children_not_shown = len(kids) - sum(
            map(shown.__contains__, map(id, kids)))


def _collect_spawn_tree_locals(facts: Greenlet, g: object,
                               shown: set) -> None:
    """Collect the spawn tree locals of *g*, as gevent shows them.

    A gevent greenlet shares the dict of the greenlet that spawned it (a
    hub or raw greenlet that spawns gets one too). gevent shows it only
    where it differs from the spawner's, as its tree is by spawner; in this
    tree by parent the spawner is elsewhere, so a shared dict is shown in
    full unless the spawner is shown in this report, and then pointed to.
    """
    tree_locals = _getattr(g, 'spawn_tree_locals')
    if tree_locals is None or not _safe_len(tree_locals):
        return
    spawner = _getattr(g, 'spawning_greenlet')
    try:
        spawner = spawner() if spawner is not None else None
    except BaseException:  # pylint:disable=broad-except
        spawner = None
    if (spawner is not None and id(spawner) in shown
            and _getattr(spawner, 'spawn_tree_locals') is tree_locals):
        facts.spawn_tree_locals_of = id(spawner)
    else:
        facts.spawn_tree_locals = _safe_dict_repr(tree_locals)


def _collect_greenlet_locals(ctx: _Context, g: object) -> tuple:
    """Return the values of the ``gevent.local`` objects set in *g*.

    gevent's ``all_local_dicts_for_greenlet`` (compiled, as gevent is
    usually) reads them from the greenlet's ``__dict__``, which holds one
    entry per local object used in the greenlet: its cost is a pass over a
    small dict, and it neither calls ``getcurrent()`` nor, unless the
    greenlet's class overrides attribute access, runs user code. Each value
    is kept as a safe repr; locals not set in *g* are left out.
    """
    found = ctx.local_dicts(g)
    out: list = []
    for entry in list(found or ()):
        try:
            (kind, local_id), values = entry
            if not _safe_len(values):
                continue
            if kind is ctx.gevent_local:
                name = 'gevent.local.local'
            else:
                name = _callable_name(kind)
            local_id = operator.index(local_id)
            out.append((name, local_id, _safe_dict_repr(values)))
        except BaseException as ex:  # pylint:disable=broad-except
            out.append(Failure('a local', ex))
    return tuple(out)


def _collect_running_stack(facts: Greenlet, ctx: _Context, g: object,
                           thread: int | None, current: object) -> None:
    """Collect the stack of a greenlet that is running in some thread."""
    if g is current:
        thread = ctx.own_ident
    elif g is ctx.highlight:
        thread = ctx.current_ident
    facts.stack_thread = thread
    if thread is None:
        facts.stack_kind = 'elsewhere'
        return
    frame = ctx.frames.get(thread)
    if frame is None:
        facts.stack_kind = 'no frame'
        facts.call = _frameless_call(g)
    elif ctx.thread_stacks and thread not in ctx.excluded:
        facts.stack_kind = 'shown above'
    else:
        facts.stack_kind = 'running'
        facts.stack = ctx.stacks.collect(frame, ctx.limit)


# ---------------------------------------------------------------------------
# The summary of the greenlets not shown
# ---------------------------------------------------------------------------

def _state_key(g: Any) -> tuple:
    """Return the summary key of a greenlet that is not suspended."""
    if _dead_of(g):
        return ('dead',)
    if _active_of(g):
        return ('running',)
    run = _getattr(g, '_run')
    if run is None:
        run = _getattr(g, 'run')
    return ('not started', _callable_name(run))


class _ShortNames:
    """Shortens file names by the longest ``sys.path`` entry they start with."""

    def __init__(self) -> None:
        prefixes = []
        for entry in list(sys.path):
            if isinstance(entry, str) and entry:
                prefixes.append(entry.rstrip(os.sep) + os.sep)
        prefixes.sort(key=len, reverse=True)
        self._prefixes = prefixes

    def __call__(self, filename: str) -> str:
        """Return *filename* relative to its ``sys.path`` entry."""
        for prefix in self._prefixes:
            if filename.startswith(prefix):
                return filename[len(prefix):]
        return filename


def _count_suspended(greenlets: list, frames: list,
                     spawn_types: set) -> collections.Counter:
    """Count suspended greenlets by what they run, in C loops.

    *frames* are the suspended frames of *greenlets*. A group is the code
    object and instruction offset a greenlet is suspended at and, for
    gevent greenlets (whose type is in *spawn_types*), the function it was
    spawned to run. Returns a counter of ``(sample frame, function or
    None)``, with one sample frame per place.

    Everything here is chosen for speed over 10,000 greenlets. Code objects
    are grouped by identity, because hashing one hashes its whole contents,
    and by instruction offset, because ``f_lineno`` decodes the line table
    at every access. The second grouping uses the sample frames and the
    functions themselves, whose hash and equality are by identity. The
    callers' frames are not read: ``f_back`` would create a frame object per
    greenlet, and with it work for the garbage collector. Keys are consumed
    as they are made, so that ``zip`` reuses one tuple instead of leaving
    10,000 tracked tuples behind.
    """
    samples: dict = {}
    counts: collections.Counter = collections.Counter()
    mask = (list(map(spawn_types.__contains__, map(type, greenlets)))
            if spawn_types else [])
    if any(mask):
        spawned = list(itertools.compress(frames, mask))
        runs = map(getattr, itertools.compress(greenlets, mask),
                   itertools.repeat('_run'), itertools.repeat(None))
        # A bound method is a new object at every spawn; its function is
        # shared.
        runs = list(runs)
        funcs = map(getattr, runs, itertools.repeat('__func__'), runs)
        places = map(samples.setdefault, zip(
            map(id, map(_F_CODE, spawned)), map(_F_LASTI, spawned)), spawned)
        counts.update(zip(places, funcs))
        frames = list(itertools.compress(frames, map(operator.not_, mask)))
    places = map(samples.setdefault, zip(
        map(id, map(_F_CODE, frames)), map(_F_LASTI, frames)), frames)
    counts.update(zip(places, itertools.repeat(None)))
    return counts


def _count_suspended_slowly(greenlets: list, frames: list,
                            spawn_types: set) -> collections.Counter:
    """Like `_count_suspended`, one at a time, surviving odd objects."""
    samples: dict = {}
    counts: collections.Counter = collections.Counter()
    for g, frame in zip(greenlets, frames):
        try:
            func = None
            if type(g) in spawn_types:
                func = _getattr(g, '_run')
                func = _getattr(func, '__func__', func)
            place = samples.setdefault((id(frame.f_code), frame.f_lasti),
                                       frame)
        except BaseException:  # pylint:disable=broad-except
            counts[('unknown',)] += 1
            continue
        counts[(place, func)] += 1
    return counts


def _group_key(key: tuple, short: _ShortNames) -> tuple:
    """Return the fields of the `Group` of a counter key.

    *key* is ``(sample frame, function or None)`` for suspended greenlets,
    else a state tuple starting with a string. The result is ``(state,
    function, filename, lineno, runs, failure)``.
    """
    kind = key[0]
    if not isinstance(kind, str):
        frame, func = key
        code = frame.f_code
        return ('suspended', _getattr(code, 'co_qualname') or code.co_name,
                short(code.co_filename), frame.f_lineno,
                None if func is None else _callable_name(func), None)
    if kind in ('dead', 'running'):
        return (kind, None, None, None, None, None)
    if kind == 'not started':
        return (kind, None, None, None, key[1], None)
    return ('unknown', None, None, None, None, None)


def _summarize(hidden: list, spawn_types: set) -> Summary:
    """Count the greenlets not shown, grouped by activity.

    Suspended greenlets are grouped by where they are suspended (and, for
    gevent greenlets, by the function they were spawned to run); the others
    by state (and, when not started, by what they will run). No stack is
    walked: this runs for every greenlet not shown, possibly tens of
    thousands, so the loops are ``map`` and ``collections.Counter`` calls
    that run in C.
    """
    frames = list(map(_frame_of, hidden))
    suspended = list(map(operator.is_not, frames, itertools.repeat(None)))
    others = list(itertools.compress(
        hidden, map(operator.not_, suspended)))
    frames = list(itertools.compress(frames, suspended))
    greenlets = list(itertools.compress(hidden, suspended))
    try:
        counts = _count_suspended(greenlets, frames, spawn_types)
    except BaseException:  # pylint:disable=broad-except
        counts = _count_suspended_slowly(greenlets, frames, spawn_types)
    del frames, greenlets
    for g in others:
        try:
            counts[_state_key(g)] += 1
        except BaseException:  # pylint:disable=broad-except
            counts[('unknown',)] += 1
    # Groups at different instructions of the same line are merged here,
    # where there are few of them.
    short = _ShortNames()
    merged: dict = {}
    for key, count in counts.items():
        try:
            fields = _group_key(key, short)
        except BaseException as ex:  # pylint:disable=broad-except
            failure = Failure('a group', ex)
            fields = ('error', None, None, None, None, failure)
            # Failures merge by what they say.
            merged_key = ('error', failure.what, failure.error_type,
                          failure.message)
            if merged_key in merged:
                merged[merged_key][1] += count
            else:
                merged[merged_key] = [fields, count]
            continue
        if fields in merged:
            merged[fields][1] += count
        else:
            merged[fields] = [fields, count]
    counts.clear()
    groups = sorted(merged.values(), key=lambda item: -item[1])
    summary = Summary(len(hidden))
    summary.groups = [Group(count, fields)
                      for fields, count in groups[:_MAX_SUMMARY_GROUPS]]
    rest = groups[_MAX_SUMMARY_GROUPS:]
    summary.others = sum(count for _, count in rest)
    summary.other_places = len(rest)
    return summary
