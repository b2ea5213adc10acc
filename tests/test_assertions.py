"""hubmon.assert_switches: gevent's scoped assertion, measured by the C tracer.

Timing margins are wide, for a loaded two-core machine: blocks last 0.5 s
against limits of 0.1 s, and the bodies that must pass do not sleep at all,
or only in gevent's hub.
"""
from __future__ import annotations

import gc
import math
import threading
import time

import greenlet
import pytest

import hubmon
from hubmon import _dispatch, _tracing
from hubmon.assertions import FailedToSwitch, assert_switches

BLOCK = 0.5
LIMIT = 0.1


@pytest.fixture(autouse=True)
def clean_trace():
    """Every test starts and ends with no trace function, and leaves no scope behind."""
    greenlet.settrace(None)
    yield
    assert all(not isinstance(getattr(h[0], "__self__", None), assert_switches)
               for h in _dispatch._handlers.values())
    assert all(_tracing.tracer_of(i) is None or _tracing.tracer_of(i).record_count == 0
               for i in list(_tracing._tracers))
    greenlet.settrace(None)


def switch_once():
    """Two switches: into a new greenlet and back."""
    greenlet.greenlet(lambda: None).switch()


def plain_hub():
    """A greenlet of this thread that plays the hub (it never needs to run)."""
    return greenlet.greenlet(lambda: None)


def block():
    time.sleep(BLOCK)


def wait_for(predicate, timeout=10.0):
    """Poll ``predicate`` (releasing the GIL meanwhile) until true or ``timeout``."""
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)
    return predicate()


# -- without max_blocking_time: the body must switch -----------------------------------


def test_a_body_that_does_not_switch_fails():
    with pytest.raises(FailedToSwitch) as info:
        with assert_switches():
            pass
    assert isinstance(info.value, AssertionError)
    message = str(info.value)
    first = message.splitlines()[0]
    assert first.startswith("To any greenlet in ")
    assert first.endswith(" seconds")
    assert "max allowed" not in first
    assert "never switched to any greenlet" in message
    assert "* Threads" in message and "* Greenlets" in message


def test_a_body_that_switches_passes_and_counts():
    with assert_switches() as scope:
        switch_once()
    assert scope.switches == 2
    assert scope.hub_switches == 0
    assert scope.longest_gap is None
    assert scope.duration >= 0


def test_hub_only_needs_a_switch_into_the_hub():
    hub = plain_hub()
    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(hub_only=True, hub=hub):
            switch_once()                     # another greenlet, not the hub
    assert str(info.value).startswith("To the hub in ")
    assert "never switched into the hub" in str(info.value)
    with assert_switches(hub_only=True, hub=hub) as scope:
        hub.switch()                          # runs and returns at once
    assert scope.hub_switches == 1


def test_gevent_hub_is_the_default_hub():
    gevent = pytest.importorskip("gevent")
    with assert_switches(hub_only=True) as scope:
        gevent.sleep(0)
    assert scope.hub_switches >= 1
    with pytest.raises(FailedToSwitch):
        with assert_switches(hub_only=True):
            switch_once()


# -- with max_blocking_time: the longest stretch is measured -------------------------


def test_a_quick_body_that_does_not_switch_passes():
    with assert_switches(max_blocking_time=LIMIT) as scope:
        sum(range(100))
    assert scope.switches == 0
    assert 0 <= scope.longest_gap < LIMIT


def test_a_blocking_body_fails_with_the_blocked_stack():
    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(max_blocking_time=LIMIT):
            block()
    error = info.value
    message = str(error)
    first = message.splitlines()[0]
    assert first.startswith("To any greenlet in ")
    assert first.endswith(" seconds (max allowed 0.1000 seconds)")
    seconds = float(first.split(" in ")[1].split()[0])
    assert seconds >= BLOCK * 0.9
    assert error.longest_gap >= BLOCK * 0.8
    assert error.max_blocking_time == LIMIT and error.hub_only is False
    # The stack was taken while the body was blocked, not at its end.
    assert "appears to be blocked" in message
    assert "Blocked Stack" in message
    assert "time.sleep(BLOCK)" in message
    assert error.report and error.report[0].startswith("The longest stretch without a switch")


