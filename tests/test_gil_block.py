"""Blocks by C calls that hold the GIL are seen while they still run."""
from __future__ import annotations

import re
import sys

import pytest

from conftest import GIL_HOLDING_CALL

pytest.importorskip("gevent")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux timers")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"}

@pytest.mark.parametrize("kind", ["sum", "regex"])
def test_gil_holding_call_is_dumped_while_it_runs_then_reported(python, kind):
    if kind == "sum":
        setup = "def call(scale): return sum(range(int(5_000_000 * scale)))"
    else:
        # Each extra character doubles the work of this catastrophic pattern.
        setup = ("import re, math\n"
                 "def call(scale): return re.match(r'(a+)+$', 'a' * (18 + max(0, round(math.log2(scale)))) + 'b')")
    program = setup + """
import hubmon, gevent, time, sys
from hubmon import events
seen = []
events.subscribers.append(seen.append)
# Calibrate the call to last about 1.3 seconds on this machine, in CPU
# time: on a busy machine the wall clock also counts the time the process
# waited for a CPU, which would make the calibrated call far too short.
scale = 1.0
while True:
    start = time.thread_time()
    call(scale)
    took = time.thread_time() - start
    if took > 0.3:
        break
    scale *= 2
scale *= 1.3 / took
def crunch():
    call(scale)
gevent.sleep(0.05)
start = time.perf_counter()
gevent.spawn(crunch).join()
took = time.perf_counter() - start
sys.stderr.write('MARK: the call returned after %.2f s\\n' % took)
sys.stderr.flush()
gevent.sleep(0.1)
print('events', [type(e).__name__ for e in seen if 'Loop' in type(e).__name__])
print('duration', seen[0].duration if seen else None, took)
"""
    # The line of crunch() that makes the call, in scenario.py.
    crunch_line = program.splitlines().index("def crunch():") + 2
    proc = python(program, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    header = err.find("the GIL is held")
    mark = err.find("MARK: the call returned")
    assert 0 <= header < mark, err
    dump = err[header:mark]
    # faulthandler's dump names the culprit function and its line, written
    # while the call still ran.
    assert "Current thread" in dump
    assert re.search(r'File ".*scenario\.py", line %d in crunch\n' % crunch_line, dump), dump
    # Then the full report and the events once the GIL is free.
    assert err.count("appears to be blocked") == 1
    # (it may come just before or just after the program's own line: both
    # threads want the GIL when the call returns)
    assert err.find("appears to be blocked") > header
    assert "The GIL was held for" in err
    assert "events ['EventLoopBlocked', 'EventLoopUnblocked']" in proc.stdout
    duration, took = proc.stdout.split("duration ", 1)[1].split()
    assert float(duration) > 0.5 * float(took)


def test_gil_dump_can_be_turned_off(python):
    proc = python("""
import hubmon, gevent, time, sys
def crunch():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        sum(range(200_000))
gevent.spawn(crunch).join()
""", env=dict(ENV, HUBMON_GIL_SIGNAL="0"))
    assert proc.returncode == 0, proc.stderr
    assert "the GIL is held" not in proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1


def test_python_loop_that_yields_the_gil_gets_no_dump(python):
    proc = python("""
import hubmon, gevent, time
def spin():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        pass
gevent.spawn(spin).join()
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "the GIL is held" not in proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1


def test_assert_switches_fails_a_body_whose_c_call_held_the_gil(python):
    # The native thread cannot sample while it waits for the GIL that the
    # call holds; when it gets the GIL it sees that nothing switched, so the
    # stretch lasted at least until then. Each of 5 bodies must fail.
    proc = python("GIL_SECONDS = 0.5\n" + GIL_HOLDING_CALL + """
import gevent
from hubmon import assert_switches, FailedToSwitch
failed = 0
for i in range(5):
    try:
        with assert_switches(max_blocking_time=0.1) as scope:
            gevent.spawn(crunch).join()
    except FailedToSwitch:
        failed += 1
    else:
        print("passed with longest_gap %.3f" % scope.longest_gap)
print("failed", failed, "of 5")
""", env={"HUBMON_GIL_SIGNAL": "0"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "failed 5 of 5" in proc.stdout, proc.stdout + proc.stderr
