"""What hubmon touches is its own: file descriptors, signals, settings."""
from __future__ import annotations

import os
import signal
import sys

import pytest

LINUX = sys.platform.startswith("linux")

CALIBRATED_GIL_HOLD = """
import time
def _calibrate(seconds):
    n = 2_000_000
    start = time.perf_counter(); sum(range(n)); took = time.perf_counter() - start
    return int(n * seconds / max(took, 1e-6))
N = _calibrate(0.8)
def hold_gil():
    sum(range(N))                   # one C call that never releases the GIL
"""


@pytest.mark.skipif(not LINUX, reason="the GIL stack dump is Linux only")
def test_gil_dump_never_writes_into_a_descriptor_hubmon_does_not_own(python, tmp_path):
    first, unrelated = tmp_path / "first.log", tmp_path / "unrelated.log"
    proc = python(CALIBRATED_GIL_HOLD + """
import hubmon, greenlet, os
hub = greenlet.greenlet(lambda: None)
fds_before = len(os.listdir('/proc/self/fd'))
stream = open(%r, 'w')
monitor = hubmon.start(hub, max_blocking_time=0.1, stream=stream)
number = stream.fileno()
stream.close()                      # the program closes the monitor's stream...
other = open(%r, 'w')               # ...and the number goes to an unrelated file
print('SAME NUMBER', other.fileno() == number)
greenlet.greenlet(hold_gil).switch()
time.sleep(0.3)
monitor.stop()
other.close()
from hubmon import events
print('DELIVERED', events.wait_for_delivery(10))   # the printer's passing copies closed too
print('FDS BACK', len(os.listdir('/proc/self/fd')) == fds_before)
""" % (str(first), str(unrelated)))
    assert proc.returncode == 0, proc.stderr
    assert "SAME NUMBER True" in proc.stdout
    assert "DELIVERED True" in proc.stdout, proc.stdout
    assert "FDS BACK True" in proc.stdout, proc.stdout      # hubmon's duplicate was closed
    assert unrelated.read_text() == ""
    # The dump went to the monitor's own file, through hubmon's duplicate.
    assert "the GIL is held" in first.read_text()
    assert "hold_gil" in first.read_text()


@pytest.mark.skipif(not LINUX, reason="the GIL stack dump is Linux only")
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGCHLD", "SIGPIPE",
                                  "SIGALRM", "SIGSEGV", "SIGWINCH", "SIGCONT", "SIGTSTP"])
def test_gil_signal_with_a_standard_meaning_is_refused(python, name):
    number = int(getattr(signal, name))
    proc = python("""
import hubmon, greenlet
try:
    hubmon.start(greenlet.greenlet(lambda: None))
except hubmon.ConfigError as error:
    print('ERROR', error)
""", env={"HUBMON_GIL_SIGNAL": str(number)})
    assert proc.returncode == 0, proc.stderr
    assert "ERROR HUBMON_GIL_SIGNAL=%r is invalid" % str(number) in proc.stdout, proc.stdout


@pytest.mark.skipif(not LINUX, reason="the GIL stack dump is Linux only")
@pytest.mark.parametrize("source", ["env", "code"])
def test_gil_signal_the_program_handles_is_refused_and_its_handler_kept(python, source):
    proc = python("""
import hubmon, greenlet, signal
def mine(signum, frame):
    pass
signal.signal(signal.SIGUSR1, mine)
if %r == 'code':
    hubmon.config.gil_signal = int(signal.SIGUSR1)
try:
    hubmon.start(greenlet.greenlet(lambda: None))
except hubmon.ConfigError as error:
    print('ERROR', error)
print('KEPT', signal.getsignal(signal.SIGUSR1) is mine)
""" % source, env={"HUBMON_GIL_SIGNAL": str(int(signal.SIGUSR1))} if source == "env" else {})
    assert proc.returncode == 0, proc.stderr
    label = "HUBMON_GIL_SIGNAL" if source == "env" else "gil_signal"
    assert "ERROR %s=" % label in proc.stdout and "already handles" in proc.stdout, proc.stdout
    assert "KEPT True" in proc.stdout


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="no real-time signals")
def test_auto_gil_signal_skips_signals_the_program_handles(python):
    proc = python("""
import hubmon, greenlet, signal, faulthandler
def mine(signum, frame):
    pass
first = signal.SIGRTMIN + 6
signal.signal(first, mine)
faulthandler.register(first + 1)     # C-level handlers count too
monitor = hubmon.start(greenlet.greenlet(lambda: None))
print('PICKED', monitor.gil_signal - signal.SIGRTMIN)
print('KEPT', signal.getsignal(first) is mine)
monitor.stop()
""")
    assert proc.returncode == 0, proc.stderr
    assert "PICKED 8" in proc.stdout and "KEPT True" in proc.stdout, proc.stdout


@pytest.mark.parametrize("variable, value", [("HUBMON_REPORT_TO", "bogus"),
                                             ("HUBMON_REPORT_GREENLETS", "-3"),
                                             ("HUBMON_GIL_SIGNAL", "usr1"),
                                             ("GEVENT_MONITOR_THREAD_ENABLE", "maybe"),
                                             ("GEVENT_MONITOR_PRINT_BLOCKING_REPORTS", "2")])
