"""No leaks: per switch, per greenlet, per monitor."""
from __future__ import annotations

import os

# AddressSanitizer keeps freed memory in quarantine, so the resident set
# says nothing about leaks in the sanitizer run (.ci/sanitize); there the
# tracemalloc, gc and refcount checks remain.
SANITIZED = bool(os.environ.get("HUBMON_SANITIZED"))


def test_a_million_switches_grow_memory_by_under_one_megabyte(python):
    proc = python("""
import gc, greenlet, psutil, tracemalloc, hubmon
hub = greenlet.greenlet(lambda: None)
monitor = hubmon.start(hub, max_blocking_time=60)
def pingpong(n):
    main = greenlet.getcurrent()
    def other():
        while True:
            main.switch()
    g = greenlet.greenlet(other)
    for _ in range(n):
        g.switch()
pingpong(20_000)              # warm up
gc.collect()
tracemalloc.start()
objects = len(gc.get_objects())
rss = psutil.Process().memory_info().rss
pingpong(500_000)             # 1,000,000 switches
gc.collect()
grown = psutil.Process().memory_info().rss - rss
traced, _ = tracemalloc.get_traced_memory()
print('switches', monitor.stats()['switches'] >= 1_000_000)
print('rss grown', grown)
print('traced', traced)
print('objects', len(gc.get_objects()) - objects)
""", timeout=120)
    assert proc.returncode == 0, proc.stderr
    values = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines())
    assert values["switches"] == "True"
    assert SANITIZED or int(values["rss grown"]) < 1_000_000
    assert int(values["traced"]) < 100_000
    assert int(values["objects"]) < 50


def test_finished_greenlets_are_collectable_while_monitored():
    import gc
    import weakref

    import greenlet

    import hubmon
    hub = greenlet.greenlet(lambda: None)
    with hubmon.start(hub, max_blocking_time=60):
        refs = []
        for _ in range(100):
            g = greenlet.greenlet(lambda: None)
            g.switch()
            refs.append(weakref.ref(g))
        del g
        gc.collect()
        assert all(r() is None for r in refs)


def test_starting_and_stopping_ten_thousand_monitors_leaks_nothing(python):
    proc = python("""
import gc, sys, greenlet, psutil, tracemalloc, hubmon
def cycle(n):
    for _ in range(n):
        hub = greenlet.greenlet(lambda: None)
        m = hubmon.start(hub, max_blocking_time=0.5)
        # Called at once (gevent's rule); id(hub) does not raise, so no
        # error report imports traceback in the middle of the measure.
        m.add_monitoring_function(id, 10)
        m.stats()
        m.stop()
cycle(500)                   # warm up
gc.collect()
tracemalloc.start()
objects = len(gc.get_objects())
rss = psutil.Process().memory_info().rss
refs = sys.gettotalrefcount() if hasattr(sys, 'gettotalrefcount') else 0
cycle(10_000)
gc.collect()
print('rss grown', psutil.Process().memory_info().rss - rss)
print('traced', tracemalloc.get_traced_memory()[0])
print('objects', len(gc.get_objects()) - objects)
print('monitors', len(hubmon.running_monitors()))
print('handlers', len(hubmon._dispatch._handlers))
""", timeout=180)
    assert proc.returncode == 0, proc.stderr
    values = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines())
    assert SANITIZED or int(values["rss grown"]) < 1_000_000
    assert int(values["traced"]) < 100_000
    assert int(values["objects"]) < 50
    assert values["monitors"] == "0" and values["handlers"] == "0"


def test_tracer_refcounts_are_balanced():
    import sys

    import greenlet

    from hubmon import _core
    hub = greenlet.greenlet(lambda: None)
    current = greenlet.getcurrent()
    before = (sys.getrefcount(hub), sys.getrefcount(current))
    tracer = _core.ThreadTracer()
    records = [_core.Record(hub, current, 0.1) for _ in range(100)]
    tracer_refs = sys.getrefcount(tracer)
    assert tracer.install()
    for r in records:
        tracer.add(r)
        r.start()
        r.stats(finish=True)
    greenlet.greenlet(lambda: None).switch()
    assert all(r.stats()["switches"] == 2 for r in records)
    for r in reversed(records):
        assert tracer.remove(r)
        r.stop()
    assert tracer.uninstall()
    assert sys.getrefcount(tracer) == tracer_refs
    del records
    assert (sys.getrefcount(hub), sys.getrefcount(current)) == before
    assert greenlet.gettrace() is None
