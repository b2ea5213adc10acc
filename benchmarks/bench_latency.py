"""Child program: detection latency and reports per blockage of one monitor.

Run with ``GEVENT_MONITOR_THREAD_ENABLE=true`` and ``GEVENT_MAX_BLOCKING_TIME``
set. Variant ``gevent`` never imports hubmon, so gevent's own monitor thread
runs; variant ``hubmon`` imports hubmon first, which replaces it.

Each trial is a greenlet that sleeps a random time in gevent (so that the
block starts at a random phase of the monitor's sampling), then blocks the
hub with the unpatched ``time.sleep(BLOCK)``. Every EventLoopBlocked event is
timed with ``time.perf_counter`` in the subscriber. A trial owns the events
from the start of its block to the start of the next one; its latency is the
time from the start of its block to its first event.

Usage: bench_latency.py gevent|hubmon TRIALS BLOCK SEED
"""
from __future__ import annotations

import random
import sys
import time


def main() -> None:
    variant, trials, block, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    events = []
    perf_counter = time.perf_counter

    if variant == "hubmon":
        import hubmon
        import hubmon.events

        def on_event(event):
            if isinstance(event, hubmon.events.EventLoopBlocked):
                events.append(perf_counter())

        hubmon.events.subscribers.append(on_event)
    elif variant != "gevent":
        raise SystemExit("unknown variant %r" % (variant,))

    import gevent
    import gevent.events

    if variant == "gevent":
        if "hubmon" in sys.modules:
            raise SystemExit("hubmon must not be imported with gevent's monitor")

        def on_gevent_event(event):
            if isinstance(event, gevent.events.EventLoopBlocked):
                events.append(perf_counter())

        gevent.events.subscribers.append(on_gevent_event)

    import common

    rng = random.Random(seed)
    threshold = float(gevent.config.max_blocking_time)
    starts = []
    ends = []

    def trial():
        gevent.sleep(rng.uniform(2 * threshold, 4 * threshold))
        start = perf_counter()
        time.sleep(block)               # not monkey-patched: blocks the hub
        ends.append(perf_counter())
        starts.append(start)

    gevent.sleep(0.2)                   # the hub runs: its monitor starts
    hub = gevent.get_hub()
    monitor = hub.periodic_monitoring_thread
    monitor_name = "%s.%s" % (type(monitor).__module__, type(monitor).__name__)
    for _ in range(trials):
        gevent.spawn(trial).join()
    gevent.sleep(max(2 * threshold, 0.3))   # late events still count
    end_of_run = perf_counter()

    latencies = []
    counts = []
    bounds = starts[1:] + [end_of_run]
    for start, bound in zip(starts, bounds):
        mine = [t for t in events if start <= t < bound]
        counts.append(len(mine))
        if mine:
            latencies.append(mine[0] - start)
    before = sum(1 for t in events if t < starts[0]) if starts else len(events)
    common.emit({
        "variant": variant,
        "monitor": monitor_name,
        "threshold": threshold,
        "block": block,
        "latencies": latencies,
        "counts": counts,
        "events_outside_trials": before,
        "block_durations": [e - s for s, e in zip(starts, ends)],
    })


if __name__ == "__main__":
    main()
