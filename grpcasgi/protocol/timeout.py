"""The ``grpc-timeout`` header: ``1*8DIGIT unit`` with units H M S m u n."""

from __future__ import annotations

import math

__all__ = ["parse_timeout", "format_timeout", "InvalidTimeout"]

# Each unit as (multiplier, divisor) of seconds, both exact floats: dividing by
# 1e9 is correctly rounded where multiplying by the inexact 1e-9 is not
# (100000 * 1e-6 == 0.09999999999999999, shorter than the 0.1 s that was sent).
_UNITS = {
    "H": (3600.0, 1.0),
    "M": (60.0, 1.0),
    "S": (1.0, 1.0),
    "m": (1.0, 1e3),
    "u": (1.0, 1e6),
    "n": (1.0, 1e9),
}
# Finest unit first: the most precise encoding that fits in 8 digits wins.
_FORMAT_ORDER = ("n", "u", "m", "S", "M", "H")
_MAX_VALUE = 99_999_999
_MAX_SECONDS = _MAX_VALUE * 3600.0


class InvalidTimeout(ValueError):
    """A ``grpc-timeout`` value that does not follow the grammar."""


def parse_timeout(value: str | bytes) -> float:
    """Return the timeout in seconds.

    Raises :class:`InvalidTimeout` for an empty value, a missing or unknown
    unit, non-digits, or more than 8 digits (the spec's limit, which also keeps
    a hostile peer from sending absurdly long numbers).
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidTimeout(f"invalid grpc-timeout {value!r}") from None
    if len(value) < 2 or len(value) > 9:
        raise InvalidTimeout(f"invalid grpc-timeout {value!r}: expected 1 to 8 digits and a unit")
    digits, unit = value[:-1], value[-1]
    scale = _UNITS.get(unit)
    if scale is None:
        raise InvalidTimeout(f"invalid grpc-timeout {value!r}: unknown unit {unit!r}")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidTimeout(f"invalid grpc-timeout {value!r}: value is not a number")
    multiplier, divisor = scale
    return int(digits) * multiplier / divisor


def format_timeout(seconds: float) -> str:
    """Encode a timeout for the ``grpc-timeout`` header.

    The value is rounded *up* in the chosen unit so the server never sees a
    shorter deadline than the client meant; negative timeouts encode as zero.
    """
    if seconds <= 0 or math.isnan(seconds):
        return "0n"
    if seconds >= _MAX_SECONDS:  # also infinity, which math.ceil cannot take
        return f"{_MAX_VALUE}H"
    for unit in _FORMAT_ORDER:
        multiplier, divisor = _UNITS[unit]
        value = math.ceil(seconds * divisor / multiplier)
        # The float arithmetic may round either way: make sure the value the
        # peer parses is never below the requested timeout.
        while value * multiplier / divisor < seconds:
            value += 1
        if value <= _MAX_VALUE:
            return f"{value}{unit}"
    return f"{_MAX_VALUE}H"
