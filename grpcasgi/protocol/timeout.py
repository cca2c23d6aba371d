"""The ``grpc-timeout`` header: ``1*8DIGIT unit`` with units H M S m u n."""

from __future__ import annotations

import math

__all__ = ["parse_timeout", "format_timeout", "InvalidTimeout"]

_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# Finest unit first: the most precise encoding that fits in 8 digits wins.
_FORMAT_ORDER = (("n", 1e9), ("u", 1e6), ("m", 1e3), ("S", 1.0), ("M", 1 / 60), ("H", 1 / 3600))
_MAX_VALUE = 99_999_999


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
    return int(digits) * scale


def format_timeout(seconds: float) -> str:
    """Encode a timeout for the ``grpc-timeout`` header.

    The value is rounded *up* in the chosen unit so the server never sees a
    shorter deadline than the client meant; negative timeouts encode as zero.
    """
    if seconds <= 0 or math.isnan(seconds):
        return "0n"
    for unit, per_second in _FORMAT_ORDER:
        value = math.ceil(seconds * per_second)
        if value <= _MAX_VALUE:
            return f"{value}{unit}"
    return f"{_MAX_VALUE}H"
