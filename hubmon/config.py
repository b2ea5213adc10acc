"""hubmon's settings, read from the environment and settable in code.

The settings that gevent also has use gevent's environment variable names and
gevent's parsing rules (``gevent/_config.py``), so one environment configures
both. Each setting is read from the environment the first time it is used and
then cached; assigning one in code validates the value and overrides the
environment; ``del config.name`` and :meth:`Config.reload` go back to the
environment. Any invalid value raises :class:`ConfigError`, whose message names
the environment variable (or the setting, for a value set in code), shows the
bad value and says what is expected.

This module imports only ``os`` (``signal`` on demand) and never gevent, so
importing hubmon stays cheap and does not bring gevent in.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # Importing typing takes several milliseconds; config must stay cheap.
    from typing import Any

__all__ = ["Config", "ConfigError", "MAX_INT", "MAX_SECONDS", "config"]

#: The longest accepted time setting: one day, in seconds.
MAX_SECONDS = 86400.0
#: The largest accepted integer setting: it must fit a signed 64-bit C integer.
MAX_INT = 2**63 - 1
_BYTE_SUFFIXES = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}


class ConfigError(ValueError):
    """An invalid setting value, from the environment or assigned in code.

    The message names the environment variable or the setting, shows the bad
    value's ``repr`` and says what is expected, for example
    ``GEVENT_MAX_BLOCKING_TIME='abc' is invalid: expected a number of seconds
    greater than 0 and at most 86400``.
    """


def _invalid(label: str, value: object, expected: str) -> ConfigError:
    """Return (not raise) the ConfigError for *value* given to *label*."""
    return ConfigError(f"{label}={value!r} is invalid: expected {expected}")


def _as_int(value: object) -> int | None:
    """Return *value* as an int if it is an integer (``__index__``) but not a bool, else None."""
    if isinstance(value, bool):
        return None
    index = getattr(type(value), "__index__", None)
    try:
        return None if index is None else int(index(value))
    except (TypeError, ValueError):
        return None


# Each kind below converts one type of setting. ``from_env(text, label)`` parses
# an environment string, ``from_code(value, label)`` checks a value assigned in
# code; both return the setting's value or raise ConfigError naming *label*.


class _Bool:
    """A flag, spelled as gevent's ``validate_bool`` accepts it."""

    type = "bool"
    _TRUE = frozenset(("1", "true", "on", "yes"))
    _FALSE = frozenset(("0", "false", "off", "no", ""))

    def from_env(self, text: str, label: str) -> bool:
        word = text.strip().lower()
        if word in self._TRUE:
            return True
        if word in self._FALSE:
            return False
        raise _invalid(label, text, "1, true, on or yes for true, or 0, false, off, no or "
                       "an empty string for false (in any case)")

    def from_code(self, value: object, label: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _invalid(label, value, "a bool")


class _Seconds:
    """A finite duration in seconds, above a floor and at most one day."""

    def __init__(self, minimum: float, inclusive: bool) -> None:
        self.minimum = minimum
        self.inclusive = inclusive
        if inclusive:
            bounds = f"from {minimum:g} to {MAX_SECONDS:g}"
        else:
            bounds = f"greater than {minimum:g} and at most {MAX_SECONDS:g}"
        self.expected = f"a number of seconds {bounds}"
        self.type = f"float (seconds): {bounds}"

    def _check(self, seconds: float, label: str, raw: object) -> float:
        # Comparisons with NaN are false, and the bounds are finite, so this
        # also rejects NaN and both infinities.
        above = seconds >= self.minimum if self.inclusive else seconds > self.minimum
        if above and seconds <= MAX_SECONDS:
            return seconds
        raise _invalid(label, raw, self.expected)

    def from_env(self, text: str, label: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            raise _invalid(label, text, self.expected) from None
        return self._check(seconds, label, text)

    def from_code(self, value: object, label: str) -> float:
        if value is None or isinstance(value, (bool, str, bytes, bytearray)):
            raise _invalid(label, value, self.expected)
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise _invalid(label, value, self.expected) from None
        return self._check(seconds, label, value)


class _ByteCount:
    """A memory size in bytes, or None for no limit (gevent's ``ByteCountSettingMixin``)."""

    type = "int (bytes) or None: greater than 0; kb, mb, gb suffixes allowed"
    expected = ("a whole number of bytes greater than 0 and at most 2**63 - 1, optionally "
                "followed by kb, mb or gb (for example '512mb'), or an empty string for no limit")
    expected_in_code = "None, an int number of bytes greater than 0, or a string such as '512mb'"

    def _check(self, count: int, label: str, raw: object, expected: str) -> int:
        if 0 < count <= MAX_INT:
            return count
        raise _invalid(label, raw, expected)

    def from_env(self, text: str, label: str) -> int | None:
        word = text.strip().lower()
        if not word:
            return None
        multiplier = _BYTE_SUFFIXES.get(word[-2:], 1)
        if multiplier != 1:
            word = word[:-2]
        try:
            # Like gevent, a whole number only: '1.5mb' is an error.
            count = int(word)
        except ValueError:
            raise _invalid(label, text, self.expected) from None
        return self._check(count * multiplier, label, text, self.expected)

    def from_code(self, value: object, label: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            return self.from_env(value, label)
        count = _as_int(value)
        if count is None:
            raise _invalid(label, value, self.expected_in_code)
        return self._check(count, label, value, self.expected_in_code)


class _Choice:
    """One of a few words, case-insensitive; the value is the lower-case word."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = " or ".join(repr(choice) for choice in choices)
        self.type = f"str: {self.expected}"

    def from_env(self, text: str, label: str) -> str:
        word = text.strip().lower()
        if word in self.choices:
            return word
        raise _invalid(label, text, self.expected)

    def from_code(self, value: object, label: str) -> str:
        if isinstance(value, str):
            return self.from_env(value, label)
        raise _invalid(label, value, self.expected)


class _Count:
    """A whole number from 0 up."""

    type = "int: 0 or more"
    expected = "a whole number from 0 to 2**63 - 1"

    def _check(self, count: int | None, label: str, raw: object) -> int:
        if count is not None and 0 <= count <= MAX_INT:
            return count
        raise _invalid(label, raw, self.expected)

    def from_env(self, text: str, label: str) -> int:
        try:
            count = int(text)
        except ValueError:
            raise _invalid(label, text, self.expected) from None
        return self._check(count, label, text)

    def from_code(self, value: object, label: str) -> int:
        return self._check(_as_int(value), label, value)


class _Signal:
    """A signal number to claim, ``'auto'`` (resolved when a monitor starts), or ``'off'``/0 for none.

    Only signals without a standard meaning may be claimed: SIGUSR1, SIGUSR2
    and the real-time signals SIGRTMIN to SIGRTMAX.
    """

    type = "int (signal number) or 'auto': 'auto', 'off' or 0, SIGUSR1, SIGUSR2 or a real-time signal"

    @staticmethod
    def claimable() -> list[int]:
        """Return the signal numbers hubmon may claim: SIGUSR1, SIGUSR2, SIGRTMIN..SIGRTMAX."""
        import signal

        numbers = [int(getattr(signal, name)) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name)]
        rtmin, rtmax = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
        if rtmin is not None and rtmax is not None:
            numbers += range(int(rtmin), int(rtmax) + 1)
        valid = signal.valid_signals()
        return [number for number in numbers if number in valid]

    def _expected(self) -> str:
        import signal

        rt = ""
        if hasattr(signal, "SIGRTMIN"):
            rt = f", or a real-time signal from {int(signal.SIGRTMIN)} (SIGRTMIN) to {int(signal.SIGRTMAX)} (SIGRTMAX)"
        usr = f"{int(signal.SIGUSR1)} (SIGUSR1), {int(signal.SIGUSR2)} (SIGUSR2)" if hasattr(signal, "SIGUSR1") else ""
        return (f"'auto', 'off' or 0, or a signal without a standard meaning, by number or by "
                f"name (SIGUSR1, SIGRTMIN+3): {usr}{rt}; "
                "signals such as SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE or SIGALRM belong to the program")

    def _check(self, number: int | None, label: str, raw: object) -> int:
        if number == 0:
            return 0
        if number is not None and number in self.claimable():
            return number
        raise _invalid(label, raw, self._expected())

    @staticmethod
    def _by_name(word: str) -> int | None:
        """The number of a signal named like ``SIGUSR1``, ``sigrtmin+3`` or ``SIGRTMAX-1``, or None."""
        import signal

        name, sign, offset = word.upper().partition("+")
        if not sign:
            name, sign, offset = word.upper().partition("-")
        base = getattr(signal, name, None) if name.startswith("SIG") else None
        if not isinstance(base, int) or (sign and name not in ("SIGRTMIN", "SIGRTMAX")):
            return None
        if not sign:
            return int(base)
        if not offset.isdigit():
            return None
        return int(base) + int(offset) if sign == "+" else int(base) - int(offset)

    def from_env(self, text: str, label: str) -> int | str:
        word = text.strip().lower()
        if word == "auto":
            return "auto"
        if word == "off":
            return 0
        number = self._by_name(word)
        if number is None:
            try:
                number = int(word)
            except ValueError:
                raise _invalid(label, text, self._expected()) from None
        return self._check(number, label, text)

    def from_code(self, value: object, label: str) -> int | str:
        if isinstance(value, str):
            return self.from_env(value, label)
        return self._check(_as_int(value), label, value)


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

    monitor_thread: bool = _setting("GEVENT_MONITOR_THREAD_ENABLE", _Bool(), False, """
        Start the native monitor thread that watches each hub for blocking. In
        code, a bool.""")
    max_blocking_time: float = _setting("GEVENT_MAX_BLOCKING_TIME", _Seconds(0.0, False), 0.1, """
        How long, in seconds, a hub may run one greenlet without switching
        before it counts as blocked and is reported.""")
    max_memory_usage: int | None = _setting("GEVENT_MONITOR_MEMORY_MAX", _ByteCount(), None, """
        The process's memory usage, in bytes, above which memory events are
        emitted; None (or an empty string) for no limit. In the environment and
        in code a string may end in kb, mb or gb.""")
    memory_monitor_period: float = _setting(
        "GEVENT_MONITOR_MEMORY_PERIOD", _Seconds(0.1, True), 5.0, """
        How often, in seconds, the monitor checks the process's memory usage.""")
    print_blocking_reports: bool = _setting(
        "GEVENT_MONITOR_PRINT_BLOCKING_REPORTS", _Bool(), True, """
        Print a report when a blocked hub is detected; the event is emitted
        either way. In code, a bool.""")
    report_to: str = _setting("HUBMON_REPORT_TO", _Choice("stream", "logging"), "stream", """
        Where the default blocked report goes: 'stream' writes it to the hub's
        exception stream (stderr by default), 'logging' sends it through the
        logging module.""")
    report_greenlet_limit: int = _setting("HUBMON_REPORT_GREENLETS", _Count(), 50, """
        How many greenlets the default blocked report shows in full before
        summarising the rest by count; 0 shows every greenlet.""")
    gil_signal: int | str = _setting("HUBMON_GIL_SIGNAL", _Signal(), "auto", """
        The signal on which faulthandler writes the Python stacks while a C
        call that holds the GIL blocks a hub (Linux). 'auto' (the value read
        back) lets each monitor pick, when it starts, the first real-time
        signal from SIGRTMIN + 6 on that nobody handles; a number must be
        SIGUSR1, SIGUSR2 or a real-time signal, and one the program already
        handles is refused when a monitor starts; 'off' or 0 disables the
        dump.""")

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
