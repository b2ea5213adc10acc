"""Arbitrary arguments to every entry point of hubmon._core.

Whatever the arguments, positional or keyword, present, missing or unknown,
_core either does its job and answers a valid value, or raises TypeError,
ValueError or OverflowError: never a crash, never a number silently cut to
fit (signal 2**32 + 10 is not signal 10). The fuzzing runs in child
processes, one per family of entry points, since a crash would kill pytest:
each child imports this module and calls fuzz_family(). The explicit
regression cases that cannot disturb the test process run in it.
"""
from __future__ import annotations

import copy
import inspect
import math
import operator
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import greenlet
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hubmon import _core, _dispatch

EXPECTED = (TypeError, ValueError, OverflowError)
INT_MAX = 2**31 - 1
CLAIMED = int(signal.SIGUSR2)       # the signal the "module" child claims first
EXAMPLES = 120                      # per entry point (30 for a wrong self)

OK = "ok"               # the call must succeed
RAISE = "raise"         # the call must raise one of EXPECTED
EITHER = "either"       # the arguments are fine; the call may still fail (a closed fd...)
BAD_CALL = "bad call"   # the arguments do not fit the signature: TypeError


# --- Arbitrary values -----------------------------------------------------

class IntSub(int):
    """An int subclass: passes PyLong_Check."""


class FloatSub(float):
    """A float subclass: passes PyFloat_Check."""


class Index:
    """Not an int, but convertible with __index__."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Index({self.value!r})"


class Floaty:
    """Not a number, but convertible with __float__."""

    def __init__(self, value):
        self.value = value

    def __float__(self):
        return self.value

    def __repr__(self):
        return f"Floaty({self.value!r})"


def _dead_greenlet():
    glet = greenlet.greenlet(lambda: None)
    glet.switch()
    return glet


def _record():
    return _core.Record(None, greenlet.getcurrent(), 1.0, mode="any")


SHARED = _record()      # a record that the tracers under test count into


BIG = st.sampled_from([
    0, 1, -1, 2, 10, 12, 64, 65, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32 - 1, 2**32,
    2**32 + 1, 2**32 + 10, 2**32 + 12, -2**32 + 10, 2**63 - 1, 2**63, -2**63, -2**63 - 1,
    2**64, 2**64 + 1, 2**64 + 10, -2**64, 2**1023, 2**1024, -2**1024, 10**400,
])
INTS = st.one_of(BIG, st.integers(), st.integers(min_value=-5, max_value=70))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e-9, 0.5, 1e308,
                     2.0**31, 2.0**32 + 10, 2.0**63, 2.0**64, -1.0]),
)
NUMBERS = st.one_of(
    INTS, FLOATS, st.builds(IntSub, INTS), st.builds(FloatSub, FLOATS),
    st.builds(Index, INTS), st.builds(Floaty, FLOATS),
)
GREENLETS = st.one_of(
    st.builds(greenlet.getcurrent), st.builds(greenlet.greenlet), st.builds(_dead_greenlet),
)
SMALL = st.one_of(st.none(), st.integers(), GREENLETS)
ANY = st.one_of(
    st.none(), st.booleans(), NUMBERS, NUMBERS,
    st.text(max_size=20), st.sampled_from(["hub", "any", "", "switch", "throw", "1", "nan"]),
    st.binary(max_size=8), st.lists(st.integers(), max_size=3),
    st.tuples(), st.tuples(SMALL, SMALL),
    st.builds(object), GREENLETS, st.builds(_record), st.builds(_core.ThreadTracer),
    st.builds(_core.NoopTracer), st.just(lambda *args, **kwargs: None),
)


def one_branch(strategy):
    """The strategy as ONE branch of a one_of, which would flatten it otherwise."""
    return st.tuples(strategy).map(operator.itemgetter(0))


ANY_BRANCH = one_branch(ANY)


# --- What a value means to the C parsers ----------------------------------

def is_int(value) -> bool:
    """What PyLong_Check(value) && !PyBool_Check(value) accepts."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_seconds(value) -> Optional[float]:
    """A number (int or float, not bool) as a double, or None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def as_double(value) -> Optional[float]:
    """What PyArg's "d" makes of value, or None when it raises."""
    if isinstance(value, (str, bytes, bytearray)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def as_index(value) -> Optional[int]:
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_seconds(value) -> bool:
    seconds = as_seconds(value)
    return seconds is not None and math.isfinite(seconds) and seconds > 0


def time_value(value) -> bool:
    seconds = as_seconds(value)
    return seconds is not None and math.isfinite(seconds) and seconds >= 0


# --- Signatures (the stubs) and how to call them --------------------------

def _noargs():
    """A METH_NOARGS function."""


def _one(value, /):
    """A METH_O function."""


def _two(first, second, /):
    """set_memory_watch(limit, period)."""


def _record_new(hub, current, threshold, *, mode="hub", report=True):
    """Record(hub, current, threshold, *, mode='hub', report=True)."""


def _stats(finish=False):
    """Record.stats(finish=False)."""


def _anything(*args, **kwargs):
    """A trace function."""


@st.composite
def calls(draw, stub, values, likely):
    """(args, kwargs) for stub: the right shape (positional or keyword, optional
    ones left out) or anything, with unknown and repeated names. In the right
    shape, a parameter's value comes from `likely` (name -> strategy) or
    `values`; a trace function gets (event, (origin, target)) half the time."""
    params = list(inspect.signature(stub).parameters.values())
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    style = draw(st.sampled_from(["positional", "keyword", "arbitrary"]))
    if not named and any(p.kind is p.VAR_POSITIONAL for p in params) and draw(st.booleans()):
        args = (draw(values), draw(st.tuples(values, values)))
        return args, draw(st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=1))
    if style == "arbitrary" or not named:
        keys = st.sampled_from([p.name for p in named] + ["bogus", "self", "value", "args"])
        if not named:
            keys = st.one_of(keys, st.text(min_size=1, max_size=5))
        args = draw(st.lists(values, max_size=len(named) + 3))
        kwargs = draw(st.dictionaries(keys, values, max_size=len(named) + 1))
        return tuple(args), kwargs
    args, kwargs, gap = [], {}, False
    for p in named:
        if p.default is not p.empty and draw(st.booleans()):
            gap = True
            continue
        value = draw(likely.get(p.name, values))
        if p.kind is p.POSITIONAL_ONLY or (
                style == "positional" and p.kind is p.POSITIONAL_OR_KEYWORD and not gap):
            args.append(value)
        else:
            kwargs[p.name] = value
    return tuple(args), kwargs


