"""The drop-in behaves as gevent's monitor where a gevent program can tell.

One test (or a few) per difference found by running gevent's own tests with
hubmon as the drop-in; ``test_gevent_suite.py`` runs those tests themselves.
"""
from __future__ import annotations

import pytest

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1",
       # Every blockage printed in full, as gevent prints them (tests/test_fleet.py
       # has the one-line repeats).
       "HUBMON_REPEAT_WINDOW": "0"}

PROGRAM = """
import sys, time
import gevent, gevent.events
import hubmon

fired = []
gevent.events.subscribers.append(
    lambda event: fired.append(type(event).__name__) if "Blocked" in type(event).__name__ else None)

def block(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def run_blocks(count=1, seconds=0.3):
    for _ in range(count):
        gevent.spawn(block, seconds).join()
        gevent.sleep(0.05)
    monitor = gevent.get_hub().periodic_monitoring_thread
    hubmon.events.wait_for_delivery(5)
    print("events", fired.count("EventLoopBlocked"), "blocks", monitor.stats()["blocks"])
"""


def reports(stderr: str) -> int:
    return stderr.count("appears to be blocked")


# -- 1. settings changed through gevent.config --------------------------------------


@pytest.mark.parametrize("when", ["before import hubmon", "after import hubmon", "while running"])
def test_print_blocking_reports_set_in_gevent_config_is_honoured(python, when):
    setting = "gevent.config.print_blocking_reports = False\n"
    code = PROGRAM
    if when == "before import hubmon":
        code = code.replace("import hubmon\n", setting + "import hubmon\n", 1)
    elif when == "after import hubmon":
        code += setting
    else:
        code += "gevent.sleep(0.01)\nassert gevent.get_hub().periodic_monitoring_thread.print_blocking_reports\n" + setting
    proc = python(code + "run_blocks()\n", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "events 1 blocks 1" in proc.stdout, proc.stdout + proc.stderr
    assert reports(proc.stderr) == 0, proc.stderr


def test_gevent_config_in_code_beats_the_environment(python):
    # gevent's precedence: a value set in code wins over the environment.
    proc = python(PROGRAM + "gevent.config.max_blocking_time = 0.1\nrun_blocks()\n",
                  env=dict(ENV, GEVENT_MAX_BLOCKING_TIME="5"))
    assert proc.returncode == 0, proc.stderr
    assert "events 1 blocks 1" in proc.stdout, proc.stdout + proc.stderr
    assert reports(proc.stderr) == 1


def test_hubmon_config_in_code_beats_gevent_config(python):
    proc = python(PROGRAM + "hubmon.config.max_blocking_time = 5\n"
                  "gevent.config.max_blocking_time = 0.1\nrun_blocks()\n", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "events 0 blocks 0" in proc.stdout, proc.stdout + proc.stderr


def test_monitor_thread_enabled_in_gevent_config_code_starts_hubmon(python):
    proc = python(PROGRAM.replace("import hubmon\n", "import hubmon\ngevent.config.monitor_thread = True\n")
                  + "run_blocks()\nprint(type(gevent.get_hub().periodic_monitoring_thread).__module__)\n",
                  env={"GEVENT_MONITOR_THREAD_ENABLE": "false"})
    assert proc.returncode == 0, proc.stderr
    assert "events 1 blocks 1" in proc.stdout and "hubmon.monitor" in proc.stdout, proc.stdout


def test_running_monitors_follow_gevent_config_changes(python):
    proc = python(PROGRAM + """
gevent.sleep(0.01)
monitor = gevent.get_hub().periodic_monitoring_thread
gevent.config.max_blocking_time = 0.7
gevent.config.max_memory_usage = 1
gevent.config.memory_monitor_period = 0.5
print("settings", monitor.max_blocking_time, monitor.max_memory_usage, monitor.memory_monitor_period)
exceeded = []
gevent.events.subscribers.append(
    lambda e: exceeded.append(e) if isinstance(e, gevent.events.MemoryUsageThresholdExceeded) else None)
run_blocks(seconds=0.3)          # under the new threshold: no report
deadline = time.monotonic() + 10
while not exceeded and time.monotonic() < deadline:
    gevent.sleep(0.1)
print("memory events", len(exceeded) > 0)
# gevent takes NaN; hubmon cannot. The assignment must not raise (gevent's
# monitor would take it), nor break a hub started later.
gevent.config.max_blocking_time = float("nan")
print("kept", monitor.max_blocking_time)
from gevent.threadpool import ThreadPool
print("worker", ThreadPool(1).spawn(lambda: gevent.sleep(0.01) or "ran").get())
gevent.sleep(0.01)
print("main hub runs")
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "settings 0.7 1 0.5" in proc.stdout
    assert "events 0 blocks 0" in proc.stdout
    assert "memory events True" in proc.stdout
    assert "kept 0.7" in proc.stdout
    assert "worker ran" in proc.stdout and "main hub runs" in proc.stdout
    error = "gevent.config.max_blocking_time=nan is invalid"
    assert ("hubmon: the running monitors keep their max_blocking_time: ConfigError: " + error
            in proc.stderr), proc.stderr
    assert "hubmon: this gevent hub runs without a monitor: ConfigError: " + error in proc.stderr
    assert proc.stderr.count(error) == 2, proc.stderr


def test_gevent_values_beyond_hubmons_bounds_are_taken_within_them(python):
    # gevent takes these; none means "act" within a process's life, so
    # hubmon takes its bound (one day, 2**63 - 1 bytes) and keeps monitoring.
    proc = python(PROGRAM + """
gevent.config.max_memory_usage = 512e6
gevent.config.memory_monitor_period = float("inf")
gevent.sleep(0.01)
monitor = gevent.get_hub().periodic_monitoring_thread
print("settings", monitor.max_blocking_time, monitor.max_memory_usage, monitor.memory_monitor_period)
gevent.config.max_memory_usage = 2**70
print("huge", monitor.max_memory_usage == 2**63 - 1)
run_blocks()
""", env=dict(ENV, GEVENT_MAX_BLOCKING_TIME="100000"))
    assert proc.returncode == 0, proc.stderr
    assert "settings 86400.0 512000000 86400.0" in proc.stdout, proc.stdout + proc.stderr
    assert "huge True" in proc.stdout
    assert "events 0 blocks 0" in proc.stdout      # a day's threshold: nothing to report
    assert "hubmon:" not in proc.stderr, proc.stderr


def test_a_gevent_config_change_after_hubmons_exit_hook_does_not_raise(python):
    proc = python("""
import atexit, gevent
def late():
    gevent.config.max_memory_usage = "10mb"
    gevent.config.memory_monitor_period = 3
    print("assigned at exit")
atexit.register(late)       # runs after hubmon's own exit hook
import hubmon
gevent.sleep(0.05)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "assigned at exit" in proc.stdout
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_first_memory_event_reaches_gevents_subscribers(python):
    # The first check comes at once, while the hub's thread may still be
    # importing gevent.events: the event must wait for the module, not be lost.
    code = """
import zope.event
got = []
zope.event.subscribers.append(lambda e: got.append(type(e).__name__))
import time, hubmon, gevent
deadline = time.monotonic() + 10     # a lost event never comes; a late one does
while "MemoryUsageThresholdExceeded" not in got and time.monotonic() < deadline:
    gevent.sleep(0.05)
print("got", "MemoryUsageThresholdExceeded" in got)
"""
    for _ in range(8):
        proc = python(code, env=dict(ENV, GEVENT_MONITOR_MEMORY_MAX="1mb"))
        assert proc.returncode == 0, proc.stderr
        assert "got True" in proc.stdout, proc.stdout + proc.stderr
        assert proc.stderr == "", proc.stderr


def test_changing_the_limit_on_each_memory_event_keeps_the_checks_pace(python):
    proc = python(PROGRAM + """
events = []
def flip(event):
    name = type(event).__name__
    if name == "MemoryUsageThresholdExceeded":
        events.append(name)
        gevent.config.max_memory_usage = "100gb"
    elif name == "MemoryUsageUnderThreshold":
        events.append(name)
        gevent.config.max_memory_usage = "1mb"
gevent.events.subscribers.append(flip)
gevent.config.memory_monitor_period = 0.5
gevent.config.max_memory_usage = "1mb"
gevent.sleep(3)
print("memory events", len(events))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    # One check per period (0.5 s) for 3 s: about 6; back to back it was thousands.
    assert 1 <= int(proc.stdout.split("memory events ")[1]) <= 12, proc.stdout


def test_raising_the_memory_limit_while_over_it_ends_with_under_threshold(python):
    proc = python(PROGRAM + """
import psutil
seen = []
gevent.events.subscribers.append(
    lambda e: seen.append(type(e).__name__) if "Memory" in type(e).__name__ else None)
gevent.config.memory_monitor_period = 0.2
gevent.config.max_memory_usage = 1024 * 1024
gevent.sleep(0.01)
deadline = time.monotonic() + 20
while "MemoryUsageThresholdExceeded" not in seen and time.monotonic() < deadline:
    gevent.sleep(0.05)
gevent.config.max_memory_usage = psutil.Process().memory_info().rss + 500 * 2**20
while "MemoryUsageUnderThreshold" not in seen and time.monotonic() < deadline:
    gevent.sleep(0.05)
print("memory events", seen)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "memory events ['MemoryUsageThresholdExceeded', 'MemoryUsageUnderThreshold']" in proc.stdout


def test_the_first_memory_check_comes_at_once(python):
    proc = python(PROGRAM + """
seen = []
gevent.events.subscribers.append(
    lambda e: seen.append(time.monotonic()) if "Exceeded" in type(e).__name__ else None)
start = time.monotonic()
gevent.sleep(0.01)
while not seen and time.monotonic() - start < 60:
    gevent.sleep(0.05)
print("first check after %.3f" % (seen[0] - start))
""", env=dict(ENV, GEVENT_MONITOR_MEMORY_MAX="1", GEVENT_MONITOR_MEMORY_PERIOD="30"))
    assert proc.returncode == 0, proc.stderr
    # gevent checks at its first wake-up; a whole period (30 s) used to pass first.
    assert float(proc.stdout.split("first check after ")[1]) < 15, proc.stdout


def test_memory_is_watched_for_the_main_hub_only(python):
    proc = python(PROGRAM + """
import threading
gevent.sleep(0.01)
main = gevent.get_hub().periodic_monitoring_thread
def other():
    gevent.sleep(0.01)
    worker = gevent.get_hub().periodic_monitoring_thread
    print("worker lists memory", any(f.function == worker.monitor_memory_usage
                                     for f in worker.monitoring_functions()))
t = threading.Thread(target=other); t.start(); t.join()
print("main lists memory", any(f.function == main.monitor_memory_usage for f in main.monitoring_functions()))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "worker lists memory False" in proc.stdout
    assert "main lists memory True" in proc.stdout


# -- 2. hub.exception_stream --------------------------------------------------------


def test_a_stream_wrapper_gets_the_report_through_its_write(python):
    # gevent prints the report with print(line, file=stream): a wrapper of
    # stderr (a tee, a prefixer, a subclass) sees it, and so does a file's
    # own newline translation.
    proc = python(PROGRAM + """
class Tee:
    def __init__(self, inner):
        self.inner, self.copy = inner, []
    def write(self, text):
        self.copy.append(text)
        return self.inner.write(text)
    def __getattr__(self, name):
        return getattr(self.inner, name)
sys.stderr = tee = Tee(sys.stderr)
run_blocks()
print("tee saw", "appears to be blocked" in "".join(tee.copy))
sys.stderr = sys.__stderr__
hub = gevent.get_hub()
with open("crlf.txt", "w", newline="\\r\\n") as crlf:
    hub.exception_stream = crlf
    run_blocks()
with open("crlf.txt", "rb") as f:
    data = f.read()
print("crlf", data.count(b"\\r\\n") > 10, data.count(b"\\n") == data.count(b"\\r\\n"))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "tee saw True" in proc.stdout
    assert "crlf True True" in proc.stdout
    assert reports(proc.stderr) == 1          # the tee's, passed on to stderr


def test_a_report_emptied_by_a_subscriber_prints_nothing(python):
    proc = python(PROGRAM.replace("fired = []", "fired = []\n"
                                  "gevent.events.subscribers.append(lambda e: getattr(e, 'info', [0]).clear() "
                                  "if 'Blocked' in type(e).__name__ else None)") + "run_blocks()\n", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "events 1 blocks 1" in proc.stdout
    assert proc.stderr == "", repr(proc.stderr)


def test_the_gil_dump_says_where_it_went_when_the_report_goes_elsewhere(python):
    proc = python(PROGRAM + """
import io
hub = gevent.get_hub()
hub.exception_stream = stream = io.StringIO()   # no descriptor: the dump goes to stderr
scale = 1_000_000
while True:
    start = time.perf_counter(); sum(range(scale)); took = time.perf_counter() - start
    if took > 0.1:
        break
    scale *= 2
scale = int(scale * 0.6 / took)
gevent.sleep(0.01)
gevent.spawn(lambda: sum(range(scale))).join()
gevent.sleep(0.2)
hubmon.events.wait_for_delivery(5)
print(stream.getvalue())
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "the GIL is held" in proc.stderr           # the dump, on stderr
    assert "The GIL was held for" in proc.stdout      # the report, in the StringIO
    assert "went to <_io.TextIOWrapper name='<stderr>'" in proc.stdout, proc.stdout
    assert "are above" not in proc.stdout


def test_a_report_replaced_by_other_kinds_of_info_prints_what_it_holds(python):
    proc = python(PROGRAM.replace("fired = []", "fired = []\n"
                                  "def replace(e):\n"
                                  "    if 'Blocked' in type(e).__name__:\n"
                                  "        e.info = None if len(fired) == 0 else (x for x in ['GEN-1', 'GEN-2'])\n"
                                  "gevent.events.subscribers.append(replace)") + "run_blocks(2)\n", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "events 2 blocks 2" in proc.stdout
    assert proc.stderr.splitlines() == ["GEN-1", "GEN-2"], proc.stderr


def test_an_encoding_with_a_byte_order_mark_gets_one_mark(python, tmp_path):
    # stderr in utf-16: the stream writes the byte order mark once; a report
    # written to its descriptor directly would bring one of its own.
    child = tmp_path / "child.py"
    child.write_text(PROGRAM + """
sys.stderr.write("before\\n"); sys.stderr.flush()
run_blocks()
sys.stderr.write("after\\n"); sys.stderr.flush()
""")
    proc = python("""
import os, subprocess, sys
env = dict(os.environ, PYTHONIOENCODING="utf-16")
child = subprocess.run([sys.executable, %r], env=env, stderr=subprocess.PIPE, timeout=60)
text = child.stderr.decode("utf-16")
print("status", child.returncode)
print("marks", text.count("\\ufeff"), "reports", text.count("appears to be blocked"))
print("order", text.index("before") < text.index("appears") < text.index("after"))
""" % (str(child),), env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "status 0" in proc.stdout
    assert "marks 0 reports 1" in proc.stdout, proc.stdout
    assert "order True" in proc.stdout


# -- 4b. gevent's interface -------------------------------------------------------------


def test_the_monitor_provides_gevents_interface(python):
    proc = python(PROGRAM + """
from gevent.events import IPeriodicMonitorThread
from zope.interface.verify import verifyObject
monitor = gevent.get_hub().start_periodic_monitoring_thread()
print("provides", IPeriodicMonitorThread.providedBy(monitor), verifyObject(IPeriodicMonitorThread, monitor),
      IPeriodicMonitorThread(monitor) is monitor)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "provides True True True" in proc.stdout


def test_exception_stream_none_prints_nothing_and_events_fire(python):
    proc = python(PROGRAM + "gevent.get_hub().exception_stream = None\nrun_blocks()\n", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "events 1 blocks 1" in proc.stdout, proc.stdout + proc.stderr
    assert reports(proc.stderr) == 0 and reports(proc.stdout) == 0, proc.stderr


def test_exception_stream_is_read_when_the_report_is_printed(python):
    proc = python(PROGRAM + """
import io
hub = gevent.get_hub()
gevent.sleep(0.01)                  # the monitor starts with stderr as the stream
hub.exception_stream = stream = io.StringIO()
run_blocks()
print("in stream", stream.getvalue().count("appears to be blocked"))
del hub.exception_stream
run_blocks()
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "in stream 1" in proc.stdout
    assert reports(proc.stderr) == 1, proc.stderr


# -- 3. add_monitoring_function: the first call comes at the next wake-up ---------------


def test_a_new_monitoring_function_is_called_at_the_next_wake_up(python):
    proc = python("""
import time, gevent, hubmon
gevent.sleep(0.01)
monitor = gevent.get_hub().periodic_monitoring_thread
calls = []
added = time.monotonic()
monitor.add_monitoring_function(lambda hub: calls.append(time.monotonic()), 30.0)
while not calls and time.monotonic() - added < 20:
    gevent.sleep(0.01)
print("first call after %.3f" % (calls[0] - added))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    # gevent calls it within one wake-up (0.1 s); hubmon used to wait the
    # whole period (30 s). Half the period separates the two, whatever the load.
    first = float(proc.stdout.split("first call after ")[1])
    assert first < 15, proc.stdout


# -- 4. the names gevent reads from hub.periodic_monitoring_thread -------------------


def test_monitor_offers_gevents_names(python):
    proc = python(PROGRAM + """
import psutil  # gevent lists its memory check when psutil is installed
hub = gevent.get_hub()
monitor = hub.start_periodic_monitoring_thread()
print("should_run", monitor.should_run)
functions = monitor.monitoring_functions()
print("builtin", [f.function.__name__ for f in functions], [f.period for f in functions])
mine = lambda hub: None
monitor.add_monitoring_function(mine, 0.25)
print("added last", monitor.monitoring_functions()[-1].function is mine,
      monitor.monitoring_functions()[-1].period, len(monitor._monitoring_functions))
try:
    monitor.add_monitoring_function(monitor.monitor_blocking, 1)
except ValueError as error:
    print("builtin refused")
seen = []
def culprit():
    seen.append(monitor.monitor_blocking(hub))   # called while nothing blocks
    block(0.3)
gevent.spawn(culprit).join()
print("idle", seen[0])
print("memory", monitor.monitor_memory_usage(hub))
monitor.kill()
print("should_run after kill", monitor.should_run)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "should_run True" in proc.stdout
    assert "builtin ['monitor_blocking', 'monitor_memory_usage'] [0.1, 5.0]" in proc.stdout
    assert "added last True 0.25 3" in proc.stdout
    assert "builtin refused" in proc.stdout
    assert "idle None" in proc.stdout
    assert "memory -1" in proc.stdout           # gevent's value when no limit is set
    assert "should_run after kill False" in proc.stdout


def test_importing_hubmon_late_keeps_the_monitoring_functions_added_to_gevents(python):
    proc = python("""
import time, gevent
calls = []
gevent.sleep(0.01)
old = gevent.get_hub().periodic_monitoring_thread
old.add_monitoring_function(lambda hub: calls.append(time.monotonic()), 0.05)
import hubmon
new = gevent.get_hub().periodic_monitoring_thread
count = len(calls)
gevent.sleep(0.5)
print("swapped", type(old).__name__, type(new).__module__)
print("called again", len(calls) > count)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "swapped PeriodicMonitoringThread hubmon.monitor" in proc.stdout
    assert "called again True" in proc.stdout, proc.stdout


def test_monitoring_function_periods_take_any_real_number(python):
    proc = python("""
import gevent, hubmon
from fractions import Fraction
from decimal import Decimal
gevent.sleep(0.01)
monitor = gevent.get_hub().periodic_monitoring_thread
monitor.add_monitoring_function(len, Fraction(1, 2))
monitor.add_monitoring_function(id, Decimal("0.25"))
print("periods", [f.period for f in monitor.monitoring_functions()][-2:])
for bad in (float("nan"), float("inf"), True, "1", 0, -1):
    try:
        monitor.add_monitoring_function(repr, bad)
        print("accepted", bad)
    except ValueError as error:
        pass
print("done")
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "periods [0.5, 0.25]" in proc.stdout
    assert "accepted" not in proc.stdout and "done" in proc.stdout


def test_monitor_blocking_gives_the_blockage_going_on(python):
    proc = python(PROGRAM + """
import threading
hub = gevent.get_hub()
monitor = hub.start_periodic_monitoring_thread()
gevent.sleep(0.01)
seen = []
def watch():
    # From another thread, while the hub is blocked.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not seen:
        found = monitor.monitor_blocking(hub)
        if found is not None:
            seen.append(found)
        time.sleep(0.01)
def culprit():
    end = time.monotonic() + 10
    while not seen and time.monotonic() < end:
        pass
t = threading.Thread(target=watch); t.start()
glet = gevent.spawn(culprit); glet.join(); t.join()
greenlet_, info = seen[0]
print("culprit", greenlet_ is glet, any("appears to be blocked" in line for line in info))
deadline = time.monotonic() + 10     # the native thread sees the hub run again
while monitor.monitor_blocking(hub) is not None and time.monotonic() < deadline:
    gevent.sleep(0.05)
print("after", monitor.monitor_blocking(hub))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "culprit True True" in proc.stdout
    assert "after None" in proc.stdout


# -- 8. assert_switches(hub_only=True): hubmon's rule --------------------------------


def test_hub_only_with_a_limit_passes_a_quick_body_that_never_enters_the_hub():
    # gevent's assert_switches fails this body: its hub-only tracer counts
    # the time since the hub last ran, which began before the block. hubmon
    # judges the body itself: it ended within the limit, so the loop was
    # never blocked longer than allowed (docs/testing.rst, "Moving from gevent").
    import gevent
    from hubmon import assert_switches
    gevent.sleep(0)
    with assert_switches(0.5, hub_only=True) as scope:
        sum(range(1000))
    assert scope.hub_switches == 0
