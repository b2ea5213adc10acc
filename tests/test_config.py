"""Tests of hubmon.config: environment parsing, validation in code, caching and reload."""
import math
import signal
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubmon.config import Config, ConfigError, config

ENV = {
    "monitor_thread": "GEVENT_MONITOR_THREAD_ENABLE",
    "max_blocking_time": "GEVENT_MAX_BLOCKING_TIME",
    "max_memory_usage": "GEVENT_MONITOR_MEMORY_MAX",
    "memory_monitor_period": "GEVENT_MONITOR_MEMORY_PERIOD",
    "print_blocking_reports": "GEVENT_MONITOR_PRINT_BLOCKING_REPORTS",
    "report_to": "HUBMON_REPORT_TO",
    "report_greenlet_limit": "HUBMON_REPORT_GREENLETS",
    "gil_signal": "HUBMON_GIL_SIGNAL",
    "repeat_window": "HUBMON_REPEAT_WINDOW",
    "report_format": "HUBMON_REPORT_FORMAT",
    "unblocked_report_time": "HUBMON_UNBLOCKED_REPORT_TIME",
}
BOOLS = ["monitor_thread", "print_blocking_reports"]
MAX_INT = 2**63 - 1
AUTO_SIGNAL = "auto"
# Signals with a standard meaning: hubmon never claims them.
FORBIDDEN_SIGNALS = [signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGFPE,
                     signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGINT,
                     signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD,
                     signal.SIGPIPE, signal.SIGALRM, signal.SIGWINCH, signal.SIGCONT]
CLAIMABLE = [int(signal.SIGUSR1), int(signal.SIGUSR2)] + list(
    range(int(signal.SIGRTMIN), int(signal.SIGRTMAX) + 1))
# Hypothesis runs many examples per test: no example database on disk, no deadline on slow CI.
PROPERTY = settings(database=None, deadline=None, max_examples=300)


def is_valid(name, value):
    """Return whether *value* is a value setting *name* may hold."""
    if name in BOOLS:
        return isinstance(value, bool)
    if name == "max_blocking_time":
        return type(value) is float and 0 < value <= 86400
    if name == "memory_monitor_period":
        return type(value) is float and 0.1 <= value <= 86400
    if name == "max_memory_usage":
        return value is None or (type(value) is int and 0 < value <= MAX_INT)
    if name == "report_to":
        return value in ("stream", "logging")
    if name == "report_greenlet_limit":
        return type(value) is int and 0 <= value <= MAX_INT
    if name == "gil_signal":
        return value == "auto" or (type(value) is int and (value == 0 or value in CLAIMABLE))
    if name == "repeat_window":
        return type(value) is float and 0 <= value <= 86400
    if name == "report_format":
        return value in ("text", "json")
    if name == "unblocked_report_time":
        return value is None or (type(value) is float and 0 <= value <= 86400)
    raise AssertionError(name)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Run every test without any of the settings' variables from the outer environment."""
    for env in ENV.values():
        monkeypatch.delenv(env, raising=False)
    return monkeypatch


@pytest.fixture
def cfg():
    """A fresh Config, independent of the module-level one."""
    return Config()


