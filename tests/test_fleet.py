"""Reports a fleet can live with: fingerprints, one-line repeats, culprits, filters, JSON lines.

Every scenario runs a real gevent program in a child interpreter, watched by
the drop-in (GEVENT_MONITOR_THREAD_ENABLE) with a threshold of 0.05 s; the
blockages are ``time.sleep`` calls of 0.15 s or more, and each program waits
for its events with ``hubmon.events.wait_for_delivery()`` before printing
what its subscriber saw, as JSON, on stdout.
"""
import json
import re
import textwrap

import pytest

from conftest import GIL_HOLDING_CALL

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.05"}

PRELUDE = """\
import json, sys, time
import gevent, hubmon
from hubmon import events

seen = []
events.subscribers.append(seen.append)

def finish(**extra):
    assert events.wait_for_delivery(10)
    out = []
    for e in seen:
        if isinstance(e, events.EventLoopBlocked):
            out.append(dict(kind="blocked", fingerprint=e.fingerprint, place=e.place,
                            duration=e.duration, info=list(e.info),
                            report=None if e.report is None else e.report.fingerprint,
                            greenlet=id(e.greenlet)))
        elif isinstance(e, events.EventLoopUnblocked):
            out.append(dict(kind="unblocked", duration=e.duration, samples=e.samples))
    print("RESULT " + json.dumps(dict(events=out, **extra)))
"""

HEADER = "appears to be blocked"
REPEAT = "hubmon: blocked again for"


