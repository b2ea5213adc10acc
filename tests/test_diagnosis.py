"""Diagnosis on real gevent programs: the cause of each blockage, its profile, and blocks in the hub itself."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import GIL_HOLDING_CALL

pytest.importorskip("gevent")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cause needs /proc")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"}

# The events of a program, as JSON on the last line of stdout.
COLLECT = """
import hubmon, gevent, json, sys, time
from hubmon import events
seen = []
events.subscribers.append(seen.append)
gevent.sleep(0.05)
"""
DUMP = """
gevent.sleep(0.3)
assert events.wait_for_delivery(10)
out = []
for e in seen:
    kind = type(e).__name__
    if kind == "EventLoopBlocked":
        out.append(dict(kind=kind, cause=e.cause.to_dict() if e.cause else None,
                        hub_itself=e.hub_itself, is_hub=e.greenlet is gevent.get_hub(),
                        info="\\n".join(e.info)))
    elif kind == "EventLoopUnblocked":
        out.append(dict(kind=kind, duration=e.duration, samples=e.samples,
                        profile=[[list(s), c] for s, c in e.profile], folded=e.folded()))
print(json.dumps(out))
"""


def run_events(python, body: str, env=None, timeout: float = 90) -> tuple:
    proc = python(COLLECT + body + DUMP, env=dict(ENV, **(env or {})), timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(proc.stdout.strip().splitlines()[-1])
    return events, proc.stderr


def only_block(events: list, stderr: str) -> dict:
    blocked = [e for e in events if e["kind"] == "EventLoopBlocked"]
    assert len(blocked) == 1, (events, stderr)
    return blocked[0]


@linux
def test_unpatched_time_sleep_is_sleep(python):
    events, err = run_events(python, "gevent.spawn(time.sleep, 0.5).join()\n")
    cause = only_block(events, err)["cause"]
    assert cause["kind"] == "sleep", cause
    assert "sleep" in cause["detail"] or "select" in cause["detail"], cause
    assert cause["cpu_time"] is not None and cause["cpu_time"] < 0.05, cause


@linux
def test_pure_python_loop_is_cpu(python):
    body = """
def spin():
    end = time.thread_time() + 0.5
    while time.thread_time() < end:
        pass
gevent.spawn(spin).join()
"""
    events, err = run_events(python, body)
    block = only_block(events, err)
    assert block["cause"]["kind"] == "cpu", block["cause"]
    assert block["cause"]["cpu_time"] > 0.0
    assert "    Cause: cpu" in block["info"], block["info"]


@linux
def test_gil_holding_call_is_gil(python):
    # Calibrating the call blocks the hub too: that report is left out.
    body = ("GIL_SECONDS = 0.8\n" + GIL_HOLDING_CALL
            + "gevent.sleep(0.3)\nassert events.wait_for_delivery(10)\nseen.clear()\n"
            + "gevent.spawn(crunch).join()\n")
    events, err = run_events(python, body, timeout=120)
    cause = only_block(events, err)["cause"]
    assert cause["kind"] == "gil", cause
    assert "held the GIL" in cause["detail"], cause


@linux
def test_unpatched_socket_read_is_io_naming_the_peer(python):
    # A real TCP server in a thread that answers 0.6 s late; the greenlet
    # reads with a plain (unpatched) socket, as an unpatched driver would.
    body = """
import socket, threading
server = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = server.accept()
    conn.recv(10)
    time.sleep(0.6)
    conn.sendall(b"answer")
    conn.close()
threading.Thread(target=serve, daemon=True).start()
client = socket.create_connection(server.getsockname())
expected = "recvfrom on fd %d: TCP %s:%d -> %s:%d" % (
    (client.fileno(),) + client.getsockname() + client.getpeername())
def query():
    client.sendall(b"query")
    return client.recv(10)
assert gevent.spawn(query).get() == b"answer"
print("EXPECTED", expected)
"""
    proc = python(COLLECT + body + DUMP, env=ENV, timeout=90)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    expected = [line for line in lines if line.startswith("EXPECTED ")][0][len("EXPECTED "):]
    cause = only_block(json.loads(lines[-1]), proc.stderr)["cause"]
    assert cause["kind"] == "io", cause
    assert cause["detail"] == expected, cause
    assert "    Cause: io: " + expected in proc.stderr, proc.stderr


@linux
def test_unpatched_lock_is_lock(python):
    body = """
import threading
lock = threading.Lock()
held = threading.Event()
def holder():
    with lock:
        held.set()
        time.sleep(0.6)
threading.Thread(target=holder, daemon=True).start()
held.wait()
def take():
    with lock:
        pass