def read_env(name, text):
    """Return setting *name* of a fresh Config read with its variable set to *text*."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV[name], text)
        return getattr(Config(), name)


def assert_env_error(name, text):
    """Assert that reading *name* from *text* raises a ConfigError naming the variable and value."""
    with pytest.raises(ConfigError) as info:
        read_env(name, text)
    message = str(info.value)
    assert ENV[name] in message
    assert repr(text) in message
    assert "expected" in message


def assert_code_error(cfg, name, value):
    """Assert that assigning *value* to *name* raises a ConfigError naming the setting and value."""
    before = getattr(cfg, name)
    with pytest.raises(ConfigError) as info:
        setattr(cfg, name, value)
    message = str(info.value)
    assert message.startswith(f"{name}=")
    assert repr(value) in message
    assert "expected" in message
    assert getattr(cfg, name) == before, "a rejected assignment must not change the setting"


# Defaults and the module-level instance.

def test_defaults(cfg):
    assert cfg.settings() == {
        "monitor_thread": False,
        "max_blocking_time": 0.1,
        "max_memory_usage": None,
        "memory_monitor_period": 5.0,
        "print_blocking_reports": True,
        "report_to": "stream",
        "report_greenlet_limit": 50,
        "unblocked_report_time": None,
        "gil_signal": AUTO_SIGNAL,
        "repeat_window": 60.0,
        "report_format": "text",
    }
    assert type(cfg.memory_monitor_period) is float


def test_module_instance_and_error_type():
    import hubmon
    assert hubmon.config is config and type(config) is Config
    assert hubmon.ConfigError is ConfigError
    # A program that catches ValueError catches a rejected setting.
    before = config.max_blocking_time
    with pytest.raises(ValueError) as info:
        config.max_blocking_time = -1
    assert type(info.value) is ConfigError
    assert config.max_blocking_time == before


# What ``import hubmon`` must not bring in: gevent (the program decides), and
# the modules that cost it milliseconds (import time under 20 ms is a goal;
# docs/performance.rst gives the figures). Each is imported when first needed.
HEAVY_AT_IMPORT = {"gevent", "typing", "logging", "traceback", "linecache", "tokenize",
                   "importlib.abc", "importlib.util", "signal", "psutil", "pathlib"}


def test_import_is_light(python):
    """``import hubmon`` imports none of HEAVY_AT_IMPORT, and reading every setting adds none."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import hubmon\n"
        "heavy = %r & (set(sys.modules) - before)\n"
        "assert not heavy, sorted(heavy)\n"
        "hubmon.config.settings()\n"
        "heavy = {'gevent', 'typing', 'logging'} & (set(sys.modules) - before)\n"
        "assert not heavy, sorted(heavy)\n"
        "print('ok')\n"
    ) % (HEAVY_AT_IMPORT,)
    result = python(["-c", code])        # none of the settings' variables
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# Booleans.

@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("text, expected", [
    ("1", True), ("true", True), ("TRUE", True), (" True\n", True), ("on", True), ("On", True),
    ("yes", True), ("YES", True),
    ("0", False), ("false", False), ("False", False), ("off", False), ("OFF", False),
    ("no", False), (" No ", False), ("", False), ("   ", False),
])
def test_bool_env(name, text, expected):
    assert read_env(name, text) is expected


@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("text", ["2", "-1", "y", "n", "t", "tru", "truee", "enabled", "1.0",
                                  "none", "0x1", "yes please", "--1"])
def test_bool_env_invalid(name, text):
    assert_env_error(name, text)


@pytest.mark.parametrize("name", BOOLS)
def test_bool_code(cfg, name):
    for value, expected in [(True, True), (False, False), (1, True), (0, False)]:
        setattr(cfg, name, value)
        assert getattr(cfg, name) is expected
    for value in ["true", "", "0", 2, -1, 1.0, 0.0, None, [], b"1"]:
        assert_code_error(cfg, name, value)


# Seconds.

@pytest.mark.parametrize("text, expected", [
    ("0.1", 0.1), ("0.5", 0.5), (" 2 ", 2.0), ("1e-3", 0.001), (".25", 0.25), ("+3", 3.0),
    ("86400", 86400.0), ("1e-9", 1e-9), ("1_0", 10.0),
])
def test_max_blocking_time_env(text, expected):
    assert read_env("max_blocking_time", text) == expected


@pytest.mark.parametrize("text", [
    "", " ", "abc", "0", "0.0", "-0", "-1", "-0.1", "nan", "NaN", "-nan", "inf", "Infinity",
    "-inf", "1e400", "86400.001", "1e10", "9" * 400, "--1", "1s", "0.1s", "true", "0x10",
    "1,5", "1 2",
])
def test_max_blocking_time_env_invalid(text):
    assert_env_error("max_blocking_time", text)


@pytest.mark.parametrize("text, expected", [
    ("0.1", 0.1), ("5", 5.0), (" 60.5 ", 60.5), ("86400", 86400.0), ("1E1", 10.0),
])
def test_memory_monitor_period_env(text, expected):
    assert read_env("memory_monitor_period", text) == expected


