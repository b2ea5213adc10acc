"""The cost of ``import hubmon``, measured by ``python -X importtime`` in fresh interpreters.

Each tree given is imported in turn, alternating, ROUNDS times, so that a
slow moment of a noisy machine hits them alike; the figure is the median of
hubmon's cumulative import time. ``warm`` runs with the compiled ``.pyc``
files in place (an installed wheel, or any second run); ``cold`` gives each
run an empty bytecode cache, so the sources are compiled as on the very
first import of an editable install. Run it from outside the trees.

Usage: bench_import.py [--rounds N] [--cold] TREE [TREE ...]
  e.g. git worktree add /tmp/before <rev> && (cd /tmp/before &&
       python setup.py build_ext --inplace) && cd /tmp &&
       python /path/to/benchmarks/bench_import.py /tmp/before /path/to/hubmon
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile


def import_time(tree: str, cold: bool) -> float:
    """One fresh interpreter's cumulative ``import hubmon`` time from *tree*, in milliseconds."""
    env = dict(os.environ, PYTHONPATH=tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cold:
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="hubmon-pyc-")
    check = "import hubmon; assert hubmon.__file__.startswith(%r), hubmon.__file__" % (tree,)
    stderr = subprocess.run([sys.executable, "-X", "importtime", "-c", check], env=env,
                            capture_output=True, text=True, check=True).stderr
    line = [row for row in stderr.splitlines() if row.rstrip().endswith("| hubmon")][-1]
    return int(line.split("|")[1]) / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="source trees with hubmon built in place")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--cold", action="store_true", help="compile the sources every run")
    options = parser.parse_args()
    trees = [os.path.abspath(tree) for tree in options.trees]
    for tree in trees:
        import_time(tree, cold=False)          # writes the .pyc files once
    times: dict = {tree: [] for tree in trees}
    for _ in range(options.rounds):
        for tree in trees:
            times[tree].append(import_time(tree, options.cold))
    first = statistics.median(times[trees[0]])
    for tree in trees:
        median = statistics.median(times[tree])
        print("%-40s median %6.1f ms  min %6.1f  max %6.1f  (%.2fx the first)%s"
              % (tree, median, min(times[tree]), max(times[tree]), median / first,
                 "  cold" if options.cold else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
