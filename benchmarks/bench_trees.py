"""Two source trees of hubmon side by side: switch cost, detection latency, idle cost.

    python benchmarks/bench_trees.py TREE_A TREE_B [--rounds N]
                                     [--sections switch,latency,idle] [--quick]

Each TREE is a checkout with hubmon built in place (``python setup.py
build_ext --inplace``). The children are this folder's programs, so they must
work with both trees; they import hubmon from the TREE alone (checked before
measuring) and run in an empty temporary folder. Every round runs a section's
child once per tree, A then B, so that a slow moment of a shared machine hits
both alike.

- switch: ``bench_switch.py``; ns a greenlet switch costs above no trace
  function (best of the child's rounds) with hubmon's tracer alone, with
  ``hubmon.start()`` (tracer and native thread), and with the do-nothing C
  trace function (a control: the trees do not change it).
- latency: ``bench_latency.py hubmon``; the time from the start of a 0.5 s
  ``time.sleep`` in the hub to the first EventLoopBlocked at threshold 0.1 s
  (p50, p95 of every trial), and reports per blockage (mean).
- idle: ``bench_idle.py hubmon``; CPU time of hubmon's native thread and of
  the whole process while every hub idles, in % of one core.

How to read: each line gives A's and B's figure (switch, idle: the median of
the rounds; latency: of all trials pooled), the ratio B/A and its 95%
interval: for switch and idle, the distribution-free interval of the median of
the paired per-round ratios; for latency, a bootstrap of the ratio. An
interval that holds 1 means no change was measured; its width is how small a
change this run could have seen.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from run import BLOCK, THRESHOLD, log  # noqa: E402

PROFILES = {
    "full": dict(rounds=8, switch_iterations=100_000, switch_rounds=5,
                 latency_trials=4, idle_seconds=10.0),
    "quick": dict(rounds=2, switch_iterations=10_000, switch_rounds=2,
                  latency_trials=2, idle_seconds=1.0),
}
SWITCH_VARIANTS = ("hubmon Tracer", "hubmon.start() (tracer + native thread)",
                   "do-nothing C trace function (floor)")
NONE = "no trace function"

#: A line of the table: its name, the unit, and the figure of one child's result.
Figure = Tuple[str, str, Callable[[Any], float]]


def _env(tree: str, monitor: bool) -> Dict[str, str]:
    """A child's environment (see common.child_env) importing hubmon from *tree* alone."""
    env = common.child_env(monitor, THRESHOLD)
    env["PYTHONPATH"] = tree
    return env


def _check_tree(tree: str, cwd: str) -> str:
    """Fail unless a child imports hubmon from *tree*; return the tree's commit."""
    check = ("import hubmon, hubmon._core; print(hubmon.__file__); "
             "assert hubmon._core.__file__.startswith(%r), hubmon._core.__file__" % (tree + os.sep,))
    out = subprocess.run([sys.executable, "-c", check], env=_env(tree, False), cwd=cwd,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("%s: hubmon is not imported from there:\n%s" % (tree, out.stderr))
    log("%s imports %s" % (tree, out.stdout.strip()))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=tree,
                            capture_output=True, text=True).stdout.strip()
    return commit or "?"


def _switch_figures() -> List[Figure]:
    def added(variant):
        return lambda r: min(r["times_ns"][variant]) - min(r["times_ns"][NONE])
    return [("switch: added by " + v, "ns", added(v)) for v in SWITCH_VARIANTS] + [
        ("switch: " + NONE, "ns", lambda r: min(r["times_ns"][NONE]))]


def _idle_figures() -> List[Figure]:
    return [("idle: native thread", "% core", lambda r: 100.0 * r["thread_cpu_ns"] / 1e9 / r["wall"]),
            ("idle: whole process", "% core", lambda r: 100.0 * r["process_cpu_ns"] / 1e9 / r["wall"])]


def _child(section: str, p: Dict[str, Any], round_: int) -> Tuple[str, List[Any], bool, float]:
    """The child program, its arguments, whether it monitors, and its timeout."""
    if section == "switch":
        return "bench_switch", [p["switch_iterations"], p["switch_rounds"]], False, 900
    if section == "latency":
        n = p["latency_trials"]
        return "bench_latency", ["hubmon", n, BLOCK, 1000 * round_ + 17], True, 120 + 3 * n
    return "bench_idle", ["hubmon", p["idle_seconds"]], True, 60 + 2 * p["idle_seconds"]


