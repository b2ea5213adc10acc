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
    # once every monitor is stopped, is the thread's trace function again:
    # nothing installed after hubmon needed a stopped tracer as a forwarder.
    assert log.count("base") == 2 * len(order)
    assert greenlet.gettrace() is base
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
    switch_a_few_times(3)
    assert monitor.stats()["switches"] == 6
    assert greenlet.gettrace() is not None and greenlet.gettrace() is not bad
    # greenlet's rule: a trace function that raises is removed. Reported once.
    assert greenlet.gettrace().previous is None
    monitor.stop()
    assert greenlet.gettrace() is None
    assert len(unraisable) == 1
    report = unraisable[0]
    assert report.object is bad and type(report.exc_value) is RuntimeError
    assert "bad tracer" in str(report.exc_value)
    assert type(report.exc_value.__cause__) is RuntimeError
    assert str(report.exc_value.__cause__) == "bad tracer"


def test_previous_function_that_raises_is_removed_and_reported_once(python):
    # The program's trace function, installed before hubmon's, raises on its
    # third call. greenlet's rule for a trace function that raises is that it
    # is removed; hubmon applies it to the function it chains to, reports
    # the error once, and keeps monitoring.
    pytest.importorskip("gevent")
    proc = python("""
import time
import gevent, greenlet
import hubmon

calls = []
def fragile_trace(event, args):
    calls.append(event)
    if len(calls) == 3:
        raise ValueError("fragile_trace broke on its third call")

greenlet.settrace(fragile_trace)
monitor = hubmon.start(hub=gevent.get_hub(), max_blocking_time=0.1)
tracer = greenlet.gettrace()
for _ in range(500):
    gevent.sleep(0)             # two switches each: into the hub and back
print('CALLS', len(calls))
print('REMOVED', tracer.previous is None, greenlet.gettrace() is tracer)
print('SWITCHES', monitor.stats()['switches'] >= 1000)

def handler():
    time.sleep(0.5)
gevent.spawn(handler).join()
gevent.sleep(0.05)
print('BLOCKS', monitor.stats()['blocks'])
monitor.stop()
print('UNINSTALLED', greenlet.gettrace() is None)
""")
    assert proc.returncode == 0, proc.stderr
    out, err = proc.stdout, proc.stderr
    assert "CALLS 3" in out, out + err
    assert "REMOVED True True" in out, out + err
    assert "SWITCHES True" in out, out + err
    assert "BLOCKS 1" in out, out + err
    assert "UNINSTALLED True" in out, out + err
    assert err.count("Exception ignored") == 1, err
    report = err.split("Exception ignored", 1)[1].split("=" * 80, 1)[0]
    assert "fragile_trace" in report, err
    assert "fragile_trace broke on its third call" in report, err
    assert 'raise ValueError("fragile_trace broke' in report, err    # the line that raised
    assert "hubmon removed the greenlet trace function" in report, err
    assert err.count("appears to be blocked") == 1, err
    assert "in handler" in err, err


def test_function_that_raises_after_the_chain_changed_leaves_the_new_one(python):
    # The trace function rebuilds the chain while hubmon's tracer calls it
    # (hubmon's tracer ends up chained to `replacement`), then raises. The
    # function that raised is no longer in the chain: its error is reported
    # as it is, and `replacement` is not removed for it. When `replacement`
    # raises in its turn, it is the one removed, reported once.
    proc = python("""
import sys
import greenlet
import hubmon

log = []
def replacement(event, args):
    log.append('replacement')
    if log.count('replacement') == 5:
        raise ValueError('replacement broke on its fifth call')

def first(event, args):
    global monitor
    log.append('first')
    greenlet.settrace(None)                 # the program resets tracing,
    monitor.stop()
    greenlet.settrace(replacement)          # installs its new function,
    monitor = hubmon.start(hub)             # and monitors again on top of it
    raise ValueError('first broke')

def switch(n):
    for _ in range(n):
        greenlet.greenlet(lambda: None).switch()

reports = []
sys.unraisablehook = reports.append
hub = greenlet.greenlet(lambda: None)
greenlet.settrace(first)
monitor = hubmon.start(hub)
tracer = greenlet.gettrace()
switch(1)
print('AFTER FIRST', log, greenlet.gettrace() is tracer, tracer.previous is replacement)
print('REPORTS', [(r.object.__name__, type(r.exc_value).__name__, str(r.exc_value))
                  for r in reports])
switch(1)
print('KEPT', log.count('replacement'), tracer.previous is replacement)
del reports[:]
switch(500)
print('CALLS', log.count('first'), log.count('replacement'), tracer.previous is None)
print('REPORTS', [(r.object is replacement, type(r.exc_value).__name__,
                   repr(r.exc_value.__cause__)) for r in reports])
print('SWITCHES', monitor.stats()['switches'])
monitor.stop()
print('UNINSTALLED', greenlet.gettrace() is None)
""")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "AFTER FIRST ['first', 'replacement'] True True" in out, out + proc.stderr
    assert "REPORTS [('first', 'ValueError', 'first broke')]" in out, out + proc.stderr
    assert "KEPT 3 True" in out, out + proc.stderr
    assert "CALLS 1 5 True" in out, out + proc.stderr
    assert ("REPORTS [(True, 'RuntimeError', "
            "\"ValueError('replacement broke on its fifth call')\")]" in out), out + proc.stderr
    assert "SWITCHES 1003" in out, out + proc.stderr
    assert "UNINSTALLED True" in out, out + proc.stderr
