"""The public API on plain greenlets: any greenlet can be the hub."""
from __future__ import annotations

import gc
import io
import threading
import time
import weakref
from collections import deque

import greenlet
import pytest

import hubmon
from hubmon import events


class Scheduler:
    """A home-grown event loop: the hub greenlet runs ready greenlets in turn."""

    def __init__(self):
        self.ready = deque()
        self.hub = greenlet.greenlet(self._loop)

    def _loop(self):
        while self.ready:
            self.ready.popleft().switch()

    def spawn(self, function, *args):
        self.ready.append(greenlet.greenlet(lambda: function(*args), parent=self.hub))

    def pause(self):
        self.ready.append(greenlet.getcurrent())
        self.hub.switch()

    def run(self):
        self.hub.switch()


@pytest.fixture
def collected():
    # Events fire in hubmon's events thread: let those of earlier tests go by.
    hubmon.events.wait_for_delivery()
    seen = []
    events.subscribers.append(seen.append)
    yield seen
    hubmon.events.wait_for_delivery()
    events.subscribers.remove(seen.append)


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def suspended_greenlet_with_slow_repr(seconds):
    """A suspended greenlet whose repr() sleeps *seconds*: every report shows it, slowly."""
    class SlowRepr(greenlet.greenlet):
        def __repr__(self):
            time.sleep(seconds)
            return "<slow>"

    waiting = SlowRepr(lambda: waiting.parent.switch())
    waiting.switch()
    return waiting


def blocking_task():
    time.sleep(0.4)


