"""The test harness itself: a child that hangs is diagnosed, with every thread's stacks."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import GDB, ChildTimeout, run_python

HANGS = """
import threading

never = threading.Lock()
never.acquire()
started = threading.Event()

def worker_waits_forever():
    started.set()
    never.acquire()             # worker thread: hangs here

def main_waits_forever():
    never.acquire()             # main thread: hangs here

threading.Thread(target=worker_waits_forever, daemon=True).start()
started.wait()
print("both threads wait", flush=True)
main_waits_forever()
"""


def _line_of(marker):
    """The line number, in the scenario file, of the line ending with *marker*."""
    [number] = [n for n, line in enumerate(HANGS.splitlines(), 1) if line.endswith(marker)]
    return number


def test_a_hang_is_reported_with_every_threads_stacks():
    start = time.monotonic()
    with pytest.raises(ChildTimeout) as info:
        run_python(HANGS, timeout=5)
    took = time.monotonic() - start
    error = info.value
    assert isinstance(error, subprocess.TimeoutExpired)        # what callers catch
    assert error.timeout == 5 and error.cmd[0] == sys.executable
    assert error.returncode == -signal.SIGABRT                 # faulthandler, then the signal
    text = str(error)
    assert "timed out after 5 seconds" in text and "scenario.py" in text
    assert "both threads wait" in text                      # the child's stdout
    # faulthandler, on SIGABRT: both threads' Python stacks.
    assert "Fatal Python error: Aborted" in text, text
    for function, marker in (("worker_waits_forever", "# worker thread: hangs here"),
                             ("main_waits_forever", "# main thread: hangs here")):
        assert "line %d in %s" % (_line_of(marker), function) in text, text
    # faulthandler names each thread "Thread 0x..." and the one it runs in
    # "Current thread 0x...".
    assert text.count("hread 0x") >= 2, text
    # gdb: native frames, or a word that it is missing. Attaching to a
    # sanitizer build (terabytes of shadow memory mapped) can outlast gdb's
    # own time limit: then the note says so.
    sanitized = bool(os.environ.get("HUBMON_SANITIZED"))
    if os.path.exists(GDB) or shutil.which("gdb"):
        native = error.gdb_output
        if not (sanitized and "did not finish" in native):
            assert any(word in native for word in ("pthread", "futex", "sem_")), native
        assert native in text
    else:
        assert "gdb is not installed" in text
    assert repr(error).startswith("ChildTimeout(") and "worker_waits_forever" in repr(error)
    assert took < (60 if sanitized else 15)


def test_pythonunbuffered_is_dropped_unless_asked_for(monkeypatch):
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    code = "import os, sys\nprint(os.environ.get('PYTHONUNBUFFERED'), sys.stdout.line_buffering)\n"
    assert run_python(code).stdout == "None False\n"
    assert run_python(code, env={"PYTHONUNBUFFERED": "1"}).stdout == "1 False\n"
