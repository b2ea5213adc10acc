"""``python -m hubmon``: run, demo, --help; each case in a fresh interpreter."""
from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT
from hubmon.config import Config

SETTINGS = Config.describe()


def write(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


# -- run ---------------------------------------------------------------------

def test_run_preserves_argv_main_and_exit_code_zero(python, tmp_path):
    write(tmp_path, "app/helper.py", "VALUE = 'sibling import works'\n")
    write(tmp_path, "app/show.py", """\
        import sys, helper
        print("argv", sys.argv)
        print("name", __name__)
        print(helper.VALUE)
    """)
    proc = python(["-m", "hubmon", "run", "app/show.py", "a", "-t", "3", "--report-to", "x", "--"],
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "argv ['app/show.py', 'a', '-t', '3', '--report-to', 'x', '--']" in proc.stdout
    assert "name __main__" in proc.stdout
    assert "sibling import works" in proc.stdout
    assert proc.stderr == ""


def test_run_preserves_sys_exit_code(python, tmp_path):
    write(tmp_path, "exits.py", "import sys\nprint('before')\nsys.exit(3)\nprint('after')\n")
    proc = python(["-m", "hubmon", "run", "exits.py"], cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "before\n"


def test_run_sys_exit_from_a_gevent_program(python, tmp_path):
    pytest.importorskip("gevent")
    write(tmp_path, "exits.py", """\
        import sys, gevent
        gevent.sleep(0.01)
        sys.exit(3)
    """)
    proc = python(["-m", "hubmon", "run", "exits.py"], cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "Fatal Python error" not in proc.stderr


def test_run_uncaught_exception_prints_traceback_and_exits_1(python, tmp_path):
    write(tmp_path, "fails.py", """\
        def load_settings():
            raise RuntimeError("no settings file")

        load_settings()
    """)
    proc = python(["-m", "hubmon", "run", "fails.py"], cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    assert err.startswith("Traceback (most recent call last):\n"), err
    assert 'File "fails.py", line 2, in load_settings' in err
    assert err.rstrip().endswith("RuntimeError: no settings file")
    # The traceback starts in the program, as with "python fails.py".
    assert "runpy" not in err and "cli.py" not in err


def test_run_uncaught_exception_goes_through_the_programs_excepthook(python, tmp_path):
    write(tmp_path, "hook.py", """\
        import sys
        def hook(kind, value, tb):
            print("hooked", kind.__name__, value, tb.tb_frame.f_code.co_filename)
        sys.excepthook = hook
        raise KeyError("k")
    """)
    proc = python(["-m", "hubmon", "run", "hook.py"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "hooked KeyError 'k' hook.py" in proc.stdout


def test_run_module(python, tmp_path):
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/tool.py", """\
        import sys
        print("argv", sys.argv[1:], sys.argv[0].endswith("tool.py"))
        print("name", __name__)
        sys.exit(int(sys.argv[1]))
    """)
    proc = python(["-m", "hubmon", "run", "-m", "pkg.tool", "4", "-m", "x"], cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "argv ['4', '-m', 'x'] True" in proc.stdout
    assert "name __main__" in proc.stdout


def test_run_reports_one_block_naming_function_and_line(python, tmp_path):
    pytest.importorskip("gevent")
    write(tmp_path, "blocker.py", """\
        import gevent, time

        def slow_handler():
            time.sleep(0.5)

        gevent.spawn(slow_handler).join()
        print("done")
    """)
    proc = python(["-m", "hubmon", "run", "-t", "0.1", "blocker.py"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    err = proc.stderr
    assert err.count("appears to be blocked") == 1, err
    assert "slow_handler" in err.split("appears to be blocked")[0].splitlines()[-1]
    blocked_stack = err.split("Blocked Stack")[1].split("Info:")[0]
    assert 'blocker.py", line 4, in slow_handler' in blocked_stack
    assert "time.sleep(0.5)" in blocked_stack
    assert "(max_blocking_time 0.100 seconds)" in err


def test_run_without_options_monitors_with_the_default_threshold(python, tmp_path):
    pytest.importorskip("gevent")
    write(tmp_path, "blocker.py", """\
        import gevent, time
        gevent.spawn(time.sleep, 0.3).join()
    """)
    proc = python(["-m", "hubmon", "run", "blocker.py"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1
    assert "(max_blocking_time 0.100 seconds)" in proc.stderr


def test_run_options_set_the_settings(python, tmp_path):
    pytest.importorskip("gevent")
    write(tmp_path, "settings.py", """\
        import gevent, hubmon
        gevent.sleep(0.01)
        monitor = gevent.get_hub().periodic_monitoring_thread
        print(type(monitor).__module__, monitor.max_blocking_time,
              monitor.max_memory_usage, monitor.memory_monitor_period)
        c = hubmon.config
        print(c.monitor_thread, c.max_blocking_time, c.max_memory_usage,
              c.memory_monitor_period, c.report_to)
    """)
    proc = python(["-m", "hubmon", "run", "-t", "0.25", "--memory-max", "3GB",
                   "--memory-period", "0.5", "--report-to", "logging", "settings.py"],
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    gb3 = 3 * 1024 ** 3
    assert proc.stdout.splitlines() == [
        "hubmon.monitor 0.25 %d 0.5" % gb3,
        "True 0.25 %d 0.5 logging" % gb3,
    ]


def test_run_report_to_logging(python, tmp_path):
    pytest.importorskip("gevent")
    write(tmp_path, "logs.py", """\
        import logging, gevent, time
        logging.basicConfig(format="LOG %(name)s %(levelname)s %(message)s")
        def handler():
            time.sleep(0.3)
        gevent.spawn(handler).join()
    """)
    proc = python(["-m", "hubmon", "run", "--report-to", "logging", "logs.py"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("appears to be blocked") == 1
    assert "LOG hubmon WARNING ====" in proc.stderr


@pytest.mark.parametrize("option, value", [
    ("-t", "0"),
    ("-t", "-1"),
    ("-t", "abc"),
    ("-t", "nan"),
    ("--max-blocking-time", "1e9"),
    ("--memory-max", "12xb"),
    ("--memory-max", "0"),
    ("--memory-max", "1.5mb"),
    ("--memory-period", "0.01"),
    ("--memory-period", "inf"),
    ("--report-to", "syslog"),
])
def test_run_rejects_bad_option_values(python, tmp_path, option, value):
    write(tmp_path, "app.py", "print('the program ran')\n")
    proc = python(["-m", "hubmon", "run", option, value, "app.py"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m hubmon run: error: argument "), last
    assert option in last and repr(value) in last and "expected" in last


def test_run_rejects_a_bad_environment_variable(python, tmp_path):
    write(tmp_path, "app.py", "print('the program ran')\n")
    proc = python(["-m", "hubmon", "run", "app.py"], cwd=tmp_path,
                  env={"HUBMON_REPORT_GREENLETS": "-3"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "HUBMON_REPORT_GREENLETS='-3' is invalid" in proc.stderr


def test_run_rejects_a_bad_monitor_switch_though_it_turns_monitoring_on(python, tmp_path):
    # run turns monitoring on by itself, but gevent reads the variable too.
    write(tmp_path, "app.py", "print('the program ran')\n")
    proc = python(["-m", "hubmon", "run", "app.py"], cwd=tmp_path,
                  env={"GEVENT_MONITOR_THREAD_ENABLE": "maybe"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "GEVENT_MONITOR_THREAD_ENABLE='maybe' is invalid" in proc.stderr


def test_run_option_overrides_a_bad_environment_variable(python, tmp_path):
    write(tmp_path, "app.py", "import hubmon\nprint(hubmon.config.max_blocking_time)\n")
    proc = python(["-m", "hubmon", "run", "-t", "0.3", "app.py"], cwd=tmp_path,
                  env={"GEVENT_MAX_BLOCKING_TIME": "soon"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0.3\n"


@pytest.mark.parametrize("args, message", [
    ((), "the program to run is missing"),
    (("-t", "1"), "the program to run is missing"),
    (("missing.py",), "can't open file 'missing.py'"),
    (("-m", "no_such_module_here"), "no module named 'no_such_module_here'"),
    (("--bogus", "app.py"), "unrecognized arguments: --bogus"),
])
def test_run_usage_errors(python, tmp_path, args, message):
    proc = python(["-m", "hubmon", "run", *args], cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.startswith("usage: python -m hubmon")


def test_no_command_is_a_usage_error(python, tmp_path):
    proc = python(["-m", "hubmon"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "a command is needed: run or demo" in proc.stderr


# -- demo --------------------------------------------------------------------

CULPRITS = ("sleepy_handler", "busy_handler", "crunching_handler", "query_handler")


def test_demo_reports_four_blocks_with_their_causes(python, tmp_path):
    pytest.importorskip("gevent")
    proc = python(["-m", "hubmon", "demo"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out, err = proc.stdout, proc.stderr
    headers = [line for line in err.splitlines() if "appears to be blocked" in line]
    assert len(headers) == 4, err
    # One report per culprit, in order, each naming the culprit's function
    # in its header (gevent's repr) and in its blocked stack.
    for header, culprit in zip(headers, CULPRITS):
        # The GIL-holding call may have returned (and gevent forgotten the
        # function in the greenlet's repr) by the time the GIL is free for
        # the report: the stack dump written during the call names it below.
        assert culprit in header or culprit == "crunching_handler"
        assert "(max_blocking_time 0.100 seconds)" in header
    reports = err.split("appears to be blocked")[1:]
    for index in (0, 1, 3):
        blocked_stack = reports[index].split("Blocked Stack")[1].split("Info:")[0]
        assert "in %s" % CULPRITS[index] in blocked_stack
    if sys.platform.startswith("linux"):
        # Each report says why: the kernel's view of the hub's thread.
        causes = [report.split("\n")[1] for report in reports]
        assert causes[0].startswith("    Cause: sleep: "), causes
        assert causes[1].startswith("    Cause: cpu: "), causes
        assert causes[2].startswith("    Cause: gil: "), causes
        assert re.match(r"    Cause: io: recvfrom on fd \d+: TCP 127\.0\.0\.1:\d+ -> "
                        r"127\.0\.0\.1:\d+ ", causes[3]), causes
    # The profile of each blockage, when the hub runs again (0.5 s > 4 x 0.1 s;
    # the GIL-holding call, sized before it runs, may come out shorter).
    profiles = err.split("The hub ran again after")[1:]
    assert len(profiles) in (3, 4), err
    for culprit in ("sleepy_handler", "busy_handler", "query_handler"):
        assert any(profile.split("\n")[0].count(culprit) and "in %s" % culprit in profile
                   for profile in profiles), (culprit, err)
    # The C call is named by the stack written while it ran (faulthandler,
    # Linux) or by the report built once it returned.
    assert "in crunching_handler" in err.split(headers[1])[1]
    # An intro before each block, then the outcome.
    intros = [line for line in out.splitlines() if line.startswith("[")]
    assert len(intros) == 8
    for number, culprit in enumerate(CULPRITS, 1):
        assert intros[2 * number - 2].startswith("[%d/4] %s() " % (number, culprit))
        assert intros[2 * number - 1].startswith("[%d/4] %s() returned" % (number, culprit))
    assert "Done: hubmon reported each of the 4 blocks once" in out


def test_demo_threshold_option(python, tmp_path):
    pytest.importorskip("gevent")
    proc = python(["-m", "hubmon", "demo", "-t", "0.2"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.count("appears to be blocked") == 4
    assert proc.stderr.count("(max_blocking_time 0.200 seconds)") >= 4
    assert "max_blocking_time = 0.2 s" in proc.stdout


def test_demo_rejects_a_bad_threshold(python, tmp_path):
    proc = python(["-m", "hubmon", "demo", "-t", "zero"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument -t/--max-blocking-time: invalid value 'zero'" in proc.stderr


def test_demo_without_gevent_says_how_to_install_it(python, tmp_path):
    # A gevent package that cannot be imported hides the real one.
    write(tmp_path, "hide/gevent/__init__.py", "raise ImportError('No module named gevent')\n")
    proc = python(["-m", "hubmon", "demo"], cwd=tmp_path, pythonpath=[str(tmp_path / "hide")])
    assert proc.returncode == 1
    assert "pip install hubmon[gevent]" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- help --------------------------------------------------------------------

@pytest.mark.parametrize("command", [(), ("run",), ("demo",)])
def test_help_documents_the_environment(python, tmp_path, command):
    proc = python(["-m", "hubmon", *command, "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("usage: python -m hubmon")
    for setting in SETTINGS:
        assert setting["env"] in text
        assert "hubmon.config.%s" % setting["name"] in text


def test_main_help_lists_the_commands(python, tmp_path):
    text = python(["-m", "hubmon", "--help"], cwd=tmp_path).stdout
    assert "\n    run " in text and "\n    demo " in text


def test_run_help_documents_every_option(python, tmp_path):
    text = python(["-m", "hubmon", "run", "--help"], cwd=tmp_path).stdout
    # Python 3.13's argparse shows the metavar of an option with a short and
    # a long form only once, after the long form.
    short_and_long = ("-t, --max-blocking-time SECONDS" if sys.version_info >= (3, 13)
                      else "-t SECONDS, --max-blocking-time SECONDS")
    for option in (short_and_long, "--memory-max SIZE",
                   "--memory-period SECONDS", "--report-to {stream,logging}", "\n  -m ",
                   "script.py | module", "exit status"):
        assert option in text


def test_version(python, tmp_path):
    import hubmon

    proc = python(["-m", "hubmon", "--version"], cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "hubmon %s" % hubmon.__version__


# -- the examples of docs/events.rst, run as the page shows ---------------------

EXAMPLES = Path(ROOT) / "docs" / "examples"


def test_docs_logging_example(python, tmp_path):
    pytest.importorskip("gevent")
    proc = python(["-m", "hubmon", "run", "--report-to", "logging",
                   str(EXAMPLES / "logging_example.py")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert err.count("WARNING hubmon: =====") == 1
    assert "WARNING myapp.hub: hub blocked by <Greenlet" in err and ": handler>" in err
    assert "INFO myapp.hub: hub runs again; the blockage lasted" in err
    assert "blockages 1" in err and "<=0.5s: 1" in err


def test_docs_prometheus_example(python, tmp_path):
    pytest.importorskip("gevent")
    pytest.importorskip("prometheus_client")
    proc = python(["-m", "hubmon", "run", str(EXAMPLES / "prometheus_export.py")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "# TYPE hubmon_hub_blocking_seconds histogram" in out
    buckets = [line for line in out.splitlines()
               if line.startswith("hubmon_hub_blocking_seconds_bucket")]
    assert len(buckets) == 12 and 'le="+Inf"' in buckets[-1]
    counts = [float(line.rsplit(" ", 1)[1]) for line in buckets]
    assert counts == sorted(counts) and counts[-1] >= 1  # cumulative, the block counted
    assert any(line.startswith("hubmon_blocks_total{") and line.endswith(" 1.0")
               for line in out.splitlines())