def test_start_without_gevent_needs_a_hub(python):
    proc = python("""
import sys, hubmon
try:
    hubmon.start()
except TypeError as ex:
    print('TypeError', ex, 'gevent' in sys.modules)
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("TypeError") and "hub" in proc.stdout
    assert proc.stdout.strip().endswith("False")


@pytest.mark.parametrize("bad", [42, "hub", object()])
def test_start_rejects_a_hub_that_is_not_a_greenlet(bad):
    with pytest.raises(TypeError, match="hub must be a greenlet"):
        hubmon.start(bad)


@pytest.mark.parametrize("kwargs, error", [
    (dict(max_blocking_time=0), ValueError),
    (dict(max_blocking_time=-1), ValueError),
    (dict(max_blocking_time=float("nan")), ValueError),
    (dict(max_blocking_time=float("inf")), ValueError),
    (dict(max_blocking_time="0.1"), TypeError),
    (dict(max_memory_usage=-5), ValueError),
    (dict(max_memory_usage="big"), ValueError),
    (dict(memory_monitor_period=0.01), ValueError),
    (dict(print_blocking_reports="yes"), TypeError),
    (dict(stream=42), TypeError),
])
def test_start_rejects_bad_arguments_naming_them(kwargs, error):
    hub = greenlet.greenlet(lambda: None)
    with pytest.raises(error, match=list(kwargs)[0]):
        hubmon.start(hub, **kwargs)


def test_start_from_another_thread_is_an_error():
    hub = greenlet.greenlet(lambda: None)
    errors = []

    def other():
        try:
            hubmon.start(hub)
        except RuntimeError as ex:
            errors.append(str(ex))
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert errors and "hub's thread" in errors[0]


def test_home_grown_scheduler_block_is_reported_and_unblocked(collected):
    loop = Scheduler()
    stream = io.StringIO()
    with hubmon.start(loop.hub, max_blocking_time=0.1, stream=stream) as monitor:
        assert monitor.hub is loop.hub
        loop.spawn(blocking_task)
        loop.spawn(lambda: None)
        loop.run()
        # The hub has finished; switching into it happened at the end.
        assert wait_for(lambda: len(collected) >= 2)
        stats = monitor.stats()
    kinds = [type(e).__name__ for e in collected]
    assert kinds == ["EventLoopBlocked", "EventLoopUnblocked"]
    assert collected[0].hub is loop.hub and collected[0].blocking_time == 0.1
    assert "blocking_task" in stream.getvalue()
    assert stream.getvalue().count("appears to be blocked") == 1
    assert stats["blocks"] == 1 and stats["longest_block"] > 0.3 and not stats["blocked_now"]
    assert {"switches", "hub_switches", "blocks", "longest_block", "blocked_now"} <= set(stats)
    assert stats["switches"] >= 3 and stats["hub_switches"] >= 1
    # The 0.4 s block lands in the bucket of blocks of at most 0.5 s.
    assert stats["histogram"][0.5] >= 1
    assert list(stats["histogram"])[-1] == float("inf")


def test_start_twice_returns_the_running_monitor():
    hub = greenlet.greenlet(lambda: None)
    first = hubmon.start(hub, max_blocking_time=0.2)
    try:
        assert hubmon.start(hub, max_blocking_time=0.5) is first
        assert first in hubmon.running_monitors()
    finally:
        first.stop()
    assert first not in hubmon.running_monitors()
    again = hubmon.start(hub)
    assert again is not first
    again.kill()
    again.kill()        # idempotent


def test_stop_restores_the_previous_trace_function():
    calls = []

    def previous(event, args):
        calls.append(event)
    greenlet.settrace(previous)
    try:
        hub = greenlet.greenlet(lambda: None)
        monitor = hubmon.start(hub)
        assert greenlet.gettrace() is not previous
        hub.switch()     # the previous trace function still sees events
        assert calls
        monitor.stop()
        assert greenlet.gettrace() is previous
    finally:
        greenlet.settrace(None)


def test_monitor_does_not_keep_the_hub_alive():
    hub = greenlet.greenlet(lambda: None)
    monitor = hubmon.start(hub)
    ref = weakref.ref(hub)
    del hub
    gc.collect()
    assert ref() is None
    assert not monitor.running and monitor.hub is None
    assert greenlet.gettrace() is None


def test_monitor_does_not_keep_the_blocking_greenlet_alive(collected):
    loop = Scheduler()
    monitor = hubmon.start(loop.hub, max_blocking_time=0.1, stream=io.StringIO())
    try:
        loop.spawn(blocking_task)
        loop.run()
        assert wait_for(lambda: len(collected) >= 2)
        culprit = weakref.ref(collected[0].greenlet)
        collected.clear()
        gc.collect()
        assert culprit() is None
    finally:
        monitor.stop()


def test_monitoring_functions_run_with_the_hub_in_the_native_thread():
    hub = greenlet.greenlet(lambda: None)
    calls = []

    def probe(seen_hub):
        calls.append((seen_hub, threading.get_ident()))
    with hubmon.start(hub, max_blocking_time=0.5) as monitor:
        builtin = [monitor.monitor_blocking, monitor.monitor_memory_usage]
        monitor.add_monitoring_function(probe, 0.05)
        assert [f.function for f in monitor.monitoring_functions()] == builtin + [probe]
        assert wait_for(lambda: len(calls) >= 3, timeout=5)
        assert all(h is hub for h, _ in calls)
        assert calls[0][1] != threading.get_ident()
        monitor.add_monitoring_function(probe, None)
        assert [f.function for f in monitor.monitoring_functions()] == builtin
        time.sleep(0.2)
        count = len(calls)
        time.sleep(0.3)
        assert len(calls) == count


@pytest.mark.parametrize("function, period", [(len, 0), (len, -1), ("not callable", 1)])
def test_add_monitoring_function_rejects_bad_input(function, period):
    hub = greenlet.greenlet(lambda: None)
    with hubmon.start(hub) as monitor:
        with pytest.raises(ValueError):
            monitor.add_monitoring_function(function, period)


def test_ignore_current_greenlet_blocking(collected):
    loop = Scheduler()
    stream = io.StringIO()

    def ignored():
        monitor.ignore_current_greenlet_blocking()
        time.sleep(0.3)
    monitor = hubmon.start(loop.hub, max_blocking_time=0.1, stream=stream)
    try:
        loop.spawn(ignored)
        loop.run()
        time.sleep(0.1)
        assert collected == []
        monitor.monitor_current_greenlet_blocking()
    finally:
        monitor.stop()


def test_stream_defaults_to_the_hubs_exception_stream(collected):
    class LoopWithStream(Scheduler):
        pass
    loop = LoopWithStream()
    stream = io.StringIO()

    class Hub(greenlet.greenlet):
        exception_stream = stream
    loop.hub = Hub(loop._loop)
    with hubmon.start(loop.hub, max_blocking_time=0.1):
        loop.spawn(blocking_task)
        loop.run()
        assert wait_for(lambda: len(collected) >= 2)
    assert "appears to be blocked" in stream.getvalue()


def test_format_and_print_run_info():
    lines = hubmon.format_run_info()
    text = "\n".join(lines)
    assert "MainThread" in text and "greenlet" in text
    out = io.StringIO()
    hubmon.print_run_info(file=out)
    assert "MainThread" in out.getvalue()


def test_one_native_thread_for_many_monitors():
    hubs = [greenlet.greenlet(lambda: None) for _ in range(5)]
    monitors = [hubmon.start(h, max_blocking_time=0.1 + i / 10) for i, h in enumerate(hubs)]
    try:
        tid = hubmon._core.sampler_native_id()
        assert tid > 0
        import os
        names = [open("/proc/self/task/%s/comm" % t).read().strip() for t in os.listdir("/proc/self/task")]
        assert names.count("hubmon") == 1
    finally:
        for m in reversed(monitors):
            m.stop()


def test_wait_for_delivery_waits_for_the_subscribers_of_a_detected_block():
    # A subscriber that takes 0.5 s: the event it receives is delivered in
    # hubmon's events thread, after the block was detected.
    started, finished = threading.Event(), []

    def slow_subscriber(event):
        if isinstance(event, events.EventLoopBlocked):
            started.set()
            time.sleep(0.5)
            finished.append(event)

    hubmon.events.wait_for_delivery()
    events.subscribers.append(slow_subscriber)
    try:
        scheduler = Scheduler()
        scheduler.spawn(blocking_task)
        with hubmon.start(scheduler.hub, max_blocking_time=0.1, print_blocking_reports=False):
            scheduler.run()
            assert started.wait(5), "the block was not delivered to the subscriber"
            assert hubmon.events.wait_for_delivery(0.01) is False      # it still sleeps
            assert hubmon.events.wait_for_delivery(5) is True
            assert len(finished) == 1
    finally:
        events.subscribers.remove(slow_subscriber)


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", None])
def test_wait_for_delivery_rejects_a_bad_timeout(bad):
    with pytest.raises(hubmon.ConfigError, match="timeout="):
        hubmon.events.wait_for_delivery(bad)


def test_wait_for_delivery_covers_a_block_still_being_captured(collected):
    # The report of this block takes 0.4 s to capture (the repr of a
    # suspended greenlet sleeps): the block is over and counted before its
    # events exist. Waiting for delivery waits for the capture too.
    _waiting = suspended_greenlet_with_slow_repr(0.4)   # kept suspended: every report shows it

    def culprit():
        time.sleep(0.3)

    scheduler = Scheduler()
    scheduler.spawn(culprit)
    with hubmon.start(scheduler.hub, max_blocking_time=0.1, print_blocking_reports=False) as monitor:
        scheduler.run()
        assert wait_for(lambda: monitor.stats()["blocks"] == 1)
        assert hubmon.events.wait_for_delivery(10) is True
        assert [type(e).__name__ for e in collected][:1] == ["EventLoopBlocked"]


def test_wait_for_delivery_zero_tells_whether_all_is_delivered(collected):
    scheduler = Scheduler()
    scheduler.spawn(blocking_task)
    with hubmon.start(scheduler.hub, max_blocking_time=0.1, print_blocking_reports=False):
        scheduler.run()
        assert hubmon.events.wait_for_delivery(5) is True
        assert collected
        # Nothing left to deliver: no wait needed to say so, again and again.
        assert hubmon.events.wait_for_delivery(0) is True
        assert hubmon.events.wait_for_delivery(0) is True


def test_wait_for_delivery_refuses_to_wait_for_itself(collected):
    answers = []

    def subscriber(event):
        if isinstance(event, events.EventLoopBlocked):
            try:
                hubmon.events.wait_for_delivery(1)
            except RuntimeError as error:
                answers.append(str(error))

    events.subscribers.append(subscriber)
    try:
        scheduler = Scheduler()
        scheduler.spawn(blocking_task)
        with hubmon.start(scheduler.hub, max_blocking_time=0.1, print_blocking_reports=False):
            scheduler.run()
            assert hubmon.events.wait_for_delivery(5) is True
    finally:
        events.subscribers.remove(subscriber)
    assert len(answers) == 1 and "would wait for itself" in answers[0]


def test_the_duration_of_a_block_is_exact_though_its_report_takes_longer(collected):
    # The report of this block takes 1.5 s to capture (a suspended greenlet
    # whose repr sleeps), much longer than the 0.3 s block: no sample sees
    # the block end, but the switch that ends it stamps the time.
    _waiting = suspended_greenlet_with_slow_repr(1.5)   # kept suspended
    measured = []

    def culprit():
        start = time.monotonic()
        time.sleep(0.3)
        measured.append(time.monotonic() - start)

    scheduler = Scheduler()
    scheduler.spawn(culprit)
    with hubmon.start(scheduler.hub, max_blocking_time=0.1, print_blocking_reports=False) as monitor:
        period = hubmon._core.sampler_period()
        scheduler.run()
        assert hubmon.events.wait_for_delivery(10)
        assert wait_for(lambda: any(isinstance(e, events.EventLoopUnblocked) for e in collected))
        unblocked = [e for e in collected if isinstance(e, events.EventLoopUnblocked)]
        # The block's start is known to within a sampling period; its end exactly.
        assert abs(unblocked[0].duration - measured[0]) <= period + 0.01, (unblocked[0].duration,
                                                                         measured[0], period)
        assert abs(monitor.stats()["longest_block"] - measured[0]) <= period + 0.01


def test_wait_for_delivery_covers_the_end_of_a_block_the_hub_just_left(python):
    # The hub runs again: the next sample detects the end of the block.
    # Waiting for delivery right away waits for that EventLoopUnblocked too.
    pytest.importorskip("gevent")
    proc = python("""
import gevent, time, hubmon
from hubmon import events
seen = []
events.subscribers.append(seen.append)
monitor = hubmon.start(max_blocking_time=0.1, print_blocking_reports=False)
delivered = 0
for i in range(5):
    gevent.spawn(time.sleep, 0.3).join()
    assert events.wait_for_delivery(5)
    delivered += sum(isinstance(e, events.EventLoopUnblocked) for e in seen) == i + 1
print('unblocked delivered', delivered, 'of 5')
""")
    assert proc.returncode == 0, proc.stderr
    assert "unblocked delivered 5 of 5" in proc.stdout, proc.stdout + proc.stderr