@pytest.mark.parametrize("text", [
    "", "abc", "0", "0.09", "0.0999", "1e-3", "-5", "nan", "inf", "86401", "1e400", "--1", "5s",
])
def test_memory_monitor_period_env_invalid(text):
    assert_env_error("memory_monitor_period", text)


def test_seconds_code(cfg):
    for value, expected in [(1, 1.0), (0.25, 0.25), (Fraction(1, 2), 0.5), (Decimal("0.75"), 0.75),
                            (86400, 86400.0)]:
        cfg.max_blocking_time = value
        assert cfg.max_blocking_time == expected
        assert type(cfg.max_blocking_time) is float
    for value in [True, False, "0.5", b"1", None, 0, 0.0, -1, math.nan, math.inf, -math.inf,
                  86401, 10**400, Fraction(10**400, 1), Decimal("sNaN"), 1j, [1]]:
        assert_code_error(cfg, "max_blocking_time", value)
    cfg.memory_monitor_period = 0.1
    assert cfg.memory_monitor_period == 0.1
    for value in [0.09, 0, -1, math.nan, "5", True]:
        assert_code_error(cfg, "memory_monitor_period", value)


# Byte counts.

@pytest.mark.parametrize("text, expected", [
    ("", None), ("   ", None), ("1", 1), ("1024", 1024), (" 1024\n", 1024), ("+5", 5),
    ("10kb", 10 * 1024), ("10KB", 10 * 1024), ("10Kb", 10 * 1024), (" 10mb ", 10 * 1024**2),
    ("10MB", 10 * 1024**2), ("2gb", 2 * 1024**3), ("\t3GB\n", 3 * 1024**3),
    ("10 kb", 10 * 1024),  # gevent strips nothing but int() allows the space.
    (str(MAX_INT), MAX_INT), (f"{MAX_INT // 1024**3}gb", MAX_INT // 1024**3 * 1024**3),
])
def test_max_memory_usage_env(text, expected):
    assert read_env("max_memory_usage", text) == expected


@pytest.mark.parametrize("text", [
    "0", "0kb", "-1", "-1kb", "-0mb", "1.5mb", "1.0", "10xb", "10k", "10b", "10tb", "10 k b",
    "10kbkb", "kb", "mb ", "--1", "1e3", "abc", "ten mb", "0x10", "1,024", str(MAX_INT + 1),
    f"{MAX_INT // 1024 + 1}kb", "9" * 30, "nan", "inf",
])
def test_max_memory_usage_env_invalid(text):
    assert_env_error("max_memory_usage", text)


def test_max_memory_usage_code(cfg):
    for value, expected in [(None, None), (1, 1), (MAX_INT, MAX_INT), ("10mb", 10 * 1024**2),
                            (" 2GB ", 2 * 1024**3), ("", None)]:
        cfg.max_memory_usage = value
        assert cfg.max_memory_usage == expected
    for value in [0, -1, True, False, 1.5, 1024.0, MAX_INT + 1, b"10", "1.5mb", "10xb", [], "0"]:
        assert_code_error(cfg, "max_memory_usage", value)


# report_to and report_greenlet_limit.

@pytest.mark.parametrize("text, expected", [
    ("stream", "stream"), ("STREAM", "stream"), ("logging", "logging"), (" Logging\n", "logging"),
])
def test_report_to_env(text, expected):
    assert read_env("report_to", text) == expected


@pytest.mark.parametrize("text", ["", " ", "file", "stderr", "log", "logger", "stream,logging",
                                  "1"])
def test_report_to_env_invalid(text):
    assert_env_error("report_to", text)


def test_report_to_code(cfg):
    cfg.report_to = "LOGGING"
    assert cfg.report_to == "logging"
    for value in ["file", "", None, 1, b"stream", True]:
        assert_code_error(cfg, "report_to", value)


@pytest.mark.parametrize("text, expected", [("0", 0), ("1", 1), (" 100 ", 100), ("+7", 7),
                                            (str(MAX_INT), MAX_INT)])
def test_report_greenlet_limit_env(text, expected):
    assert read_env("report_greenlet_limit", text) == expected


@pytest.mark.parametrize("text", ["", " ", "-1", "1.5", "1e3", "abc", "all", "--1", "10kb",
                                  str(MAX_INT + 1), "nan"])
def test_report_greenlet_limit_env_invalid(text):
    assert_env_error("report_greenlet_limit", text)


def test_report_greenlet_limit_code(cfg):
    for value in [0, 7, MAX_INT]:
        cfg.report_greenlet_limit = value
        assert cfg.report_greenlet_limit == value
    for value in [-1, True, 1.0, "five", "1.5", None, MAX_INT + 1]:
        assert_code_error(cfg, "report_greenlet_limit", value)


# gil_signal.

@pytest.mark.parametrize("text, expected", [
    ("auto", AUTO_SIGNAL), (" AUTO ", AUTO_SIGNAL), ("off", 0), ("OFF", 0), ("0", 0),
    (str(int(signal.SIGUSR2)), int(signal.SIGUSR2)), (f" {int(signal.SIGUSR1)} ", int(signal.SIGUSR1)),
    (str(int(signal.SIGRTMAX)), int(signal.SIGRTMAX)),
    ("SIGUSR1", int(signal.SIGUSR1)), (" sigusr2 ", int(signal.SIGUSR2)),
    ("SIGRTMIN+3", int(signal.SIGRTMIN) + 3), ("sigrtmax-1", int(signal.SIGRTMAX) - 1),
])
def test_gil_signal_env(text, expected):
    value = read_env("gil_signal", text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["", " ", "-1", str(signal.NSIG), "1000", "usr1", "SIGINT",
                                  "SIGUSR1+1", "SIGRTMIN+x", "SIGRTMAX+1", "SIGNOPE",
                                  "1.0", "on", "none", "--1", "auto6"]
                         + [str(int(s)) for s in FORBIDDEN_SIGNALS])
def test_gil_signal_env_invalid(text):
    assert_env_error("gil_signal", text)


@pytest.mark.skipif(32 in signal.valid_signals(), reason="signal 32 is usable here")
def test_gil_signal_rejects_signals_the_os_reserves():
    assert_env_error("gil_signal", "32")


def test_gil_signal_code(cfg):
    for value, expected in [(signal.SIGUSR1, int(signal.SIGUSR1)), (0, 0), ("off", 0),
                            ("auto", AUTO_SIGNAL), (int(signal.SIGUSR2), int(signal.SIGUSR2))]:
        cfg.gil_signal = value
        assert cfg.gil_signal == expected
        assert type(cfg.gil_signal) is type(expected)
    for value in [signal.SIGKILL, signal.SIGSEGV, -1, signal.NSIG, True, 10.0, None, "SIGTERM"]:
        assert_code_error(cfg, "gil_signal", value)


# Caching, assignment, reload, del, is_explicit.

def test_env_read_lazily_and_cached(cfg, clean_env):
    clean_env.setenv("GEVENT_MAX_BLOCKING_TIME", "0.5")
    assert cfg.max_blocking_time == 0.5  # read on first access, not at Config()
    clean_env.setenv("GEVENT_MAX_BLOCKING_TIME", "2")
    assert cfg.max_blocking_time == 0.5  # cached
    cfg.reload()
    assert cfg.max_blocking_time == 2.0


def test_invalid_env_is_not_cached(cfg, clean_env):
    clean_env.setenv("HUBMON_REPORT_GREENLETS", "many")
    for _ in range(2):
        with pytest.raises(ConfigError, match="HUBMON_REPORT_GREENLETS='many'"):
            cfg.report_greenlet_limit
    with pytest.raises(ConfigError):
        cfg.settings()
    clean_env.setenv("HUBMON_REPORT_GREENLETS", "3")
    assert cfg.report_greenlet_limit == 3


def test_error_message_format(cfg, clean_env):
    clean_env.setenv("GEVENT_MAX_BLOCKING_TIME", "abc")
    with pytest.raises(ConfigError) as info:
        cfg.max_blocking_time
    assert str(info.value) == ("GEVENT_MAX_BLOCKING_TIME='abc' is invalid: "
                               "expected a number of seconds greater than 0 and at most 86400")
    with pytest.raises(ConfigError) as info:
        cfg.max_blocking_time = -1
    assert str(info.value).startswith("max_blocking_time=-1 is invalid: expected ")


def test_assignment_overrides_env_and_del_reverts(cfg, clean_env):
    clean_env.setenv("GEVENT_MONITOR_MEMORY_MAX", "1mb")
    assert cfg.max_memory_usage == 1024**2
    cfg.max_memory_usage = 5
    assert cfg.max_memory_usage == 5
    clean_env.setenv("GEVENT_MONITOR_MEMORY_MAX", "2mb")
    assert cfg.max_memory_usage == 5
    del cfg.max_memory_usage
    assert cfg.max_memory_usage == 2 * 1024**2  # del re-reads the environment
    del cfg.max_memory_usage  # deleting again is harmless
    clean_env.delenv("GEVENT_MONITOR_MEMORY_MAX")
    del cfg.max_memory_usage
    assert cfg.max_memory_usage is None  # and falls back to the default


def test_reload_forgets_assignments(cfg, clean_env):
    cfg.monitor_thread = True
    cfg.report_to = "logging"
    clean_env.setenv("HUBMON_REPORT_TO", "stream")
    cfg.reload()
    assert cfg.monitor_thread is False
    assert cfg.report_to == "stream"
    assert not cfg.is_explicit("monitor_thread")


def test_is_explicit(cfg, clean_env):
    assert not any(cfg.is_explicit(name) for name in ENV)
    cfg.max_blocking_time = 1
    assert cfg.is_explicit("max_blocking_time")
    del cfg.max_blocking_time
    assert not cfg.is_explicit("max_blocking_time")
    cfg.max_blocking_time = 0.1  # the default, but set on purpose
    assert cfg.is_explicit("max_blocking_time")
    clean_env.setenv("GEVENT_MONITOR_THREAD_ENABLE", "")  # present, even if empty
    assert cfg.is_explicit("monitor_thread")
    clean_env.setenv("GEVENT_MONITOR_MEMORY_MAX", "garbage")  # present, though invalid
    assert cfg.is_explicit("max_memory_usage")
    with pytest.raises(AttributeError):
        cfg.is_explicit("nonsense")


def test_instances_are_independent(cfg):
    other = Config()
    cfg.report_greenlet_limit = 0
    assert other.report_greenlet_limit == 50


def test_unknown_attributes(cfg):
    with pytest.raises(AttributeError, match="no setting 'max_blocking_tme'"):
        cfg.max_blocking_tme = 1
    with pytest.raises(AttributeError):
        cfg.nonsense
    with pytest.raises(AttributeError):
        del cfg.nonsense
    with pytest.raises(AttributeError):
        cfg._assigned = {}
    with pytest.raises(AttributeError):
        cfg.reload = None


def test_describe(cfg):
    described = Config.describe()
    assert described == cfg.describe()
    assert [item["name"] for item in described] == list(ENV)
    assert list(cfg.settings()) == list(ENV)
    defaults = {"monitor_thread": False, "max_blocking_time": 0.1, "max_memory_usage": None,
                "memory_monitor_period": 5.0, "print_blocking_reports": True,
                "report_to": "stream", "report_greenlet_limit": 50, "gil_signal": "auto",
                "repeat_window": 60.0, "report_format": "text", "unblocked_report_time": None}
    for item in described:
        assert set(item) == {"name", "env", "type", "default", "doc"}
        assert item["env"] == ENV[item["name"]]
        assert item["default"] == defaults[item["name"]]
        assert isinstance(item["type"], str) and item["type"]
        assert isinstance(item["doc"], str) and len(item["doc"]) > 20
        assert "\n" not in item["doc"]
        assert getattr(Config, item["name"]).__doc__ == item["doc"]


# Properties.

env_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")),
    st.from_regex(r"\s*[+-]{0,2}[0-9_]{0,25}(\.[0-9]*)?(e[+-]?[0-9]{1,3})?\s*"
                  r"(kb|KB|Mb|gB|xb|k|b)?\s*", fullmatch=True),
    st.floats().map(repr),
    st.integers(min_value=-5, max_value=100).map(str),
    st.integers().map(str),
    st.sampled_from(["auto", "off", "on", "nan", "inf", "stream", "logging", "true", "no"]),
)