def test_a_c_call_that_holds_the_gil_fails_with_a_report():
    n = 10 ** 6
    while True:                               # size one C call to about 0.6 s
        start = time.perf_counter()
        sum(range(n))
        took = time.perf_counter() - start
        if took > 0.05:
            break
        n *= 4
    size = int(n * 0.6 / took)

    def crunch():
        sum(range(size))

    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(max_blocking_time=LIMIT):
            crunch()
    message = str(info.value)
    assert info.value.longest_gap >= 2 * LIMIT
    # The native thread measured it without the GIL, and the report waited
    # for the GIL rather than being replaced by the state at the end.
    assert "appears to be blocked" in message
    assert "The GIL was held for" in message


@pytest.mark.parametrize("hub_only", [False, True])
def test_hub_time_is_not_a_stretch(hub_only):
    gevent = pytest.importorskip("gevent")
    with assert_switches(max_blocking_time=LIMIT, hub_only=hub_only) as scope:
        gevent.sleep(BLOCK)                   # the hub waits in its loop: fine
    assert scope.longest_gap < LIMIT
    assert scope.duration >= BLOCK * 0.9


@pytest.mark.parametrize("hub_only", [False, True])
def test_a_greenlet_that_blocks_the_gevent_hub_fails(hub_only):
    gevent = pytest.importorskip("gevent")

    def handler():
        time.sleep(BLOCK)

    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(max_blocking_time=LIMIT, hub_only=hub_only):
            gevent.spawn(handler).join()
    message = str(info.value)
    assert message.startswith("To the hub in " if hub_only else "To any greenlet in ")
    assert "(max allowed 0.1000 seconds)" in message.splitlines()[0]
    assert "Greenlet" in message and "handler" in message
    assert "time.sleep(BLOCK)" in message


def test_any_switch_ends_a_stretch_unless_hub_only():
    """Greenlets that switch among themselves, never into the hub, for half a second."""
    hub = plain_hub()
    main = greenlet.getcurrent()

    def partner():
        while True:
            main.switch()

    def ping_pong():
        other = greenlet.greenlet(partner)
        end = time.monotonic() + BLOCK
        while time.monotonic() < end:
            other.switch()

    with assert_switches(max_blocking_time=LIMIT, hub=hub) as scope:
        ping_pong()
    assert scope.longest_gap < LIMIT
    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(max_blocking_time=LIMIT, hub_only=True, hub=hub):
            ping_pong()
    assert str(info.value).startswith("To the hub in ")


def test_the_longest_stretch_is_measured_not_the_duration():
    gevent = pytest.importorskip("gevent")
    # Long body, short stretches: passes although it lasts 5 limits.
    with assert_switches(max_blocking_time=LIMIT) as scope:
        for _ in range(5):
            gevent.sleep(LIMIT)
    assert scope.duration > 4 * LIMIT
    assert scope.longest_gap < LIMIT
    # Many switches, then one block: fails although it switched a lot.
    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(max_blocking_time=LIMIT):
            for _ in range(100):
                gevent.sleep(0)
            block()
    assert info.value.longest_gap >= BLOCK * 0.8


def test_only_the_longest_block_of_several_is_reported():
    def short_block():
        time.sleep(0.2)

    def long_block():
        time.sleep(0.6)

    with pytest.raises(FailedToSwitch) as info:
        with assert_switches(max_blocking_time=LIMIT):
            short_block()
            switch_once()
            long_block()
            switch_once()
    message = str(info.value)
    assert "in long_block" in message
    assert "in short_block" not in message


# -- exceptions, nesting, chaining --------------------------------------------------


