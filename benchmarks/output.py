"""The performance goals checked against a run's results, and the run's outputs:
the Markdown tables, the documentation page (reStructuredText) and the plot."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Tuple

import common

GOAL_LATENCY_MARGIN = 0.015
GOAL_SWITCH_RATIO = 1.10
GOAL_THROUGHPUT = 0.98
GOAL_IDLE_PERCENT = 0.05
GOAL_REPORT_SECONDS = 0.050
GOAL_IMPORT_SECONDS = 0.020

FLOOR = "do-nothing C trace function (floor)"
NONE = "no trace function"
HUBMON_TRACER = "hubmon Tracer"
GEVENT_TRACER = "gevent GreenletTracer"


def _ms(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "none"
    return "%.1f ms" % (seconds * 1000.0,) if seconds < 0.1 else "%.0f ms" % (seconds * 1000.0,)


def _latency_stats(latencies: List[float], counts: List[int]) -> Dict[str, float]:
    """Latency figures; a trial without any report counts as infinitely late."""
    values = list(latencies) + [math.inf] * sum(1 for c in counts if c == 0)
    return {
        "n": len(counts),
        "missed": sum(1 for c in counts if c == 0),
        "min": min(values) if values else math.nan,
        "median": common.median(values),
        "p95": common.percentile(values, 95),
        "max": max(values) if values else math.nan,
    }


def _counts_text(counts: List[int]) -> str:
    if not counts:
        return "n/a"
    low, high = min(counts), max(counts)
    span = str(low) if low == high else "%d to %d" % (low, high)
    return "%s (mean %.2f over %d blocks)" % (span, sum(counts) / len(counts), len(counts))


def evaluate(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One entry per goal: what, goal, hubmon's figure, gevent's, passed."""
    goals: List[Dict[str, Any]] = []
    threshold = results["threshold"]

    switch = results.get("switch")
    row = {"key": "switch", "what": "added cost per greenlet switch of hubmon's tracer",
           "goal": "at most %.2fx the added cost of the do-nothing C trace function, "
                   "and below gevent's compiled GreenletTracer" % (GOAL_SWITCH_RATIO,),
           "hubmon": "not measured", "gevent": "not measured", "passed": None}
    if switch:
        by = {r["variant"]: r for r in switch["rows"]}
        ours, theirs = by[HUBMON_TRACER], by[GEVENT_TRACER]
        row["hubmon"] = "%.3fx the floor (+%.1f ns per switch; floor +%.1f ns)" % (
            ours["ratio"], ours["added_ns"], by[FLOOR]["added_ns"])
        row["gevent"] = "GreenletTracer %.3fx (+%.1f ns)" % (theirs["ratio"], theirs["added_ns"])
        row["passed"] = ours["ratio"] <= GOAL_SWITCH_RATIO and ours["added_ns"] < theirs["added_ns"]
    goals.append(row)

    latency = results.get("latency")
    row = {"key": "latency",
           "what": "detection latency, threshold T = %g s, hub blocked %g s, random phase"
                   % (threshold, results.get("latency", {}).get("block", 0.5)),
           "goal": "95th percentile at most T + %d ms" % (GOAL_LATENCY_MARGIN * 1000,),
           "hubmon": "not measured", "gevent": "not measured", "passed": None}
    counts_row = {"key": "reports", "what": "reports per blockage (%g s block)"
                  % (results.get("latency", {}).get("block", 0.5),),
                  "goal": "exactly 1", "hubmon": "not measured", "gevent": "not measured",
                  "passed": None}
    short_row = {"key": "short", "extra": True,
                 "what": "reports of blocks shorter than T (%g s blocks)"
                         % (results.get("latency", {}).get("short_block", 0.09),),
                 "goal": "not a goal of issue 4: hubmon judges a block by the upper bound "
                         "of its duration, so that no block longer than T is missed",
                 "hubmon": "not measured", "gevent": "not measured", "passed": None}
    if latency:
        texts = {}
        for variant in ("hubmon", "gevent"):
            data = latency["long"][variant]
            s = _latency_stats(data["latencies"], data["counts"])
            texts[variant] = "p95 %s (median %s, min %s, max %s, %d trials%s)" % (
                _ms(s["p95"]), _ms(s["median"]), _ms(s["min"]), _ms(s["max"]), s["n"],
                ", %d not reported" % s["missed"] if s["missed"] else "")
            if variant == "hubmon":
                row["passed"] = s["p95"] <= threshold + GOAL_LATENCY_MARGIN + 1e-9
        row["hubmon"], row["gevent"] = texts["hubmon"], texts["gevent"]
        counts_row["hubmon"] = _counts_text(latency["long"]["hubmon"]["counts"])
        counts_row["gevent"] = _counts_text(latency["long"]["gevent"]["counts"])
        counts_row["passed"] = all(c == 1 for c in latency["long"]["hubmon"]["counts"]) and \
            latency["long"]["hubmon"]["events_outside_trials"] == 0
        for variant in ("hubmon", "gevent"):
            counts = latency["short"][variant]["counts"]
            short_row[variant] = "%d of %d blocks reported" % (sum(1 for c in counts if c), len(counts))
    goals += [row, counts_row]

    http = results.get("throughput")
    row = {"key": "throughput",
           "what": "throughput of a gevent.pywsgi server on 127.0.0.1, client in another process",
           "goal": "at least %.2fx of the same server with no monitor" % (GOAL_THROUGHPUT,),
           "hubmon": "not measured", "gevent": "not measured", "passed": None}
    if http:
        v = http["variants"]
        for variant in ("hubmon", "gevent"):
            row[variant] = ("%.3fx (95%% CI %.3f to %.3f; %.0f req/s vs %.0f; "
                            "server CPU per request %.3fx)" % (
                                v[variant]["ratio"], v[variant]["ratio_interval"][0],
                                v[variant]["ratio_interval"][1], v[variant]["rps_median"],
                                v["none"]["rps_median"], v[variant]["cpu_ratio"]))
        row["passed"] = v["hubmon"]["ratio"] >= GOAL_THROUGHPUT
    goals.append(row)

    idle = results.get("idle")
    row = {"key": "idle", "what": "idle cost of the monitor's thread at T = %g s" % (threshold,),
           "goal": "under %.2f%% of one core" % (GOAL_IDLE_PERCENT,),
           "hubmon": "not measured", "gevent": "not measured", "passed": None}
    if idle:
        v = idle["variants"]
        for variant in ("hubmon", "gevent"):
            row[variant] = "%.3f%% (%.1f ms of CPU in %.0f s)" % (
                v[variant]["thread_percent"], v[variant]["thread_cpu_ns"] / 1e6, v[variant]["wall"])
        row["passed"] = v["hubmon"]["thread_percent"] < GOAL_IDLE_PERCENT
    goals.append(row)

    report = results.get("report")
    row = {"key": "report",
           "what": "building the blocked report with %s live greenlets"
                   % (format(report["sleepers"], ",") if report else "10,000"),
           "goal": "under %d ms by default; the full tree no slower than gevent's format_run_info"
                   % (GOAL_REPORT_SECONDS * 1000,),
           "hubmon": "not measured", "gevent": "not measured", "passed": None}
    if report:
        m, lines = report["median"], report["lines"]
        # Everything the monitor does holding the GIL counts: finding the
        # blocked greenlet, then building the report.
        held = m["hubmon_event"]
        row["hubmon"] = ("default %s of CPU time for the whole blocked event (of which finding "
                         "the greenlet %s, the report %s; %s lines); full tree %s (%s lines)" % (
                             _ms(held), _ms(m["hubmon_find_greenlet"]), _ms(m["hubmon_default"]),
                             format(lines["hubmon_default"], ","),
                             _ms(m["hubmon_full"]), format(lines["hubmon_full"], ",")))
        row["gevent"] = "format_run_info %s (%s lines)" % (
            _ms(m["gevent_format_run_info"]), format(lines["gevent_format_run_info"], ","))
        row["passed"] = (held < GOAL_REPORT_SECONDS
                         and m["hubmon_full"] <= m["gevent_format_run_info"])
    goals.append(row)

    imported = results.get("import")
    row = {"key": "import", "what": "import hubmon (compiled bytecode in place, as installed)",
           "goal": "under %d ms (python -X importtime)" % (GOAL_IMPORT_SECONDS * 1000,),
           "hubmon": "not measured", "gevent": "no import cost of its own (part of gevent)",
           "passed": None}
    if imported:
        row["hubmon"] = "%s, median of %d fresh interpreters (%s when the sources are compiled first)" % (
            _ms(imported["warm_median"]), imported["rounds"], _ms(imported["cold_median"]))
        row["passed"] = imported["warm_median"] < GOAL_IMPORT_SECONDS
    goals.append(row)
    goals.append(short_row)
    return goals


