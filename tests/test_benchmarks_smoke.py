"""The benchmarks are not tests, but they must keep working: run them quickly.

Nothing here is timed or compared: the numbers of a quick run on a CI machine
mean nothing. The tests check that ``benchmarks/run.py --quick`` runs every
section to the end and prints the Markdown table of the goals, and that
``benchmarks/bench_trees.py --quick`` compares two trees (here one tree with
itself) and prints its table.
"""
from __future__ import annotations

import importlib.util
import os

import pytest

from conftest import ROOT

pytest.importorskip("gevent")

GOAL_ROWS = [
    "added cost per greenlet switch",
    "detection latency",
    "reports per blockage",
    "throughput of a gevent.pywsgi server",
    "idle cost of the monitor's thread",
    "building the blocked report",
    "import hubmon",
    "reports of blocks shorter than T",
]


@pytest.mark.timeout(215)
def test_quick_run_prints_the_goals_table(python, tmp_path):
    plot = tmp_path / "latency.png"
    page = tmp_path / "performance.rst"
    # A timeout raises conftest.ChildTimeout with every thread's stacks: gdb
    # and SIGABRT take up to 45 s more, within the test's 215 s.
    proc = python([os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
                   "--plot", str(plot), "--rst", str(page)], cwd=str(tmp_path), timeout=160)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "| what | goal | hubmon | gevent's monitor | result |" in out
    assert "| --- | --- | --- | --- | --- |" in out
    for row in GOAL_ROWS:
        lines = [line for line in out.splitlines() if line.startswith("| " + row)]
        assert len(lines) == 1, (row, out)
        assert lines[0].rstrip().endswith(("| pass |", "| **FAIL** |", "| info |")), lines[0]
    assert "not measured" not in out
    assert "CPython" in out and "gevent" in out and "greenlet" in out
    text = page.read_text()
    assert text.startswith("Performance\n===========")
    assert ".. list-table::" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in proc.stderr
    else:
        assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(215)
def test_quick_tree_comparison_prints_its_table(python, tmp_path):
    # The folder this process imports the built hubmon from, compared with itself.
    tree = os.path.dirname(os.path.dirname(importlib.util.find_spec("hubmon._core").origin))
    proc = python([os.path.join(ROOT, "benchmarks", "bench_trees.py"), tree, tree, "--quick",
                   "--rounds", "1"], cwd=str(tmp_path), timeout=160)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "| figure | unit | A | B | B/A | 95% interval of B/A |" in out
    for row in ("switch: added by hubmon Tracer", "latency: p50", "latency: p95",
                "latency: reports per blockage", "idle: native thread", "idle: whole process"):
        lines = [line for line in out.splitlines() if line.startswith("| " + row)]
        assert len(lines) == 1, (row, out)
        assert "nan" not in lines[0], lines[0]
    assert "imports %s" % (os.path.join(tree, "hubmon", "__init__.py"),) in proc.stderr
