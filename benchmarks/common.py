"""What the benchmark programs share: child processes, statistics, CPU clocks.

Every measurement runs in a child process started by ``run.py`` with a
controlled environment, so that one variant never sees another's state:
``import hubmon`` patches gevent's hub, and gevent's monitor thread is
configured from the environment when gevent is imported. A child prints one
line ``BENCH-RESULT <json>`` on stdout; :func:`run_child` returns that object.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

#: The checkout this folder belongs to; children import hubmon from it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
RESULT_PREFIX = "BENCH-RESULT "

#: Environment variables that change how gevent or hubmon monitor; removed
#: from every child's environment and set explicitly per variant.
_MONITOR_VARIABLES = ("GEVENT_MONITOR_THREAD_ENABLE", "GEVENT_MAX_BLOCKING_TIME",
                      "GEVENT_MAX_MEMORY_USAGE", "GEVENT_MEMORY_MONITOR_PERIOD")


def child_env(monitor: bool, threshold: float = 0.1,
              extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a child: hubmon importable, monitoring on or off."""
    env = {k: v for k, v in os.environ.items()
           if k not in _MONITOR_VARIABLES and not k.startswith("HUBMON_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONHASHSEED"] = "0"
    if monitor:
        env["GEVENT_MONITOR_THREAD_ENABLE"] = "true"
        env["GEVENT_MAX_BLOCKING_TIME"] = repr(threshold)
    if extra:
        env.update(extra)
    return env


def script(name: str) -> str:
    """The path of the child program ``benchmarks/<name>.py``."""
    return os.path.join(HERE, name + ".py")


def start_child(name: str, args: Sequence[str], env: Dict[str, str],
                **popen: Any) -> subprocess.Popen:
    """Start ``benchmarks/<name>.py`` with text pipes for stdout and stderr,
    in this checkout unless ``cwd`` is given."""
    popen.setdefault("cwd", ROOT)
    return subprocess.Popen([sys.executable, script(name), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def result_of(proc: subprocess.Popen, name: str, timeout: float) -> Any:
    """Wait for a child and return its ``BENCH-RESULT`` object.

    Raises RuntimeError with the child's output when it fails or prints no
    result, and kills it when it outlives ``timeout``.
    """
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError("benchmark child %s timed out after %ss\nstdout:\n%s\nstderr:\n%s"
                           % (name, timeout, out[-3000:], err[-3000:]))
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if proc.returncode != 0:
                break
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError("benchmark child %s failed (exit code %s)\nstdout:\n%s\nstderr:\n%s"
                       % (name, proc.returncode, out[-3000:], err[-3000:]))


def run_child(name: str, args: Sequence[str], env: Dict[str, str], timeout: float,
              **popen: Any) -> Any:
    """Run ``benchmarks/<name>.py`` to the end and return its result object."""
    return result_of(start_child(name, args, env, **popen), name, timeout)


def emit(result: Any) -> None:
    """In a child: print the result line the parent looks for."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


# -- statistics ---------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``pct``%
    of the values at or below it (for 20 values, p95 is the 19th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median_interval(values: Sequence[float]) -> List[float]:
    """A distribution-free 95% confidence interval of the median: the order
    statistics j and k with j, k = n/2 -/+ 0.98 sqrt(n) (the normal
    approximation of the binomial), clamped to the sample."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return [float("nan"), float("nan")]
    half = 0.98 * math.sqrt(n)
    low = max(0, int(math.floor(n / 2.0 - half)))
    high = min(n - 1, int(math.ceil(n / 2.0 + half)))
    return [ordered[low], ordered[high]]


def bootstrap_ratio_interval(a: Sequence[float], b: Sequence[float], statistic=median,
                             resamples: int = 2000, seed: int = 0) -> List[float]:
    """A 95% percentile-bootstrap interval of ``statistic(b) / statistic(a)``
    for two independent samples, each resampled with replacement."""
    if not a or not b:
        return [float("nan"), float("nan")]
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        denominator = statistic(rng.choices(a, k=len(a)))
        if denominator:
            ratios.append(statistic(rng.choices(b, k=len(b))) / denominator)
    return [percentile(ratios, 2.5), percentile(ratios, 97.5)]


# -- CPU time -------------------------------------------------------------------

def thread_cpu_ns(tid: int, pid: str = "self") -> Optional[int]:
    """CPU time (user + system) a thread of this process has used, in ns.

    Reads the scheduler's own count from ``/proc/<pid>/task/<tid>/schedstat``
    (nanoseconds), falling back to utime + stime of ``stat`` (clock ticks,
    usually 10 ms: too coarse for a thread that uses a few ms in 10 s).
    Returns None when the thread does not exist.
    """
    base = "/proc/%s/task/%d/" % (pid, tid)
    try:
        with open(base + "schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(base + "stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])       # utime, stime
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def process_cpu_ns(pid: int) -> int:
    """CPU time all threads of process ``pid`` have used, in ns (see
    :func:`thread_cpu_ns`; threads that ended meanwhile are not counted)."""
    total = 0
    for name in os.listdir("/proc/%d/task" % pid):
        value = thread_cpu_ns(int(name), str(pid))
        if value is not None:
            total += value
    return total


def thread_ticks(tid: int) -> Optional[int]:
    """utime + stime of a thread of this process, in clock ticks, or None."""
    try:
        with open("/proc/self/task/%d/stat" % tid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def task_ids() -> List[int]:
    """The kernel thread ids of this process."""
    return sorted(int(name) for name in os.listdir("/proc/self/task"))


# -- the machine ------------------------------------------------------------------

def machine() -> Dict[str, str]:
    """The CPU model, core count and versions the numbers were measured with."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in ("gevent", "greenlet"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            versions[name] = "not installed"
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "hubmon"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        if commit and dirty:
            commit += " with local changes to src/ or hubmon/"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "hubmon": commit or "unknown",
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": "%s %s" % (platform.system(), platform.release()),
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "gevent": versions["gevent"],
        "greenlet": versions["greenlet"],
        "load": load,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