def _verdict(goal: Dict[str, Any]) -> str:
    if goal.get("extra"):
        return "info"
    passed = goal["passed"]
    return "not run" if passed is None else ("pass" if passed else "**FAIL**")


def _md_table(header: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def detail_tables(results: Dict[str, Any]) -> List[Tuple[str, str, List[str], List[List[str]]]]:
    """(title, description, header, rows) of each section's detailed figures."""
    tables = []
    switch = results.get("switch")
    if switch:
        tables.append((
            "Cost per greenlet switch",
            "Ping-pong between two greenlets; best of %d rounds of %s round trips, thread CPU "
            "time; gevent's tracers %s. A ratio below 1 only means that the difference from "
            "the floor is smaller than the noise of the measurement."
            % (switch["rounds"], format(switch["iterations"], ","),
               "compiled" if switch["gevent_tracer_compiled"] else "NOT compiled"),
            ["trace function", "ns per switch", "added ns", "ratio to the floor",
             "ratio, median of rounds"],
            [[r["variant"], "%.1f" % r["ns"], "%.1f" % r["added_ns"], "%.3f" % r["ratio"],
              "%.3f" % r["ratio_median"]] for r in switch["rows"]]))
    latency = results.get("latency")
    if latency:
        rows = []
        for key in ("long", "short"):
            block = latency["block"] if key == "long" else latency["short_block"]
            for variant in ("hubmon", "gevent"):
                data = latency[key][variant]
                s = _latency_stats(data["latencies"], data["counts"])
                rows.append(["%s (%s)" % (variant, data["monitor"]), "%g s" % block, str(s["n"]),
                             _ms(s["min"]) if data["latencies"] else "none",
                             _ms(s["median"]) if data["latencies"] else "none",
                             _ms(s["p95"]) if data["latencies"] else "none",
                             _ms(s["max"]) if data["latencies"] else "none",
                             _counts_text(data["counts"])])
        tables.append((
            "Detection",
            "Threshold %g s; the latency runs from the start of the blocking call to the "
            "EventLoopBlocked event; p95 is the nearest rank." % (latency["threshold"],),
            ["monitor", "block", "trials", "min", "median", "p95", "max", "reports per block"],
            rows))
    http = results.get("throughput")
    if http:
        tables.append((
            "Throughput of gevent.pywsgi",
            "%d rounds of %g s per server, %d sets of fresh servers, %d keep-alive "
            "connections; medians; the ratios to no monitor are the medians of the per-round "
            "ratios, with their 95%% confidence interval."
            % (http["rounds"], http["seconds"], http["generations"], http["connections"]),
            ["server", "monitor", "requests/s", "ratio", "server CPU us/request", "ratio"],
            [[v, d["monitor"], "%.0f" % d["rps_median"],
              "%.3f (%.3f to %.3f)" % (d["ratio"], *d["ratio_interval"]),
              "%.1f" % d["cpu_us_median"],
              "%.3f (%.3f to %.3f)" % (d["cpu_ratio"], *d["cpu_ratio_interval"])]
             for v, d in http["variants"].items()]))
    idle = results.get("idle")
    if idle:
        rows = []
        for v, d in idle["variants"].items():
            rows.append([v, d["monitor"] or "none",
                         "n/a" if d["thread_cpu_ns"] is None else "%.2f" % (d["thread_cpu_ns"] / 1e6),
                         "n/a" if d["thread_percent"] is None else "%.3f%%" % d["thread_percent"],
                         "%.3f%%" % d["process_percent"]])
        tables.append((
            "Idle hub",
            "gevent.sleep for %g s; the three processes side by side; CPU time from "
            "/proc/self/task/<tid>/schedstat." % (idle["seconds"],),
            ["monitor", "class", "monitor thread CPU ms", "% of one core",
             "whole process, % of one core"], rows))
    report = results.get("report")
    if report:
        names = [
            ("hubmon_event", "hubmon: the whole blocked event (Monitor._on_blocked, not printed)"),
            ("hubmon_default", "hubmon: the blocked report, default bound (part of the event)"),
            ("hubmon_find_greenlet", "hubmon: finding the blocked greenlet by address (part of the event)"),
            ("hubmon_full", "hubmon: format_run_info(max_greenlets=0), the full tree"),
            ("gevent_format_run_info", "gevent: gevent.util.format_run_info()"),
            ("gevent_monitor_report", "gevent: the report its monitor builds (no greenlet stacks)"),
        ]
        tables.append((
            "Report cost",
            "%s sleeping greenlets (%d live in all); medians of %d; the GIL is held "
            "throughout; CPU time of the building thread, and wall time."
            % (format(report["sleepers"], ","), report["greenlets"],
               len(report["times"]["hubmon_default"])),
            ["report", "CPU time", "wall time", "lines"],
            [[label, _ms(report["median"][key]), _ms(report["median_wall"][key]),
              "-" if key in ("hubmon_event", "hubmon_find_greenlet")
              else format(report["lines"][key], ",")]
             for key, label in names]))
    return tables


def _machine_lines(results: Dict[str, Any]) -> List[str]:
    m = results["machine"]
    return ["CPU: %s, %s cores" % (m["cpu"], m["cores"]),
            "OS: %s" % (m["os"],),
            "%s, gevent %s, greenlet %s" % (m["python"], m["gevent"], m["greenlet"]),
            "hubmon: commit %s" % (m.get("hubmon", "unknown"),),
            "Load average at the start: %s; run of %s, %s, %.0f s"
            % (m["load"], m["date"], results["profile"], results["seconds"])]


def markdown(results: Dict[str, Any], goals: List[Dict[str, Any]]) -> str:
    """The whole run as Markdown: goals, details, machine."""
    out = ["", "## hubmon benchmarks (%s run)" % (results["profile"],), ""]
    out.append(_md_table(["what", "goal", "hubmon", "gevent's monitor", "result"],
                         [[g["what"], g["goal"], g["hubmon"], g["gevent"], _verdict(g)]
                          for g in goals]))
    for title, description, header, rows in detail_tables(results):
        out += ["### " + title, "", description, "", _md_table(header, rows)]
    out += ["### Machine", ""] + ["- " + line for line in _machine_lines(results)] + [""]
    if results["profile"] == "quick":
        out += ["(A quick run: small counts, to check that the benchmarks work. "
                "Run without --quick for numbers.)", ""]
    return "\n".join(out) + "\n"


# -- reStructuredText ----------------------------------------------------------

def _rst_table(header: List[str], rows: List[List[str]], widths: Optional[str] = None) -> List[str]:
    out = [".. list-table::", "   :header-rows: 1"]
    if widths:
        out.append("   :widths: " + widths)
    out.append("")
    for row in [header] + rows:
        first = True
        for cell in row:
            text = cell.replace("**", "")
            out.append((("   * - " if first else "     - ") + text).rstrip())
            first = False
    out.append("")
    return out


RST_HEAD = """\
Performance
===========

hubmon's claim is to be faster and more exact than gevent's own monitor
thread. This page gives the numbers of one full run of the benchmarks, on
the machine described below, beside gevent's monitor and tracers. The
tables are written by the benchmark script itself, from that run.

.. contents::
   :local:

Goals
-----

"""

RST_METHOD = """\
How it is measured
------------------

Every measurement runs in child processes, so that no variant sees another's
state (``import hubmon`` replaces gevent's monitor thread). Ratios are taken
side by side in one run, alternating the variants, because the machine may be
shared and noisy: the one above was shared with other jobs (see its load
average), which is why the throughput ratios come with a confidence interval
and why costs of pure computation are timed with the thread's CPU clock.

Cost per switch
    Two greenlets switch back and forth, one of them playing the hub, with
    each trace function installed in turn by ``greenlet.settrace``: none, the
    do-nothing C trace function ``hubmon._core.NoopTracer`` (the floor: what
    greenlet itself spends to call any trace function), hubmon's ``Tracer``,
    the whole ``hubmon.start()`` path (tracer and native thread), a trivial
    Python function, and gevent's compiled ``GreenletTracer``,
    ``HubSwitchTracer`` and ``MaxSwitchTracer``. The variants alternate in a
    shuffled order every round; the time is the thread's CPU time, best of the
    rounds. The added cost is the time minus the time with no trace function;
    the ratio is that over the floor's added cost.

Detection
    A program with ``GEVENT_MONITOR_THREAD_ENABLE=true`` and
    ``GEVENT_MAX_BLOCKING_TIME=0.1``, with gevent's monitor (hubmon never
    imported) or with ``import hubmon``, blocks its hub with the unpatched
    ``time.sleep(0.5)`` in a greenlet, after a random ``gevent.sleep`` of 0.2
    to 0.4 s so that the block starts at a random phase of the monitor's
    sampling. ``EventLoopBlocked`` (gevent's, or ``hubmon.events``) is timed
    with ``time.perf_counter`` in the subscriber: the latency runs from the
    start of the blocking call to the event, so it includes building the
    report. A block owns the events until the next block starts. The same
    program with blocks of 0.09 s counts the reports of blocks shorter than
    the threshold (not a goal: hubmon judges a block by the upper bound of
    its duration, so that no longer block is missed).

Throughput
    Three ``gevent.pywsgi`` servers (no monitor, hubmon, gevent's monitor;
    access log off, ``TCP_NODELAY``) run at once; a gevent client in another
    process drives one at a time with keep-alive connections, for short
    windows in a shuffled order every round, so that neighbouring windows
    share the noise of the machine. The servers are started afresh several
    times, since the memory layout of a process alone moves its speed by a
    few per cent. The server's CPU time per request (all its threads,
    monitor included) is given as well: it does not depend on how much of a
    core a noisy machine leaves to the server.

Idle cost
    Three processes (no monitor, hubmon, gevent's monitor) side by side let
    their hub sleep. The monitor's thread is the thread that appeared when the
    hub started (for hubmon, ``hubmon._core.sampler_native_id()``); its CPU time
    is read from ``/proc/self/task/<tid>/schedstat`` in nanoseconds (the clock
    ticks of ``stat`` are too coarse for a few milliseconds).

Report cost
    Sleeping gevent greenlets, and one more that blocks the hub; a separate
    thread builds the reports meanwhile, as a monitor's thread does, each
    after a full garbage collection. hubmon's figure for the goal is
    everything its monitor does holding the GIL when a hub is blocked
    (``Monitor._on_blocked`` with printing off: find the blocked greenlet
    from its address, build the report, fire the event), in CPU time of the
    building thread; wall time is given beside it.

"""


def rst(results: Dict[str, Any], goals: List[Dict[str, Any]], plot_path: Optional[str],
        rst_path: str) -> str:
    """The documentation page for this run."""
    out = [RST_HEAD]
    out += _rst_table(["what", "goal", "hubmon", "gevent's monitor", "result"],
                      [[g["what"], g["goal"], g["hubmon"], g["gevent"], _verdict(g)]
                       for g in goals], widths="20 20 25 25 10")
    judged = [g for g in goals if g["passed"] is not None and not g.get("extra")]
    missed = [g["what"] for g in judged if not g["passed"]]
    out.append("In this run hubmon met %d of the %d goals%s." % (
        len(judged) - len(missed), len(judged),
        "" if not missed else "; it missed: " + "; ".join(missed)))
    out.append("")
    out += ["Machine", "-------", ""]
    out += ["- " + line for line in _machine_lines(results)] + [""]
    if plot_path:
        rel = os.path.relpath(os.path.abspath(plot_path),
                              os.path.dirname(os.path.abspath(rst_path)))
        out += ["Detection latency", "-----------------", "",
                ".. image:: %s" % (rel.replace(os.sep, "/"),),
                "   :alt: detection latency of hubmon and gevent's monitor", ""]
    out += ["Details", "-------", ""]
    for title, description, header, rows in detail_tables(results):
        out += [title, "~" * len(title), "", description, ""]
        out += _rst_table(header, rows)
    out.append(RST_METHOD)
    out += ["How to reproduce", "----------------", "",
            "Build the extension in place and run the script from the checkout::", "",
            "    python setup.py build_ext --inplace",
            "    pip install gevent matplotlib   # matplotlib only for the plot",
            "    python benchmarks/run.py --plot docs/_static/latency.png --rst docs/performance.rst",
            "",
            "``--quick`` runs small counts in under two minutes (the test suite runs it "
            "so the script cannot rot; its numbers are not for conclusions). "
            "``--json FILE`` keeps the raw figures; ``--only switch,latency`` runs some "
            "sections. A full run takes about %.0f minutes here." % (results["seconds"] / 60.0,),
            "",
            "To compare two source trees (a change and the commit before it), built in "
            "place, side by side: ``python benchmarks/bench_trees.py BEFORE AFTER`` runs the "
            "switch, latency and idle measurements alternately against each and prints "
            "the ratios with their intervals.",
            ""]
    return "\n".join(out)


# -- the plot --------------------------------------------------------------------

def plot_latency(results: Dict[str, Any], path: str) -> Optional[str]:
    """Write the latency plot; return a note instead when it cannot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot written to %s" % (path,)
    latency = results["latency"]
    threshold = latency["threshold"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    colors = {"hubmon": "#1f77b4", "gevent": "#d62728"}
    labels = {"hubmon": "hubmon", "gevent": "gevent's monitor"}
    for variant in ("hubmon", "gevent"):
        values = sorted(x * 1000 for x in latency["long"][variant]["latencies"])
        if not values:
            continue
        ys = [(i + 1) / len(values) for i in range(len(values))]
        left.step(values, ys, where="post", color=colors[variant], label="%s (%d trials)"
                  % (labels[variant], len(values)))
        left.plot(values, ys, "o", color=colors[variant], markersize=3)
    left.axvline(threshold * 1000, color="gray", linestyle=":", label="threshold T")
    shortest = min([x * 1000 for v in ("hubmon", "gevent")
                    for x in latency["long"][v]["latencies"]] + [threshold * 1000])
    left.set_xlim(left=shortest - 5)
    left.axvline((threshold + GOAL_LATENCY_MARGIN) * 1000, color="black", linestyle="--",
                 label="goal for p95: T + %d ms" % (GOAL_LATENCY_MARGIN * 1000,))
    left.set_xlabel("detection latency (ms), from the start of the blocking call to the event")
    left.set_ylabel("fraction of trials")
    left.set_ylim(0, 1.05)
    left.set_title("Detection latency, T = %g s, %g s blocks" % (threshold, latency["block"]))
    left.legend(loc="lower right", fontsize=8)
    left.grid(alpha=0.3)

    counts = {v: latency["long"][v]["counts"] for v in ("hubmon", "gevent")}
    top = max([max(c) for c in counts.values() if c] + [1])
    width = 0.38
    for offset, variant in ((-width / 2, "hubmon"), (width / 2, "gevent")):
        c = counts[variant]
        heights = [sum(1 for x in c if x == k) for k in range(top + 1)]
        right.bar([k + offset for k in range(top + 1)], heights, width=width,
                  color=colors[variant], label=labels[variant])
    right.set_xticks(range(top + 1))
    right.yaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("reports per %g s blockage" % (latency["block"],))
    right.set_ylabel("blocks")
    right.set_title("Reports per blockage")
    right.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle("%s, %s cores; %s; gevent %s; greenlet %s"
                 % (m["cpu"], m["cores"], m["python"], m["gevent"], m["greenlet"]), fontsize=8)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