def _paired_rows(figures: Sequence[Figure], a: List[Any], b: List[Any]) -> List[List[Any]]:
    """Medians of the rounds and of the paired per-round ratios B/A."""
    rows = []
    for name, unit, figure in figures:
        xs = [figure(r) for r in a]
        ys = [figure(r) for r in b]
        ratios = [y / x for x, y in zip(xs, ys) if x > 0]
        rows.append([name, unit, common.median(xs), common.median(ys),
                     common.median(ratios), common.median_interval(ratios)])
    return rows


def _latency_rows(a: List[Any], b: List[Any]) -> List[List[Any]]:
    """Percentiles of all trials pooled, with bootstrap intervals of their ratios."""
    latencies = [[x for r in runs for x in r["latencies"]] for runs in (a, b)]
    # A missed blockage has no latency: it shows in the reports per blockage.
    counts = [[c for r in runs for c in r["counts"]] for runs in (a, b)]
    rows = []
    for name, stat in (("p50", common.median), ("p95", lambda v: common.percentile(v, 95))):
        x, y = stat(latencies[0]), stat(latencies[1])
        rows.append(["latency: %s (%d / %d trials)" % (name, len(latencies[0]), len(latencies[1])),
                     "ms", 1000 * x, 1000 * y, y / x,
                     common.bootstrap_ratio_interval(*latencies, statistic=stat)])

    def mean(values):
        return sum(values) / len(values)
    x, y = mean(counts[0]), mean(counts[1])
    rows.append(["latency: reports per blockage (min-max %d-%d / %d-%d)"
                 % (min(counts[0]), max(counts[0]), min(counts[1]), max(counts[1])),
                 "mean", x, y, y / x if x else float("nan"),
                 common.bootstrap_ratio_interval(*counts, statistic=mean)])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree_a", help="the first tree (A: the reference)")
    parser.add_argument("tree_b", help="the second tree (B)")
    parser.add_argument("--rounds", type=int, help="rounds per section (default 8, quick 2)")
    parser.add_argument("--sections", default="switch,latency,idle",
                        help="comma-separated subset of: switch,latency,idle")
    parser.add_argument("--quick", action="store_true", help="small counts: for the smoke test")
    args = parser.parse_args()
    p = PROFILES["quick" if args.quick else "full"]
    rounds = args.rounds or p["rounds"]
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"switch", "latency", "idle"}
    if unknown:
        parser.error("unknown sections: %s" % (", ".join(sorted(unknown)),))
    trees = [os.path.abspath(t) for t in (args.tree_a, args.tree_b)]

    rows: List[List[Any]] = []
    with tempfile.TemporaryDirectory(prefix="hubmon-bench-") as cwd:
        commits = [_check_tree(t, cwd) for t in trees]
        for section in sections:
            results: List[List[Any]] = [[], []]
            for round_ in range(rounds):
                for i, tree in enumerate(trees):
                    name, child_args, monitor, timeout = _child(section, p, round_)
                    log("%s: round %d/%d, %s" % (section, round_ + 1, rounds, "AB"[i]))
                    results[i].append(common.run_child(name, child_args, _env(tree, monitor),
                                                       timeout, cwd=cwd))
            if section == "latency":
                rows += _latency_rows(*results)
            else:
                figures = _switch_figures() if section == "switch" else _idle_figures()
                rows += _paired_rows(figures, *results)

    print("A = %s (%s)\nB = %s (%s)\n%d rounds, threshold %g s, block %g s\n"
          % (trees[0], commits[0], trees[1], commits[1], rounds, THRESHOLD, BLOCK))
    print("| figure | unit | A | B | B/A | 95% interval of B/A |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, unit, x, y, ratio, (low, high) in rows:
        print("| %s | %s | %.4g | %.4g | %.3f | %.3f - %.3f |" % (name, unit, x, y, ratio, low, high))
    return 0


if __name__ == "__main__":
    sys.exit(main())
