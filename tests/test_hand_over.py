"""Time the native thread spends handing events to Python is never charged to a hub.

While the native thread holds the GIL to hand an event over (capturing a
report, running a report filter), a hub that wants the GIL waits for hubmon,
not for its own greenlet; and while it hands over, it samples nothing, so a
hub that switched many times meanwhile has a stretch whose start is unknown.
Neither may turn into a report blaming a greenlet that switched in time.
"""
from __future__ import annotations

import json
import threading

import pytest

from conftest import GIL_HOLDING_CALL

pytest.importorskip("gevent")

# A threshold well above the stretches the programs below make (0.15 s and
# 0.25 s), so that only time hubmon took can push one over it.
ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.3"}


def events_of(proc) -> list:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_gil_held_by_a_hand_over_is_not_charged_to_another_hub(python):
    # A second hub's greenlet switches every 0.15 s (0.05 s of work, an
    # unpatched 0.1 s sleep). Each report of the main hub's blocks runs a
    # filter that, once that greenlet has just switched in, holds the GIL for
    # 0.4 s in a C call: the second hub's stretch then lasts past the
    # threshold, all of it but 0.15 s waiting for hubmon's native thread.
    proc = python("GIL_SECONDS = 0.4\n" + GIL_HOLDING_CALL + """
import json, threading, time
import gevent, hubmon
from hubmon import events

main_hub = gevent.get_hub()
phase = ["idle"]
phases_seen = []
def hold_the_gil(culprit, hub, duration):
    if hub is main_hub:
        give_up = time.monotonic() + 5
        while phase[0] != "work" and time.monotonic() < give_up:
            time.sleep(0.001)
        phases_seen.append(phase[0])
        crunch()
    return True
events.report_filters.append(hold_the_gil)
seen = []
events.subscribers.append(seen.append)

stop = threading.Event()
def other_hub():
    while not stop.is_set():
        gevent.sleep(0)
        phase[0] = "work"
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
        phase[0] = "sleep"
        time.sleep(0.1)
worker = threading.Thread(target=other_hub)
worker.start()
gevent.sleep(0.5)
for _ in range(3):
    gevent.spawn(time.sleep, 0.8).join()
    gevent.sleep(0.3)
stop.set()
worker.join()
assert events.wait_for_delivery(10)
blocked = [e for e in seen if isinstance(e, events.EventLoopBlocked)]
print(json.dumps([phases_seen, [e.hub is main_hub for e in blocked]]))
""", env=ENV, timeout=120)
    phases_seen, main_hub_blocked = events_of(proc)
    assert phases_seen == ["work"] * 3, phases_seen
    assert main_hub_blocked == [True] * 3, proc.stderr


def test_a_stretch_after_a_long_hand_over_is_judged_from_its_end(python):
    # A report filter keeps the native thread away for 1 s without the GIL
    # (the docs forbid it; the host must not suffer from it) while the hub
    # switches some hundred times; then an unpatched 0.25 s sleep. The sleep's
    # stretch started at some switch no sample saw: it must not be taken to
    # have started when the first block ended.
    proc = python("""
import json, time
import gevent, hubmon
from hubmon import events

back = []
def slow_filter(culprit, hub, duration):
    if not back:
        time.sleep(1.0)
        back.append(True)
        time.sleep(0.01)
    return True
events.report_filters.append(slow_filter)
seen = []
events.subscribers.append(seen.append)

def culprit():
    time.sleep(0.45)
gevent.spawn(culprit).join()
switches = 0
while not back:
    gevent.sleep(0.005)
    switches += 1
time.sleep(0.25)
gevent.sleep(0.5)
assert events.wait_for_delivery(10)
print(json.dumps([switches, [type(e).__name__ for e in seen]]))
""", env=ENV, timeout=120)
    switches, kinds = events_of(proc)
    assert switches > 10, switches
    assert kinds == ["EventLoopBlocked", "EventLoopUnblocked"], (kinds, proc.stderr)


def test_a_blockage_whose_thread_ends_while_its_report_is_built_still_ends(python):
    # The hub's thread ends while the native thread builds the report (a
    # report filter that takes 0.5 s stands for slow reprs): the monitor
    # stops with the thread before the report is done, and the blockage
    # must still get its EventLoopUnblocked, timed from the block's start to
    # the thread's end, not to the report's.
    proc = python("""
import json, threading, time
import gevent, hubmon
from hubmon import events
seen = []
events.subscribers.append(seen.append)
def slow_filter(culprit, hub, duration):
    time.sleep(0.5)
    return True
events.report_filters.append(slow_filter)
def worker():
    hubmon.start(max_blocking_time=0.1)
    gevent.sleep(0.01)
    time.sleep(0.3)
thread = threading.Thread(target=worker)
thread.start()
thread.join()
time.sleep(1.0)
assert events.wait_for_delivery(10)
print(json.dumps([[type(e).__name__, e.duration] for e in seen]))
""", env={"GEVENT_MONITOR_THREAD_ENABLE": "false"})
    seen = events_of(proc)
    assert [kind for kind, _ in seen] == ["EventLoopBlocked", "EventLoopUnblocked"], proc.stderr
    assert 0.25 <= seen[1][1] < 0.45, seen


def test_a_block_contradicted_only_for_a_moment_is_still_reported():
    # The native thread may get the GIL while the hub's thread is in the
    # middle of a switch: the culprit looks suspended and the switch is not
    # counted yet. That is no sign of a blind trace function: a moment later
    # the switch is counted. A contradiction that lasts is one.
    from hubmon import monitor

    class SwitchCountedLate:
        reads = 0

        @property
        def switches(self):
            self.reads += 1
            return 7 if self.reads < 3 else 8

    class Suspended:
        gr_frame = object()     # a suspended greenlet has a frame

    class Blind:
        switches = 7

    assert monitor._plausible(SwitchCountedLate(), 7, hub=object(), culprit=Suspended())
    assert not monitor._plausible(Blind(), 7, hub=object(), culprit=Suspended())


def test_a_report_built_after_its_culprit_returned_says_the_block_ended():
    # The native thread can get the GIL just after the culprit returned and
    # before the switch back to the hub is counted: the culprit is dead, its
    # block is over, and the report must say so instead of showing the stack
    # of whatever runs next as the block's.
    import greenlet

    from hubmon import _blocked, _profile

    hub = greenlet.greenlet(lambda: None)
    culprit = greenlet.greenlet(lambda: None)
    culprit.switch()
    assert culprit.dead
    captured = _blocked.capture(
        current=id(culprit), duration=0.2, gil_wait=0.0, thread_ident=threading.get_ident(),
        threshold=0.1, hub=hub, max_greenlets=None, owner_repr="monitor",
        gil_note=lambda: "", ended=None)
    assert captured.culprit is culprit
    assert any("The block ended before this report could be built" in line
               for line in captured.lines), captured.lines
    assert captured.stack == _profile.UNSAMPLED
