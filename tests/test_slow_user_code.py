"""Slow user code never blinds the monitor, nor holds up exit."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"}


def exit_delay(proc, ended):
    """Seconds from the program's ``MAIN ENDS <monotonic>`` line to the end of
    its process (``ended``, our time.monotonic(): the clock is system-wide)."""
    return ended - float(proc.stdout.split("MAIN ENDS ")[1].split()[0])


def test_next_block_is_reported_on_time_while_a_slow_subscriber_runs(python):
    # The first block's subscriber takes 3 s; a second block starts 1 s
    # later. Its report (written by the printer thread, stamped by the
    # stream) must come while the subscriber still runs, and show the second
    # culprit's stack, captured when the block was detected.
    proc = python("""
import hubmon, gevent, time
from hubmon import events
class Stamped:
    def __init__(self):
        self.writes = []
    def write(self, text):
        self.writes.append((time.monotonic(), text))
    def flush(self):
        pass
stream = Stamped()
gevent.sleep(0)
hubmon.running_monitors()[0].stop()
monitor = hubmon.start(stream=stream)
period = hubmon._core.sampler_period()
slow = {}
def subscriber(event):
    if isinstance(event, events.EventLoopBlocked) and not slow:
        slow['start'] = time.monotonic()
        time.sleep(3)
        slow['end'] = time.monotonic()
events.subscribers.append(subscriber)
def first():
    time.sleep(0.3)
def second_culprit():
    time.sleep(0.3)
gevent.spawn(first).join()
gevent.sleep(1.0)
second_start = time.monotonic()
gevent.spawn(second_culprit).join()
gevent.sleep(0.5)
reports = [(t, text) for t, text in stream.writes if 'appears to be blocked' in text]
late = reports[1][0] - second_start
print('REPORTS', len(reports), 'SUBSCRIBER_RUNNING', 'end' not in slow)
print('SECOND_HAS_CULPRIT', 'second_culprit' in reports[1][1])
print('LATE %.3f PERIOD %.4f' % (late, period))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "REPORTS 2 SUBSCRIBER_RUNNING True" in proc.stdout, proc.stdout + proc.stderr
    assert "SECOND_HAS_CULPRIT True" in proc.stdout
    late = float(proc.stdout.split("LATE ")[1].split()[0])
    period = float(proc.stdout.split("PERIOD ")[1].split()[0])
    # detection (threshold plus one period), then the printer's bounded wait
    # for the event's subscribers (which are stuck behind the slow one): the
    # threshold again. Generous slack for a loaded machine.
    assert late < 0.1 + period + 0.1 + 1.0, proc.stdout


@pytest.mark.parametrize("ending", ["normal", "sys.exit(3)", "exception"])
def test_exit_is_prompt_while_a_subscriber_sleeps_30s(python, ending):
    body = {"normal": "", "sys.exit(3)": "sys.exit(3)\n", "exception": "raise ValueError('end')\n"}[ending]
    expected = {"normal": 0, "sys.exit(3)": 3, "exception": 1}[ending]
    proc = python("""
import hubmon, gevent, sys, time
from hubmon import events
started = []
def subscriber(event):
    if isinstance(event, events.EventLoopBlocked):
        started.append(1)
        time.sleep(30)                  # a network call without a timeout
        print('SUBSCRIBER WOKE', flush=True)
events.subscribers.append(subscriber)
gevent.spawn(time.sleep, 0.3).join()
while not started:
    gevent.sleep(0.01)
print('MAIN ENDS', time.monotonic(), flush=True)
""" + body, env=ENV, timeout=25)
    ended = time.monotonic()
    assert proc.returncode == expected, proc.stderr
    assert "SUBSCRIBER WOKE" not in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("MAIN ENDS"), proc.stdout
    assert exit_delay(proc, ended) < 2.0, exit_delay(proc, ended)
    assert "Fatal Python error" not in proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1


def test_exit_is_prompt_while_a_monitoring_function_sleeps(python):
    proc = python("""
import hubmon, gevent, time
started = []
def slow(hub):
    started.append(1)
    time.sleep(30)
gevent.sleep(0)
gevent.get_hub().periodic_monitoring_thread.add_monitoring_function(slow, 0.05)
while not started:
    gevent.sleep(0.01)
print('MAIN ENDS', time.monotonic(), flush=True)
""", env=ENV, timeout=25)
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    assert exit_delay(proc, ended) < 2.0, exit_delay(proc, ended)


def test_blocks_go_on_being_detected_while_a_monitoring_function_sleeps(python):
    proc = python("""
import hubmon, gevent, time
started = []
def slow(hub):
    started.append(1)
    time.sleep(3)
gevent.sleep(0)
monitor = gevent.get_hub().periodic_monitoring_thread
monitor.add_monitoring_function(slow, 0.05)
while not started:
    gevent.sleep(0.01)
for _ in range(3):
    gevent.spawn(time.sleep, 0.2).join()
    gevent.sleep(0.1)
print('BLOCKS', monitor.stats()['blocks'])
""", env=ENV, timeout=25)
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKS 3" in proc.stdout, proc.stdout + proc.stderr


def test_exit_is_prompt_while_a_report_repr_sleeps(python):
    # User code of a capture runs on the native thread itself: exit waits
    # for it one second at most.
    proc = python("""
import hubmon, gevent, sys, time
class Slow:
    def __repr__(self):
        time.sleep(30)
        return 'slow'
def culprit(arg):
    time.sleep(0.3)
gevent.spawn(culprit, Slow()).join()
print('MAIN ENDS', time.monotonic(), flush=True)
sys.exit(4)
""", env=ENV, timeout=25)
    ended = time.monotonic()
    assert proc.returncode == 4, proc.stderr
    assert exit_delay(proc, ended) < 3.0, exit_delay(proc, ended)
    assert "Fatal Python error" not in proc.stderr


@pytest.mark.parametrize("who", ["hubmon's report", "a subscriber"])
def test_exit_is_prompt_while_a_logging_handler_hangs(python, who):
    # logging's own exit hook would wait for the handler's lock, held by
    # hubmon's thread for as long as the handler hangs.
    setup = {"hubmon's report": "hubmon.config.report_to = 'logging'\n"
                                "logging.getLogger('hubmon').addHandler(Slow())\n",
             "a subscriber": "log = logging.getLogger('app'); log.addHandler(Slow())\n"
                             "events.subscribers.append(lambda e: log.warning('%r', e))\n"}[who]
    proc = python("""
import hubmon, gevent, logging, time
from hubmon import events
entered = []
class Slow(logging.Handler):
    def emit(self, record):
        entered.append(1)
        time.sleep(30)                  # the log sink is down
""" + setup + """
gevent.spawn(time.sleep, 0.3).join()
while not entered:
    gevent.sleep(0.01)
print('MAIN ENDS', time.monotonic(), flush=True)
""", env=ENV, timeout=25)
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    assert exit_delay(proc, ended) < 2.5, exit_delay(proc, ended)