gevent.spawn(take).join()
"""
    events, err = run_events(python, body)
    cause = only_block(events, err)["cause"]
    assert cause["kind"] == "lock", cause


@linux
def test_long_garbage_collection_is_gc(python):
    # Build cycles until one full collection takes over 0.5 s of CPU, then
    # collect them in a greenlet.
    body = """
import gc
gc.disable()
junk = []
def grow(n):
    for _ in range(n):
        a = []; a.append(a); junk.append(a)
n = 200_000
while True:
    grow(n)
    start = time.thread_time()
    gc.collect()
    if time.thread_time() - start > 0.5:
        break
    n *= 2
gevent.sleep(0.2)
seen.clear()
gevent.spawn(gc.collect).join()
"""
    events, err = run_events(python, body, timeout=180)
    blocked = [e for e in events if e["kind"] == "EventLoopBlocked"]
    assert blocked, (events, err)
    assert blocked[0]["cause"]["kind"] == "gc", blocked[0]["cause"]
    assert "garbage-collection pass of generation 2" in blocked[0]["cause"]["detail"]


def test_profile_shows_both_halves_of_a_blockage(python):
    body = """
def first():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        pass
def second():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        pass
def culprit():
    first()
    second()
gevent.spawn(culprit).join()
"""
    events, err = run_events(python, body)
    only_block(events, err)
    unblocked = [e for e in events if e["kind"] == "EventLoopUnblocked"]
    assert len(unblocked) == 1, events
    profile, samples = unblocked[0]["profile"], unblocked[0]["samples"]
    assert samples == sum(count for _, count in profile)
    share = {}
    for stack, count in profile:
        assert all(frame.count(":") >= 2 for frame in stack), stack
        share[stack[-1].rsplit(":", 1)[1]] = share.get(stack[-1].rsplit(":", 1)[1], 0) + count
    assert 0.3 <= share.get("first", 0) / samples <= 0.7, profile
    assert 0.3 <= share.get("second", 0) / samples <= 0.7, profile
    # Outermost first: the greenlet's run comes before the culprit, which calls first/second.
    stack = next(s for s, _ in profile if s[-1].endswith(":first"))
    assert stack[-2].endswith(":culprit"), stack
    folded = unblocked[0]["folded"].splitlines()
    assert len(folded) == len(profile)
    frames, count = folded[0].rsplit(" ", 1)
    assert frames.split(";") == profile[0][0] and int(count) == profile[0][1]


def test_unblocked_report_for_long_blockages_only(python):
    body = """
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
gevent.spawn(spin, 0.25).join()
gevent.sleep(0.2)
gevent.spawn(spin, 0.8).join()
"""
    every = {"HUBMON_REPEAT_WINDOW": "0"}
    events, err = run_events(python, body, env=every)
    assert len([e for e in events if e["kind"] == "EventLoopBlocked"]) == 2, events
    # 4 x 0.1 s by default: only the second blockage gets the profile report.
    assert err.count("The hub ran again after") == 1, err
    assert "Where the time went" in err and "in spin" in err, err
    events, err = run_events(python, body, env=dict(every, HUBMON_UNBLOCKED_REPORT_TIME="0"))
    assert err.count("The hub ran again after") == 2, err
    # A repeat within HUBMON_REPEAT_WINDOW prints one line, and no profile either.
    events, err = run_events(python, body, env={"HUBMON_UNBLOCKED_REPORT_TIME": "0"})
    assert err.count("The hub ran again after") == 1, err
    assert err.count("hubmon: blocked again for") == 1, err
    assert [len(e["profile"]) > 0 for e in events if e["kind"] == "EventLoopUnblocked"] == [True] * 2


def test_bad_unblocked_report_time_names_the_variable(python):
    proc = python("import hubmon, gevent\ngevent.sleep(0.01)\n",
                  env=dict(ENV, HUBMON_UNBLOCKED_REPORT_TIME="soon"))
    assert "HUBMON_UNBLOCKED_REPORT_TIME='soon' is invalid" in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", ["run_callback", "rawlink", "timer"])
def test_slow_callback_in_the_hub_is_reported_once_naming_it(python, how):
    # (A plain link() runs its callback in a greenlet of its own: a block
    # there is an ordinary one. rawlink() and watchers run in the hub.)
    schedule = {
        "run_callback": "gevent.get_hub().loop.run_callback(slow_callback)\n",
        "rawlink": "gevent.spawn(lambda: None).rawlink(slow_callback)\n",
        "timer": "timer = gevent.get_hub().loop.timer(0.05)\ntimer.start(slow_callback)\n",
    }[how]
    body = """
