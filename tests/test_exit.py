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


@pytest.mark.parametrize("busy", [False, True])
def test_the_exit_hook_lets_no_other_thread_run_unless_it_must(python, busy):
    # While hubmon's exit hook releases the GIL, the program's daemon threads
    # run on; one that runs a gevent hub may then be inside a greenlet when
    # the interpreter ends it, which greenlet does not survive. With nothing
    # being handed over and nothing being written, the hook keeps the GIL.
    # (busy: a report is still being written, and the hook waits for it.)
    proc = python("""
import sys, threading, time
import gevent, hubmon
from hubmon import _lifecycle, events
count = [0]
def spin():
    while True:
        count[0] += 1
threading.Thread(target=spin, daemon=True).start()
time.sleep(0.2)
gevent.spawn(time.sleep, 0.2).join()
assert events.wait_for_delivery(10)
if %r:
    class SlowStream:
        def write(self, text):
            time.sleep(0.3)
        def flush(self):
            pass
    gevent.get_hub().exception_stream = SlowStream()
    gevent.spawn(time.sleep, 0.2).join()
before = count[0]
_lifecycle.shutdown()
print("OTHER THREAD RAN", count[0] != before)
""" % busy, env={"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"})
    assert proc.returncode == 0, proc.stderr
    assert ("OTHER THREAD RAN %s" % busy) in proc.stdout, (proc.stdout, proc.stderr)


def test_after_the_printers_patience_at_exit_no_stream_lock_is_taken(python, tmp_path):
    # Past the exit hook's patience the printer may still run while the
    # interpreter finalizes; holding an io buffer lock then (a thread the
    # interpreter ends keeps it) would make the interpreter's own last flush
    # of that stream fail fatally. So from then on a report goes only where
    # no lock is needed: straight to stderr's descriptor.
    path = tmp_path / "report.log"
    proc = python("""
import sys
from hubmon import _output
class Watched:
    def __init__(self, stream):
        self.stream, self.calls = stream, []
    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.stream, name)
stream = Watched(open(%r, "w"))
_output.write(stream, "before")
_output.close_for_exit(0.2)
calls = len(stream.calls)
_output.write(stream, "after")
print("STREAM WRITES AFTER", [c for c in stream.calls[calls:] if c in ("write", "flush")])
_output.write(sys.__stderr__, "straight to the descriptor")
stream.stream.close()
""" % str(path))
    assert proc.returncode == 0, proc.stderr
    assert "STREAM WRITES AFTER []" in proc.stdout, proc.stdout
    assert path.read_text() == "before\n"
    assert "straight to the descriptor" in proc.stderr
