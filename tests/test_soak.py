"""Soak: a socket workload with random injected blocks, watched for a minute.

Every injected block longer than the threshold (plus a scheduling margin)
is reported exactly once; nothing of half the threshold or shorter (plus
10 ms) is ever reported. HUBMON_SOAK_SECONDS sets the length (60 by default).
"""
from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("gevent")

SECONDS = float(os.environ.get("HUBMON_SOAK_SECONDS", "60"))
THRESHOLD = 0.1
MARGIN = 0.02   # the native thread's wake-up may be late on a loaded machine


@pytest.mark.slow
def test_soak_socket_workload_with_injected_blocks(python):
    proc = python("""
import json, random, sys, time
import hubmon, gevent
from gevent import socket
from hubmon import events

DURATION = %f
blocked, unblocked = [], []
def on_event(event):
    if isinstance(event, events.EventLoopBlocked):
        blocked.append(getattr(event.greenlet, 'name', None))
    elif isinstance(event, events.EventLoopUnblocked):
        unblocked.append(event.duration)
events.subscribers.append(on_event)

server = socket.socket()
server.bind(('127.0.0.1', 0))
server.listen(512)
port = server.getsockname()[1]
stop = False
exchanged = [0]

def serve(conn):
    with conn:
        while True:
            data = conn.recv(64)
            if not data:
                return
            conn.sendall(data)

def acceptor():
    while not stop:
        conn, _ = server.accept()
        gevent.spawn(serve, conn)

def client():
    sock = socket.create_connection(('127.0.0.1', port))
    with sock:
        while not stop:
            sock.sendall(b'ping')
            if sock.recv(64) != b'ping':
                raise AssertionError('bad echo')
            exchanged[0] += 1
            gevent.sleep(random.uniform(0, 0.02))

injected = []
def inject(n, seconds):
    time.sleep(seconds)            # not patched: blocks the hub

rng = random.Random(12345)
def injector():
    n = 0
    end = time.monotonic() + DURATION
    while time.monotonic() < end:
        gevent.sleep(rng.uniform(0.15, 0.35))
        # The extremes first, then uniformly at random.
        seconds = [0.05, 0.4, 0.06, 0.3][n] if n < 4 else rng.uniform(0.05, 0.4)
        g = gevent.Greenlet(inject, n, seconds)
        g.name = 'inject-%%d' %% n
        start = time.perf_counter()
        g.start()
        g.join()
        injected.append((g.name, seconds, time.perf_counter() - start))
        n += 1

acc = gevent.spawn(acceptor)
clients = [gevent.spawn(client) for _ in range(200)]
gevent.spawn(injector).join()
gevent.sleep(0.3)
stop = True
gevent.killall(clients + [acc])
print(json.dumps({'injected': injected, 'blocked': blocked, 'unblocked': unblocked,
                  'exchanged': exchanged[0]}))
""" % SECONDS, env={"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": str(THRESHOLD),
                   "GEVENT_MONITOR_PRINT_BLOCKING_REPORTS": "false"}, timeout=SECONDS * 3 + 60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["exchanged"] > 1000          # the workload really ran
    counts = {}
    for name in result["blocked"]:
        counts[name] = counts.get(name, 0) + 1
    long_blocks = short_blocks = 0
    for name, asked, _took in result["injected"]:
        if asked > THRESHOLD + MARGIN:
            long_blocks += 1
            assert counts.get(name, 0) == 1, (name, asked, counts.get(name))
        elif asked <= THRESHOLD / 2 + 0.01:
            short_blocks += 1
            assert counts.get(name, 0) == 0, (name, asked)
    # Only injected greenlets are ever reported, each at most once.
    assert all(name and name.startswith("inject-") for name in counts), counts
    assert max(counts.values()) == 1
    assert long_blocks > 10 and short_blocks > 0
    assert len(result["unblocked"]) == len(result["blocked"])
