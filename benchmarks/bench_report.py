"""Child program: the cost of building a blocked report with many greenlets.

GREENLETS gevent greenlets are spawned and left sleeping; then one more
greenlet blocks the hub (it waits on an unpatched ``threading.Event``), and
a separate thread, as a monitor's thread would, builds the reports and
times each while holding the GIL, with the wall clock and with the
thread's CPU clock (on a shared machine the wall clock also counts the
time spent waiting for a core):

* everything a hubmon Monitor does holding the GIL when its hub is blocked
  (``Monitor._on_blocked``: find the blocked greenlet from its address,
  build the default report, fire the event; printing is off);
* its two parts alone: the default report, ``format_blocked_report`` with
  the monitor's default bound (``hubmon.config.report_greenlet_limit``), and
  finding the greenlet (``hubmon.report.find_greenlet``);
* hubmon's full tree on demand, ``hubmon.format_run_info(max_greenlets=0)``;
* ``gevent.util.format_run_info()`` (its defaults: greenlet stacks included);
* the report gevent's monitor thread really builds, which leaves out the
  greenlets' stacks (``GreenletTracer.did_block_hub_report``).

The variants alternate, REPEATS times each, each after a full garbage
collection; the median is reported.

Usage: bench_report.py GREENLETS REPEATS
"""
from __future__ import annotations

import gc
import random
import sys
import threading
import time


def main() -> None:
    count, repeats = int(sys.argv[1]), int(sys.argv[2])
    import hubmon
    import hubmon.monitor
    import hubmon.report
    import gevent
    import gevent.util
    from gevent import _tracer as gevent_tracer

    import common

    hub = gevent.get_hub()
    sleepers = [gevent.spawn(gevent.sleep, 3600) for _ in range(count)]
    # The hub starts only so many greenlets per loop iteration: wait until
    # every one is suspended in its sleep.
    for _ in range(1000):
        gevent.sleep(0.01)
        if all(g.gr_frame is not None for g in sleepers):
            break
    else:
        raise SystemExit("the sleepers did not all start")
    # A monitor with a threshold it never reaches: only its report path is
    # timed, called from the measuring thread as the native thread would.
    monitor = hubmon.start(hub=hub, max_blocking_time=3600, print_blocking_reports=False)
    hub_ident = threading.get_ident()
    release = threading.Event()
    results = {}
    errors = []
    blocked_holder = []

    def measure():
        try:
            blocked = blocked_holder[0]
            me = threading.get_ident()
            limit = hubmon.config.report_greenlet_limit or None
            # Only the tracer's report method is used; creating it installs it.
            tracer = gevent_tracer.GreenletTracer()
            tracer.kill()

            variants = {
                "hubmon_event": lambda: monitor._on_blocked(0.5, id(blocked), 0.0, -1) and [],
                "hubmon_default": lambda: hubmon.report.format_blocked_report(
                    greenlet=blocked, thread_ident=hub_ident, duration=0.5, threshold=0.1,
                    hub=hub, max_greenlets=limit, exclude_thread_ids=(me,),
                    monitor_repr="<benchmark>"),
                "hubmon_find_greenlet": lambda: [hubmon.report.find_greenlet(id(blocked))],
                "hubmon_full": lambda: hubmon.format_run_info(max_greenlets=0),
                "gevent_format_run_info": lambda: gevent.util.format_run_info(),
                "gevent_monitor_report": lambda: tracer.did_block_hub_report(
                    hub, blocked, dict(greenlet_stacks=False, current_thread_ident=me)),
            }
            times = {name: [] for name in variants}
            cpu = {name: [] for name in variants}
            lines = {}
            names = list(variants)
            shuffler = random.Random(7)
            for _ in range(repeats):
                shuffler.shuffle(names)
                for name in names:
                    # Every variant starts from the same state of the garbage
                    # collector, not with the debts of the one before.
                    gc.collect()
                    cpu_start = time.thread_time()
                    start = time.perf_counter()
                    report = variants[name]()
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.thread_time() - cpu_start)
                    lines[name] = sum(str(item).count("\n") + 1 for item in report)
                    del report
            found = hubmon.report.find_greenlet(id(blocked)) is blocked
            results.update(times=times, cpu=cpu, lines=lines, found_blocked=found)
        except BaseException as ex:  # pragma: no cover - reported to the parent
            import traceback
            errors.append(traceback.format_exc())
            del ex
        finally:
            release.set()

    def blocker():
        blocked_holder.append(gevent.getcurrent())
        # gevent's monitor thread is not running here; this greenlet blocks
        # the hub (threading is not monkey-patched) while the reports are
        # built from another thread, as a monitor would.
        thread = threading.Thread(target=measure, name="report-benchmark")
        thread.start()
        release.wait()
        thread.join()

    gevent.spawn(blocker).join()
    monitor.stop()
    if errors:
        sys.stderr.write(errors[0])
        raise SystemExit(1)
    greenlets = sum(1 for _ in hubmon.report.find_greenlets())
    common.emit(dict(results, greenlets=greenlets, sleepers=count))
    for g in sleepers:
        g.kill(block=False)


if __name__ == "__main__":
    main()
