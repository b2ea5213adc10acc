"""The process-wide memory watch and its events."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("psutil")


@pytest.mark.skipif(bool(os.environ.get("HUBMON_SANITIZED")),
                    reason="AddressSanitizer keeps freed memory: usage never falls back")
def test_exceeded_fires_when_growing_and_under_fires_once(python):
    proc = python("""
import hubmon, greenlet, time, psutil
from hubmon import events
seen = []
events.subscribers.append(seen.append)
usage = psutil.Process().memory_full_info().uss
limit = usage + 150 * 1024 * 1024
hub = greenlet.greenlet(lambda: None)
m = hubmon.start(hub, max_blocking_time=60, max_memory_usage=limit, memory_monitor_period=0.1)
time.sleep(0.4)
print('quiet', len(seen))
blob = bytearray(200 * 1024 * 1024)          # over the limit, every page touched at C speed
blob[::4096] = b'\x01' * len(range(0, len(blob), 4096))
time.sleep(0.5)
exceeded = [e for e in seen if isinstance(e, events.MemoryUsageThresholdExceeded)]
print('exceeded', len(exceeded), exceeded[0].mem_usage > limit, exceeded[0].max_allowed == limit)
print('growing', all(a.mem_usage < b.mem_usage for a, b in zip(exceeded, exceeded[1:])))
time.sleep(0.5)                              # stable usage: a repeat only if it grew
again = [e for e in seen if isinstance(e, events.MemoryUsageThresholdExceeded)]
print('still', len(again) <= 4      # ten periods over the limit by now
      and all(a.mem_usage < b.mem_usage for a, b in zip(again, again[1:])))
del blob
time.sleep(0.5)
under = [e for e in seen if isinstance(e, events.MemoryUsageUnderThreshold)]
print('under', len(under), under[0].mem_usage <= limit, under[0].max_memory_usage >= exceeded[0].mem_usage)
time.sleep(0.4)
print('under again', len([e for e in seen if isinstance(e, events.MemoryUsageUnderThreshold)]))
m.stop()
""", timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "quiet 0" in out
    # More than one exceeded event only while usage still grows (gevent's
    # rule: each one reports a higher usage), never one per period (five).
    count = int(out.split("exceeded ")[1].split()[0])
    assert 1 <= count <= 4 and "exceeded %d True True" % count in out, out
    assert "growing True" in out, out
    assert "still True" in out
    assert "under 1 True True" in out
    assert "under again 1" in out


def test_memory_is_sampled_once_per_process_not_per_hub(python):
    proc = python("""
import hubmon, greenlet, time
from hubmon import events
seen = []
events.subscribers.append(seen.append)
hubs = [greenlet.greenlet(lambda: None) for _ in range(4)]
checks = []
original_check = hubmon._memory.memory_watch.check
def counting_check():
    checks.append(time.monotonic())
    return original_check()
hubmon._memory.memory_watch.check = counting_check
ms = [hubmon.start(h, max_blocking_time=60, max_memory_usage=1, memory_monitor_period=0.1) for h in hubs]
time.sleep(1.0)
# one measurement per period for the whole process, not one per hub
print('checks', len(checks), 'events', len(seen) > 0)
""")
    assert proc.returncode == 0, proc.stderr
    checks = int(proc.stdout.split()[1])
    assert 3 <= checks <= 13, proc.stdout
    assert "events True" in proc.stdout


def test_memory_events_reach_gevent_subscribers(python):
    pytest.importorskip("gevent")
    proc = python("""
import hubmon, gevent, gevent.events, time
got = []
gevent.events.subscribers.append(got.append)
hubmon.start(max_blocking_time=60, max_memory_usage=1, memory_monitor_period=0.1)
time.sleep(0.3)
print([type(e).__module__ + '.' + type(e).__name__ for e in got
       if 'Memory' in type(e).__name__])
""")
    assert proc.returncode == 0, proc.stderr
    assert "gevent.events.MemoryUsageThresholdExceeded" in proc.stdout


def test_without_psutil_a_clear_warning(python):
    proc = python("""
import sys, warnings
sys.modules['psutil'] = None        # psutil cannot be imported
import hubmon, greenlet
hub = greenlet.greenlet(lambda: None)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    m = hubmon.start(hub, max_blocking_time=60, max_memory_usage=10**9)
print([(w.category.__name__, str(w.message)) for w in caught])
print(m.running)
""")
    assert proc.returncode == 0, proc.stderr
    assert "MonitorWarning" in proc.stdout and "psutil" in proc.stdout
    assert "True" in proc.stdout


def test_gevent_memory_settings_from_environment(python):
    pytest.importorskip("gevent")
    proc = python("""
import hubmon, gevent, time
from hubmon import events
seen = []
events.subscribers.append(seen.append)
gevent.sleep(0.4)
print(len([e for e in seen if isinstance(e, events.MemoryUsageThresholdExceeded)]) >= 1)
""", env={"GEVENT_MONITOR_THREAD_ENABLE": "1", "GEVENT_MONITOR_MEMORY_MAX": "1kb",
          "GEVENT_MONITOR_MEMORY_PERIOD": "0.1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_a_limit_removed_and_set_again_still_ends_the_run_with_under(python):
    # gevent's monitor keeps its exceeded state while no limit is set: the
    # next limit under which usage falls ends the run with one Under event.
    proc = python("""
import hubmon, greenlet, time
from hubmon import events
seen = []
events.subscribers.append(seen.append)
hub = greenlet.greenlet(lambda: None)
m = hubmon.start(hub, max_blocking_time=60)
m.set_memory_limit(1024 * 1024, 0.1)           # 1 MiB: exceeded at once
deadline = time.monotonic() + 10
while not seen and time.monotonic() < deadline:
    time.sleep(0.05)
m.set_memory_limit(None)                       # no limit for a while
time.sleep(0.3)
m.set_memory_limit(2**62, 0.1)                 # far above the usage
deadline = time.monotonic() + 10
while len(seen) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.3)
hubmon.events.wait_for_delivery(5)
print('events', [type(e).__name__ for e in seen])
m.stop()
""", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "events ['MemoryUsageThresholdExceeded', 'MemoryUsageUnderThreshold']" in proc.stdout, (
        proc.stdout + proc.stderr)
