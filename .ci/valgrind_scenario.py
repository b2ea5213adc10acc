"""A focused workload for valgrind: every native code path hubmon has."""
import gc
import io
import time

import greenlet

import hubmon
from hubmon import _core

hub = greenlet.greenlet(lambda: None)
stream = io.StringIO()
seen = []
hubmon.events.subscribers.append(seen.append)
monitor = hubmon.start(hub, max_blocking_time=0.05, stream=stream, max_memory_usage=1,
                       memory_monitor_period=0.1)
monitor.add_monitoring_function(lambda h: None, 0.02)
main = greenlet.getcurrent()


def other():
    while True:
        main.switch()


g = greenlet.greenlet(other)
for _ in range(20000):
    g.switch()
blocker = greenlet.greenlet(lambda: time.sleep(0.5))
blocker.switch()
hub.switch()                     # the hub runs: unblocked
print(monitor.stats())
for _ in range(200):
    h = greenlet.greenlet(lambda: None)
    m = hubmon.start(h, max_blocking_time=0.2)
    m.stats()
    m.stop()
with hubmon.assert_switches(0.05) as scope_cm:
    pass
scope = _core.Record(None, greenlet.getcurrent(), 0.05, mode="any", report=False)
tracer = _core.ThreadTracer()
tracer.add(scope)
scope.start()
time.sleep(0.1)
print(scope.stats(finish=True)["longest_gap"] > 0.05)
tracer.remove(scope)
scope.stop()
monitor.stop()
_core.shutdown()
gc.collect()
assert any(type(e).__name__ == "EventLoopBlocked" for e in seen), seen
print("valgrind scenario done")
