"""Send hubmon's events and figures to logging.

Full reports go to the logger "hubmon" with HUBMON_REPORT_TO=logging (or
``hubmon.config.report_to = "logging"``); this example adds one short line per
event and the monitor's figures every minute. Try it with::

    python -m hubmon run --report-to logging docs/examples/logging_example.py
"""
import logging

import gevent

import hubmon
from hubmon import events

log = logging.getLogger("myapp.hub")


def log_event(event):
    """A hubmon.events subscriber. It runs in hubmon's native thread: keep it short."""
    if isinstance(event, events.EventLoopBlocked):
        log.warning("hub blocked by %r for %.3f s (max_blocking_time %.3f s)",
                    event.greenlet, event.duration, event.blocking_time)
    elif isinstance(event, events.EventLoopUnblocked):
        log.info("hub runs again; the blockage lasted %.3f s", event.duration)
    elif isinstance(event, events.MemoryUsageThresholdExceeded):
        log.warning("memory usage %d bytes is over %d", event.mem_usage, event.max_allowed)


def log_figures(every=60.0):
    """A greenlet that logs each monitor's figures every *every* seconds."""
    while True:
        gevent.sleep(every)
        for monitor in hubmon.running_monitors():
            stats = monitor.stats()
            seen = ", ".join("<=%gs: %d" % (bound, count)
                             for bound, count in stats["histogram"].items() if count)
            log.info("hub of thread %#x: switches %d, blockages %d, longest %.3f s; "
                     "stretches without the hub: %s", monitor.thread_ident,
                     stats["switches"], stats["blocks"], stats["longest_block"], seen or "none")


events.subscribers.append(log_event)

if __name__ == "__main__":
    import time

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    figures = gevent.spawn(log_figures, 0.5)

    def handler():
        time.sleep(0.3)  # not monkey-patched: blocks the hub

    gevent.spawn(handler).join()
    gevent.sleep(0.6)
    figures.kill()
