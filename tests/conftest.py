"""Shared fixtures: every child Python a test starts runs through :func:`run_python`.

:func:`run_python` (the ``python`` fixture) runs a snippet, a module, a
script or ``pytest`` in a fresh interpreter. When the child outlives its
timeout, the native stacks of all its threads (gdb) and their Python stacks
(faulthandler, on SIGABRT) are collected before it is killed, and
:class:`ChildTimeout` carries them, so that a hang is diagnosed, not retried.

A child imports the hubmon this test process imports (the source tree, an
editable install or an installed wheel alike), and sees none of the
settings' variables (``GEVENT_*``, ``HUBMON_*``) of the outer environment
unless its test names them.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Union

import pytest

pytest_plugins = ["pytester"]

#: The source tree (benchmarks, docs); the tests never import hubmon from it
#: unless the hubmon that this process imports is there.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GDB = "/usr/bin/gdb"
GDB_TIMEOUT = 30        # seconds for gdb to attach, walk every thread and detach
ABORT_GRACE = 5         # seconds for faulthandler to write the stacks after SIGABRT
OUTPUT_GRACE = 10       # seconds for a grandchild to let go of the pipes after SIGKILL


def _hubmon_path() -> List[str]:
    """The folder a child needs on its path to import the hubmon this process imports.

    Empty when that hubmon is installed in a site folder, which the child
    (the same interpreter) searches anyway; the source tree's parent when it
    runs from there (a checkout, an in-place sanitizer build).
    """
    spec = importlib.util.find_spec("hubmon")
    if spec is None or not spec.submodule_search_locations:
        return []
    parent = os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))
    sites = {os.path.abspath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    return [] if parent in sites else [parent]


HUBMON_PATH = _hubmon_path()


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
              base: Optional[Mapping[str, str]] = None,
              pythonpath: Sequence[str] = ()) -> Dict[str, str]:
    """The environment of a child: *base* (``os.environ``) updated with *env*.

    A value of None in *env* removes the variable. The settings' variables
    of *base* (``GEVENT_*``, ``HUBMON_*``) are left out: a child sees those
    its test gives in *env* only. PYTHONPATH: *pythonpath*, then the folder
    of the hubmon this process imports (unless installed), then *base*'s.
    PYTHONFAULTHANDLER=1, so that SIGABRT dumps every thread's Python stack.
    PYTHONUNBUFFERED is removed unless *env* names it, so that no buffering
    bug is hidden.
    """
    full = {name: value for name, value in (os.environ if base is None else base).items()
            if not name.startswith(("GEVENT_", "HUBMON_"))}
    full["PYTHONPATH"] = os.pathsep.join(
        [*map(os.fspath, pythonpath), *HUBMON_PATH, *filter(None, [full.get("PYTHONPATH")])])
    full["PYTHONFAULTHANDLER"] = "1"
    full.pop("PYTHONUNBUFFERED", None)
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    if not full.get("PYTHONPATH"):
        full.pop("PYTHONPATH", None)
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


class _Reader(threading.Thread):
    """Reads one of the child's pipes to its end; *pace* seconds between reads (a slow reader)."""

    def __init__(self, pipe, pace: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.pipe, self.pace, self.chunks = pipe, pace, []

    def run(self) -> None:
        while True:
            data = self.pipe.read1(8192) if self.pace else self.pipe.read1()
            if not data:
                return
            self.chunks.append(data)
            if self.pace:
                time.sleep(self.pace)

    def text(self) -> str:
        """What was read so far, decoded with universal newlines."""
        data = b"".join(self.chunks).decode(errors="backslashreplace")
        return data.replace("\r\n", "\n").replace("\r", "\n")


def _run(argv: Sequence[str], *, env: Dict[str, str], timeout: float, cwd: Optional[str],
         input: Optional[str], stderr_pace: float) -> subprocess.CompletedProcess:
    """Run *argv*; return it finished (text output), or raise :class:`ChildTimeout`.

    On timeout, before the child is killed: gdb's native stacks of every
    thread, then SIGABRT for faulthandler's Python stacks of every thread.
    """
    argv = [os.fspath(arg) for arg in argv]
    child = subprocess.Popen(argv, env=env, cwd=cwd,
                             stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = _Reader(child.stdout)
    err = _Reader(child.stderr, stderr_pace)
    out.start()
    err.start()
    with child:
        if input is not None:
            try:
                child.stdin.write(input.encode())
                child.stdin.close()
            except BrokenPipeError:
                pass
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        else:
            # Grandchildren may keep the pipes open after the child's exit.
            out.join(timeout)
            err.join(timeout)
            return subprocess.CompletedProcess(argv, child.returncode, out.text(), err.text())
        gdb_output = native_stacks(child.pid)
        _abort(child)
        try:
            child.wait(ABORT_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        out.join(OUTPUT_GRACE)
        err.join(OUTPUT_GRACE)
        stderr = err.text()
        if out.is_alive() or err.is_alive():
            stderr += "\n(a grandchild kept the pipes open after the child ended)"
        raise ChildTimeout(argv, timeout, out.text(), stderr, gdb_output, child.returncode)


def run_python(program: Union[str, Sequence[str]], *, args: Sequence[str] = (),
               env: Optional[Mapping[str, Optional[str]]] = None,
               pythonpath: Sequence[str] = (), cwd: Optional[str] = None,
               timeout: float = 60, input: Optional[str] = None,
               stderr_pace: float = 0.0) -> subprocess.CompletedProcess:
    """Run a fresh interpreter (``sys.executable``); return the finished process (text output).

    *program* is either the source of a snippet, written to ``scenario.py``
    in a temporary folder first (so that reports show its source lines) and
    run there with *args*, or the interpreter's own arguments (``["-m",
    "hubmon", "run", "app.py"]``, ``["-c", code]``, ``[script, ...]``).
    *env* and *pythonpath*: see :func:`child_env`. *input*: the child's
    stdin (else none). *stderr_pace*: seconds to wait between reads of 8 KiB
    of stderr, a slow reader whose pipe fills.

    A timeout raises :class:`ChildTimeout` with every thread's stacks.
    """
    full_env = child_env(env, pythonpath=pythonpath)
    options = dict(env=full_env, timeout=timeout, input=input, stderr_pace=stderr_pace)
    if not isinstance(program, str):
        return _run([sys.executable, *program, *args], cwd=cwd, **options)
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "scenario.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(program))
        return _run([sys.executable, script, *args], cwd=cwd or folder, **options)


def run_pytest(pytester: pytest.Pytester, *args: str, timeout: float = 180,
               env: Optional[Mapping[str, Optional[str]]] = None) -> pytest.RunResult:
    """``pytester.runpytest_subprocess(*args)`` through :func:`run_python`.

    Same command (``python -mpytest --basetemp=... -p plugin ...``), same
    path (the cwd first in PYTHONPATH), stdin closed; a timeout dumps every
    thread's stacks.
    """
    __tracebackhide__ = True
    basetemp = tempfile.mkdtemp(prefix="runpytest-", dir=str(pytester.path))
    args = ("--basetemp=%s" % basetemp, *args)
    for plugin in pytester.plugins:
        if not isinstance(plugin, str):
            raise ValueError("plugins must be named in a subprocess: %r" % (plugin,))
        args = ("-p", plugin, *args)
    argv = ["-mpytest", *map(os.fspath, args)]
    print("running:", sys.executable, *argv)
    print("     in:", os.getcwd())
    start = time.monotonic()
    proc = run_python(argv, env=env, pythonpath=[os.getcwd()], timeout=timeout, input="")
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


#: Child-script source defining ``crunch()``: one C call (``sum``) that holds
#: the GIL for about ``GIL_SECONDS`` of CPU time, calibrated in CPU time so
#: that a busy machine does not make it shorter. Prepend
#: ``GIL_SECONDS = 0.5`` (say) to it.
GIL_HOLDING_CALL = """
import time as _time

def _calibrated(seconds):
    n = 1_000_000
    while True:
        start = _time.thread_time()
        sum(range(n))
        took = _time.thread_time() - start
        if took > 0.1:
            return int(n * seconds / took)
        n *= 2

_COUNT = _calibrated(GIL_SECONDS)

def crunch():
    sum(range(_COUNT))
"""


def line_of(path: str, marker: str) -> int:
    """The line number in *path* of the line that ends with ``# <marker>``."""
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.rstrip().endswith("# " + marker):
                return number
    raise AssertionError("marker %r not found in %s" % (marker, path))
