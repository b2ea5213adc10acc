"""hubmon's settings, read from the environment and settable in code.

The settings that gevent also has use gevent's environment variable names and
gevent's parsing rules (``gevent/_config.py``), so one environment configures
both. Each setting is read from the environment the first time it is used and
then cached; assigning one in code validates the value and overrides the
environment; ``del config.name`` and :meth:`Config.reload` go back to the
environment. Any invalid value raises :class:`ConfigError`, whose message names
the environment variable (or the setting, for a value set in code), shows the
bad value and says what is expected.

The values are checked by the validators of :mod:`hubmon._values`, the same
ones that check arguments to :func:`hubmon.start` and the rest. This module
imports only ``os`` and those, never gevent, so importing hubmon stays cheap
and does not bring gevent in.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # Importing typing takes several milliseconds; config must stay cheap.
    from typing import Any

from ._values import (BOOL, BYTES, COUNT, MAX_INT, MAX_SECONDS, MEMORY_PERIOD, REPEAT_WINDOW,
                      SIGNAL, THRESHOLD, TIMEOUT, Choice, ConfigError, OrDefault)

__all__ = ["Config", "ConfigError", "MAX_INT", "MAX_SECONDS", "config"]


class _Setting:
    """The descriptor behind one setting of :class:`Config`; its ``__doc__`` is the setting's doc."""

    def __init__(self, env: str, kind: Any, default: object, doc: str) -> None:
        self.env = env
        self.kind = kind
        self.default = default
        self.__doc__ = " ".join(doc.split())
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Config | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        for values in (obj._assigned, obj._cached):
            if self.name in values:
                return values[self.name]
        text = os.environ.get(self.env)
        if text is None:
            value = self.kind.from_code(self.default, self.name)
        else:
            value = self.kind.from_env(text, self.env)
        obj._cached[self.name] = value
        return value

    def __set__(self, obj: Config, value: object) -> None:
        obj._assigned[self.name] = self.kind.from_code(value, self.name)

    def __delete__(self, obj: Config) -> None:
        obj._assigned.pop(self.name, None)
        obj._cached.pop(self.name, None)


def _setting(env: str, kind: Any, default: object, doc: str) -> Any:
    """Make a setting; typed ``Any`` so that ``name: type = _setting(...)`` type-checks as plain ``type``."""
    return _Setting(env, kind, default, doc)


