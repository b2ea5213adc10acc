"""Child program: the CPU time a monitor's thread uses while the hub is idle.

The hub starts (and with it the monitor), then the main greenlet sleeps in
gevent for the whole window: no greenlet runs, only the monitor's thread
wakes. The monitor's thread is found as the thread that appeared when the
hub started (for hubmon, checked against ``_core.sampler_native_id()``); its
CPU time is read from the kernel (``/proc/self/task/<tid>/schedstat``, in
nanoseconds) before and after the window. The whole process's CPU time is
measured too, so that the variant without a monitor gives the baseline.

Usage: bench_idle.py none|gevent|hubmon SECONDS
"""
from __future__ import annotations

import os
import sys
import time


def main() -> None:
    variant, seconds = sys.argv[1], float(sys.argv[2])
    if variant == "hubmon":
        import hubmon
    import gevent

    import common

    if variant == "gevent" and "hubmon" in sys.modules:
        raise SystemExit("hubmon must not be imported with gevent's monitor")
    before = set(common.task_ids())
    gevent.sleep(0.3)                   # the hub runs: its monitor starts
    new = sorted(set(common.task_ids()) - before)
    hub = gevent.get_hub()
    monitor = hub.periodic_monitoring_thread
    monitor_name = None if monitor is None else "%s.%s" % (
        type(monitor).__module__, type(monitor).__name__)
    tid = None
    if variant == "hubmon":
        tid = hubmon._core.sampler_native_id()
        if tid not in new:
            raise SystemExit("hubmon's native thread %r is not among the new threads %r" % (tid, new))
    elif variant == "gevent":
        if len(new) != 1:
            raise SystemExit("expected one new thread for gevent's monitor, found %r" % (new,))
        tid = new[0]
    elif new:
        raise SystemExit("no monitor, yet new threads appeared: %r" % (new,))

    gevent.sleep(0.2)
    wall0 = time.perf_counter()
    proc0 = time.process_time_ns()
    thread0 = common.thread_cpu_ns(tid) if tid else None
    ticks0 = common.thread_ticks(tid) if tid else None
    gevent.sleep(seconds)
    thread1 = common.thread_cpu_ns(tid) if tid else None
    ticks1 = common.thread_ticks(tid) if tid else None
    proc1 = time.process_time_ns()
    wall = time.perf_counter() - wall0
    common.emit({
        "variant": variant,
        "monitor": monitor_name,
        "wall": wall,
        "thread_cpu_ns": None if tid is None else thread1 - thread0,
        "thread_ticks": None if tid is None else ticks1 - ticks0,
        "clock_ticks_per_second": os.sysconf("SC_CLK_TCK"),
        "process_cpu_ns": proc1 - proc0,
        "sampler_period": hubmon._core.sampler_period() if variant == "hubmon" else None,
    })


if __name__ == "__main__":
    main()
