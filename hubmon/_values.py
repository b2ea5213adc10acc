"""One validator per kind of value hubmon takes: seconds, byte counts, flags, counts, choices, signals.

Every place that accepts such a value uses these: :mod:`hubmon.config` (the
environment and assignments in code), :func:`hubmon.start` and the
:class:`~hubmon.Monitor` setters, :class:`~hubmon.assert_switches`, the
command line (through :mod:`hubmon.config`) and the pytest plugin. Each kind
has ``from_env(text, label)``, which parses an environment or command-line
string, and ``from_code(value, label)``, which checks a value given in code;
both return the value or raise :class:`ConfigError` naming *label* and the
value and saying what is expected (the kind's ``expected``). The parsing
rules of the settings gevent also has are gevent's (``gevent/_config.py``).

This module imports nothing but ``signal``, and that on demand, so that
``import hubmon`` stays cheap.
"""
from __future__ import annotations

__all__ = ["BOOL", "BYTES", "COUNT", "MAX_INT", "MAX_SECONDS", "MEMORY_PERIOD", "PERIOD",
           "REPEAT_WINDOW", "SIGNAL", "THRESHOLD", "TIMEOUT", "Bool", "ByteCount", "Choice",
           "ConfigError", "ConfigTypeError", "Count", "OrDefault",
           "Seconds", "Signal"]

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
    greater than 0 and at most 86400``. A value of the wrong type given in
    code raises a ConfigError that is also a TypeError (:class:`ConfigTypeError`).
    """


class ConfigTypeError(ConfigError, TypeError):
    """A ConfigError for a value of the wrong type given in code (``'0.1'`` for seconds, say)."""


def _invalid(label: str, value: object, expected: str, wrong_type: bool = False) -> ConfigError:
    """Return (not raise) the ConfigError for *value* given to *label*; a
    ConfigTypeError when ``wrong_type``."""
    error = ConfigTypeError if wrong_type else ConfigError
    return error(f"{label}={_safe_repr(value)} is invalid: expected {expected}")


def _safe_repr(value: object) -> str:
    """``repr(value)``, or a description of it when its ``__repr__`` raises; never raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object whose repr() raised>"


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


class Bool:
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
        raise _invalid(label, value, "a bool", wrong_type=not isinstance(value, int))


class Seconds:
    """A finite duration in seconds: above ``minimum`` (or from it, when
    ``inclusive``) and at most ``maximum`` (one day unless said; None for no
    bound but finiteness)."""

    def __init__(self, minimum: float, inclusive: bool,
                 maximum: float | None = MAX_SECONDS) -> None:
        self.minimum = minimum
        self.inclusive = inclusive
        self.maximum = float("inf") if maximum is None else maximum
        if maximum is None:
            bounds = f"{'from' if inclusive else 'greater than'} {minimum:g}, finite"
        elif inclusive:
            bounds = f"from {minimum:g} to {maximum:g}"
        else:
            bounds = f"greater than {minimum:g} and at most {maximum:g}"
        self.expected = f"a number of seconds {bounds}"
        self.type = f"float (seconds): {bounds}"

    def _check(self, seconds: float, label: str, raw: object) -> float:
        # Comparisons with NaN are false, so this also rejects NaN; infinity
        # is never a duration hubmon can wait for.
        above = seconds >= self.minimum if self.inclusive else seconds > self.minimum
        if above and seconds <= self.maximum and seconds != float("inf"):
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
            raise _invalid(label, value, self.expected, wrong_type=True)
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except TypeError:
            raise _invalid(label, value, self.expected, wrong_type=True) from None
        except (ValueError, OverflowError):
            raise _invalid(label, value, self.expected) from None
        return self._check(seconds, label, value)


class ByteCount:
    """A memory size in bytes, or None for no limit (gevent's ``ByteCountSettingMixin``)."""

    type = "int (bytes) or None: greater than 0; kb, mb, gb suffixes allowed"
    expected = ("a whole number of bytes greater than 0 and at most 2**63 - 1, optionally "
                "followed by kb, mb or gb (for example '512mb'), or an empty string for no limit")
    expected_in_code = ("None, an int number of bytes greater than 0 and at most 2**63 - 1, "
                        "or a string such as '512mb'")

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
            raise _invalid(label, value, self.expected_in_code, wrong_type=True)
        return self._check(count, label, value, self.expected_in_code)


class Choice:
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
        raise _invalid(label, value, self.expected, wrong_type=True)


class Count:
    """A whole number from 0 up."""

    type = "int: 0 or more"
    expected = "a whole number from 0 to 2**63 - 1"

    def _check(self, count: int | None, label: str, raw: object) -> int:
        if count is not None and 0 <= count <= MAX_INT:
            return count
        raise _invalid(label, raw, self.expected, wrong_type=count is None and not isinstance(raw, str))

    def from_env(self, text: str, label: str) -> int:
        try:
            count = int(text)
        except ValueError:
            raise _invalid(label, text, self.expected) from None
        return self._check(count, label, text)

    def from_code(self, value: object, label: str) -> int:
        if isinstance(value, str):
            return self.from_env(value, label)
        return self._check(_as_int(value), label, value)


class Signal:
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
        raise _invalid(label, raw, self._expected(),
                       wrong_type=number is None and not isinstance(raw, str))

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


#: ``max_blocking_time``: greater than 0, at most a day.
class OrDefault:
    """Another kind's values, or None for "the setting's default rule" (in
    the environment: an empty value), for a setting whose default depends on
    another one."""

    def __init__(self, kind: object, default: str) -> None:
        self.kind = kind
        self.expected = f"{kind.expected} (or empty for {default})"  # type: ignore[attr-defined]
        self.type = f"{kind.type}, or None for {default}"  # type: ignore[attr-defined]

    def from_env(self, text: str, label: str) -> object:
        return None if text.strip() == "" else self.kind.from_env(text, label)  # type: ignore[attr-defined]

    def from_code(self, value: object, label: str) -> object:
        return None if value is None else self.kind.from_code(value, label)  # type: ignore[attr-defined]


THRESHOLD = Seconds(0.0, False)
#: ``memory_monitor_period``: from 0.1 s (a check costs a system call) to a day.
MEMORY_PERIOD = Seconds(0.1, True)
#: How long to wait for something, in seconds: from 0 to a day.
TIMEOUT = Seconds(0.0, True)
#: ``repeat_window``: from 0 (every report in full) to a day.
REPEAT_WINDOW = Seconds(0.0, True)
#: A monitoring function's period: any finite duration greater than 0, as gevent allows.
PERIOD = Seconds(0.0, False, maximum=None)
#: Flags such as ``print_blocking_reports``.
BOOL = Bool()
#: ``max_memory_usage``: bytes, or None for no limit.
BYTES = ByteCount()
#: Counts such as ``report_greenlet_limit``.
COUNT = Count()
#: ``gil_signal``.
SIGNAL = Signal()
