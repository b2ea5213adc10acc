"""Shared fixtures: running a snippet, a command or pytest in a fresh interpreter.

Every child runs through :func:`run_command`: when it outlives its timeout,
the native stacks of all its threads (gdb) and their Python stacks
(faulthandler, on SIGABRT) are collected before it is killed, and
:class:`ChildTimeout` carries them, so that a hang is diagnosed, not retried.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Dict, Mapping, Optional, Sequence

import pytest

pytest_plugins = ["pytester"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GDB = "/usr/bin/gdb"
GDB_TIMEOUT = 30        # seconds for gdb to attach, walk every thread and detach
ABORT_GRACE = 5         # seconds for faulthandler to write the stacks after SIGABRT


class ChildTimeout(subprocess.TimeoutExpired):
    """A child outlived its timeout; the message holds its output and every thread's stack."""

    def __init__(self, cmd, timeout, output, stderr, gdb_output, returncode=None):
        super().__init__(cmd, timeout, output, stderr)
        self.gdb_output = gdb_output
        self.returncode = returncode

    def __str__(self) -> str:
        cmd = self.cmd if isinstance(self.cmd, str) else shlex.join(map(str, self.cmd))
        return "\n".join([
            "command timed out after %s seconds (then SIGABRT, exit status %s): %s"
            % (self.timeout, self.returncode, cmd),
            "---------- stdout ----------",
            self.stdout or "",
            "---------- stderr (faulthandler's dump of every thread at the end) ----------",
            self.stderr or "",
            "---------- gdb: native stacks of every thread ----------",
            self.gdb_output,
        ])

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, self)


def child_env(env: Optional[Mapping[str, Optional[str]]] = None,
              base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of a child: *base* (``os.environ``) updated with *env*.

    A value of None in *env* removes the variable. PYTHONFAULTHANDLER=1, so
    that SIGABRT dumps every thread's Python stack. PYTHONUNBUFFERED is
    removed unless *env* names it, so that no buffering bug is hidden.
    """
    full = dict(os.environ if base is None else base)
    full["PYTHONFAULTHANDLER"] = "1"
    full.pop("PYTHONUNBUFFERED", None)
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return full


def native_stacks(pid: int) -> str:
    """``gdb -p PID -batch -ex "thread apply all bt"``: every thread's native stack."""
    if not os.path.exists(GDB):
        found = shutil.which("gdb")
        if not found:
            return "(gdb is not installed: no native stacks)"
    else:
        found = GDB
    argv = [found, "-p", str(pid), "-batch", "-nx",
            "-iex", "set debuginfod enabled off", "-ex", "thread apply all bt"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="backslashreplace",
                              timeout=GDB_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as ex:
        def text(data):
            return data.decode(errors="backslashreplace") if isinstance(data, bytes) else data or ""
        return "(gdb did not finish in %s s)\n%s\n%s" % (GDB_TIMEOUT, text(ex.stdout),
                                                         text(ex.stderr))
    except OSError as ex:
        return "(gdb could not run: %s)" % (ex,)
    return "%s\n%s(gdb exit status %s)" % (proc.stdout, proc.stderr, proc.returncode)


def _abort(child: subprocess.Popen) -> None:
    """SIGABRT: faulthandler writes every thread's Python stack; no core file."""
    try:
        import resource
        resource.prlimit(child.pid, resource.RLIMIT_CORE, (0, 0))
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    try:
        child.send_signal(signal.SIGABRT)
    except OSError:
        pass


def run_command(argv: Sequence[str], *, env: Optional[Mapping[str, Optional[str]]] = None,
                timeout: float = 60, cwd: Optional[str] = None,
                input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run *argv* (environment: :func:`child_env` of *env*); return it finished, text output.

    On timeout, before the child is killed: gdb's native stacks of every
    thread, then SIGABRT for faulthandler's Python stacks of every thread;
    then :class:`ChildTimeout` is raised with all of it and the output.
    """
    argv = [os.fspath(arg) for arg in argv]
    child = subprocess.Popen(argv, env=child_env(env), cwd=cwd, text=True,
                             errors="backslashreplace",
                             stdin=None if input is None else subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with child:
        try:
            out, err = child.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        else:
            return subprocess.CompletedProcess(argv, child.returncode, out, err)
        # The partial output stays in `child`: the next communicate() goes on from it.
        gdb_output = native_stacks(child.pid)
        _abort(child)
        out = err = ""
        try:
            out, err = child.communicate(timeout=ABORT_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            try:
                # A grandchild may hold the pipes open: do not wait for it forever.
                out, err = child.communicate(timeout=10)
            except subprocess.TimeoutExpired as ex:
                out, err = ex.stdout, ex.stderr
                out = out.decode(errors="backslashreplace") if isinstance(out, bytes) else out
                err = err.decode(errors="backslashreplace") if isinstance(err, bytes) else err
                err = (err or "") + "\n(the pipes stayed open after SIGKILL)"
        if child.returncode is None:
            child.kill()
            child.wait()
        raise ChildTimeout(argv, timeout, out, err, gdb_output, child.returncode)


def run_python(code: str, *, env: Optional[Dict[str, str]] = None, timeout: float = 60,
               args: tuple = ()) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; return the finished process (text output).

    The code is written to a file first, so reports show its source lines.
    A timeout raises :class:`ChildTimeout` with every thread's stacks.
    """
    full_env: Dict[str, Optional[str]] = {
        "GEVENT_MONITOR_THREAD_ENABLE": None,
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    if env:
        full_env.update(env)
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "scenario.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(code))
        return run_command([sys.executable, script, *args], env=full_env, cwd=folder,
                           timeout=timeout)


def run_pytest(pytester: pytest.Pytester, *args: str, timeout: float = 180) -> pytest.RunResult:
    """``pytester.runpytest_subprocess(*args)``, but a timeout dumps every thread's stacks.

    Same command (``python -mpytest --basetemp=... -p plugin ...``), same
    environment (the cwd first in PYTHONPATH), stdin closed.
    """
    __tracebackhide__ = True
    basetemp = tempfile.mkdtemp(prefix="runpytest-", dir=str(pytester.path))
    args = ("--basetemp=%s" % basetemp, *args)
    for plugin in pytester.plugins:
        if not isinstance(plugin, str):
            raise ValueError("plugins must be named in a subprocess: %r" % (plugin,))
        args = ("-p", plugin, *args)
    argv = [sys.executable, "-mpytest", *map(os.fspath, args)]
    pythonpath = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    print("running:", *argv)
    print("     in:", os.getcwd())
    start = time.monotonic()
    proc = run_command(argv, env={"PYTHONPATH": pythonpath}, timeout=timeout, input="")
    duration = time.monotonic() - start
    out, err = proc.stdout.splitlines(), proc.stderr.splitlines()
    for lines, stream in ((out, sys.stdout), (err, sys.stderr)):
        for line in lines:
            print(line, file=stream)
    try:
        ret = pytest.ExitCode(proc.returncode)
    except ValueError:
        ret = proc.returncode
    return pytest.RunResult(ret, out, err, duration)


@pytest.fixture
def python():
    """The :func:`run_python` helper, as a fixture."""
    return run_python