@pytest.mark.parametrize("limit", [None, LIMIT])
def test_an_exception_of_the_body_propagates_unchanged(limit):
    error = KeyError("mine")
    with pytest.raises(KeyError) as info:
        with assert_switches(max_blocking_time=limit):
            if limit:
                block()
            raise error
    assert info.value is error
    assert greenlet.gettrace() is None


def test_scopes_nest_and_each_sees_its_own_switches():
    with assert_switches() as outer:
        switch_once()
        with pytest.raises(FailedToSwitch):
            with assert_switches() as inner:
                pass
        assert inner.switches == 0
        with assert_switches() as inner2:
            switch_once()
        assert inner2.switches == 2
        switch_once()
    assert outer.switches == 6
    assert greenlet.gettrace() is None


def test_a_blocking_inner_scope_fails_alone():
    with assert_switches(max_blocking_time=1.5) as outer:
        with pytest.raises(FailedToSwitch):
            with assert_switches(max_blocking_time=LIMIT):
                block()
    assert BLOCK * 0.8 <= outer.longest_gap < 1.5


def test_the_trace_function_in_force_before_is_back_and_sees_everything():
    seen = []

    def mine(event, args):
        seen.append(event)

    greenlet.settrace(mine)
    with assert_switches(max_blocking_time=LIMIT) as scope:
        assert greenlet.gettrace() is not mine
        switch_once()
    assert greenlet.gettrace() is mine
    assert scope.switches == 2 and len(seen) == 2
    with pytest.raises(FailedToSwitch):
        with assert_switches():
            pass
    assert greenlet.gettrace() is mine


def test_nesting_inside_a_running_monitor():
    hubmon.events.wait_for_delivery()   # no event of an earlier test's monitor
    seen = []
    hubmon.events.subscribers.append(seen.append)
    hub = plain_hub()
    monitor = hubmon.start(hub, max_blocking_time=LIMIT, print_blocking_reports=False)
    try:
        monitor_tracer = greenlet.gettrace()
        before = monitor.stats()["switches"]
        with assert_switches(max_blocking_time=LIMIT, hub=hub) as scope:
            switch_once()
        assert greenlet.gettrace() is monitor_tracer
        assert scope.switches == 2
        assert monitor.stats()["switches"] == before + 2     # the scope chains to it
        with pytest.raises(FailedToSwitch) as info:
            with assert_switches(max_blocking_time=LIMIT, hub_only=True, hub=hub):
                time.sleep(2 * BLOCK)             # time for two reports, even on a slow machine
        assert "time.sleep(2 * BLOCK)" in str(info.value)
        assert greenlet.gettrace() is monitor_tracer
        # The monitor saw the same block and reported it through the events;
        # the scope's report is not an event.
        assert monitor.stats()["blocks"] >= 1

        def blocked():
            return [e for e in seen if isinstance(e, hubmon.events.EventLoopBlocked)]
        assert wait_for(blocked)
        assert all(e.hub is hub for e in blocked())
    finally:
        hubmon.events.subscribers.remove(seen.append)
        monitor.stop()
    assert greenlet.gettrace() is None


def test_scopes_that_end_out_of_order_leave_nothing_behind():
    """Two greenlets each in a scope; the first to enter leaves first."""
    main = greenlet.getcurrent()
    order = []

    def first():
        with assert_switches():
            second_glet.switch()              # second enters its scope on top of ours
            order.append("first leaves")

    def second():
        with assert_switches():
            main.switch()
            order.append("second leaves")

    second_glet = greenlet.greenlet(second)
    first_glet = greenlet.greenlet(first)
    first_glet.switch()                       # both scopes are open when we are back
    tracer = greenlet.gettrace()
    first_glet.switch()                       # the first leaves: one record fewer
    assert order == ["first leaves"]
    assert greenlet.gettrace() is tracer and tracer.record_count == 1
    second_glet.switch()                      # the second leaves: the thread's tracer goes
    assert order == ["first leaves", "second leaves"]
    assert greenlet.gettrace() is None
    assert tracer.record_count == 0