def test_every_setting_is_validated_when_a_monitor_starts(python, variable, value):
    proc = python("""
import hubmon, greenlet
try:
    hubmon.start(greenlet.greenlet(lambda: None))
    print('STARTED')
except hubmon.ConfigError as error:
    print('ERROR', error)
""", env={variable: value})
    assert proc.returncode == 0, proc.stderr
    assert "ERROR %s=%r is invalid" % (variable, value) in proc.stdout, proc.stdout + proc.stderr


def test_the_cli_validates_every_setting(python, tmp_path):
    script = tmp_path / "program.py"
    script.write_text("print('ran')\n")
    proc = python(["-m", "hubmon", "run", str(script)], env={"HUBMON_REPORT_TO": "bogus"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "HUBMON_REPORT_TO='bogus' is invalid" in proc.stderr
    assert "ran" not in proc.stdout


def test_no_report_is_lost_to_configuration_changed_after_start(python):
    # Settings were validated at start; a bad value appearing later (the
    # environment changed and the configuration reloaded) loses nothing.
    proc = python("""
import hubmon, greenlet, os, time, io
out = io.StringIO()
hub = greenlet.greenlet(lambda: None)
monitor = hubmon.start(hub, max_blocking_time=0.1, stream=out)
os.environ['HUBMON_REPORT_TO'] = 'bogus'
os.environ['HUBMON_REPORT_GREENLETS'] = 'many'
hubmon.config.reload()
greenlet.greenlet(lambda: time.sleep(0.3)).switch()
time.sleep(0.3)
print('REPORTED', 'appears to be blocked' in out.getvalue())
""")
    assert proc.returncode == 0, proc.stderr
    assert "REPORTED True" in proc.stdout, proc.stdout + proc.stderr
    assert "ConfigError" not in proc.stderr


@pytest.mark.skipif(not LINUX, reason="the GIL stack dump is Linux only")
def test_a_signal_handler_restored_over_hubmons_never_kills_the_process(python):
    # signal.getsignal() does not know hubmon's C handler: the save/restore
    # idiom puts SIG_DFL back, whose action for this signal ends the process.
    proc = python(CALIBRATED_GIL_HOLD + """
import hubmon, gevent, signal
gevent.sleep(0)
sig = gevent.get_hub().periodic_monitoring_thread.gil_signal
old = signal.signal(sig, lambda *args: None)
signal.signal(sig, old)
gevent.spawn(hold_gil).join()
gevent.sleep(0.2)
print('SURVIVED', old == signal.SIG_DFL)
""", env={"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"})
    assert proc.returncode == 0, proc.stderr
    assert "SURVIVED True" in proc.stdout
    assert "no longer has hubmon's handler" in proc.stderr, proc.stderr


@pytest.mark.skipif(not LINUX, reason="the GIL stack dump is Linux only")
def test_faulthandler_registered_on_hubmons_signal_takes_it_over_safely(python):
    # faulthandler.register on a signal it already handles keeps hubmon's
    # handler in front; with chain=True its chaining would end the process.
    proc = python(CALIBRATED_GIL_HOLD + """
import hubmon, gevent, faulthandler, sys
from hubmon import _core
gevent.sleep(0)
sig = gevent.get_hub().periodic_monitoring_thread.gil_signal
faulthandler.register(sig, file=sys.stdout, chain=True)
print('TAKEN', _core.signal_disposition(sig))
gevent.spawn(hold_gil).join()
gevent.sleep(0.2)
print('SURVIVED')
""", env={"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"})
    assert proc.returncode == 0, proc.stderr
    assert "TAKEN other" in proc.stdout and "SURVIVED" in proc.stdout
    assert "no longer has hubmon's handler" in proc.stderr


@pytest.mark.skipif(not LINUX, reason="the GIL stack dump is Linux only")
def test_the_signal_is_given_back_when_the_last_monitor_stops(python):
    proc = python("""
import hubmon, greenlet
from hubmon import _core
hub = greenlet.greenlet(lambda: None)
monitor = hubmon.start(hub, max_blocking_time=60)
sig = monitor.gil_signal
print('WHILE', _core.signal_disposition(sig))
monitor.stop()
print('AFTER', _core.signal_disposition(sig))
""")
    assert proc.returncode == 0, proc.stderr
    assert "WHILE hubmon" in proc.stdout and "AFTER default" in proc.stdout


def test_a_passing_copy_of_a_descriptor_leaves_the_low_numbers_to_the_program(tmp_path):
    # A program that closes n and opens a file expects n back (the lowest
    # free number): the printer's copy of the stream's descriptor, made for
    # each write, must not take it meanwhile.
    from hubmon import _output
    with open(tmp_path / "out", "w") as f:
        copy = _output._private_copy(f.fileno())
        try:
            assert copy >= _output._COPY_FLOOR
            assert not os.get_inheritable(copy)
            assert os.path.samestat(os.fstat(copy), os.fstat(f.fileno()))
        finally:
            os.close(copy)
