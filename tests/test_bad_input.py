"""Bad input anywhere in the public API gets a clear error, never a crash."""
from __future__ import annotations

import math

import greenlet
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hubmon
from hubmon import _core

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.binary(max_size=8), st.lists(st.integers(), max_size=2), st.just(object()),
)
EXPECTED = (hubmon.ConfigError, TypeError, ValueError)


@pytest.fixture(autouse=True)
def no_trace():
    yield
    greenlet.settrace(None)


def valid_seconds(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 < value <= 86400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["max_blocking_time", "max_memory_usage", "memory_monitor_period",
                             "print_blocking_reports", "stream"]),
       value=ANYTHING)
def test_start_arguments_are_validated(name, value):
    hub = greenlet.greenlet(lambda: None)
    try:
        monitor = hubmon.start(hub, **{name: value})
    except EXPECTED as ex:
        assert name in str(ex)
        return
    try:
        # Whatever was accepted became a sane setting of the monitor.
        if name == "max_blocking_time" and value is not None:
            assert valid_seconds(monitor.max_blocking_time) and monitor.max_blocking_time == value
        if name == "memory_monitor_period" and value is not None:
            assert valid_seconds(monitor.memory_monitor_period)
            assert monitor.memory_monitor_period >= 0.1 and monitor.memory_monitor_period == value
        if name == "max_memory_usage" and value is not None:
            if monitor.max_memory_usage is None:       # as in the environment: no limit
                assert isinstance(value, str) and not value.strip()
            else:
                assert isinstance(monitor.max_memory_usage, int) and monitor.max_memory_usage > 0
        if name == "print_blocking_reports" and value is not None:
            assert monitor.print_blocking_reports is bool(value) and value in (0, 1)
    finally:
        monitor.stop()


@settings(max_examples=100, deadline=None)
@given(period=ANYTHING)
def test_add_monitoring_function_period_is_validated(period):
    hub = greenlet.greenlet(lambda: None)
    with hubmon.start(hub, max_blocking_time=60) as monitor:
        try:
            monitor.add_monitoring_function(len, period)
        except ValueError as ex:
            assert "period" in str(ex)
            return
        if period is not None:
            assert valid_seconds(period) or (isinstance(period, (int, float)) and period > 86400
                                             and math.isfinite(period))


@settings(max_examples=100, deadline=None)
@given(threshold=ANYTHING, mode=ANYTHING)
def test_native_record_arguments_are_validated(threshold, mode):
    hub = greenlet.greenlet(lambda: None)
    try:
        _core.Record(hub, greenlet.getcurrent(), threshold, mode=mode)
    except (TypeError, ValueError, OverflowError):
        return
    assert valid_seconds(threshold) or (isinstance(threshold, (int, float)) and threshold > 0)


@pytest.mark.parametrize("name", ["max_blocking_time", "memory_monitor_period"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), 10**30])
def test_config_assignment_names_setting_and_value(name, value):
    with pytest.raises(hubmon.ConfigError) as info:
        setattr(hubmon.config, name, value)
    assert name in str(info.value) and repr(value)[:6] in str(info.value)


@pytest.mark.parametrize("variable, value", [("GEVENT_MAX_BLOCKING_TIME", "soon"),
                                             ("GEVENT_MAX_BLOCKING_TIME", ""),
                                             ("HUBMON_REPORT_TO", "bogus"),
                                             ("HUBMON_REPORT_GREENLETS", "x"),
                                             ("HUBMON_GIL_SIGNAL", "2")])
def test_invalid_environment_value_names_the_variable_when_gevent_starts(python, variable, value):
    # The drop-in validates every setting a monitor uses when the hub
    # starts. The hub starts in gevent's code, which must not fail for
    # hubmon's sake: it runs without a monitor, and the error is written once.
    pytest.importorskip("gevent")
    proc = python("""
import hubmon, gevent, threading
gevent.sleep(0)
t = threading.Thread(target=gevent.sleep, args=(0,)); t.start(); t.join()   # a second hub
print("slept", gevent.get_hub().periodic_monitoring_thread)
""", env={"GEVENT_MONITOR_THREAD_ENABLE": "true", variable: value})
    assert proc.returncode == 0, proc.stderr
    assert "slept None" in proc.stdout
    message = "hubmon: this gevent hub runs without a monitor: ConfigError: %s=%r is invalid" % (
        variable, value)
    assert proc.stderr.count(message) == 1, proc.stderr


def test_format_run_info_rejects_a_bad_limit():
    with pytest.raises((TypeError, ValueError)):
        hubmon.format_run_info(limit="ten")