@dataclass
class Entry:
    """One entry point: how to reach it, what its arguments mean."""

    name: str
    stub: Callable
    setup: Callable[[], Tuple[Callable, Any]]        # -> (the callable, a context)
    expect: Callable[[Dict[str, Any]], str] = lambda arguments: OK
    check: Optional[Callable[[Any, Dict[str, Any], Any], None]] = None
    after_error: Optional[Callable[[Dict[str, Any], Any], None]] = None
    cleanup: Optional[Callable[[Any], None]] = None
    also: Tuple[type, ...] = ()                      # further errors allowed for EITHER
    values: Any = ANY
    likely: Optional[Dict[str, Any]] = None          # parameter -> a strategy of values
    examples: int = EXAMPLES


def exercise(entry: Entry) -> None:
    """Fuzz one entry point with hypothesis."""
    signature = inspect.signature(entry.stub)

    @settings(database=None, deadline=None, max_examples=entry.examples,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(call=calls(entry.stub, entry.values, entry.likely or {}))
    def run(call):
        args, kwargs = call
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            arguments, verdict = None, BAD_CALL
        else:
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            verdict = entry.expect(arguments)
        func, context = entry.setup()
        described = f"{entry.name}(*{args!r}, **{kwargs!r})"
        try:
            try:
                result = func(*args, **kwargs)
            except EXPECTED + entry.also as ex:
                assert verdict != OK, f"{described} raised {ex!r}"
                if verdict == BAD_CALL:
                    assert type(ex) is TypeError, f"{described} raised {ex!r}"
                if not isinstance(ex, EXPECTED):
                    assert verdict == EITHER, f"{described} raised {ex!r}"
                if entry.after_error is not None and arguments is not None:
                    entry.after_error(arguments, context)
                return
            assert verdict in (OK, EITHER), f"{described} was accepted: {result!r}"
            if entry.check is not None:
                entry.check(result, arguments, context)
        finally:
            if entry.cleanup is not None:
                entry.cleanup(context)

    run()


def _plain(func):
    return lambda: (func, None)


def _returns(kind, test=lambda value: True):
    def check(result, arguments, context):
        assert isinstance(result, kind) and test(result), repr(result)
    return check


# --- The module functions -------------------------------------------------

def _memory_watch_expect(arguments):
    limit, period = as_double(arguments["first"]), as_double(arguments["second"])
    if limit is None or period is None:
        return RAISE
    if limit >= 0 and math.isfinite(limit) and period > 0 and math.isfinite(period):
        return OK
    return RAISE


def _signal_expect(arguments):
    value = arguments["value"]
    if is_int(value) and int(value) in signal.valid_signals():
        return OK
    return RAISE


def _fd_expect(arguments):
    value = arguments["value"]
    return EITHER if is_int(value) and 0 <= value <= INT_MAX else RAISE


def _fd_check(result, arguments, context):
    assert is_int(result) and result >= 3, repr(result)
    os.fstat(result)


def _name_expect(arguments):
    value = arguments["value"]
    if not isinstance(value, str):
        return RAISE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return RAISE
    return EITHER if "\0" in value else OK


def _disposition_check(result, arguments, context):
    assert result in ("default", "ignore", "hubmon", "other"), repr(result)
    if int(arguments["value"]) == CLAIMED:
        assert result == "hubmon"


def _claimed_check(result, arguments, context):
    assert result is None
    assert _core.signal_disposition(CLAIMED) == "hubmon"


def _bounds_ok(bounds):
    return (len(bounds) > 0 and all(isinstance(b, float) and b > 0 for b in bounds)
            and list(bounds) == sorted(bounds))


def _restore_handler(context):
    _core.set_event_handler(_dispatch.native_event)


def _restore_trace_functions(context):
    _core.set_trace_functions(greenlet.gettrace, greenlet.settrace)


FD_VALUES = st.one_of(ANY, st.sampled_from([0, 1, 2, 2**31, 2**32 + 1, 2**32 + 2,
                                            -2**32 + 1, 2**64 + 1, 10**6]))
SIGNAL_VALUES = st.one_of(ANY, st.integers(min_value=-3, max_value=70),
                          st.sampled_from([2**32 + 10, 2**32 + CLAIMED, 2**64 + CLAIMED,
                                           -2**32 + CLAIMED, 2**63 + CLAIMED]),
                          st.builds(IntSub, st.sampled_from([CLAIMED, 2**32 + CLAIMED])))
MEMORY_VALUES = st.one_of(ANY, st.sampled_from([-1, 0, 1, 2**64 + 1, 2**32 - 1, -2**64 - 1]),
                          st.builds(Index, st.sampled_from([-1, 0, 1, 2**64, 2**64 + 1])))
CALLABLES = st.sampled_from([len, print, _record, _core.NoopTracer(), lambda *args: False])


def _likely(strategy):
    """The `likely` of a METH_O function: mostly plausible values."""
    return {"value": st.one_of(strategy, ANY_BRANCH)}


def module_entries():
    noargs = [
        ("sampler_running", _returns(bool)),
        ("sampler_native_id", _returns(int, lambda n: n >= 0)),
        ("sampler_period", _returns(float, lambda p: math.isfinite(p) and p > 0)),
        ("monotonic", _returns(float, math.isfinite)),
        ("histogram_bounds", _returns(tuple, _bounds_ok)),
        ("gil_dump_disable", _returns(type(None))),
        ("after_fork_child", _returns(type(None))),
    ]
    entries = [Entry(name, _noargs, _plain(getattr(_core, name)), check=check)
               for name, check in noargs]
    entries += [
        Entry("set_memory_watch", _two, _plain(_core.set_memory_watch),
              expect=_memory_watch_expect, check=_returns(type(None)),
              cleanup=lambda context: _core.set_memory_watch(0, 1.0),
              likely={"first": st.one_of(st.floats(min_value=0, max_value=1e15),
                                         st.integers(min_value=0, max_value=2**70), ANY_BRANCH),
                      "second": st.one_of(st.floats(min_value=1e-3, max_value=1e6),
                                          st.integers(min_value=1, max_value=10**6),
                                          ANY_BRANCH)}),
        Entry("memory_done", _one, _plain(_core.memory_done),
              expect=lambda a: OK if as_index(a["value"]) in (-1, 0, 1) else RAISE,
              check=_returns(type(None)), values=MEMORY_VALUES,
              likely=_likely(st.sampled_from([-1, 0, 1, True, False, Index(1)]))),
        Entry("signal_disposition", _one, _plain(_core.signal_disposition),
              expect=_signal_expect, check=_disposition_check, values=SIGNAL_VALUES,
              likely=_likely(st.integers(min_value=1, max_value=signal.NSIG - 1))),
        # The child claimed CLAIMED first: any other signal is refused, and
        # a number that only truncates to CLAIMED must be too.
        Entry("install_gil_handler", _one, _plain(_core.install_gil_handler),
              expect=lambda a: OK if is_int(a["value"]) and a["value"] == CLAIMED else RAISE,
              check=_claimed_check, values=SIGNAL_VALUES),
        Entry("gil_dump_enable", _one, _plain(_core.gil_dump_enable),
              expect=_fd_expect, check=_fd_check, also=(OSError,), values=FD_VALUES,
              likely=_likely(st.integers(min_value=0, max_value=20)),
              cleanup=lambda context: _core.gil_dump_disable()),
        Entry("name_this_thread", _one, _plain(_core.name_this_thread),
              expect=_name_expect, check=_returns(type(None)),
              likely=_likely(st.text(max_size=40))),
        Entry("set_event_handler", _one, _plain(_core.set_event_handler),
              expect=lambda a: OK if callable(a["value"]) else RAISE,
              check=_returns(type(None)), cleanup=_restore_handler, likely=_likely(CALLABLES)),
        Entry("set_trace_functions", _two, _plain(_core.set_trace_functions),
              expect=lambda a: OK if callable(a["first"]) and callable(a["second"]) else RAISE,
              check=_returns(type(None)), cleanup=_restore_trace_functions,
              likely={"first": CALLABLES, "second": CALLABLES}),
    ]
    return entries


# --- Record -----------------------------------------------------------------

def _record_expect(arguments):
    if not positive_seconds(arguments["threshold"]):
        return RAISE
    mode = arguments["mode"]
    if not isinstance(mode, str) or mode not in ("hub", "any"):
        return RAISE
    if mode == "hub" and arguments["hub"] is None:
        return RAISE
    return OK


def _record_check(record, arguments, context):
    assert type(record) is _core.Record
    assert record.stats()["threshold"] == float(arguments["threshold"])
    assert record.thread_ident == threading.get_ident()
    assert record.switches == 0 and record.sampled is False
    assert is_int(record.id)


def _method(name):
    def setup():
        record = _record()
        return getattr(record, name), record
    return setup


def _threshold_check(result, arguments, record):
    assert result is None
    assert record.stats()["threshold"] == float(arguments["value"])


def _threshold_unchanged(arguments, record):
    assert record.stats()["threshold"] == 1.0


def _stats_check(result, arguments, record):
    assert isinstance(result, dict)
    assert set(result) == {"switches", "hub_switches", "blocks", "longest_block",
                           "blocked_now", "current_block", "longest_gap",
                           "histogram_counts", "threshold"}
    assert result["threshold"] == 1.0 and result["switches"] == 0
    assert len(result["histogram_counts"]) == len(_core.histogram_bounds()) + 1


def _started_check(result, arguments, record):
    assert result is None and record.sampled is True


def _stop(record):
    record.stop()
    assert record.sampled is False


SECONDS_VALUES = st.one_of(ANY, st.sampled_from([0, 0.0, -0.0, 1, 2**1024, 10**400, True]))
POSITIVE = st.one_of(st.floats(min_value=5e-324, max_value=1e300),
                     st.integers(min_value=1, max_value=2**70), st.builds(FloatSub, st.floats()),
                     st.builds(IntSub, st.integers(min_value=-1, max_value=2**64)))
SECONDS_LIKELY = _likely(st.one_of(POSITIVE, one_branch(SECONDS_VALUES)))
RECORD_LIKELY = {
    "hub": st.one_of(st.none(), GREENLETS, ANY_BRANCH),
    "current": st.one_of(GREENLETS, ANY_BRANCH),
    "threshold": st.one_of(POSITIVE, one_branch(SECONDS_VALUES)),
    "mode": st.one_of(st.sampled_from(["hub", "any"]), ANY_BRANCH),
}


def record_entries():
    entries = [
        Entry("Record", _record_new, _plain(_core.Record), expect=_record_expect,
              check=_record_check, likely=RECORD_LIKELY),
        Entry("Record.start", _noargs, _method("start"), check=_started_check, cleanup=_stop),
        Entry("Record.stats", _stats, _method("stats"), check=_stats_check),
        Entry("Record.set_threshold", _one, _method("set_threshold"),
              expect=lambda a: OK if positive_seconds(a["value"]) else RAISE,
              check=_threshold_check, after_error=_threshold_unchanged,
              values=SECONDS_VALUES, likely=SECONDS_LIKELY),
        Entry("Record.set_next_call", _one, _method("set_next_call"),
              expect=lambda a: OK if time_value(a["value"]) else RAISE,
              check=_returns(type(None)), values=SECONDS_VALUES, likely=SECONDS_LIKELY),
        Entry("Record.call_done", _one, _method("call_done"),
              expect=lambda a: OK if time_value(a["value"]) else RAISE,
              check=_returns(type(None)), values=SECONDS_VALUES, likely=SECONDS_LIKELY),
        Entry("Record.set_gil_dump", _one, _method("set_gil_dump"),
              check=_returns(type(None))),
    ]
    for name in ("stop", "ignore_current", "monitor_current"):
        entries.append(Entry(f"Record.{name}", _noargs, _method(name),
                             check=_returns(type(None))))
    return entries


# --- ThreadTracer and NoopTracer -------------------------------------------

def _fresh_tracer(check):
    assert type(check) is _core.ThreadTracer
    assert check.record_count == 0 and check.installed is False and check.previous is None


def _tracer_method(name):
    def setup():
        tracer = _core.ThreadTracer()
        tracer.add(SHARED)
        return getattr(tracer, name), (tracer, SHARED)
    return setup


def _installed_check(result, arguments, context):
    tracer, _ = context
    assert result is True and tracer.installed is True
    assert greenlet.gettrace() is tracer


def _untrace(context):
    greenlet.settrace(None)


def _add_check(result, arguments, context):
    tracer, added = context
    assert result is None
    assert tracer.record_count == (1 if arguments["value"] is added else 2)


def _remove_check(result, arguments, context):
    tracer, added = context
    assert result is (arguments["value"] is added)
    assert tracer.record_count == (0 if result else 1)


def _previous_signature(event, args):
    """_Previous's signature."""


class _Previous:
    """The trace function a ThreadTracer chains to: (event, args) only."""

    def __init__(self):
        self.calls = 0

    def __call__(self, event, args):
        self.calls += 1
        return "previous answer"


def _traced_call_setup():
    tracer = _core.ThreadTracer()
    record = _record()
    tracer.add(record)
    previous = _Previous()
    greenlet.settrace(previous)
    try:
        assert tracer.install() is True
    finally:
        greenlet.settrace(None)
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    return tracer, (tracer, record, previous, unraisable, hook)


def _traced_call_check(result, arguments, context):
    tracer, record, previous, unraisable, hook = context
    args, kwargs = arguments["args"], arguments["kwargs"]
    counted = len(args) == 2 and isinstance(args[1], tuple) and len(args[1]) == 2
    assert record.switches == (1 if counted else 0)
    assert tracer.previous is previous
    try:
        inspect.signature(_previous_signature).bind(*args, **kwargs)
    except TypeError:
        assert result is None and len(unraisable) == 1      # previous raised TypeError
    else:
        assert result == "previous answer" and not unraisable


def _traced_call_cleanup(context):
    sys.unraisablehook = context[4]


def _noop_check(result, arguments, context):
    assert type(result) is _core.NoopTracer


TRACE_VALUES = st.one_of(
    ANY, st.sampled_from(["switch", "throw"]), st.tuples(GREENLETS, GREENLETS),
    st.tuples(GREENLETS), st.tuples(GREENLETS, GREENLETS, GREENLETS),
)


def tracer_entries():
    entries = [
        Entry("ThreadTracer", _noargs, _plain(_core.ThreadTracer),
              check=lambda result, arguments, context: _fresh_tracer(result)),
        Entry("ThreadTracer.install", _noargs, _tracer_method("install"),
              check=_installed_check, cleanup=_untrace),
        Entry("ThreadTracer.uninstall", _noargs, _tracer_method("uninstall"),
              check=_returns(bool, lambda value: value is False), cleanup=_untrace),
        Entry("ThreadTracer.add", _one, _tracer_method("add"),
              expect=lambda a: OK if isinstance(a["value"], _core.Record) else RAISE,
              check=_add_check, likely=_likely(st.one_of(st.just(SHARED), st.builds(_record)))),
        Entry("ThreadTracer.remove", _one, _tracer_method("remove"),
              expect=lambda a: OK if isinstance(a["value"], _core.Record) else RAISE,
              check=_remove_check,
              likely=_likely(st.one_of(st.just(SHARED), st.builds(_record)))),
        Entry("ThreadTracer.__call__", _anything, _traced_call_setup,
              check=_traced_call_check, cleanup=_traced_call_cleanup, values=TRACE_VALUES),
        Entry("NoopTracer", _noargs, _plain(_core.NoopTracer), check=_noop_check),
        Entry("NoopTracer.__call__", _anything, _plain(_core.NoopTracer()),
              check=_returns(type(None)), values=TRACE_VALUES),
    ]
    return entries


# --- Methods and descriptors taken from the type, called on anything ---------

UNBOUND = [
    (_core.Record, ["start", "stop", "stats", "set_threshold", "ignore_current",
                    "monitor_current", "set_next_call", "call_done", "set_gil_dump"],
     ["id", "switches", "thread_ident", "sampled"]),
    (_core.ThreadTracer, ["install", "uninstall", "add", "remove", "__call__"],
     ["previous", "record_count", "installed"]),
    (_core.NoopTracer, ["__call__"], []),
]


def _wrong_self(cls):
    def expect(arguments):
        args = arguments["args"]
        assume(not (args and isinstance(args[0], cls)))
        return RAISE
    return expect


def unbound_entries():
    entries = []
    for cls, methods, properties in UNBOUND:
        for name in methods:
            entries.append(Entry(f"{cls.__name__}.{name} (unbound)", _anything,
                                 _plain(getattr(cls, name)), expect=_wrong_self(cls),
                                 examples=30))
        for name in properties:
            descriptor = cls.__dict__[name]
            for access in ("__set__", "__delete__"):
                entries.append(Entry(f"{cls.__name__}.{name}.{access}", _anything,
                                     _plain(getattr(descriptor, access)),
                                     expect=_wrong_self(cls), examples=30))
    return entries


# --- In the children ---------------------------------------------------------

def fuzz_family(family: str) -> None:
    """Run in a child process: fuzz every entry point of one family."""
    if family == "module":
        _core.install_gil_handler(CLAIMED)
        entries = module_entries()
    elif family == "record":
        entries = record_entries()
    else:
        entries = tracer_entries() + unbound_entries()
    for entry in entries:
        exercise(entry)
        assert greenlet.gettrace() is None, entry.name
    print("fuzzed", len(entries), "entry points")


CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_core_arguments
test_core_arguments.fuzz_family({family!r})
"""


def _assert_clean(proc, marker):
    output = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, output
    assert "Fatal Python error" not in proc.stderr, output
    assert marker in proc.stdout, output


@pytest.mark.parametrize("family", ["module", "record", "tracer"])
def test_arbitrary_arguments_never_crash(python, family):
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = python(CHILD.format(tests=tests, family=family), timeout=120)
    _assert_clean(proc, "fuzzed")


# --- Explicit regression cases ----------------------------------------------

def test_negative_threshold_is_refused():
    with pytest.raises(ValueError):
        _core.Record(None, greenlet.getcurrent(), threshold=-1.0, mode="any")


@pytest.mark.parametrize("value", [2**32 + 10, 2**64 + 10, -2**32 + 10, IntSub(2**32 + 10)])
def test_signal_disposition_does_not_truncate(value):
    with pytest.raises((ValueError, OverflowError)):
        _core.signal_disposition(value)


def test_install_gil_handler_does_not_truncate(python):
    # In a child: a valid signal, once claimed, is claimed for good.
    proc = python("""
        import signal
        from hubmon import _core
        assert _core.signal_disposition(10) == "default"
        for value in (2**32 + 10, 2**64 + 10, -2**32 + 10, 2**63 + 10):
            try:
                _core.install_gil_handler(value)
            except (ValueError, OverflowError):
                pass
            else:
                raise AssertionError(f"install_gil_handler({value}) was accepted")
            assert _core.signal_disposition(10) == "default", value
        for value in (True, 10.0, "10", None):
            try:
                _core.install_gil_handler(value)
            except TypeError:
                pass
            else:
                raise AssertionError(f"install_gil_handler({value!r}) was accepted")
        assert _core.signal_disposition(10) == "default"
        print("refused")
    """)
    _assert_clean(proc, "refused")


@pytest.mark.parametrize("value", [-1, 2**40, 2**32 + 1, 2**64 + 1, True, 1.0, "1", None])
def test_gil_dump_enable_refuses_what_is_not_an_fd(value):
    with pytest.raises(EXPECTED):
        _core.gil_dump_enable(value)


def test_gil_dump_enable_takes_a_valid_fd():
    read_end, write_end = os.pipe()
    try:
        copy = _core.gil_dump_enable(write_end)
        try:
            assert copy >= 3 and copy != write_end
        finally:
            _core.gil_dump_disable()
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("limit, period", [(math.nan, 1), (1, math.nan), (math.inf, 1),
                                           (1, math.inf), (-1, 1), (1, 0), (1, -0.0),
                                           (2**1024, 1), ("1", 1), (None, 1)])
def test_set_memory_watch_refuses_bad_values(limit, period):
    with pytest.raises(EXPECTED):
        _core.set_memory_watch(limit, period)


@pytest.mark.parametrize("value", [5, -2, 2, 2**32, 2**32 + 1, 2**64 + 1, -2**64, 1.0, "1",
                                   None, Index(2**64 + 1)])
def test_memory_done_refuses_bad_values(value):
    with pytest.raises(EXPECTED):
        _core.memory_done(value)


@pytest.mark.parametrize("method, value", [
    ("set_threshold", 0), ("set_threshold", math.nan), ("set_threshold", True),
    ("set_threshold", -1.0), ("set_threshold", math.inf), ("set_threshold", 2**1024),
    ("set_threshold", "1"), ("set_next_call", -1), ("set_next_call", math.inf),
    ("set_next_call", math.nan), ("set_next_call", True), ("call_done", "x"),
    ("call_done", -1e-300), ("call_done", 10**400),
])
def test_record_methods_refuse_bad_values(method, value):
    record = _record()
    with pytest.raises(EXPECTED):
        getattr(record, method)(value)
    assert record.stats()["threshold"] == 1.0


def test_record_refuses_bad_calls():
    current = greenlet.getcurrent()
    for args, kwargs in [((), {}), ((None, current), {}), ((None, current, 1.0, "any"), {}),
                         ((None, current, 1.0), {}),
                         ((None, current, 1.0), {"mode": None}),
                         ((None, current, 1.0), {"mode": "other"}),
                         ((None, current, 1.0), {"bogus": 1}),
                         ((current, current), {"threshold": 1.0, "hub": current})]:
        with pytest.raises(EXPECTED):
            _core.Record(*args, **kwargs)


def test_tracers_refuse_bad_arguments():
    tracer = _core.ThreadTracer()
    with pytest.raises(TypeError):
        tracer.add(object())
    with pytest.raises(TypeError):
        tracer.remove(None)
    with pytest.raises(TypeError):
        _core.ThreadTracer(1)
    with pytest.raises(TypeError):
        _core.ThreadTracer(x=1)
    with pytest.raises(TypeError):
        _core.NoopTracer(None)
    with pytest.raises(TypeError):
        tracer.install(1)
    assert greenlet.gettrace() is None


def test_properties_are_read_only():
    record, tracer = _record(), _core.ThreadTracer()
    for obj, name in [(record, "id"), (record, "switches"), (record, "thread_ident"),
                      (record, "sampled"), (tracer, "previous"), (tracer, "record_count"),
                      (tracer, "installed")]:
        value = getattr(obj, name)
        with pytest.raises(AttributeError):
            setattr(obj, name, value)
        with pytest.raises(AttributeError):
            delattr(obj, name)


def test_set_trace_functions_refuses_non_callables_and_keeps_the_ones_it_has():
    try:
        for value in (None, 1, "settrace", object()):
            with pytest.raises(TypeError):
                _core.set_trace_functions(greenlet.gettrace, value)
            with pytest.raises(TypeError):
                _core.set_trace_functions(value, greenlet.settrace)
        with pytest.raises(TypeError):
            _core.set_trace_functions(greenlet.gettrace)
        with pytest.raises(TypeError):
            _core.set_trace_functions(gettrace=greenlet.gettrace, settrace=greenlet.settrace)
        # The refused calls changed nothing: a tracer still installs through greenlet.
        tracer = _core.ThreadTracer()
        assert tracer.install() is True
        assert greenlet.gettrace() is tracer
        assert tracer.uninstall() is True
        # The tracer calls what Python handed over, not greenlet found by name.
        calls = []

        def gettrace():
            calls.append("gettrace")
            return greenlet.gettrace()

        def settrace(function):
            calls.append("settrace")
            return greenlet.settrace(function)

        _core.set_trace_functions(gettrace, settrace)
        assert tracer.install() is True and tracer.uninstall() is True
        assert calls == ["gettrace", "settrace", "gettrace", "settrace"]
    finally:
        _core.set_trace_functions(greenlet.gettrace, greenlet.settrace)
        greenlet.settrace(None)


def test_set_event_handler_refuses_non_callables():
    try:
        for value in (None, 1, "handler", object()):
            with pytest.raises(TypeError):
                _core.set_event_handler(value)
        with pytest.raises(TypeError):
            _core.set_event_handler()
        with pytest.raises(TypeError):
            _core.set_event_handler(handler=len)
    finally:
        _core.set_event_handler(_dispatch.native_event)


def test_shutdown_and_after_fork_child_refuse_arguments(python):
    proc = python("""
        from hubmon import _core
        for func in (_core.shutdown, _core.after_fork_child):
            for args, kwargs in (((1,), {}), ((), {"x": 1}), ((None, None), {})):
                try:
                    func(*args, **kwargs)
                except TypeError:
                    pass
                else:
                    raise AssertionError(f"{func.__name__} took {args} {kwargs}")
        _core.after_fork_child()
        assert _core.shutdown() is None and _core.shutdown() is None
        record = _core.Record(None, None, 1.0, mode="any")
        try:
            record.start()
        except RuntimeError:
            pass
        else:
            raise AssertionError("a record started after shutdown")
        print("refused")
    """)
    _assert_clean(proc, "refused")


def test_types_refuse_copying_subclassing_and_a_wrong_self():
    objects = [_record(), _core.ThreadTracer(), _core.NoopTracer()]
    for obj in objects:
        for action in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                action(obj)
        with pytest.raises(TypeError):
            type(type(obj).__name__, (type(obj),), {})
    for cls, _, properties in UNBOUND:
        for name in properties:
            with pytest.raises(TypeError):
                cls.__dict__[name].__get__(object(), cls)
    with pytest.raises(TypeError):
        _core.Record.__new__(_core.ThreadTracer, None, None, 1.0)
    with pytest.raises(TypeError):
        _core.ThreadTracer.__new__(_core.Record)


def test_tracers_never_loop_into_each_other(python):
    # Two hubmon tracers of one thread must never become each other's
    # previous: install() refuses to close the loop, and a loop made anyway
    # is cut at the tracer that is called again while it forwards.
    proc = python("""
import greenlet
from hubmon import _core
a, b = _core.ThreadTracer(), _core.ThreadTracer()
b.install(); a.install(); greenlet.settrace(None); b.uninstall(); greenlet.settrace(a)
print('REFUSED', b.install() is False, a.previous is b)
seen = []
def mine(event, args):
    seen.append(event)
    return a(event, args)           # a chain that loops back to hubmon's tracer
greenlet.settrace(None)
greenlet.settrace(mine)
a.uninstall()
print('INSTALLED', a.install(), a.previous is mine)
greenlet.greenlet(lambda: None).switch()
print('SWITCHED', len(seen))
greenlet.settrace(None)
""")
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED True True" in proc.stdout, proc.stdout
    assert "SWITCHED" in proc.stdout, proc.stdout + proc.stderr
