"""The command line, ``python -m hubmon``: ``run`` a program under hubmon, or the ``demo``.

``python -m hubmon run [options] script.py [args...]`` does for monitoring
what ``python -m gevent.monkey script.py`` does for patching: it sets
hubmon's settings in code (as if the ``GEVENT_*`` variables were set), then
runs the script as ``__main__`` with ``sys.argv`` set to
``[script.py, *args]``. Since ``import hubmon`` has already replaced the
method every gevent hub calls when it starts, each hub the program creates is
watched by hubmon, and the program needs no change. The program's exit code
is preserved.

The option values are checked by the same rules as the environment
variables (:mod:`hubmon.config`); a bad one is an argparse error naming the
option and the value, with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import textwrap
from typing import Any, Callable, Optional, Sequence

from .config import Config, ConfigError, config

__all__ = ["main", "build_parser", "describe_environment"]

#: How the command is spelled in usage and error messages.
PROG = "python -m hubmon"


def describe_environment(note: str = "", width: int = 79) -> str:
    """Return the environment variables hubmon reads, as text for ``--help``.

    The list comes from :meth:`hubmon.config.Config.describe`, so it names
    every setting, in the order they are defined. *note* is added to the
    heading.
    """
    heading = "environment variables (%s):" % (
        note or "read by hubmon in any program that imports it, when a setting is first used")
    lines = textwrap.wrap(heading, width)
    for item in Config.describe():
        lines.append("  %s" % (item["env"],))
        facts = "setting hubmon.config.%s; %s; default %r" % (
            item["name"], item["type"], item["default"])
        for text in (facts, str(item["doc"])):
            lines.extend(textwrap.wrap(text, width, initial_indent=" " * 6,
                                       subsequent_indent=" " * 6))
    return "\n".join(lines)


def _default(name: str) -> Any:
    """The default value of setting *name*."""
    return next(item["default"] for item in Config.describe() if item["name"] == name)


def _setting_type(name: str, convert: Optional[Callable[[str], Any]] = None) -> Callable[[str], Any]:
    """Return an argparse ``type`` that checks a value as ``hubmon.config.<name>`` does.

    *convert* turns the text into the value assigned (``float`` for a
    duration); when it fails the text itself is assigned, so that the
    setting rejects it with its own explanation of what is expected. The
    returned callable raises :class:`argparse.ArgumentTypeError`, which
    argparse prints after the option's name.
    """
    def parse(text: str) -> Any:
        value: Any = text
        if convert is not None:
            try:
                value = convert(text)
            except ValueError:
                value = text
        scratch = Config()
        try:
            setattr(scratch, name, value)
        except ConfigError as error:
            message = str(error)
            marker = " is invalid: "
            if marker in message:
                message = message.split(marker, 1)[1]
            raise argparse.ArgumentTypeError("invalid value %r: %s" % (text, message)) from None
        return getattr(scratch, name)

    parse.__name__ = name
    return parse


_DESCRIPTION = """\
hubmon finds the greenlet that blocks a gevent hub. A native thread watches
every hub without the GIL; when one has not run for longer than the threshold,
hubmon prints a report naming the blocking greenlet, its stack and every
other thread and greenlet, and fires hubmon.events (and gevent's events).

In your own code, "import hubmon" and GEVENT_MONITOR_THREAD_ENABLE=true are
all it takes; these commands need no code change at all."""

_MAIN_EPILOG = """\
examples:
  python -m hubmon demo                     see three kinds of blocks reported
  python -m hubmon run app.py --port 8000   run app.py with its hubs monitored
  python -m hubmon run -t 0.05 -m mypkg.server
  python -m hubmon run --help               every option of run

"""

_RUN_DESCRIPTION = """\
Run a Python program with hubmon watching its gevent hubs, with no change to
the program, like "python -m gevent.monkey". hubmon's settings are set in code
(hubmon.config.monitor_thread = True, and the options below), sys.argv becomes
[script.py, args...], and the script runs as __main__ (runpy.run_path), or the
module with -m (runpy.run_module). A report is printed each time a hub stays
blocked longer than the threshold.

The exit status is the program's: what it passes to sys.exit(), 0 when it
ends normally, 1 when it ends with an uncaught exception (whose traceback is
printed). A bad option or environment value exits with status 2.

The settings apply to this process only: programs that the script starts
are not monitored unless they use hubmon themselves."""

_RUN_EPILOG = """\
examples:
  python -m hubmon run app.py
  python -m hubmon run -t 0.25 --memory-max 512mb app.py --workers 4
  python -m hubmon run --report-to logging -m mypkg.server

"""

_DEMO_DESCRIPTION = """\
Run a small gevent program, bundled with hubmon, that blocks its hub in three
ways while two ticker greenlets try to run every few milliseconds: a greenlet
calls time.sleep() without monkey-patching, one spins in a pure-Python loop,
and one makes a C call that holds the GIL (sum(range(N)) sized to this
machine). Each block lasts 0.5 seconds (or 2.5 times the threshold, if that is
longer), and hubmon reports each one once. It takes a few seconds. The demo
needs gevent (pip install hubmon[gevent]); its exit status is 0 when the three
blocks were reported."""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m hubmon`` and its ``run`` and ``demo`` commands."""
    from . import __version__

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, epilog=_MAIN_EPILOG + describe_environment(),
        formatter_class=formatter)
    parser.add_argument("--version", action="version", version="hubmon %s" % (__version__,))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    run = commands.add_parser(
        "run", help="run a program with its gevent hubs monitored (no code change)",
        description=_RUN_DESCRIPTION,
        epilog=_RUN_EPILOG + describe_environment(
            "run sets monitor_thread to true; its options override the variables"),
        formatter_class=formatter,
        usage="%s run [options] script.py [args ...]\n"
              "       %s run [options] -m module [args ...]" % (PROG, PROG))
    run.add_argument(
        "-t", "--max-blocking-time", metavar="SECONDS",
        type=_setting_type("max_blocking_time", float),
        help="report a hub that has not run for this long (GEVENT_MAX_BLOCKING_TIME; "
             "default %g)" % (_default("max_blocking_time"),))
    run.add_argument(
        "--memory-max", metavar="SIZE", type=_setting_type("max_memory_usage"),
        help="fire hubmon's memory events when the process uses more than SIZE bytes; "
             "SIZE may end in kb, mb or gb, as in 512mb (GEVENT_MONITOR_MEMORY_MAX; "
             "default: no limit)")
    run.add_argument(
        "--memory-period", metavar="SECONDS",
        type=_setting_type("memory_monitor_period", float),
        help="check the memory usage every SECONDS, at least 0.1 "
             "(GEVENT_MONITOR_MEMORY_PERIOD; default %g)" % (_default("memory_monitor_period"),))
    run.add_argument(
        "--report-to", metavar="{stream,logging}", type=_setting_type("report_to"),
        help="print reports to the hub's exception stream (stderr), or send them to "
             "logging.getLogger('hubmon') (HUBMON_REPORT_TO; default stream)")
    run.add_argument(
        "-m", dest="module", action="store_true",
        help="the program is a module, run as a script like python -m module does")
    run.add_argument(
        "target", metavar="script.py | module", nargs="?",
        help="the program to run: a file (or a directory or zip file with a __main__.py), "
             "or with -m a module name")
    run.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="args",
        help="the program's own arguments, passed on untouched in sys.argv")
    run.set_defaults(command_parser=run)

    demo = commands.add_parser(
        "demo", help="watch hubmon report three kinds of blocks in a bundled gevent program",
        description=_DEMO_DESCRIPTION, formatter_class=formatter,
        epilog=describe_environment("the demo sets monitor_thread, max_blocking_time and "
                                    "print_blocking_reports itself; the others apply"))
    demo.add_argument(
        "-t", "--max-blocking-time", metavar="SECONDS",
        type=_setting_type("max_blocking_time", float), default=0.1,
        help="the threshold for the demo (default 0.1)")
    demo.set_defaults(command_parser=demo)
    return parser


