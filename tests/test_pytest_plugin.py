"""hubmon's pytest plugin, run on small test files with pytester.

Each run is a fresh ``python -m pytest`` (``conftest.run_pytest``, which is
``runpytest_subprocess`` with every thread's stacks on timeout): the
plugin starts monitors, switches hubmon's gevent drop-in on and off and
listens to events, none of which may leak into the suite that tests it.
Blocks last 0.5 s against limits of 0.1 s; the tests that must pass do not
sleep, or sleep in gevent's hub.
"""
from __future__ import annotations


import pytest

from conftest import run_pytest

pytest_plugins = ["pytester"]

BLOCKING = """
import time

def handler():
    time.sleep(0.5)            # the blocking call
"""


def _plugin_installed() -> bool:
    """Whether the entry point is installed (pip install -e .), or the plugin must be named."""
    from importlib import metadata
    try:
        points = metadata.entry_points(group="pytest11")
    except TypeError:  # Python 3.9
        points = metadata.entry_points().get("pytest11", [])
    return any(point.value == "hubmon.pytest_plugin" for point in points)


@pytest.fixture
def run(pytester, monkeypatch):
    """Run pytest on the files made with ``pytester``; returns the RunResult."""
    for name in ("GEVENT_MONITOR_THREAD_ENABLE", "GEVENT_MAX_BLOCKING_TIME", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    extra = () if _plugin_installed() else ("-p", "hubmon.pytest_plugin")
    pytester.makepyfile(blocking=BLOCKING)

    def run(*args, subprocess=True, env=None):
        if not subprocess:  # for runs that end before any test
            return pytester.runpytest_inprocess(*extra, "-p", "no:cacheprovider", *args)
        return run_pytest(pytester, *extra, "-p", "no:cacheprovider", "-rA", *args,
                          env=env, timeout=180)
    return run


def outcomes(result):
    """``{test name: outcome}`` from the short test summary of ``-rA``."""
    found = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"):
            if line.startswith(word + " "):
                name = line.split()[1].split("::")[-1]
                found.setdefault(name, []).append(word)
    return {name: "+".join(words) for name, words in found.items()}


# -- the session-wide limit ---------------------------------------------------------------


def test_option_fails_blocking_tests_and_shows_the_report(pytester, run):
    pytester.makepyfile(test_suite="""
import sys, time

def test_plain_first():
    time.sleep(0.5)                        # no gevent: nothing to block
    assert "gevent" not in sys.modules

def test_blocks_in_a_greenlet():
    import gevent                          # first import of gevent: during the test
    from blocking import handler
    gevent.spawn(handler).join()

def test_cooperative():
    import gevent
    gevent.sleep(0.5)
    gevent.joinall([gevent.spawn(gevent.sleep, 0.01) for _ in range(20)])

def test_plain_after_gevent():
    time.sleep(0.5)                        # the hub exists, but this test does not use it

def test_test_greenlet_blocks_a_spawned_one():
    import gevent
    started = gevent.spawn(gevent.sleep, 0)
    time.sleep(0.5)                        # the greenlet above waits meanwhile
    started.join()
""")
    result = run("--hubmon-max-blocking-time=0.1")
    assert outcomes(result) == {
        "test_plain_first": "PASSED",
        "test_blocks_in_a_greenlet": "FAILED",
        "test_cooperative": "PASSED",
        "test_plain_after_gevent": "PASSED",
        "test_test_greenlet_blocks_a_spawned_one": "FAILED",
    }
    text = result.stdout.str()
    assert "hubmon: a hub stayed blocked longer than 0.100 seconds during the test's call " \
           "(max_blocking_time from --hubmon-max-blocking-time)" in text
    assert "appears to be blocked" in text
    # Which greenlet, and where.
    assert 'Greenlet "Greenlet-0"' in text and "handler" in text
    assert "time.sleep(0.5)            # the blocking call" in text
    assert "in test_test_greenlet_blocks_a_spawned_one" in text


def test_off_by_default_and_idle(pytester, run):
    pytester.makepyfile(test_suite="""
import sys, greenlet, hubmon

def test_blocks_but_nobody_watches():
    import gevent
    from blocking import handler
    gevent.spawn(handler).join()
    assert hubmon.running_monitors() == []
    assert hubmon.events.subscribers == []
    assert greenlet.gettrace() is None
    assert not hubmon.config.is_explicit("monitor_thread")
""")
    result = run()
    assert outcomes(result) == {"test_blocks_but_nobody_watches": "PASSED"}


def test_a_plain_suite_never_imports_gevent(pytester, run):
    pytester.makeconftest("""
import sys

def pytest_sessionfinish(session):
    print("gevent imported:", "gevent" in sys.modules)
""")
    pytester.makepyfile(test_suite="""
import time

def test_sleeps():
    time.sleep(0.3)

def test_fast():
    pass
""")
    result = run("--hubmon-max-blocking-time=0.1", "-s")
    assert outcomes(result) == {"test_sleeps": "PASSED", "test_fast": "PASSED"}
    result.stdout.fnmatch_lines(["*gevent imported: False*"])


def test_ini_option(pytester, run):
    pytester.makeini("""
[pytest]
hubmon_max_blocking_time = 0.1
""")
    pytester.makepyfile(test_suite="""
import gevent
from blocking import handler

def test_blocks():
    gevent.spawn(handler).join()

def test_fine():
    gevent.sleep(0)
""")
    result = run()
    assert outcomes(result) == {"test_blocks": "FAILED", "test_fine": "PASSED"}
    assert "max_blocking_time from the ini option hubmon_max_blocking_time" in result.stdout.str()
    # The command line wins over the ini file; 0 turns it off.
    result = run("--hubmon-max-blocking-time=0")
    assert outcomes(result) == {"test_blocks": "PASSED", "test_fine": "PASSED"}


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "1e9", "", " "])
def test_bad_option_is_a_usage_error(run, value):
    result = run("--hubmon-max-blocking-time=" + value, subprocess=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hubmon-max-blocking-time=%r is invalid*" % (value,)])


def test_bad_ini_value_is_a_usage_error(pytester, run):
    pytester.makeini("""
[pytest]
hubmon_max_blocking_time = soon
""")
    result = run(subprocess=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*hubmon_max_blocking_time='soon' is invalid*"])


# -- the marker -----------------------------------------------------------------------------


def test_marker_sets_the_limit_per_test_class_and_module(pytester, run):
    pytester.makepyfile(test_marked="""
import gevent, pytest
from blocking import handler

pytestmark = pytest.mark.hubmon(max_blocking_time=0.1)

def test_module_limit():
    gevent.spawn(handler).join()

@pytest.mark.hubmon(max_blocking_time=2.0)
def test_own_limit_is_higher():
    gevent.spawn(handler).join()

@pytest.mark.hubmon(allow_blocking=True)
def test_exempt():
    gevent.spawn(handler).join()

@pytest.mark.hubmon(allow_blocking=True)
class TestExemptClass:
    def test_exempt_too(self):
        gevent.spawn(handler).join()

    @pytest.mark.hubmon(max_blocking_time=0.1)
    def test_own_limit_wins_over_class(self):
        gevent.spawn(handler).join()
""")
    pytester.makepyfile(test_unmarked="""
import gevent, pytest
from blocking import handler

def test_not_watched():
    gevent.spawn(handler).join()

@pytest.mark.hubmon
def test_bare_marker_uses_hubmon_default():
    gevent.spawn(handler).join()       # hubmon.config.max_blocking_time: 0.1
""")
    result = run()
    assert outcomes(result) == {
        "test_module_limit": "FAILED",
        "test_own_limit_is_higher": "PASSED",
        "test_exempt": "PASSED",
        "test_exempt_too": "PASSED",
        "test_own_limit_wins_over_class": "FAILED",
        "test_not_watched": "PASSED",
        "test_bare_marker_uses_hubmon_default": "FAILED",
    }
    assert "(max_blocking_time from @pytest.mark.hubmon)" in result.stdout.str()
    assert "(max_blocking_time from hubmon.config.max_blocking_time)" in result.stdout.str()


def test_allow_blocking_exempts_from_the_option(pytester, run):
    pytester.makepyfile(test_suite="""
import gevent, pytest
from blocking import handler

@pytest.mark.hubmon(allow_blocking=True)
def test_exempt():
    gevent.spawn(handler).join()

def test_watched():
    gevent.spawn(handler).join()
""")
    result = run("--hubmon-max-blocking-time=0.1")
    assert outcomes(result) == {"test_exempt": "PASSED", "test_watched": "FAILED"}


def test_marker_is_registered_and_checked(pytester, run):
    pytester.makepyfile(test_suite="""
import pytest

@pytest.mark.hubmon(max_blocking_time=-1)
def test_negative():
    pass

@pytest.mark.hubmon(max_blocking_tim=1)
def test_typo():
    pass

@pytest.mark.hubmon(0.1)
def test_positional():
    pass
""")
    result = run("--strict-markers")
    assert outcomes(result) == {"test_negative": "ERROR", "test_typo": "ERROR",
                                "test_positional": "ERROR"}
    text = result.stdout.str()
    assert "max_blocking_time=-1) is invalid" in text
    assert "unknown keywords max_blocking_tim" in text
    assert "keywords only" in text
    result = run("--markers")
    result.stdout.fnmatch_lines(["*@pytest.mark.hubmon(max_blocking_time=None, allow_blocking=False)*"])


# -- phases, failures, xfail -----------------------------------------------------------------


def test_blocks_in_fixtures_are_errors_of_their_phase(pytester, run):
    pytester.makepyfile(test_suite="""
import gevent, pytest
from blocking import handler

@pytest.fixture
def blocks_in_setup():
    gevent.spawn(handler).join()
    yield

@pytest.fixture
def blocks_in_teardown():
    yield
    gevent.spawn(handler).join()

def test_setup(blocks_in_setup):
    pass

def test_teardown(blocks_in_teardown):
    pass

def test_fails_and_blocks():
    gevent.spawn(handler).join()
    assert 1 == 2, "the test's own failure"

@pytest.mark.xfail(reason="known to block", strict=False)
def test_xfail_and_blocks():
    gevent.spawn(handler).join()
    assert False
""")
    pytester.makepyfile(test_gil_held="""
import time, gevent

def calibrate():
    n = 10 ** 6
    while True:
        start = time.perf_counter()
        sum(range(n))
        took = time.perf_counter() - start
        if took > 0.05:
            return int(n * 0.6 / took)
        n *= 4

N = calibrate()

def crunch():
    sum(range(N))            # one C call that holds the GIL for about 0.6 s

def test_holds_the_gil_to_its_end():
    gevent.spawn(crunch).join()
""")
    result = run("--hubmon-max-blocking-time=0.1")
    assert outcomes(result) == {
        "test_setup": "ERROR",
        "test_teardown": "PASSED+ERROR",
        "test_fails_and_blocks": "FAILED",
        "test_xfail_and_blocks": "XFAIL",
        # Its report reaches Python only after the call, when the test is over.
        "test_holds_the_gil_to_its_end": "FAILED",
    }
    text = result.stdout.str()
    assert "during the test's setup" in text
    assert "during the test's teardown" in text
    # The test's own failure stays first; the block report comes with it.
    assert "the test's own failure" in text
    assert "hubmon: blocked hub (call)" in text


# -- monitors: the fixture, other threads, monitors already running ----------------------------


def test_hubmon_monitor_fixture(pytester, run):
    pytester.makepyfile(test_suite="""
import gevent, hubmon, pytest
from blocking import handler

seen = []

@pytest.mark.hubmon(max_blocking_time=0.1, allow_blocking=True)
def test_gets_a_running_monitor(hubmon_monitor):
    seen.append(hubmon_monitor)
    assert isinstance(hubmon_monitor, hubmon.Monitor)
    assert hubmon_monitor.running and hubmon_monitor.hub is gevent.get_hub()
    assert hubmon_monitor.max_blocking_time == 0.1
    hubmon_monitor.print_blocking_reports = False
    gevent.spawn(handler).join()
    assert hubmon_monitor.stats()["blocks"] == 1

def test_it_was_stopped():
    assert not seen[0].running
    assert hubmon.running_monitors() == []

@pytest.mark.hubmon(max_blocking_time=0.3)
def test_same_monitor_while_watched(hubmon_monitor):
    assert [hubmon_monitor] == hubmon.running_monitors()
    assert hubmon_monitor.max_blocking_time == 0.3
    seen.append(hubmon_monitor)

def test_that_one_was_stopped_too():
    assert not seen[1].running
    assert hubmon.running_monitors() == []
""")
    result = run()
    assert outcomes(result) == {
        "test_gets_a_running_monitor": "PASSED",
        "test_it_was_stopped": "PASSED",
        "test_same_monitor_while_watched": "PASSED",
        "test_that_one_was_stopped_too": "PASSED",
    }


def test_hubs_of_other_threads_are_watched(pytester, run):
    pytester.makepyfile(test_suite="""
import threading, gevent, hubmon, pytest
from blocking import handler

def test_blocks_in_a_thread():
    def in_thread():
        gevent.spawn(handler).join()        # this thread's own hub
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()

@pytest.mark.hubmon(allow_blocking=True)         # not watched: nothing of the plugin's
def test_nothing_left_behind():
    assert hubmon.running_monitors() == []
    assert not hubmon.config.is_explicit("monitor_thread")
    assert not hubmon.config.is_explicit("max_blocking_time")
""")
    result = run("--hubmon-max-blocking-time=0.1")
    assert outcomes(result) == {"test_blocks_in_a_thread": "FAILED",
                                "test_nothing_left_behind": "PASSED"}
    assert "handler" in result.stdout.str()


def test_monitors_already_running_get_the_limit_and_get_it_back(pytester, run):
    pytester.makeconftest("""
import time

def pytest_runtest_logstart(nodeid, location):
    if "slow_start" in nodeid:
        time.sleep(0.5)     # pytest's own time, before the test: not its fault
""")
    pytester.makepyfile(test_suite="""
import time, gevent, hubmon, pytest
from blocking import handler

@pytest.mark.hubmon(allow_blocking=True)
def test_start_the_hub():
    gevent.sleep(0)
    [monitor] = hubmon.running_monitors()
    assert monitor.max_blocking_time == 5

def test_blocks():
    [monitor] = hubmon.running_monitors()
    assert monitor.max_blocking_time == 0.1
    gevent.spawn(handler).join()

@pytest.mark.hubmon(allow_blocking=True)
def test_limit_is_back():
    [monitor] = hubmon.running_monitors()
    assert monitor.running and monitor.max_blocking_time == 5
    assert monitor.print_blocking_reports

@pytest.fixture
def hub_used_in_setup():
    time.sleep(0.05)        # the report of the stretch that began before comes now
    gevent.sleep(0)

def test_slow_start(hub_used_in_setup):
    gevent.sleep(0)
""")
    result = run("--hubmon-max-blocking-time=0.1",
                 env={"GEVENT_MONITOR_THREAD_ENABLE": "1", "GEVENT_MAX_BLOCKING_TIME": "5"})
    assert outcomes(result) == {"test_start_the_hub": "PASSED", "test_blocks": "FAILED",
                                "test_limit_is_back": "PASSED", "test_slow_start": "PASSED"}


def test_with_assert_switches_inside_a_watched_test(pytester, run):
    pytester.makepyfile(test_suite="""
import greenlet, gevent, hubmon, pytest
from hubmon.assertions import FailedToSwitch, assert_switches
from blocking import handler

def test_scopes_nest_inside_the_plugin_monitor():
    gevent.sleep(0)
    before = greenlet.gettrace()
    with assert_switches(max_blocking_time=0.1):
        gevent.sleep(0.3)
    with pytest.raises(FailedToSwitch):
        with assert_switches():
            pass
    assert greenlet.gettrace() is before
""")
    result = run("--hubmon-max-blocking-time=0.1")
    assert outcomes(result) == {"test_scopes_nest_inside_the_plugin_monitor": "PASSED"}


def test_in_process_is_unaffected(request):
    """This very suite runs with the plugin loaded and off: nothing watches it."""
    import hubmon
    from hubmon import pytest_plugin
    plugin = request.config.pluginmanager.get_plugin("hubmon")
    assert plugin is (pytest_plugin if _plugin_installed() else None)
    # Off: no session-wide limit, this test not watched, no listener.
    assert request.config.stash.get(pytest_plugin._session_limit_key, None) is None
    assert pytest_plugin._watch_key not in request.node.stash
    assert not any(isinstance(getattr(s, "__self__", None), pytest_plugin._Watch)
                   for s in hubmon.events.subscribers)


def test_a_bad_setting_is_a_usage_error_naming_it(run):
    result = run("--hubmon-max-blocking-time=0.1", env={"HUBMON_REPORT_TO": "bogus"})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "HUBMON_REPORT_TO='bogus' is invalid" in result.stderr.str()


@pytest.mark.parametrize("variable, value", [("HUBMON_REPORT_TO", "bogus"),
                                             ("GEVENT_MONITOR_MEMORY_PERIOD", "0")])
def test_a_bad_setting_fails_a_marked_test_naming_it(pytester, run, variable, value):
    # Without the session option, only the marker asks for a watch: the
    # bad variable must not leave that test unwatched and passing.
    pytester.makepyfile(test_marked="""
import time, gevent, pytest

@pytest.mark.hubmon(max_blocking_time=0.1)
def test_blocks():
    gevent.spawn(time.sleep, 0.3).join()

def test_unmarked():
    pass
""")
    result = run("test_marked.py", env={variable: value})
    assert outcomes(result) == {"test_blocks": "ERROR", "test_unmarked": "PASSED"}, result.outlines
    assert "%s=%r is invalid" % (variable, value) in result.stdout.str()
