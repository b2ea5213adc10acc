"""Many hubs in many threads, watched by the one native thread."""
from __future__ import annotations

import pytest

pytest.importorskip("gevent")


def test_sixteen_hubs_three_blocks_each_reported_once_in_the_right_thread(python):
    proc = python("""
import hubmon, gevent, threading, time, os, sys
from hubmon import events
seen = []
events.subscribers.append(seen.append)
BLOCKERS = {3, 8, 13}
# The workers wait for one another switching to their hubs: a real barrier
# would block each hub until the last thread started, which on a busy
# machine takes longer than the threshold (and is rightly reported).
arrived = set()
go = threading.Event()
done = threading.Event()
idents = {}
tids = set()

def worker(n):
    idents[n] = threading.get_ident()
    hub = gevent.get_hub()
    def tick():
        while not done.is_set():
            gevent.sleep(0.01)
    ticker = gevent.spawn(tick)
    gevent.sleep(0.05)
    arrived.add(n)
    while not go.is_set():
        gevent.sleep(0.005)
    if n in BLOCKERS:
        def blocker():
            time.sleep(0.6)
        g = gevent.spawn(blocker)
        g.name = 'blocker-%d' % n
        g.join()
    while not done.is_set():
        gevent.sleep(0.02)
    ticker.join()

threads = [threading.Thread(target=worker, args=(n,), name='worker-%d' % n) for n in range(16)]
for t in threads:
    t.start()
while len(arrived) < 16:
    time.sleep(0.005)
go.set()
time.sleep(0.2)
native = hubmon._core.sampler_native_id()
names = [open('/proc/self/task/%s/comm' % t).read().strip() for t in os.listdir('/proc/self/task')]
print('native threads', names.count('hubmon'), native > 0)
print('monitors', len(hubmon.running_monitors()))
time.sleep(1.0)
done.set()
for t in threads:
    t.join()
blocked = [e for e in seen if isinstance(e, events.EventLoopBlocked)]
print('blocked', len(blocked))
by_thread = {}
for e in blocked:
    by_thread.setdefault(e.hub.thread_ident, []).append(e)
for n in sorted(BLOCKERS):
    got = by_thread.get(idents[n], [])
    names = [getattr(e.greenlet, 'name', None) for e in got]
    print('thread', n, len(got), names, ('thread id 0x%x' % idents[n]) in '\\n'.join(got[0].info))
""", env={"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "native threads 1 True" in out
    assert "monitors 17" in out or "monitors 16" in out
    assert "blocked 3" in out, out + proc.stderr
    for n in (3, 8, 13):
        assert "thread %d 1 ['blocker-%d'] True" % (n, n) in out