def _check_environment(parser: argparse.ArgumentParser, overridden: tuple = ()) -> None:
    """Read every setting now, so that a bad environment variable is an error up front.

    *overridden* names the settings that a command-line option set: their
    variables are not read (the option wins). A setting the command sets on
    its own (``run`` turns monitoring on) still has its variable checked:
    gevent reads it too.
    """
    try:
        config.check_environment(skip=overridden)
        config.settings()
    except ConfigError as error:
        parser.error(str(error))


def _without_runner_frames(tb: Any) -> Any:
    """Drop the leading traceback entries of this module and of runpy.

    What is left starts in the user's program, as when Python runs it
    directly; None if nothing is left.
    """
    # By module name: runpy's frames may be frozen ("<frozen runpy>").
    hidden = {__name__, runpy.__name__}
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in hidden:
        tb = tb.tb_next
    return tb


def _run(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the program with the monitor enabled; return its exit status."""
    config.monitor_thread = True
    given = {"max_blocking_time": options.max_blocking_time,
             "max_memory_usage": options.memory_max,
             "memory_monitor_period": options.memory_period,
             "report_to": options.report_to}
    for name, value in given.items():
        if value is not None:
            setattr(config, name, value)
    _check_environment(parser, tuple(name for name, value in given.items() if value is not None))

    target = options.target
    if target is None:
        parser.error("the program to run is missing: give script.py, or -m and a module name")
    if options.module:
        import importlib.util

        try:
            found = importlib.util.find_spec(target) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            parser.error("no module named %r" % (target,))
    elif not os.path.exists(target):
        parser.error("can't open file %r: no such file or directory" % (target,))

    sys.argv[:] = [target, *options.args]
    if not options.module and not getattr(sys.flags, "safe_path", False) and sys.path:
        # "python -m hubmon" put the working directory first; "python
        # script.py" puts the script's directory there.
        sys.path[0] = os.path.dirname(os.path.abspath(target))
    try:
        if options.module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        # The program's exit code, or Python's own handling of Ctrl-C.
        raise
    except BaseException as error:
        # As Python does for an uncaught exception: print it (through
        # sys.excepthook, which the program may have replaced) and exit 1.
        tb = _without_runner_frames(error.__traceback__)
        sys.excepthook(type(error), error.with_traceback(tb), tb)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``python -m hubmon`` with *argv* (default ``sys.argv[1:]``); return the exit status.

    ``run`` may also end by raising :class:`SystemExit` with the program's own
    code; argparse raises it with status 2 for a bad option.
    """
    parser = build_parser()
    options = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if options.command == "run":
        return _run(options, options.command_parser)
    if options.command == "demo":
        from . import demo

        config.max_blocking_time = options.max_blocking_time
        _check_environment(options.command_parser, ("max_blocking_time",))
        return demo.main(options.max_blocking_time)
    parser.error("a command is needed: run or demo (see --help)")
    return 2  # not reached: parser.error() exits