class Config:
    """hubmon's settings; use the module-level instance :data:`config`.

    Each setting is an attribute: read from its environment variable on first
    access (or its default when the variable is unset) and cached; assigning
    validates and overrides; ``del`` reverts to the environment or default.
    Invalid values raise :class:`ConfigError`; unknown attributes raise
    :class:`AttributeError`.
    """

    __slots__ = ("_assigned", "_cached")

    monitor_thread: bool = _setting("GEVENT_MONITOR_THREAD_ENABLE", BOOL, False, """
        Start the native monitor thread that watches each hub for blocking. In
        code, a bool.""")
    max_blocking_time: float = _setting("GEVENT_MAX_BLOCKING_TIME", THRESHOLD, 0.1, """
        How long, in seconds, a hub may run one greenlet without switching
        before it counts as blocked and is reported.""")
    max_memory_usage: int | None = _setting("GEVENT_MONITOR_MEMORY_MAX", BYTES, None, """
        The process's memory usage, in bytes, above which memory events are
        emitted; None (or an empty string) for no limit. In the environment and
        in code a string may end in kb, mb or gb.""")
    memory_monitor_period: float = _setting(
        "GEVENT_MONITOR_MEMORY_PERIOD", MEMORY_PERIOD, 5.0, """
        How often, in seconds, the monitor checks the process's memory usage.""")
    print_blocking_reports: bool = _setting(
        "GEVENT_MONITOR_PRINT_BLOCKING_REPORTS", BOOL, True, """
        Print a report when a blocked hub is detected; the event is emitted
        either way. In code, a bool.""")
    report_to: str = _setting("HUBMON_REPORT_TO", Choice("stream", "logging"), "stream", """
        Where the default blocked report goes: 'stream' writes it to the hub's
        exception stream (stderr by default), 'logging' sends it through the
        logging module.""")
    report_greenlet_limit: int = _setting("HUBMON_REPORT_GREENLETS", COUNT, 50, """
        How many greenlets the default blocked report shows in full before
        summarising the rest by count; 0 shows every greenlet.""")
    gil_signal: int | str = _setting("HUBMON_GIL_SIGNAL", SIGNAL, "auto", """
        The signal on which faulthandler writes the Python stacks while a C
        call that holds the GIL blocks a hub (Linux). 'auto' (the value read
        back) lets each monitor pick, when it starts, the first real-time
        signal from SIGRTMIN + 6 on that nobody handles; a number must be
        SIGUSR1, SIGUSR2 or a real-time signal, and one the program already
        handles is refused when a monitor starts; 'off' or 0 disables the
        dump. With HUBMON_REPORT_FORMAT=json, 'auto' means no dump (its text
        is not JSON): name a signal to have it anyway.""")

    repeat_window: float = _setting("HUBMON_REPEAT_WINDOW", REPEAT_WINDOW, 60.0, """
        Seconds after a blocked report is printed in full during which another
        blockage with the same fingerprint (the same culprit code location)
        prints one line instead, naming the full report it repeats; after the
        window the next one prints in full again. 0 prints every report in
        full. The events fire every time either way.""")
    report_format: str = _setting("HUBMON_REPORT_FORMAT", Choice("text", "json"), "text", """
        How a monitor writes what it reports: 'text', the readable report, or
        'json', one JSON object per line and per event (a blockage, a repeat,
        the end of a reported blockage) to the same stream or logger.""")
    unblocked_report_time: float | None = _setting(
        "HUBMON_UNBLOCKED_REPORT_TIME", OrDefault(TIMEOUT, "4 x max_blocking_time"), None, """
        Blockages that last at least this many seconds get a second report
        when the hub runs again, with the profile of where the time went;
        None (unset) means 4 x max_blocking_time; 0 gives every reported
        blockage one.""")

    def __init__(self) -> None:
        """Create a Config with nothing read or assigned yet."""
        object.__setattr__(self, "_assigned", {})
        object.__setattr__(self, "_cached", {})

    def __setattr__(self, name: str, value: object) -> None:
        """Assign a setting, validating it; other attributes raise AttributeError."""
        self._setting(name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        """Revert a setting to its environment variable or default."""
        self._setting(name)
        object.__delattr__(self, name)

    @classmethod
    def _setting(cls, name: str) -> _Setting:
        """Return the descriptor of setting *name*, or raise AttributeError."""
        setting = cls.__dict__.get(name)
        if not isinstance(setting, _Setting):
            raise AttributeError(f"{cls.__name__} has no setting {name!r}; "
                                 f"the settings are: {', '.join(cls._names())}")
        return setting

    @classmethod
    def _names(cls) -> list[str]:
        """Return the setting names in definition order."""
        return [name for name, value in vars(cls).items() if isinstance(value, _Setting)]

    def reload(self) -> None:
        """Forget every cached and assigned value: the next access re-reads the environment."""
        self._assigned.clear()
        self._cached.clear()

    def is_explicit(self, name: str) -> bool:
        """Return True if setting *name* was assigned in code or its environment variable is set.

        Raises AttributeError for an unknown name.
        """
        return name in self._assigned or self._setting(name).env in os.environ

    def is_assigned(self, name: str) -> bool:
        """Return True if setting *name* was assigned in code (not only read from the environment).

        Raises AttributeError for an unknown name.
        """
        self._setting(name)
        return name in self._assigned

    def convert(self, name: str, value: object, label: str) -> object:
        """Validate *value* for setting *name* as an assignment in code would, without assigning it.

        Returns the converted value; raises ConfigError naming *label* when
        invalid, AttributeError for an unknown name.
        """
        return self._setting(name).kind.from_code(value, label)

    def check_environment(self, skip: tuple = ()) -> None:
        """Parse the environment variable of every setting not named in *skip* that is set,
        even where code assigned the setting, so that no bad variable goes unnoticed.

        Raises :class:`ConfigError` naming the first invalid variable and its text.
        """
        for name in self._names():
            if name in skip:
                continue
            setting = self._setting(name)
            text = os.environ.get(setting.env)
            if text is not None:
                setting.kind.from_env(text, setting.env)

    def label(self, name: str) -> str:
        """Return how to name setting *name* in an error: its environment variable when
        the value comes from there, else the setting's name. Raises AttributeError for an
        unknown name."""
        setting = self._setting(name)
        if name not in self._assigned and setting.env in os.environ:
            return setting.env
        return name

    def settings(self) -> dict[str, object]:
        """Return every setting's current value, by name (ConfigError if one is invalid)."""
        return {name: getattr(self, name) for name in self._names()}

    @classmethod
    def describe(cls) -> list[dict[str, object]]:
        """Describe every setting, in definition order, for documentation.

        Each item has the keys ``name``, ``env`` (the environment variable),
        ``type`` (what values it takes), ``default`` (the default value;
        ``'auto'`` for ``gil_signal``, resolved when read) and ``doc``.
        """
        described = []
        for name in cls._names():
            setting = cls._setting(name)
            described.append({"name": name, "env": setting.env, "type": setting.kind.type,
                              "default": setting.default, "doc": setting.__doc__})
        return described


#: The settings hubmon uses.
config = Config()
