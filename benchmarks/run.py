"""hubmon's benchmarks, beside gevent's own monitor: the one entry point.

    python benchmarks/run.py [--quick | --full] [--plot PNG] [--rst RST] [--json JSON]
    python benchmarks/run.py --from-json JSON [--plot PNG] [--rst RST]

Every section runs in child processes (``benchmarks/bench_*.py``) so that no
variant sees another's state, and prints its figures; at the end comes a
Markdown table of every goal with pass or fail, and the machine
the numbers were measured on. ``--quick`` uses small counts (under two
minutes; for the smoke test, not for conclusions); ``--full`` (the default)
the counts of the goals. ``--plot`` writes the detection latency plot (needs
matplotlib; skipped with a note without it), ``--rst`` the documentation page
``docs/performance.rst`` built from this run's numbers, ``--json`` the raw
results; ``--from-json`` writes the outputs again from saved raw results,
measuring nothing.

Ratios are measured side by side in one run, alternating the variants, as the
machine may be shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import output  # noqa: E402

THRESHOLD = 0.1
BLOCK = 0.5
SHORT_BLOCK = 0.9 * THRESHOLD
SECTIONS = ("switch", "latency", "throughput", "idle", "report", "import")

#: Sizes of a run: the full run measures what the goals name.
PROFILES = {
    "full": dict(switch_iterations=100_000, switch_rounds=40, latency_trials=20,
                 short_trials=20, http_generations=4, http_rounds=25, http_seconds=0.5,
                 http_connections=32,
                 idle_seconds=10.0, report_greenlets=10_000, report_repeats=7,
                 import_rounds=21),
    "quick": dict(switch_iterations=20_000, switch_rounds=5, latency_trials=4,
                  short_trials=4, http_generations=1, http_rounds=3, http_seconds=0.3,
                  http_connections=32,
                  idle_seconds=2.0, report_greenlets=2_000, report_repeats=1,
                  import_rounds=3),
}


def log(message: str) -> None:
    """Progress on stderr; the results go to stdout."""
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


# -- the sections ------------------------------------------------------------------

def bench_switch(p: Dict[str, Any]) -> Dict[str, Any]:
    log("per-switch cost: %d rounds of %d round trips per variant"
        % (p["switch_rounds"], p["switch_iterations"]))
    raw = common.run_child("bench_switch", [p["switch_iterations"], p["switch_rounds"]],
                           common.child_env(False), timeout=1800)
    times = raw["times_ns"]
    none = "no trace function"
    floor = "do-nothing C trace function (floor)"
    best = {name: min(values) for name, values in times.items()}
    floor_added = best[floor] - best[none]
    rows = []
    for name, values in times.items():
        per_round = [(t - n) / (f - n) if f > n else float("nan")
                     for t, n, f in zip(values, times[none], times[floor])]
        rows.append({
            "variant": name,
            "ns": best[name],
            "added_ns": best[name] - best[none],
            "ratio": (best[name] - best[none]) / floor_added if floor_added > 0 else float("nan"),
            "ratio_median": common.median(per_round),
        })
    return {"rows": rows, "rounds": raw["rounds"], "iterations": raw["iterations"],
            "gevent_tracer_compiled": raw["gevent_tracer_compiled"]}


def bench_latency(p: Dict[str, Any]) -> Dict[str, Any]:
    result: Dict[str, Any] = {"threshold": THRESHOLD, "block": BLOCK, "short_block": SHORT_BLOCK}
    for key, block, trials in (("long", BLOCK, p["latency_trials"]),
                               ("short", SHORT_BLOCK, p["short_trials"])):
        result[key] = {}
        # Alternate the monitors: one process each, in turn, twice as many
        # processes when there are many trials.
        chunks = 2 if trials >= 10 else 1
        for chunk in range(chunks):
            for variant in ("hubmon", "gevent") if chunk % 2 == 0 else ("gevent", "hubmon"):
                n = trials // chunks + (1 if chunk < trials % chunks else 0)
                log("detection: %s, %d blocks of %.3f s, threshold %.3f s"
                    % (variant, n, block, THRESHOLD))
                raw = common.run_child("bench_latency", [variant, n, block, 1000 * chunk + 17],
                                       common.child_env(True, THRESHOLD), timeout=120 + 3 * n)
                merged = result[key].setdefault(variant, {
                    "monitor": raw["monitor"], "latencies": [], "counts": [],
                    "events_outside_trials": 0})
                merged["latencies"] += raw["latencies"]
                merged["counts"] += raw["counts"]
                merged["events_outside_trials"] += raw["events_outside_trials"]
    return result


def _start_servers(variants) -> Dict[str, Dict[str, Any]]:
    servers: Dict[str, Dict[str, Any]] = {}
    try:
        for variant in variants:
            proc = common.start_child("bench_http", ["server", variant],
                                      common.child_env(variant != "none", THRESHOLD),
                                      stdin=subprocess.PIPE)
            servers[variant] = {"proc": proc}
            line = proc.stdout.readline().split()
            if not line or line[0] != "READY":
                raise RuntimeError("the %s server did not start: %s"
                                   % (variant, proc.stderr.read() if proc.poll() is not None else ""))
            servers[variant].update(port=int(line[1]), monitor=line[2])
    except BaseException:
        _stop_servers(servers)
        raise
    return servers


def _stop_servers(servers: Dict[str, Dict[str, Any]]) -> None:
    for server in servers.values():
        proc = server["proc"]
        try:
            proc.stdin.close()
            proc.wait(timeout=15)
        except Exception:
            proc.kill()
            proc.wait()


def bench_throughput(p: Dict[str, Any]) -> Dict[str, Any]:
    """Fresh servers for every generation (a process's memory layout alone
    can move its speed by a few per cent), many short alternating windows
    within each."""
    variants = ("none", "hubmon", "gevent")
    rounds: List[Dict[str, Any]] = []
    monitors: Dict[str, str] = {}
    for generation in range(p["http_generations"]):
        servers = _start_servers(variants)
        try:
            monitors.update((v, servers[v]["monitor"]) for v in variants)
            targets = ["%s:%d:%d" % (v, servers[v]["port"], servers[v]["proc"].pid)
                       for v in variants]
            log("throughput: servers %d/%d, %d rounds of %g s per server, %d connections each"
                % (generation + 1, p["http_generations"], p["http_rounds"], p["http_seconds"],
                   p["http_connections"]))
            # A warm-up round first, not counted.
            measured = common.run_child(
                "bench_http", ["client", p["http_seconds"], p["http_rounds"] + 1,
                               p["http_connections"], 100 + generation, *targets],
                common.child_env(False),
                timeout=120 + 4 * p["http_seconds"] * (p["http_rounds"] + 1))
            rounds += measured[1:]
        finally:
            _stop_servers(servers)

    spread = common.median_interval

    summary = {}
    for variant in variants:
        rps = [r[variant]["requests_per_second"] for r in rounds]
        cpu = [r[variant]["server_cpu_us_per_request"] for r in rounds]
        ratios = [r[variant]["requests_per_second"] / r["none"]["requests_per_second"]
                  for r in rounds]
        cpu_ratios = [r[variant]["server_cpu_us_per_request"]
                      / r["none"]["server_cpu_us_per_request"] for r in rounds]
        summary[variant] = {
            "monitor": monitors[variant],
            "rps": rps,
            "cpu_us": cpu,
            "rps_median": common.median(rps),
            "cpu_us_median": common.median(cpu),
            "ratio": common.median(ratios),
            "ratio_interval": spread(ratios),
            "cpu_ratio": common.median(cpu_ratios),
            "cpu_ratio_interval": spread(cpu_ratios),
        }
    return {"variants": summary, "rounds": len(rounds), "generations": p["http_generations"],
            "seconds": p["http_seconds"], "connections": p["http_connections"]}


def bench_idle(p: Dict[str, Any]) -> Dict[str, Any]:
    seconds = p["idle_seconds"]
    log("idle cost: three idle hubs side by side for %g s" % (seconds,))
    procs = {v: common.start_child("bench_idle", [v, seconds],
                                   common.child_env(v != "none", THRESHOLD))
             for v in ("none", "hubmon", "gevent")}
    results = {v: common.result_of(proc, "bench_idle " + v, timeout=60 + 2 * seconds)
               for v, proc in procs.items()}
    for r in results.values():
        r["thread_percent"] = (None if r["thread_cpu_ns"] is None
                               else 100.0 * r["thread_cpu_ns"] / 1e9 / r["wall"])
        r["process_percent"] = 100.0 * r["process_cpu_ns"] / 1e9 / r["wall"]
    return {"seconds": seconds, "variants": results}


def bench_report(p: Dict[str, Any]) -> Dict[str, Any]:
    log("report cost: %d sleeping greenlets, %d repeats"
        % (p["report_greenlets"], p["report_repeats"]))
    raw = common.run_child("bench_report", [p["report_greenlets"], p["report_repeats"]],
                           common.child_env(False), timeout=600 + 60 * p["report_repeats"])
    raw["median"] = {name: common.median(values) for name, values in raw["cpu"].items()}
    raw["median_wall"] = {name: common.median(values) for name, values in raw["times"].items()}
    return raw


def bench_import(p: Dict[str, Any]) -> Dict[str, Any]:
    import bench_import as measure
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rounds = p["import_rounds"]
    log("import hubmon: %d fresh interpreters, with and without compiled bytecode" % (rounds,))
    measure.import_time(tree, cold=False)      # writes the .pyc files once
    warm = [measure.import_time(tree, cold=False) / 1000.0 for _ in range(rounds)]
    cold = [measure.import_time(tree, cold=True) / 1000.0 for _ in range(rounds)]
    return {"rounds": rounds, "warm": warm, "cold": cold,
            "warm_median": common.median(warm), "cold_median": common.median(cold)}


RUNNERS = {"switch": bench_switch, "latency": bench_latency, "throughput": bench_throughput,
           "idle": bench_idle, "report": bench_report, "import": bench_import}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small counts, under two minutes")
    size.add_argument("--full", action="store_true", help="the counts of the goals (default)")
    parser.add_argument("--plot", metavar="PNG", help="write the detection latency plot")
    parser.add_argument("--rst", metavar="RST", help="write the documentation page")
    parser.add_argument("--json", metavar="JSON", help="write the raw results")
    parser.add_argument("--only", metavar="SECTIONS",
                        help="comma-separated subset of: " + ",".join(SECTIONS))
    parser.add_argument("--from-json", metavar="JSON",
                        help="measure nothing: write the outputs of a run saved with --json")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)["results"]
        return _write_outputs(results, args)

    profile = "quick" if args.quick else "full"
    sections = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error("unknown sections: %s" % (", ".join(sorted(unknown)),))
    results: Dict[str, Any] = {"profile": profile, "params": PROFILES[profile],
                               "machine": common.machine(), "threshold": THRESHOLD}
    started = time.perf_counter()
    for section in SECTIONS:
        if section in sections:
            results[section] = RUNNERS[section](PROFILES[profile])
    results["seconds"] = time.perf_counter() - started
    return _write_outputs(results, args)


def _write_outputs(results: Dict[str, Any], args: argparse.Namespace) -> int:
    """Print the tables; write the plot, the page and the raw results asked for."""
    goals = output.evaluate(results)
    text = output.markdown(results, goals)
    sys.stdout.write(text)
    sys.stdout.flush()
    plot_path = None
    if args.plot:
        if "latency" not in results:
            log("no plot: the latency section did not run")
        else:
            note = output.plot_latency(results, args.plot)
            if note:
                log(note)
            else:
                plot_path = args.plot
                log("wrote %s" % (args.plot,))
    if args.rst:
        with open(args.rst, "w") as f:
            f.write(output.rst(results, goals, plot_path, args.rst))
        log("wrote %s" % (args.rst,))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "goals": goals}, f, indent=1)
        log("wrote %s" % (args.json,))
    log("the run took %.0f s" % (results["seconds"],))
    return 0


if __name__ == "__main__":
    sys.exit(main())
