"""Export hubmon's figures to Prometheus with prometheus_client (optional).

Register the collector once; at each scrape it reads ``Monitor.stats()`` of
every running monitor. Try it with::

    pip install prometheus_client
    python -m hubmon run docs/examples/prometheus_export.py
"""
import hubmon
from prometheus_client.core import (REGISTRY, CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)


class HubmonCollector:
    """A prometheus_client collector of every running hubmon monitor, labelled by thread."""

    def collect(self):
        stretches = HistogramMetricFamily(
            "hubmon_hub_blocking_seconds",
            "Stretches during which the hub did not run, as measured by hubmon's samples.",
            labels=["thread"])
        blocks = CounterMetricFamily(
            "hubmon_blocks", "Blockages longer than max_blocking_time reported.",
            labels=["thread"])
        switches = CounterMetricFamily(
            "hubmon_switches", "Greenlet switches in the hub's thread.", labels=["thread"])
        longest = GaugeMetricFamily(
            "hubmon_longest_block_seconds", "The longest blockage so far.", labels=["thread"])
        for monitor in hubmon.running_monitors():
            try:
                stats = monitor.stats()
            except RuntimeError:  # the monitor stopped since it was listed
                continue
            thread = "%#x" % monitor.thread_ident
            # hubmon counts each bucket alone; Prometheus wants running totals.
            buckets, total = [], 0
            for upper_bound, count in stats["histogram"].items():
                total += count
                le = "+Inf" if upper_bound == float("inf") else repr(upper_bound)
                buckets.append((le, total))
            # hubmon keeps no sum of the durations, so the histogram has no _sum.
            stretches.add_metric([thread], buckets, sum_value=None)
            blocks.add_metric([thread], stats["blocks"])
            switches.add_metric([thread], stats["switches"])
            longest.add_metric([thread], stats["longest_block"])
        yield stretches
        yield blocks
        yield switches
        yield longest


REGISTRY.register(HubmonCollector())

if __name__ == "__main__":
    # A program to try the collector: block the hub once, then show what a
    # scrape would get. A server would call prometheus_client.start_http_server().
    import time

    import gevent
    from prometheus_client import generate_latest

    def handler():
        time.sleep(0.3)  # not monkey-patched: blocks the hub

    gevent.spawn(handler).join()
    gevent.sleep(0.05)
    print(generate_latest(REGISTRY).decode())
