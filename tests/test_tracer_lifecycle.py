"""The trace function's life: bounded chains, dead threads, replaced tracers."""
from __future__ import annotations



def test_start_in_the_hub_thread_stop_from_another_ten_thousand_times(python):
    proc = python("""
import gc, greenlet, hubmon, threading, time, tracemalloc, psutil
from hubmon import _tracing

def mine(event, args):
    pass
greenlet.settrace(mine)
hub = greenlet.greenlet(lambda: None)
other = greenlet.greenlet(lambda: None)

def chain_length():
    # How many trace functions each switch goes through.
    length, link = 0, greenlet.gettrace()
    while link is not None:
        length += 1
        link = getattr(link, 'previous', None)
    return length

def cycles(count):
    for _ in range(count):
        monitor = hubmon.start(hub, max_blocking_time=60)
        stopper = threading.Thread(target=monitor.stop)
        stopper.start(); stopper.join()

cycles(200)
gc.collect()
tracer = greenlet.gettrace()
chain_before = chain_length()
tracemalloc.start()
objects = len(gc.get_objects())
rss = psutil.Process().memory_info().rss
cycles(10_000)
gc.collect()
print('SAME TRACER', greenlet.gettrace() is tracer, 'PREVIOUS IS MINE', tracer.previous is mine)
print('RECORDS', tracer.record_count)
print('OBJECTS', len(gc.get_objects()) - objects)
print('TRACED', tracemalloc.get_traced_memory()[0])
tracemalloc.stop()
print('RSS', psutil.Process().memory_info().rss - rss)
print('CHAIN', chain_before, chain_length())
""", timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "SAME TRACER True PREVIOUS IS MINE True" in out, out
    assert "RECORDS 0" in out
    assert int(out.split("OBJECTS ")[1].split()[0]) < 50, out
    assert int(out.split("TRACED ")[1].split()[0]) < 200_000, out
    # The chain did not grow: every switch goes through hubmon's one tracer
    # and the program's function, as before the 10,000 cycles.
    assert "CHAIN 2 2" in out, out


def test_a_monitor_whose_thread_ended_stops_itself(python):
    proc = python("""
import greenlet, hubmon, threading, time, io
out = io.StringIO()
box = {}
def thread_body():
    hub = greenlet.greenlet(lambda: None)
    box['monitor'] = hubmon.start(hub, max_blocking_time=0.1, stream=out)
    box['hub'] = hub
t = threading.Thread(target=thread_body)
t.start(); t.join()                 # the thread ends without stop()
time.sleep(0.5)
monitor = box['monitor']
print('RUNNING', monitor.running, 'MONITORS', len(hubmon.running_monitors()))
print('REPORTED', 'appears to be blocked' in out.getvalue())
""")
    assert proc.returncode == 0, proc.stderr
    assert "RUNNING False MONITORS 0" in proc.stdout, proc.stdout + proc.stderr
    assert "REPORTED False" in proc.stdout


def test_a_tracer_that_replaces_hubmons_without_chaining_is_detected(python):
    proc = python("""
import greenlet, hubmon, time, io
out = io.StringIO()
hub_log = []
def hub_run():
    main = hub.parent
    while True:
        hub_log.append(1)
        main.switch()
hub = greenlet.greenlet(hub_run)
monitor = hubmon.start(hub, max_blocking_time=0.1, stream=out)
def theirs(event, args):
    pass
greenlet.settrace(theirs)           # does not chain: hubmon no longer sees switches
for _ in range(8):                  # the hub runs often: no block at all
    hub.switch()
    time.sleep(0.05)
time.sleep(0.2)
print('BLOCKS', monitor.stats()['blocks'])
print('REPORTED', 'appears to be blocked' in out.getvalue())
greenlet.settrace(None)
monitor.stop()
""")
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKS 0" in proc.stdout and "REPORTED False" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.count("no longer calls hubmon's") == 1, proc.stderr


def test_a_tracer_that_chains_to_hubmons_keeps_it_seeing(python):
    proc = python("""
import greenlet, hubmon, time, io
out = io.StringIO()
hub = greenlet.greenlet(lambda: None)
monitor = hubmon.start(hub, max_blocking_time=0.1, stream=out)
previous = greenlet.gettrace()
def theirs(event, args):
    previous(event, args)
greenlet.settrace(theirs)
greenlet.greenlet(lambda: time.sleep(0.3)).switch()
time.sleep(0.2)
print('BLOCKS', monitor.stats()['blocks'])
greenlet.settrace(previous)
monitor.stop()
""")
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKS 1" in proc.stdout
    assert "no longer calls hubmon's" not in proc.stderr


def test_after_settrace_none_a_new_monitor_installs_a_fresh_tracer(python):
    proc = python("""
import greenlet, hubmon, time, io
hub = greenlet.greenlet(lambda: None)
first = hubmon.start(hub, max_blocking_time=0.1, print_blocking_reports=False)
first.stop()
greenlet.settrace(None)
def base(event, args):
    pass
greenlet.settrace(base)
out = io.StringIO()
second = hubmon.start(hub, max_blocking_time=0.1, stream=out)
print('ON TOP', greenlet.gettrace() is not base and greenlet.gettrace().previous is base)
greenlet.greenlet(lambda: time.sleep(0.3)).switch()
time.sleep(0.2)
print('BLOCKS', second.stats()['blocks'])
second.stop()
print('RESTORED', greenlet.gettrace() is base)
""")
    assert proc.returncode == 0, proc.stderr
    assert "ON TOP True" in proc.stdout and "BLOCKS 1" in proc.stdout and "RESTORED True" in proc.stdout
