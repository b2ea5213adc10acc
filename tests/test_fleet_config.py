"""The settings of fleet reports: HUBMON_REPEAT_WINDOW and HUBMON_REPORT_FORMAT."""
import pytest

from hubmon.config import Config

from test_config import assert_code_error, assert_env_error, read_env
from test_config import clean_env  # noqa: F401 - the fixture, used by every test here


@pytest.mark.parametrize("text, expected", [("0", 0.0), ("60", 60.0), (" 0.3 ", 0.3),
                                            ("86400", 86400.0)])
def test_repeat_window_env(text, expected):
    value = read_env("repeat_window", text)
    assert value == expected and type(value) is float


@pytest.mark.parametrize("text", ["", " ", "-1", "-0.1", "soon", "nan", "inf", "86401", "1e9"])
def test_repeat_window_env_invalid(text):
    assert_env_error("repeat_window", text)


def test_repeat_window_code():
    cfg = Config()
    cfg.repeat_window = 0
    assert cfg.repeat_window == 0.0
    cfg.repeat_window = 2.5
    assert cfg.repeat_window == 2.5
    for value in [-1, float("nan"), float("inf"), 86401, None, True, "soon"]:
        assert_code_error(cfg, "repeat_window", value)


@pytest.mark.parametrize("text, expected", [("text", "text"), ("JSON", "json"), (" json\n", "json")])
def test_report_format_env(text, expected):
    assert read_env("report_format", text) == expected


@pytest.mark.parametrize("text", ["", "xml", "jsonl", "text,json", "1"])
def test_report_format_env_invalid(text):
    assert_env_error("report_format", text)


def test_report_format_code():
    cfg = Config()
    cfg.report_format = "Json"
    assert cfg.report_format == "json"
    for value in ["yaml", "", None, 1, b"json"]:
        assert_code_error(cfg, "report_format", value)


def test_start_rejects_a_bad_repeat_window(python):
    proc = python("""
import greenlet, hubmon
try:
    hubmon.start(greenlet.greenlet(lambda: None), repeat_window=-1)
except hubmon.ConfigError as error:
    print("ConfigError:", error)
""")
    assert proc.returncode == 0, proc.stderr
    assert "ConfigError: repeat_window=-1 is invalid" in proc.stdout, proc.stdout


@pytest.mark.parametrize("variable, value", [("HUBMON_REPEAT_WINDOW", "-1"),
                                             ("HUBMON_REPEAT_WINDOW", "soon"),
                                             ("HUBMON_REPORT_FORMAT", "xml")])
def test_start_names_the_bad_variable(python, variable, value):
    proc = python("""
import greenlet, hubmon
try:
    hubmon.start(greenlet.greenlet(lambda: None))
except hubmon.ConfigError as error:
    print("ConfigError:", error)
""", env={variable: value})
    assert proc.returncode == 0, proc.stderr
    assert "ConfigError: %s=%r is invalid" % (variable, value) in proc.stdout, proc.stdout
