"""fork() in every form never hangs a child or reports a child's pre-exec code."""
from __future__ import annotations

import pytest

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.05",
       # Every blockage printed in full, as gevent prints them (tests/test_fleet.py
       # has the one-line repeats).
       "HUBMON_REPEAT_WINDOW": "0"}

FORKS_WHILE_REPORTING = """
import gevent, hubmon, os, sys, threading, time
# Another thread's hub is blocked again and again, so hubmon is forever
# writing big reports to a stderr that the reader drains slowly.
done = threading.Event()
# The reports' stream: the interpreter's stderr (written to its descriptor
# directly) or a buffered file of the program's on the same pipe (written
# through its write(), holding its buffer lock while the pipe is full).
out = sys.stderr if STREAM == "stderr" else os.fdopen(os.dup(2), "w")
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
def busy_thread():
    gevent.get_hub().exception_stream = out
    idle = [gevent.spawn(gevent.sleep, 60) for _ in range(200)]   # big reports
    while not done.is_set():
        gevent.spawn(spin, 0.08).join()
        gevent.sleep(0.001)
t = threading.Thread(target=busy_thread, daemon=True)
t.start()
time.sleep(0.5)
hung = 0
for i in range(FORKS):
    pid = os.fork()
    if pid == 0:
        out.write('CHILD %d says hello\\n' % os.getpid())
        out.flush()
        os._exit(0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done_pid, status = os.waitpid(pid, os.WNOHANG)
        if done_pid:
            break
        time.sleep(0.01)
    else:
        hung += 1
        os.kill(pid, 9)
        os.waitpid(pid, 0)
done.set()
print('HUNG', hung, flush=True)
"""


@pytest.mark.parametrize("stream", ["stderr", "file"])
def test_fork_while_reports_are_written_to_a_slow_buffered_stderr_never_hangs_a_child(
        python, stream):
    # PYTHONUNBUFFERED is unset, as for users: stderr is a buffered text
    # stream. The reader drains it slowly (8 KiB every 20 ms), so writes
    # wait for the pipe.
    forks = 40
    proc = python("FORKS = %d\nSTREAM = %r\n" % (forks, stream) + FORKS_WHILE_REPORTING,
                  env=ENV, stderr_pace=0.02, timeout=600)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err[-3000:]
    assert "HUNG 0" in out, (out, err[-3000:])
    assert err.count("says hello") == forks
    assert "appears to be blocked" in err


@pytest.mark.parametrize("how", ["os.fork then os.execv", "patched subprocess preexec_fn",
                                 "gevent.subprocess preexec_fn"])
def test_a_child_that_forks_to_exec_is_never_reported(python, how):
    body = {
        "os.fork then os.execv": """
pid = os.fork()
if pid == 0:
    spin(0.5)                       # Python work before exec, no switch
    os.execv(sys.executable, [sys.executable, '-c', 'pass'])
status = wait_child(pid)
""",
        "patched subprocess preexec_fn": """
from gevent import monkey; monkey.patch_subprocess()
import subprocess
subprocess.run([sys.executable, '-c', 'pass'], preexec_fn=lambda: spin(0.5), check=True)
""",
        "gevent.subprocess preexec_fn": """
import gevent.subprocess
gevent.subprocess.run([sys.executable, '-c', 'pass'], preexec_fn=lambda: spin(0.5), check=True)
""",
    }[how]
    proc = python("""
import hubmon, gevent, os, sys, time
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
def wait_child(pid):
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        gevent.sleep(0.01)
gevent.sleep(0.01)
""" + body + """
gevent.sleep(0.3)
print('DONE', len(hubmon.running_monitors()))
""", env=dict(ENV, GEVENT_MAX_BLOCKING_TIME="0.1"))
    assert proc.returncode == 0, proc.stderr
    assert "DONE 1" in proc.stdout
    assert "appears to be blocked" not in proc.stderr, proc.stderr


def test_a_child_that_runs_its_hub_is_monitored_once_it_does(python):
    proc = python("""
import hubmon, gevent, os, sys, time
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
gevent.sleep(0.01)
pid = os.fork()
if pid == 0:
    spin(0.4)                       # before the child's hub runs: not monitored
    native_before = hubmon._core.sampler_native_id()
    gevent.sleep(0.01)              # the hub runs: monitoring resumes
    gevent.spawn(spin, 0.4).join()
    gevent.sleep(0.05)
    sys.stderr.write('CHILD native_before=%d native_after=%d\\n'
                     % (native_before, hubmon._core.sampler_native_id() > 0))
    sys.stderr.flush()
    os._exit(0)
while not os.waitpid(pid, os.WNOHANG)[0]:
    gevent.sleep(0.01)
""", env=dict(ENV, GEVENT_MAX_BLOCKING_TIME="0.1"))
    assert proc.returncode == 0, proc.stderr
    assert "CHILD native_before=0 native_after=1" in proc.stderr, proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1, proc.stderr


def test_a_slow_stream_without_a_descriptor_never_slows_forks_nor_is_reported(python):
    proc = python("""
import hubmon, gevent, os, sys, time, warnings
# Python 3.12+ warns (a DeprecationWarning, shown in __main__) about a fork
# while other threads run, hubmon's native thread among them. The warning
# would be written through the slow Proxy below, slowing the first fork by
# itself: keep it out of what is measured here.
warnings.filterwarnings("ignore", r"This process \\(pid=\\d+\\) is multi-threaded, use of fork\\(\\)",
                        DeprecationWarning)
class Proxy:                            # like a logging proxy: no fileno()
    def write(self, text):
        time.sleep(3)
        return len(text)
    def flush(self):
        pass
sys.stderr = Proxy()
gevent.spawn(time.sleep, 0.2).join()
gevent.sleep(0.05)                       # the printer is now in Proxy.write
took = []
for i in range(3):
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    took.append(time.monotonic() - start)
    os.waitpid(pid, 0)
    gevent.sleep(0.05)
monitor = hubmon.running_monitors()[0]
sys.__stdout__.write('SLOWEST %.3f BLOCKS %d\\n' % (max(took), monitor.stats()['blocks']))
""", env=dict(ENV, GEVENT_MAX_BLOCKING_TIME="0.1"), timeout=30)
    assert proc.returncode == 0, proc.stderr
    slowest = float(proc.stdout.split("SLOWEST ")[1].split()[0])
    assert slowest < 0.5, proc.stdout
    assert "BLOCKS 1" in proc.stdout, proc.stdout


def test_a_logging_handler_that_forks_never_waits_for_itself(python):
    proc = python("""
import hubmon, gevent, logging, os, subprocess, sys, time
hubmon.config.report_to = 'logging'
took = []
class Pager(logging.Handler):
    def emit(self, record):
        start = time.monotonic()
        subprocess.run([sys.executable, '-c', 'pass'], preexec_fn=os.setsid)   # forks
        took.append(time.monotonic() - start)
logging.getLogger('hubmon').addHandler(Pager())
for _ in range(3):
    gevent.spawn(time.sleep, 0.2).join()
    gevent.sleep(0.1)
deadline = time.monotonic() + 10
while len(took) < 3 and time.monotonic() < deadline:
    gevent.sleep(0.05)
print('EMITS', len(took), 'SLOWEST %.3f' % max(took))
""", env=dict(ENV, GEVENT_MAX_BLOCKING_TIME="0.1"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "EMITS 3" in proc.stdout, proc.stdout + proc.stderr
    assert float(proc.stdout.split("SLOWEST ")[1].split()[0]) < 0.9, proc.stdout
