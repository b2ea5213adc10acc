"""Child program: the added cost of a trace function on every greenlet switch.

Two greenlets switch back and forth (ping-pong) with each trace function
installed in turn with ``greenlet.settrace``; the variants alternate in a
shuffled order within every round, so that a slow moment of a noisy machine
hits them all alike. The time of a switch is measured with the thread's
CPU clock and is the best (smallest) of the rounds; the added cost of a
variant is its time minus the time with no trace function, and its ratio is
that added cost over the added cost of the do-nothing C trace function (the
floor: what greenlet itself spends to call any trace function).

Usage: bench_switch.py ITERATIONS ROUNDS
"""
from __future__ import annotations

import gc
import random
import sys
import time

import greenlet

import common

THRESHOLD = 0.1


def _counting_tracer(hub, current):
    """hubmon's thread tracer counting into one record (not sampled): the hot path alone."""
    from hubmon import _core
    tracer = _core.ThreadTracer()
    record = _core.Record(hub, current, THRESHOLD, mode="hub")
    tracer.add(record)          # the tracer keeps the record's C part alive
    return tracer


def _python_trace(event, args):
    """The trivial Python trace function."""


def _constructed(factory):
    """gevent's tracers install themselves when created: take them off again."""
    before = greenlet.gettrace()
    tracer = factory()
    greenlet.settrace(before)
    return tracer


def main() -> None:
    iterations = int(sys.argv[1])
    rounds = int(sys.argv[2])

    import hubmon
    from hubmon import _core
    from gevent import _tracer as gevent_tracer

    main_greenlet = greenlet.getcurrent()

    def partner():
        switch = main_greenlet.switch
        while True:
            switch()

    # The partner plays the hub: half of the switches go into it, as in a
    # gevent program, so the tracers' hub branches run too.
    hub = greenlet.greenlet(partner)
    hub.switch()

    def settrace_variant(tracer):
        def run(n):
            greenlet.settrace(tracer)
            try:
                return _pingpong(hub, n)
            finally:
                greenlet.settrace(None)
        return run

    def product_path(n):
        monitor = hubmon.start(hub=hub, max_blocking_time=THRESHOLD)
        try:
            return _pingpong(hub, n)
        finally:
            monitor.stop()

    variants = {
        "no trace function": settrace_variant(None),
        "do-nothing C trace function (floor)": settrace_variant(_core.NoopTracer()),
        "hubmon Tracer": settrace_variant(_counting_tracer(hub, main_greenlet)),
        "hubmon.start() (tracer + native thread)": product_path,
        "trivial Python trace function": settrace_variant(_python_trace),
        "gevent GreenletTracer": settrace_variant(_constructed(gevent_tracer.GreenletTracer)),
        "gevent HubSwitchTracer": settrace_variant(
            _constructed(lambda: gevent_tracer.HubSwitchTracer(hub, THRESHOLD))),
        "gevent MaxSwitchTracer": settrace_variant(
            _constructed(lambda: gevent_tracer.MaxSwitchTracer(hub, THRESHOLD))),
    }
    compiled = gevent_tracer.GreenletTracer.__module__ == "gevent._gevent_c_tracer"

    times = {name: [] for name in variants}
    names = list(variants)
    gc.collect()
    gc.disable()
    try:
        for name in names:                      # warm-up, not counted
            variants[name](max(iterations // 10, 1000))
        shuffler = random.Random(4)
        for _ in range(rounds):
            shuffler.shuffle(names)
            for name in names:
                times[name].append(variants[name](iterations))
    finally:
        gc.enable()
    common.emit({"iterations": iterations, "rounds": rounds, "times_ns": times,
                 "gevent_tracer_compiled": bool(compiled)})


def _pingpong(partner, n: int) -> float:
    """Nanoseconds per switch over n round trips (2n switches).

    Timed with the thread's CPU clock, not the wall clock: on a shared
    machine, time spent waiting for a core is not the switch's cost.
    """
    switch = partner.switch
    loop = range(n)
    start = time.thread_time_ns()
    for _ in loop:
        switch()
    elapsed = time.thread_time_ns() - start
    return elapsed / (2 * n)


if __name__ == "__main__":
    main()
