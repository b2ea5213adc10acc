"""``import hubmon`` as a drop-in replacement of gevent's monitor thread."""
from __future__ import annotations

import pytest

pytest.importorskip("gevent")

ENV = {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.1"}

CHECK = """
def spin(seconds):
    end = time.perf_counter() + seconds    # a CPU loop: blocks even when time is patched
    while time.perf_counter() < end:
        pass
hub = gevent.get_hub()
gevent.spawn(spin, 0.3).join()
gevent.sleep(0.05)
import hubmon
monitor = hub.periodic_monitoring_thread
print('monitor', type(monitor).__module__, type(monitor).__name__)
print('gevent thread module imported', 'gevent._monitor' in sys.modules)
print('reports', monitor.stats()['blocks'])
"""


def assert_spin_reported_once_by_hubmon(stderr, hub_ran_first):
    """The spin is reported once, by hubmon, and hubmon reports nothing else.

    With the hub started before the import, gevent's own monitor runs until
    hubmon replaces it, and may rightly report a slow import itself: a
    sanitizer build or a busy machine makes it slow.
    """
    reports = [r for r in stderr.split("=" * 80) if "appears to be blocked" in r]
    spins = [r for r in reports if "spin" in r]
    others = [r for r in reports if "spin" not in r]
    assert len(spins) == 1 and "Reported by <hubmon.Monitor" in spins[0], stderr
    assert not others or hub_ran_first, stderr
    assert not any("Reported by <hubmon.Monitor" in r for r in others), stderr


@pytest.mark.parametrize("order", [
    "import hubmon\nimport gevent",
    "import gevent\nimport hubmon",
    "import hubmon\nfrom gevent import monkey; monkey.patch_all()\nimport gevent",
    "from gevent import monkey; monkey.patch_all()\nimport gevent\nimport hubmon",
    "import gevent\ngevent.sleep(0)\nimport hubmon",
])
def test_every_import_order_monitors_with_hubmon(python, order):
    proc = python("import sys, time\n" + order + "\n" + CHECK, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "monitor hubmon.monitor Monitor" in proc.stdout
    hub_ran_first = "gevent.sleep(0)" in order
    # gevent's own monitor thread only ever ran for a hub started before the import.
    assert "gevent thread module imported %s" % hub_ran_first in proc.stdout
    assert "reports 1" in proc.stdout
    assert_spin_reported_once_by_hubmon(proc.stderr, hub_ran_first)


def test_hub_started_before_import_swaps_gevents_thread_for_hubmon(python):
    proc = python("import sys, time\nimport gevent\ngevent.sleep(0)\n"
                  "print('before', type(gevent.get_hub().periodic_monitoring_thread).__name__)\n"
                  "import hubmon\n" + CHECK, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "before PeriodicMonitoringThread" in proc.stdout
    assert "monitor hubmon.monitor Monitor" in proc.stdout
    assert "reports 1" in proc.stdout
    assert_spin_reported_once_by_hubmon(proc.stderr, hub_ran_first=True)


def test_disabled_by_default(python):
    proc = python("""
import hubmon, gevent, time, sys, greenlet
gevent.spawn(time.sleep, 0.3).join()
print(gevent.get_hub().periodic_monitoring_thread, greenlet.gettrace(), hubmon._core.sampler_running())
""")
    assert proc.returncode == 0, proc.stderr
    assert "None None False" in proc.stdout
    assert "appears to be blocked" not in proc.stderr


def test_import_hubmon_does_not_import_gevent_nor_change_a_plain_program(python):
    proc = python("""
import sys, threading, greenlet
before_threads = threading.active_count()
import hubmon
print('gevent' in sys.modules, greenlet.gettrace(), hubmon._core.sampler_running(),
      threading.active_count() == before_threads)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "False None False True" in proc.stdout


def test_started_event_fires_with_the_hubmon_monitor(python):
    proc = python("""
import hubmon, gevent, gevent.events
got = []
gevent.events.subscribers.append(got.append)
gevent.sleep(0)
started = [e for e in got if isinstance(e, gevent.events.PeriodicMonitorThreadStartedEvent)]
print(len(started), started[0].monitor is gevent.get_hub().periodic_monitoring_thread,
      type(started[0].monitor).__name__)
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "1 True Monitor" in proc.stdout


def test_gevent_subscribers_get_gevents_own_event_classes(python):
    proc = python("""
import hubmon, gevent, gevent.events, time
got = []
gevent.events.subscribers.append(got.append)
def bad(event):
    if isinstance(event, gevent.events.EventLoopBlocked):
        raise ValueError('zope subscriber failure')
gevent.events.subscribers.insert(0, bad)
gevent.spawn(time.sleep, 0.3).join()
gevent.sleep(0.05)
blocked = [e for e in got if isinstance(e, gevent.events.EventLoopBlocked)]
print(len(blocked), blocked[0].blocking_time, blocked[0].hub is gevent.get_hub(),
      'appears to be blocked' in '\\n'.join(blocked[0].info))
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "1 0.1 True True" in proc.stdout
    assert "zope subscriber failure" in proc.stderr


def test_gevent_config_set_in_code_is_honoured(python):
    proc = python("""
import hubmon, gevent, time
gevent.config.monitor_thread = True
gevent.config.max_blocking_time = 0.3
gevent.spawn(time.sleep, 0.2).join()      # under 0.3: not reported
gevent.sleep(0.05)
m = gevent.get_hub().periodic_monitoring_thread
print('first', m.stats()['blocks'], m.max_blocking_time)
gevent.config.max_blocking_time = 0.1     # changed while running
gevent.spawn(time.sleep, 0.3).join()
gevent.sleep(0.05)
print('second', m.stats()['blocks'], m.max_blocking_time)
""")
    assert proc.returncode == 0, proc.stderr
    assert "first 0 0.3" in proc.stdout
    assert "second 1 0.1" in proc.stdout


def test_hubmon_config_in_code_wins_over_gevent_config(python):
    proc = python("""
import hubmon, gevent
hubmon.config.monitor_thread = True
hubmon.config.max_blocking_time = 0.25
gevent.config.max_blocking_time = 2.0
gevent.sleep(0)
print(gevent.get_hub().periodic_monitoring_thread.max_blocking_time)
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.25"


def test_hub_destroy_kills_the_monitor_and_restores_tracing(python):
    proc = python("""
import hubmon, gevent, greenlet
gevent.sleep(0)
hub = gevent.get_hub()
m = hub.periodic_monitoring_thread
hub.destroy()
print(m.running, greenlet.gettrace())
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "False None" in proc.stdout


def test_report_shows_gevent_name_spawning_stack_and_spawn_tree_locals(python):
    proc = python("""
import hubmon, gevent, time
from gevent import Greenlet
def handler():
    time.sleep(0.3)
def spawner():
    g = Greenlet(handler)
    g.name = 'request-handler-7'
    g.spawn_tree_locals['request_id'] = 'abc123'
    g.start()
    g.join()
gevent.spawn(spawner).join()
""", env=ENV)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "request-handler-7" in err
    assert "Spawned at" in err and "in spawner" in err
    assert "request_id" in err and "abc123" in err
    assert "Blocked Stack (for thread id 0x" in err
    assert "MainThread" in err