def run(python, body, env=None, **kwargs):
    """Run PRELUDE + body; return (proc, result dict, program text)."""
    program = PRELUDE + textwrap.dedent(body)
    proc = python(program, env=dict(ENV, **(env or {})), **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc, json.loads(line[len("RESULT "):]), program


def line_number(program, marker):
    """The line of *program* that ends with ``# <marker>``."""
    for number, line in enumerate(program.splitlines(), 1):
        if line.rstrip().endswith("# " + marker):
            return number
    raise AssertionError(marker)


def blocked(result):
    return [e for e in result["events"] if e["kind"] == "blocked"]


FIVE_BLOCKAGES = """
def handler():
    for i in range(5):
        time.sleep(0.2)  # BLOCK
        gevent.sleep(0.05)

gevent.spawn(handler).join()
finish()
"""


def test_five_identical_blockages_print_one_report_and_four_lines(python):
    proc, result, program = run(python, FIVE_BLOCKAGES)
    err = proc.stderr
    assert err.count(HEADER) == 1, err
    repeats = [line for line in err.splitlines() if REPEAT in line]
    assert len(repeats) == 4, err
    events = blocked(result)
    assert len(events) == 5
    fingerprint = events[0]["fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    place = "scenario.py:%d in handler" % line_number(program, "BLOCK")
    for event in events:
        # Every event has the full report, whatever is printed.
        assert event["fingerprint"] == fingerprint and event["report"] == fingerprint
        assert event["place"].endswith(place), event["place"]
        assert any(HEADER in line for line in event["info"])
        assert "    Fingerprint: %s (its repeats within HUBMON_REPEAT_WINDOW print one line)" % (
            fingerprint,) in event["info"]
    [full_time] = re.findall(r"^(\S+Z) : Greenlet .* %s" % HEADER, err, re.M)
    assert "    Fingerprint: %s" % fingerprint in err
    for count, line in enumerate(repeats, 2):
        match = re.fullmatch(
            r"(\S+Z) : hubmon: blocked again for (\d+\.\d{3}) seconds at (.+) \(fingerprint "
            r"([0-9a-f]{16}), (\d+)(st|nd|rd|th) time within HUBMON_REPEAT_WINDOW=60 s of its "
            r"full report at (\S+Z)\)", line)
        assert match, line
        assert match.group(3).endswith(place)
        assert match.group(4) == fingerprint
        assert int(match.group(5)) == count
        assert match.group(7) == full_time
        assert float(match.group(2)) >= 0.05


def test_a_window_of_zero_prints_every_report_in_full(python):
    proc, result, _ = run(python, FIVE_BLOCKAGES, env={"HUBMON_REPEAT_WINDOW": "0"})
    assert proc.stderr.count(HEADER) == 5, proc.stderr
    assert REPEAT not in proc.stderr
    assert len({e["fingerprint"] for e in blocked(result)}) == 1


def test_repeat_window_argument_of_start(python):
    proc, result, _ = run(python, """
    monitor = hubmon.start(repeat_window=0, stream=sys.stdout)
    def handler():
        for i in range(3):
            time.sleep(0.2)
            gevent.sleep(0.05)
    gevent.spawn(handler).join()
    finish(window=monitor.repeat_window)
    """, env={"GEVENT_MONITOR_THREAD_ENABLE": "false"})
    assert result["window"] == 0.0
    printed = [line for line in proc.stdout.splitlines() if not line.startswith("RESULT ")]
    assert sum(HEADER in line for line in printed) == 3, proc.stdout


def test_after_a_short_window_the_report_is_full_again(python):
    proc, result, _ = run(python, """
    def handler():
        time.sleep(0.2)         # full, opens a window of 0.5 s
        gevent.sleep(0.01)
        time.sleep(0.15)        # within it (about 0.2 s later): one line
        gevent.sleep(1.0)
        time.sleep(0.2)         # after it: full, a new window
        gevent.sleep(0.01)
        time.sleep(0.15)        # within the new one: one line
        gevent.sleep(1.0)
        time.sleep(0.2)         # full
    def run():
        handler()
    gevent.spawn(run).join()
    finish()
    """, env={"HUBMON_REPEAT_WINDOW": "0.5"})
    # Each blockage ends in a different line of handler(), but the innermost
    # frame counts by file and function only: one fingerprint.
    assert len({e["fingerprint"] for e in blocked(result)}) == 1
    kinds = ["repeat" if REPEAT in line else "full"
             for line in proc.stderr.splitlines() if REPEAT in line or HEADER in line]
    assert kinds == ["full", "repeat", "full", "repeat", "full"], proc.stderr
    assert proc.stderr.count("2nd time within HUBMON_REPEAT_WINDOW=0.5 s") == 2


def test_two_functions_have_two_fingerprints_and_greenlets_share_one(python):
    proc, result, program = run(python, """
    def one(n):
        time.sleep(0.15)  # ONE
    def two(n):
        time.sleep(0.15)  # TWO
    for f, n in [(one, 1), (one, 2), (two, 3), (one, 4)]:
        # A new greenlet each time, with other arguments and other locals.
        g = gevent.spawn(f, n)
        g.spawn_tree_locals["n"] = n
        g.join()
        gevent.sleep(0.05)
    finish()
    """, env={"HUBMON_REPEAT_WINDOW": "0"})
    events = blocked(result)
    assert len(events) == 4, result
    assert len({e["greenlet"] for e in events}) >= 2
    first, second, third, fourth = (e["fingerprint"] for e in events)
    assert first == second == fourth != third
    assert events[0]["place"].endswith("scenario.py:%d in one" % line_number(program, "ONE"))
    assert events[2]["place"].endswith("scenario.py:%d in two" % line_number(program, "TWO"))


def test_culprit_table_counts_totals_longest_and_order(python):
    _, result, _ = run(python, """
    monitor = None
    during = []
    def look(event):
        if isinstance(event, events.EventLoopBlocked) and not during:
            # While the first blockage goes on: counted, with its time so far.
            during.append(monitor.stats()["culprits"])
    events.subscribers.append(look)
    def short():
        time.sleep(0.15)
    def long():
        time.sleep(0.6)
    gevent.sleep(0)
    monitor = gevent.get_hub().periodic_monitoring_thread
    for f in (short, short, long):
        gevent.spawn(f).join()
        gevent.sleep(0.05)
    finish(culprits=monitor.stats()["culprits"], during=during[0])
    """)
    events = result["events"]
    pairs = [(events[i], events[i + 1]) for i in range(0, len(events), 2)]
    assert [(b["kind"], u["kind"]) for b, u in pairs] == [("blocked", "unblocked")] * 3
    by_fingerprint = {}
    for b, u in pairs:
        by_fingerprint.setdefault(b["fingerprint"], []).append(u["duration"])
    rows = result["culprits"]
    assert [row["fingerprint"] for row in rows] == [pairs[2][0]["fingerprint"],
                                                    pairs[0][0]["fingerprint"]]
    long_row, short_row = rows
    assert set(long_row) == {"fingerprint", "place", "count", "total", "longest"}
    assert long_row["place"].endswith(" in long") and short_row["place"].endswith(" in short")
    assert (long_row["count"], short_row["count"]) == (1, 2)
    for row in rows:
        durations = by_fingerprint[row["fingerprint"]]
        assert row["total"] == pytest.approx(sum(durations))
        assert row["longest"] == max(durations)
    assert 0.5 <= long_row["longest"] < 1.5
    assert 0.2 <= short_row["total"] < 1.0 and short_row["longest"] < short_row["total"]
    [going_on] = result["during"]
    assert going_on["count"] == 1 and going_on["place"].endswith(" in short")
    assert 0.04 <= going_on["total"] == going_on["longest"] < 0.15


def test_a_filter_returning_false_skips_the_report_not_the_events(python):
    proc, result, _ = run(python, """
    calls = []
    def no_health_checks(greenlet, hub, duration):
        calls.append((greenlet is target, hub is main_hub, type(duration).__name__,
                      duration >= 0.05))
        return False
    events.report_filters.append(no_health_checks)
    main_hub = gevent.get_hub()
    def health_check():
        time.sleep(0.2)
    target = gevent.spawn(health_check)
    target.join()
    finish(calls=calls, culprits=gevent.get_hub().periodic_monitoring_thread.stats()["culprits"])
    """, env={"HUBMON_UNBLOCKED_REPORT_TIME": "0"})
    assert HEADER not in proc.stderr and REPEAT not in proc.stderr, proc.stderr
    # Nor the "unblocked" report: the veto covers the blockage's samples.
    assert "The hub ran again" not in proc.stderr, proc.stderr
    assert result["calls"] == [[True, True, "float", True]]
    [event] = blocked(result)
    assert event["info"] == [] and event["report"] is None and event["fingerprint"] is None
    assert [e["kind"] for e in result["events"]] == ["blocked", "unblocked"]
    assert result["events"][1]["samples"] == 0
    assert result["culprits"] == []


def test_a_raising_filter_keeps_the_report_and_is_written_once(python):
    proc, result, _ = run(python, """
    def broken_filter(greenlet, hub, duration):
        raise KeyError("oops")
    events.report_filters.append(broken_filter)
    def handler():
        time.sleep(0.2)
    gevent.spawn(handler).join()
    finish()
    """)
    err = proc.stderr
    assert err.count(HEADER) == 1, err
    assert err.count("hubmon: report filter <function broken_filter at 0x") == 1, err
    assert "raised KeyError; the report is kept" in err
    [event] = blocked(result)
    assert event["report"] == event["fingerprint"] is not None


def test_report_to_dict_is_json_with_greenlets_threads_and_cause(python):
    _, result, _ = run(python, """
    import threading
    from hubmon.cause import Cause
    dumped = []
    def dump(event):
        if isinstance(event, events.EventLoopBlocked):
            event.report.cause = Cause("sleep", "clock_nanosleep", 0.001)
            dumped.append(json.loads(json.dumps(event.report.to_dict())))
    events.subscribers.append(dump)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="other")
    other.start()
    idle = [gevent.spawn(gevent.sleep, 5) for _ in range(3)]
    gevent.sleep(0)
    def handler():
        time.sleep(0.2)
    gevent.spawn(handler).join()
    finish(report=dumped[0])
    stop.set()
    gevent.killall(idle)
    """)
    report = result["report"]
    assert report["fingerprint"] == blocked(result)[0]["fingerprint"]
    assert report["cause"] == {"kind": "sleep", "detail": "clock_nanosleep", "cpu_time": 0.001}
    assert report["blocked_stack"]["state"] == "frames"
    assert report["blocked_stack"]["stack"][-1][2] == "handler"
    assert any(t["name"] == "other" for t in report["run_info"]["threads"]["threads"])
    assert len(report["run_info"]["greenlets"]["greenlets"]) >= 5


JSON_PROGRAM = """
def handler():
    for i in range(3):
        time.sleep(0.2)
        gevent.sleep(0.05)
def other():
    time.sleep(0.15)
gevent.spawn(handler).join()
gevent.spawn(other).join()
finish()
"""


def check_json_lines(lines, result):
    records = [json.loads(line) for line in lines]
    blocks = [r for r in records if r["event"] == "blocked"]
    ends = [r for r in records if r["event"] == "unblocked"]
    assert len(blocks) == 4 and len(ends) == 4, records
    fingerprints = [e["fingerprint"] for e in blocked(result)]
    full, repeat1, repeat2, other = blocks
    assert set(full) == {"event", "time", "fingerprint", "place", "duration", "threshold",
                         "cause", "report"}
    assert full["fingerprint"] == fingerprints[0] and full["place"].endswith(" in handler")
    assert full["threshold"] == 0.05 and full["duration"] >= 0.05
    assert full["cause"]["kind"] == "sleep" and full["report"]["cause"] == full["cause"]
    assert full["report"]["fingerprint"] == full["fingerprint"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", full["time"])
    for count, repeat in enumerate((repeat1, repeat2), 2):
        assert set(repeat) == {"event", "time", "repeat_of", "count", "place", "duration", "cause"}
        assert repeat["repeat_of"] == {"fingerprint": full["fingerprint"], "time": full["time"]}
        assert repeat["count"] == count and repeat["place"] == full["place"]
    assert "report" in other and other["fingerprint"] == fingerprints[3] != fingerprints[0]
    for end, block in zip(ends, blocks):
        assert end["fingerprint"] == (block.get("fingerprint") or block["repeat_of"]["fingerprint"])
        assert end["place"] == block["place"]
        assert end["duration"] >= block["duration"]
        # Where the blockage went: the handler's stacks, "file:line:function" each.
        assert end["samples"] == sum(count for _, count in end["profile"]) > 0, end
        assert all(isinstance(frame, str) and frame.count(":") >= 2
                   for stack, _ in end["profile"] for frame in stack), end
    # The order of the lines is the order of the events.
    assert [r["event"] for r in records] == ["blocked", "unblocked"] * 4


def test_json_format_writes_one_object_per_line_per_event(python):
    proc, result, _ = run(python, JSON_PROGRAM, env={"HUBMON_REPORT_FORMAT": "json"})
    lines = proc.stderr.splitlines()
    assert HEADER not in proc.stderr
    check_json_lines(lines, result)


def test_json_format_through_logging_is_one_record_per_event(python):
    proc, result, _ = run(python, (
        "import logging\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout,\n"
        "                    format='LOG %(levelname)s %(message)s')\n") + JSON_PROGRAM, env={"HUBMON_REPORT_FORMAT": "json", "HUBMON_REPORT_TO": "logging"})
    assert proc.stderr == ""
    records = [line for line in proc.stdout.splitlines() if line.startswith("LOG ")]
    levels = [line.split()[1] for line in records]
    assert levels == ["WARNING", "INFO"] * 4
    check_json_lines([line.split(" ", 2)[2] for line in records], result)


def test_a_sleep_and_a_loop_in_one_function_have_two_fingerprints(python):
    _, result, _ = run(python, """
    def handler(spin):
        if not spin:
            time.sleep(0.15)
        else:
            end = time.perf_counter() + 0.15
            while time.perf_counter() < end:
                pass
    for spin in (False, True, False, True):
        gevent.spawn(handler, spin).join()
        gevent.sleep(0.05)
    finish()
    """, env={"HUBMON_REPEAT_WINDOW": "0"})
    prints = [e["fingerprint"] for e in blocked(result)]
    assert len(prints) == 4, result
    assert prints[0] == prints[2] != prints[1] == prints[3], prints


def test_json_format_stays_json_through_a_gil_holding_block(python):
    # A C call holding the GIL makes faulthandler's dump, plain text: with
    # JSON reports and HUBMON_GIL_SIGNAL left at 'auto', it is not made, and
    # every line of the stream is JSON; the block is reported as 'gil'.
    proc, result, _ = run(python, "GIL_SECONDS = 0.4\n" + GIL_HOLDING_CALL + textwrap.dedent("""
    gevent.spawn(crunch).join()
    finish(gil_signal=gevent.get_hub().periodic_monitoring_thread.gil_signal)
    """), env={"HUBMON_REPORT_FORMAT": "json"})
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [r["event"] for r in records] == ["blocked", "unblocked"], proc.stderr
    assert records[0]["cause"]["kind"] == "gil", records[0]
    assert result["gil_signal"] == 0
