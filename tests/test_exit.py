"""Exit with monitors running: no hang, no crash, the program's exit code kept.

Each scenario runs HUBMON_EXIT_RUNS times (200 by default, as the
reliability promise says), a few processes at a time.
"""
from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import run_python

pytest.importorskip("gevent")

RUNS = int(os.environ.get("HUBMON_EXIT_RUNS", "200"))
ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.05"}

COMMON = """
import gevent, sys, time, os, signal
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
workers = [gevent.spawn(gevent.sleep, 0.01 * i) for i in range(5)]
gevent.spawn(spin, 0.08).join()       # one report along the way
"""

SCENARIOS = {
    "normal end": ("gevent.joinall(workers)\n", 0),
    "sys.exit(3) from a greenlet": ("gevent.spawn(sys.exit, 3).join()\nprint('not reached')\n", 3),
    "uncaught exception": ("raise ValueError('boom')\n", 1),
    "KeyboardInterrupt": ("gevent.spawn_later(0.01, os.kill, os.getpid(), signal.SIGINT)\n"
                          "gevent.sleep(5)\n", -signal.SIGINT),
    "exit while a report is written": (
        "import hubmon\n"
        "def slow(event):\n"
        "    if isinstance(event, hubmon.events.EventLoopBlocked):\n"
        "        time.sleep(0.3)\n"
        "hubmon.events.subscribers.append(slow)\n"
        "gevent.spawn(spin, 0.12).join()\n"
        "sys.exit(7)\n", 7),
    "os._exit": ("gevent.spawn(spin, 0.3)\ngevent.sleep(0)\nos._exit(5)\n", 5),
}


def one_run(code):
    try:
        proc = run_python(code, env=ENV, timeout=10)
    except Exception as ex:   # subprocess.TimeoutExpired: a hang
        return ("hang", repr(ex))
    return (proc.returncode, proc.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_exit_scenario_many_times(name):
    body, expected = SCENARIOS[name]
    code = "import hubmon\n" + COMMON + body
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one_run, [code] * RUNS))
    failures = [(code_, err) for code_, err in results
                if code_ != expected or "Fatal Python error" in err or "Segmentation" in err
                or "Exception ignored" in err]
    assert not failures, "%d of %d runs failed; first: %r" % (len(failures), RUNS, failures[0])
    # The monitor really ran: the blocking report was printed.
    reported = sum("appears to be blocked" in err for _, err in results)
    assert reported >= RUNS * 0.9


def test_exit_codes_match_the_program_without_hubmon():
    for name, (body, expected) in SCENARIOS.items():
        code, _ = one_run(COMMON + body)
        assert code == expected, (name, _)