# -- decorator, threads, arguments -----------------------------------------------------


def test_decorator_runs_each_call_in_its_own_scope():
    calls = []

    @assert_switches()
    def switching(n):
        """Doc."""
        calls.append(n)
        if n:
            switch_once()
            switching(n - 1)
        return n

    @assert_switches(max_blocking_time=LIMIT)
    def blocking():
        block()

    assert switching.__name__ == "switching" and switching.__doc__ == "Doc."
    with pytest.raises(FailedToSwitch):
        switching(0)                          # the innermost call never switches
    with pytest.raises(FailedToSwitch):
        switching(2)                          # nor here: its innermost call fails
    assert calls == [0, 2, 1, 0]
    with pytest.raises(FailedToSwitch):
        blocking()
    assert greenlet.gettrace() is None


def test_works_in_another_thread():
    results = []

    def run():
        try:
            with assert_switches(max_blocking_time=LIMIT):
                block()
        except FailedToSwitch as error:
            results.append(error)
        with assert_switches() as scope:
            switch_once()
        results.append(scope.switches)
        results.append(greenlet.gettrace())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert isinstance(results[0], FailedToSwitch)
    assert results[1:] == [2, None]


@pytest.mark.parametrize("value, error", [
    (-1, ValueError), (0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    (True, TypeError), ("0.1", TypeError), ([], TypeError),
])
def test_bad_max_blocking_time(value, error):
    with pytest.raises(error, match="max_blocking_time"):
        assert_switches(max_blocking_time=value)


def test_bad_arguments():
    with pytest.raises(TypeError, match="hub_only"):
        assert_switches(hub_only="yes")
    with pytest.raises(TypeError, match="hub must be a greenlet"):
        assert_switches(hub=object())
    with pytest.raises(TypeError, match="parentheses"):
        @assert_switches
        def forgot():
            pass
    with pytest.raises(TypeError, match="callable"):
        assert_switches()(42)


def test_hub_of_another_thread_is_refused():
    hubs = []
    thread = threading.Thread(target=lambda: hubs.append(greenlet.getcurrent()))
    thread.start()
    thread.join()
    with pytest.raises(ValueError, match="another thread"):
        with assert_switches(hub=hubs[0]):
            pass
    assert greenlet.gettrace() is None


def test_an_instance_is_reusable_but_not_reentrant():
    scope = assert_switches()
    for _ in range(3):
        with scope:
            switch_once()
    with scope:
        with pytest.raises(RuntimeError, match="already active"):
            with scope:
                pass
        switch_once()
    assert greenlet.gettrace() is None


def test_without_gevent(python):
    proc = python("""
import sys, time, greenlet, hubmon
try:
    with hubmon.assert_switches(hub_only=True):
        pass
except TypeError as error:
    print('TypeError', error)
with hubmon.assert_switches() as scope:
    greenlet.greenlet(lambda: None).switch()
print('switches', scope.switches)
try:
    with hubmon.assert_switches(max_blocking_time=0.1):
        time.sleep(0.5)
except hubmon.FailedToSwitch as error:
    print('failed', str(error).splitlines()[0].endswith('(max allowed 0.1000 seconds)'))
print('gevent imported', 'gevent' in sys.modules)
""")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "TypeError assert_switches(hub_only=True) needs a hub" in out
    assert "switches 2" in out
    assert "failed True" in out
    assert "gevent imported False" in out


def test_many_scopes_leak_nothing():
    def cycle(n):
        for _ in range(n):
            with assert_switches(max_blocking_time=5) as scope:
                switch_once()
            with assert_switches():
                switch_once()
            try:
                with assert_switches():
                    pass
            except FailedToSwitch:
                pass
        return scope

    cycle(100)
    gc.collect()
    before = len(gc.get_objects())
    cycle(1000)
    gc.collect()
    assert len(gc.get_objects()) - before < 50
    assert greenlet.gettrace() is None
