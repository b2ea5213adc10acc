"""fork(): the child keeps monitoring, the parent is unaffected, no deadlock."""
from __future__ import annotations

import pytest

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"}

CHILD_BLOCKS = """
def child_work():
    seen.clear()
    gevent.spawn(spin, 0.4).join()
    # The events come from the native thread once it has the GIL: on a busy
    # machine, later than the hub's next run. EventLoopUnblocked comes last.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            isinstance(e, events.EventLoopUnblocked) for e in seen):
        gevent.sleep(0.01)
    blocked = [e for e in seen if isinstance(e, events.EventLoopBlocked)]
    sys.stderr.write('CHILD %d reports=%d native=%s %r\\n' % (
        os.getpid(), len(blocked), hubmon._core.sampler_native_id() > 0,
        [(e.hub_itself, str(e.cause), round(e.duration, 3)) for e in blocked]))
    sys.stderr.flush()
"""

PRELUDE = """
import hubmon, gevent, os, sys, time
from hubmon import events
seen = []
events.subscribers.append(seen.append)
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
gevent.sleep(0.01)      # the hub runs: monitoring started
def wait_child(pid):
    # Waiting without blocking the parent's hub (which is monitored too).
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        gevent.sleep(0.01)
""" + CHILD_BLOCKS


def assert_parent_quiet(proc):
    assert "PARENT reports=0" in proc.stdout, proc.stdout + proc.stderr


def test_os_fork_child_reports_its_block_once(python):
    proc = python(PRELUDE + """
import gevent.os
pid = os.fork()
if pid == 0:
    child_work()
    os._exit(0)
status = wait_child(pid)
gevent.sleep(0.2)
print('PARENT reports=%d status=%d' % (len([e for e in seen if isinstance(e, events.EventLoopBlocked)]), status))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "reports=1 native=True" in proc.stderr
    assert_parent_quiet(proc)
    assert proc.stderr.count("appears to be blocked") == 1


def test_gevent_fork_child_reports_its_block_once(python):
    proc = python(PRELUDE + """
import gevent.os
pid = gevent.fork()
if pid == 0:
    child_work()
    os._exit(0)
status = gevent.os.waitpid(pid, 0)   # gevent reaps its forked children itself
print('PARENT reports=%d' % len([e for e in seen if isinstance(e, events.EventLoopBlocked)]))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "reports=1 native=True" in proc.stderr
    assert_parent_quiet(proc)


def test_multiprocessing_fork_child_reports(python):
    proc = python(PRELUDE + """
import multiprocessing
def target():
    child_work()
if __name__ == '__main__':
    ctx = multiprocessing.get_context('fork')
    p = ctx.Process(target=target)
    p.start()
    while p.is_alive():
        gevent.sleep(0.01)
    p.join()
    print('PARENT reports=%d exit=%s' % (len([e for e in seen if isinstance(e, events.EventLoopBlocked)]), p.exitcode))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "reports=1 native=True" in proc.stderr
    assert "exit=0" in proc.stdout
    assert_parent_quiet(proc)


def test_preload_pattern_every_worker_reports_its_own_block(python):
    # Like gunicorn --preload with gevent workers: the master loads the app
    # (hubmon, gevent, a running hub), then forks workers that run their own loop.
    proc = python(PRELUDE + """
from gevent import monkey
workers = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        gevent.get_hub().loop.reinit()
        gevent.sleep(0.01)
        child_work()
        os._exit(0)
    workers.append(pid)
for pid in workers:
    wait_child(pid)
print('PARENT reports=%d' % len([e for e in seen if isinstance(e, events.EventLoopBlocked)]))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("reports=1 native=True") == 3
    assert_parent_quiet(proc)


def test_fork_during_samples_and_reports_never_deadlocks(python):
    # Another thread's hub is blocked again and again, so the native thread is
    # forever sampling or reporting (with a subscriber that takes its time)
    # while the main thread forks 40 children, each of which must monitor.
    proc = python(PRELUDE + """
import threading
done = threading.Event()
def slow(event):
    time.sleep(0.02)
events.subscribers.append(slow)
def busy_thread():
    while not done.is_set():
        gevent.spawn(spin, 0.15).join()
        gevent.sleep(0.001)
t = threading.Thread(target=busy_thread)
t.start()
ok = 0
for i in range(40):
    pid = os.fork()
    if pid == 0:
        try:
            child_work()
        finally:
            os._exit(0)
    status = wait_child(pid)
    ok += status == 0
done.set()
t.join()
print('PARENT forks ok', ok)
""", env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "PARENT forks ok 40" in proc.stdout
    children = [line for line in proc.stderr.splitlines() if line.startswith("CHILD")]
    odd = [line for line in children if "reports=1 native=True" not in line]
    assert len(children) == 40 and not odd, (len(children), odd)