@PROPERTY
@given(name=st.sampled_from(list(ENV)), text=env_text)
def test_env_parsing_returns_valid_value_or_config_error(name, text):
    try:
        value = read_env(name, text)
    except ConfigError as error:
        assert ENV[name] in str(error)
        assert repr(text) in str(error)
    else:
        assert is_valid(name, value), value


@PROPERTY
@given(name=st.sampled_from(list(ENV)), value=st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
    st.fractions(), st.decimals(), st.complex_numbers(), st.lists(st.integers(), max_size=2)))
def test_code_assignment_keeps_valid_value_or_raises_config_error(name, value):
    cfg = Config()
    try:
        setattr(cfg, name, value)
    except ConfigError as error:
        assert str(error).startswith(f"{name}=")
        assert repr(value) in str(error)
        assert cfg.is_explicit(name) is False
    else:
        assert is_valid(name, getattr(cfg, name))
        assert cfg.is_explicit(name)


@st.composite
def byte_counts(draw):
    suffix, multiplier = draw(st.sampled_from([("", 1), ("kb", 1024), ("mb", 1024**2),
                                               ("gb", 1024**3)]))
    n = draw(st.integers(min_value=1, max_value=MAX_INT // multiplier))
    upper = draw(st.lists(st.booleans(), min_size=len(suffix), max_size=len(suffix)))
    suffix = "".join(c.upper() if up else c for c, up in zip(suffix, upper))
    pad = st.text(alphabet=" \t\n", max_size=3)
    return f"{draw(pad)}{n}{suffix}{draw(pad)}", n * multiplier


@PROPERTY
@given(case=byte_counts())
def test_byte_count_is_n_times_multiplier(case):
    text, expected = case
    assert read_env("max_memory_usage", text) == expected
    cfg = Config()
    cfg.max_memory_usage = text  # a string in code follows the same rules
    assert cfg.max_memory_usage == expected


@PROPERTY
@given(seconds=st.floats(min_value=0, max_value=86400, exclude_min=True))
def test_seconds_round_trip(seconds):
    assert read_env("max_blocking_time", repr(seconds)) == seconds
    assert read_env("max_blocking_time", str(seconds)) == seconds
    cfg = Config()
    cfg.max_blocking_time = seconds
    assert cfg.max_blocking_time == seconds
    if seconds >= 0.1:
        assert read_env("memory_monitor_period", repr(seconds)) == seconds
        cfg.memory_monitor_period = seconds
        assert cfg.memory_monitor_period == seconds
    else:
        assert_env_error("memory_monitor_period", repr(seconds))


def test_a_count_given_as_text_in_code_follows_the_environment_rule(cfg):
    cfg.report_greenlet_limit = "5"
    assert cfg.report_greenlet_limit == 5
    with pytest.raises(ConfigError, match="report_greenlet_limit='many' is invalid"):
        cfg.report_greenlet_limit = "many"


def test_a_value_whose_repr_raises_is_still_named(cfg):
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no repr")

    with pytest.raises(ConfigError, match=r"max_blocking_time=<Hostile object whose repr\(\) raised>"):
        cfg.max_blocking_time = Hostile()


def test_a_running_monitor_takes_print_blocking_reports_by_the_config_rule():
    import greenlet
    import hubmon

    with hubmon.start(greenlet.greenlet(lambda: None), max_blocking_time=60) as monitor:
        monitor.print_blocking_reports = 0
        assert monitor.print_blocking_reports is False
        with pytest.raises(ConfigError) as info:
            monitor.print_blocking_reports = "yes"
        assert isinstance(info.value, TypeError)
        assert "print_blocking_reports='yes' is invalid" in str(info.value)
        assert monitor.print_blocking_reports is False


@pytest.mark.parametrize("name, value", [("gil_signal", True), ("gil_signal", None),
                                         ("report_greenlet_limit", None),
                                         ("max_blocking_time", None)])
def test_a_value_of_the_wrong_type_is_also_a_type_error(cfg, name, value):
    with pytest.raises(ConfigError) as info:
        setattr(cfg, name, value)
    assert isinstance(info.value, TypeError), type(info.value)


def test_a_byte_count_too_large_says_the_bound(cfg):
    with pytest.raises(ConfigError, match=r"at most 2\*\*63 - 1"):
        cfg.max_memory_usage = 2**63
