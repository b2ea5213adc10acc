"""Trace functions installed before and after hubmon keep working.

The rule: greenlet keeps one trace function per thread, and each hubmon
tracer calls the one installed before it. Stopping a monitor whose tracer
is the thread's trace function puts back the previous one; stopping one
that a later trace function chains to (a tracer installed after it) leaves
it in place as a pure forwarder, so the later one keeps working.
"""
from __future__ import annotations

import greenlet
import pytest

import hubmon


@pytest.fixture(autouse=True)
def clean_trace():
    greenlet.settrace(None)
    yield
    greenlet.settrace(None)


def switch_a_few_times(n=3):
    other = greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch())
    for _ in range(n):
        other = greenlet.greenlet(lambda: None)
        other.switch()


def recorder(name, log, chain_to=None):
    def trace(event, args):
        log.append(name)
        if chain_to is not None:
            chain_to(event, args)
    return trace


def test_function_installed_before_hubmon_sees_every_event():
    log = []
    greenlet.settrace(recorder("before", log))
    hub = greenlet.greenlet(lambda: None)
    monitor = hubmon.start(hub)
    switch_a_few_times(3)
    # each switch into and out of a greenlet: 2 events each
    assert log.count("before") == 6
    assert monitor.stats()["switches"] == 6
    monitor.stop()


def test_function_installed_after_hubmon_and_restored_keeps_working():
    log = []
    hub = greenlet.greenlet(lambda: None)
    monitor = hubmon.start(hub)
    previous = greenlet.settrace(None)
    after = recorder("after", log, chain_to=previous)
    greenlet.settrace(after)
    switch_a_few_times(2)
    assert log.count("after") == 4
    assert monitor.stats()["switches"] == 4      # it chains to hubmon
    greenlet.settrace(previous)                   # the program restores hubmon
    switch_a_few_times(1)
    assert monitor.stats()["switches"] == 6
    monitor.stop()
    assert greenlet.gettrace() is None


def test_stopping_a_monitor_under_a_later_function_leaves_the_later_one():
    log = []
    greenlet.settrace(recorder("first", log))
    hub = greenlet.greenlet(lambda: None)
    monitor = hubmon.start(hub)
    hubmon_tracer = greenlet.gettrace()
    later = recorder("later", log, chain_to=hubmon_tracer)
    greenlet.settrace(later)
    monitor.stop()
    assert greenlet.gettrace() is later           # not clobbered
    switch_a_few_times(1)
    assert log == ["later", "first", "later", "first"]   # hubmon forwards


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2), (1, 2, 0)])
def test_stopping_monitors_in_any_order(order):
    log = []
    base = recorder("base", log)
    greenlet.settrace(base)
    hubs = [greenlet.greenlet(lambda: None) for _ in range(3)]
    monitors = [hubmon.start(h) for h in hubs]
    for i in order:
        monitors[i].stop()
        switch_a_few_times(1)
        for j, m in enumerate(monitors):
            if m.running:
                assert m.stats()["switches"] >= 2
    # Whatever the order, the program's own function gets every event and,
    # once the top tracer is gone, is the thread's trace function again
    # unless a stopped tracer below a running one had to stay as a forwarder.
    assert log.count("base") == 2 * len(order)
    current = greenlet.gettrace()
    assert current is base or not isinstance(current, type(base))
    log.clear()
    switch_a_few_times(1)
    assert log == ["base", "base"]


def test_previous_function_that_raises_does_not_unhook_hubmon(monkeypatch):
    import sys
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def bad(event, args):
        raise RuntimeError("bad tracer")
    greenlet.settrace(bad)
    hub = greenlet.greenlet(lambda: None)
    monitor = hubmon.start(hub)
    switch_a_few_times(1)
    assert monitor.stats()["switches"] == 2
    assert greenlet.gettrace() is not None and greenlet.gettrace() is not bad
    monitor.stop()
    assert unraisable and "bad tracer" in str(unraisable[0].exc_value)