def slow_callback(*args):
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        pass
""" + schedule + "gevent.sleep(1.0)\n"
    events, err = run_events(python, body)
    block = only_block(events, err)
    assert block["hub_itself"] and block["is_hub"], block
    assert "it runs a callback of its loop, " in block["info"], block["info"]
    assert "in slow_callback" in block["info"].split("it runs a callback of its loop, ")[1].split("\n")[0]
    unblocked = [e for e in events if e["kind"] == "EventLoopUnblocked"]
    assert len(unblocked) == 1, events
    assert 0.3 < unblocked[0]["duration"] < 1.0, unblocked


def test_idle_hub_and_sleeping_hub_are_not_blocks(python):
    # A hub waiting for a timer, and for a socket, is not busy.
    body = """
import gevent.socket
a, b = gevent.socket.socketpair()
gevent.spawn_later(0.6, b.send, b"x")
a.recv(1)
gevent.sleep(0.6)
"""
    events, err = run_events(python, body)
    assert events == [], (events, err)


@pytest.mark.parametrize("busy, every", [(0.008, 0.01), (0.06, 0.1)])
def test_a_hub_that_waits_for_events_between_callbacks_is_not_blocked(python, busy, every):
    # A timer whose callback computes for 8 ms every 10 ms (or 60 ms every
    # 100 ms), for a second: the hub is busy most of the time, yet goes back
    # to waiting for events between the callbacks, and no callback reaches
    # the threshold.
    body = """
def tick():
    end = time.perf_counter() + %s
    while time.perf_counter() < end:
        pass
timer = gevent.get_hub().loop.timer(%s, %s)
timer.start(tick)
gevent.sleep(1.0)
timer.stop()
""" % (busy, every, every)
    events, err = run_events(python, body)
    assert events == [], (events, err)


@linux
def test_a_short_block_right_after_a_gil_holding_call_is_not_reported(python):
    # While the native thread waits for the GIL, it samples nothing: the
    # wait must not count as part of the next, short, stretch; and a report
    # built after its block ended says so, and charges no later code.
    body = ("GIL_SECONDS = 0.6\n" + GIL_HOLDING_CALL
            + "gevent.sleep(0.3)\nassert events.wait_for_delivery(10)\nseen.clear()\n" + """
def short():
    time.sleep(0.05)     # under the threshold
gevent.spawn(crunch).join()
short()
""")
    # A threshold of 0.2 s leaves short() six sampling periods of margin: on
    # a busy machine the report's printing competes with it for the GIL.
    events, err = run_events(python, body, env={"HUBMON_UNBLOCKED_REPORT_TIME": "0",
                                                "GEVENT_MAX_BLOCKING_TIME": "0.2"},
                             timeout=120)
    block = only_block(events, err)
    assert block["cause"]["kind"] == "gil", block
    assert "in crunch" in block["info"] or "The block ended before" in block["info"], block
    unblocked = [e for e in events if e["kind"] == "EventLoopUnblocked"]
    assert len(unblocked) == 1 and unblocked[0]["duration"] > 0.3, events
    # No sample of the blockage shows short(): it came after.
    assert not any(stack[-1].endswith(":short") for stack, _ in unblocked[0]["profile"]), \
        unblocked[0]["profile"]


def test_a_slow_callback_on_a_young_hub_is_reported(python):
    # The hub's first callback, before any greenlet ever switched.
    program = """
import sys, time, gevent, hubmon
from hubmon import events
seen = []
events.subscribers.append(seen.append)
def slow():
    end = time.perf_counter() + 0.4
    while time.perf_counter() < end:
        pass
gevent.get_hub().loop.timer(0.1).start(slow)
gevent.sleep(0.8)
assert events.wait_for_delivery(10)
print("HUB_ITSELF", [e.hub_itself for e in seen if type(e).__name__ == "EventLoopBlocked"])
"""
    proc = python(program, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HUB_ITSELF [True]" in proc.stdout, proc.stdout + proc.stderr


@linux
def test_a_culprit_without_a_python_frame_is_profiled_as_such(python):
    # gevent.spawn(time.sleep, ...) runs a C function directly: no Python
    # frame to sample. Its profile says so, in words, and claims no "not
    # sampled" time: the block lasted through the report.
    events, err = run_events(python, "gevent.spawn(time.sleep, 0.5).join()\n",
                             env={"HUBMON_UNBLOCKED_REPORT_TIME": "0"})
    unblocked = [e for e in events if e["kind"] == "EventLoopUnblocked"]
    assert len(unblocked) == 1, events
    assert [stack for stack, _ in unblocked[0]["profile"]] == [["(no Python frame)"]], unblocked
    assert "100.0%  (no Python frame)" in err, err
    assert "not sampled" not in err, err
