"""User code that hubmon runs for the program never harms it.

Subscribers, monitoring functions and the reprs of a report run in hubmon's
own threads, each with one Python thread state for its whole life. Whatever
that code does (calls gevent's API, raises anything, forks), the program
goes on and every report is still written once.
"""
from __future__ import annotations

import pytest

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1",
       # Every blockage printed in full, as gevent prints them (tests/test_fleet.py
       # has the one-line repeats).
       "HUBMON_REPEAT_WINDOW": "0"}

def test_subscriber_that_calls_get_hub_and_keeps_a_thread_local(python):
    proc = python("""
import hubmon, gevent, gevent.events, threading, time
local = threading.local()
seen = []
def subscriber(event):
    if isinstance(event, gevent.events.EventLoopBlocked):
        hub = gevent.get_hub()              # a hub for hubmon's events thread: harmless
        local.count = getattr(local, 'count', 0) + 1
        seen.append((local.count, type(hub).__name__, threading.get_ident()))
gevent.events.subscribers.append(subscriber)
for i in range(3):
    gevent.spawn(time.sleep, 0.3).join()
    gevent.sleep(0.2)
gevent.sleep(0.3)
print('SEEN', [s[:2] for s in seen], len({s[2] for s in seen}))
print('MONITORS', len(hubmon.running_monitors()))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "SEEN [(1, 'Hub'), (2, 'Hub'), (3, 'Hub')] 1" in proc.stdout, proc.stdout + proc.stderr
    assert "MONITORS 1" in proc.stdout
    assert proc.stderr.count("appears to be blocked") == 3


def test_monitoring_function_that_calls_get_hub_and_raises_once(python):
    proc = python("""
import hubmon, gevent, threading, time
calls = []
local = threading.local()
def monitoring(hub):
    local.n = getattr(local, 'n', 0) + 1
    calls.append((local.n, type(gevent.get_hub()).__name__))
    if local.n == 2:
        raise SystemExit('once')
gevent.sleep(0)
gevent.get_hub().periodic_monitoring_thread.add_monitoring_function(monitoring, 0.1)
gevent.sleep(1.05)
print('CALLS', len(calls), [n for n, _ in calls] == list(range(1, len(calls) + 1)))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    count = int(proc.stdout.split("CALLS ")[1].split()[0])
    assert 6 <= count <= 12 and "True" in proc.stdout, proc.stdout
    assert proc.stderr.count("raised SystemExit") == 1, proc.stderr
    assert "monitoring" in proc.stderr


@pytest.mark.parametrize("exception", ["SystemExit(4)", "KeyboardInterrupt()",
                                       "greenlet.GreenletExit()", "ValueError('bad')"])
def test_any_exception_from_a_subscriber_is_contained(python, exception):
    proc = python("""
import hubmon, gevent, gevent.events, greenlet, time
from hubmon import events
after = []
def bad(event):
    if isinstance(event, events.EventLoopBlocked):
        raise %s
events.subscribers.append(bad)
events.subscribers.append(after.append)
gevent.events.subscribers.append(after.append)
for _ in range(2):
    gevent.spawn(time.sleep, 0.3).join()
    gevent.sleep(0.2)
gevent.sleep(0.2)
monitor = hubmon.running_monitors()[0]
blocked = [e for e in after if type(e).__name__ == 'EventLoopBlocked']
print('AFTER', len(blocked), 'BLOCKS', monitor.stats()['blocks'], 'RUNNING', monitor.running)
""" % exception, env=ENV)
    assert proc.returncode == 0, proc.stderr
    # both subscriber lists got both events; the stats count both blocks
    assert "AFTER 4 BLOCKS 2 RUNNING True" in proc.stdout, proc.stdout + proc.stderr
    name = exception.split("(")[0].split(".")[-1]
    assert proc.stderr.count("raised %s" % name) == 2, proc.stderr
    assert proc.stderr.count("subscriber <function bad") == 2
    assert proc.stderr.count("appears to be blocked") == 2


@pytest.mark.skipif(__import__("os").environ.get("HUBMON_SANITIZED") == "1",
                    reason="AddressSanitizer keeps freed memory: usage never falls back")
def test_memory_subscriber_raising_system_exit_changes_nothing(python):
    proc = python("""
import hubmon, greenlet, time, psutil
from hubmon import events
seen = []
usages = []
def subscriber(event):
    seen.append(type(event).__name__)
    if type(event).__name__ == 'MemoryUsageThresholdExceeded':
        usages.append(event.mem_usage)
    raise SystemExit(1)
events.subscribers.append(subscriber)
usage = psutil.Process().memory_full_info().uss
limit = usage + 100 * 1024 * 1024
hub = greenlet.greenlet(lambda: None)
m = hubmon.start(hub, max_blocking_time=60, max_memory_usage=limit, memory_monitor_period=0.1)
blob = bytearray(150 * 1024 * 1024)
blob[::4096] = b'\\x01' * len(range(0, len(blob), 4096))
time.sleep(0.8)                     # eight periods over the limit, usage stable
print('OVER', seen.count('MemoryUsageThresholdExceeded'))
print('GROWING', all(a < b for a, b in zip(usages, usages[1:])))
del blob
time.sleep(0.6)
print('UNDER', seen.count('MemoryUsageUnderThreshold'))
m.stop()
""", timeout=60)
    assert proc.returncode == 0, proc.stderr
    over = int(proc.stdout.split("OVER ")[1].split()[0])
    # It fires again only when usage grew past the last event's (gevent's
    # rule), not every period, as it did when the raise skipped the update.
    assert 1 <= over <= 4 and "GROWING True" in proc.stdout, proc.stdout
    assert "UNDER 1" in proc.stdout, proc.stdout


def test_report_repr_of_a_thread_under_patch_all_gives_one_report(python):
    # repr() of a live threading.Thread takes a patched lock: building the
    # report must not make gevent create and run a hub in hubmon's thread,
    # and no second monitor may start for such a hub.
    proc = python("""
from gevent import monkey; monkey.patch_all()
import hubmon, gevent, threading, time
from gevent import monkey as m
real_sleep = m.get_original('time', 'sleep')
stop = threading.Event()
worker = threading.Thread(target=stop.wait)
worker.start()
def culprit(thread):
    real_sleep(0.4)
gevent.spawn(culprit, worker).join()
gevent.sleep(0.3)
stop.set(); worker.join()
print('MONITORS', len(hubmon.running_monitors()))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1, proc.stderr
    assert "MONITORS 1" in proc.stdout


def test_report_never_switches_in_hubmons_thread(python):
    proc = python("""
import hubmon, gevent, gevent.lock, time
class Nasty:
    def __repr__(self):
        gevent.sleep(0.01)          # would switch to a hub in hubmon's thread
        return 'never'
def culprit(arg):
    time.sleep(0.3)
g = gevent.spawn(culprit, Nasty())
g.join()
gevent.sleep(0.2)
print('MONITORS', len(hubmon.running_monitors()))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1, proc.stderr
    assert "never switches greenlets" in proc.stderr       # the repr's error, in the report
    assert "MONITORS 1" in proc.stdout


def test_subscriber_that_forks_leaves_no_hubmon_child_behind(python, tmp_path):
    marker = tmp_path / "children"
    proc = python("""
import hubmon, gevent, os, sys, time
from hubmon import events
def subscriber(event):
    if isinstance(event, events.EventLoopBlocked):
        pid = os.fork()
        if pid == 0:
            with open(%r, 'a') as f:
                f.write('%%d\\n' %% os.getpid())
            return                      # the child goes back into hubmon's thread
        os.waitpid(pid, 0)
        print('CHILD ENDED', flush=True)
events.subscribers.append(subscriber)
gevent.spawn(time.sleep, 0.3).join()
gevent.sleep(1.0)
print('PARENT DONE', os.getpid())
""" % str(marker), env=ENV, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "CHILD ENDED" in proc.stdout and "PARENT DONE" in proc.stdout, proc.stdout + proc.stderr
    pids = [int(p) for p in marker.read_text().split()]
    assert len(pids) == 1
    import os
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or "Z" in open("/proc/%d/stat" % pid).read().split()[2]


def test_monitoring_function_that_runs_a_gevent_hub_never_crashes_exit(python):
    # The events thread gets a gevent hub of its own; it is destroyed there
    # before the interpreter finalizes (a crash at exit, 8 runs in 10, before).
    for _ in range(4):
        proc = python("""
import hubmon, gevent, time
def check(hub):
    gevent.sleep(0.01)
gevent.sleep(0)
gevent.get_hub().periodic_monitoring_thread.add_monitoring_function(check, 0.2)
for i in range(3):
    gevent.spawn(time.sleep, 0.3).join()
    gevent.sleep(0.3)
refused = []
def subscriber(event):
    try:
        hubmon.start()              # in hubmon's events thread
    except RuntimeError as error:
        refused.append(str(error))
hubmon.events.subscribers.append(subscriber)
gevent.spawn(time.sleep, 0.3).join()
gevent.sleep(0.3)
# The events thread's hub ran (gevent.sleep there), and is not monitored.
print('END MONITORS', len(hubmon.running_monitors()), 'REFUSED', "hubmon's own threads" in refused[0])
""", env=ENV)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "END MONITORS 1 REFUSED True" in proc.stdout, proc.stdout


def test_unblocked_fires_for_every_block_even_when_the_thread_ends_at_once(python):
    proc = python("""
import hubmon, gevent, threading, time
from hubmon import events
seen = []
events.subscribers.append(lambda e: seen.append(type(e).__name__))
def work():
    gevent.spawn(time.sleep, 0.3).join()     # the thread ends right after its block
for _ in range(5):
    t = threading.Thread(target=work)
    t.start(); t.join()
gevent.sleep(0.5)
print('BLOCKED', seen.count('EventLoopBlocked'), 'UNBLOCKED', seen.count('EventLoopUnblocked'))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKED 5 UNBLOCKED 5" in proc.stdout, proc.stdout


def test_a_fork_in_a_report_repr_ends_the_child_when_the_repr_returns(python):
    proc = python("""
import hubmon, gevent, os, time
class G(gevent.Greenlet):
    def __repr__(self):
        pid = os.fork()
        if pid == 0:
            print('CHILD', flush=True)   # back to hubmon's capture: the child ends there
            return 'child'
        os.waitpid(pid, 0)
        return '<G>'
G.spawn(time.sleep, 0.3).join()
gevent.sleep(0.3)
print('PARENT DONE', flush=True)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "PARENT DONE" in proc.stdout
    # One child per repr call of the parent's report (two: its header and its
    # tree); a child that went on with the capture would fork again.
    assert 1 <= proc.stdout.count("CHILD") <= 2, proc.stdout
    assert proc.stderr.count("appears to be blocked") == 1
    assert "Traceback" not in proc.stderr, proc.stderr
