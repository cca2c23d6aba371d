"""The ``grpc-timeout`` header: parsing and formatting."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grpcasgi.protocol.timeout import InvalidTimeout, format_timeout, parse_timeout

UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("3S", 3.0),
        ("250m", 0.25),
        ("1500u", 0.0015),
        ("100n", 1e-7),
        ("0S", 0.0),
        ("0n", 0.0),
        ("00000001S", 1.0),  # leading zeros count toward the 8 digits
        ("99999999H", 99999999 * 3600.0),
        ("99999999n", 0.099999999),
        ("100000u", 0.1),
        ("100m", 0.1),
    ],
)
def test_parse_every_unit(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds, rel=1e-12, abs=0)
    assert parse_timeout(value.encode("ascii")) == parse_timeout(value)


def test_parse_is_exact_for_decimal_values() -> None:
    # 100000 * 1e-6 == 0.09999999999999999: the parser must not shorten the
    # deadline by multiplying with an inexact scale.
    assert parse_timeout("100000u") == 0.1
    assert parse_timeout("300m") == 0.3
    assert parse_timeout("70000000n") == 0.07
    assert parse_timeout("700000u") == 0.7


def test_eight_digits_is_the_max() -> None:
    assert parse_timeout("12345678S") == 12345678.0
    with pytest.raises(InvalidTimeout):
        parse_timeout("123456789S")
    with pytest.raises(InvalidTimeout):
        parse_timeout("000000001S")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "S",  # no digits
        "1",  # no unit
        "10",  # no unit (the 0 is not a unit)
        "1s",  # units are case-sensitive: s is not S
        "1h",
        "1x",
        "1 S",
        " 1S",
        "1S ",
        "1\tS",
        "-1S",
        "+1S",
        "1.5S",
        "1e3m",
        "0x1S",
        "1_0S",
        "１S",  # fullwidth digit
        "١S",  # Arabic-Indic digit: isdigit() but not ASCII
        "1µ",
        "1SS",
        "S1",
    ],
)
def test_invalid_values(value: str) -> None:
    with pytest.raises(InvalidTimeout):
        parse_timeout(value)


@pytest.mark.parametrize("value", [b"", b"\xff", b"1\xb5", b"\xef\xbc\x91S", b"1\x00S", b"9" * 100 + b"S"])
def test_invalid_bytes(value: bytes) -> None:
    with pytest.raises(InvalidTimeout):
        parse_timeout(value)


def test_invalid_timeout_is_value_error() -> None:
    assert issubclass(InvalidTimeout, ValueError)
    with pytest.raises(ValueError, match="grpc-timeout"):
        parse_timeout("forever")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "0n"),
        (-1.0, "0n"),
        (-0.0, "0n"),
        (math.nan, "0n"),
        (-math.inf, "0n"),
        (1e-9, "1n"),
        (1.5e-9, "2n"),  # rounded up, never down
        (5e-324, "1n"),
        (0.05, "50000000n"),
        (0.1, "100000u"),
        (1.0, "1000000u"),
        (1.5, "1500000u"),
        (99.999999, "99999999u"),
        (100.0, "100000m"),
        (100.0001, "100001m"),  # rounded up to the millisecond
        (99999.999, "99999999m"),
        (100000.0, "100000S"),
        (99999999.0, "99999999S"),
        (99999999.5, "1666667M"),
        (3600.0 * 99999999, "99999999H"),
        (1e300, "99999999H"),
        (math.inf, "99999999H"),
    ],
)
def test_format(seconds: float, expected: str) -> None:
    assert format_timeout(seconds) == expected


def test_format_uses_hours_beyond_minutes() -> None:
    value = format_timeout(60.0 * 99999999 + 1)
    assert value.endswith("H")
    assert parse_timeout(value) >= 60.0 * 99999999 + 1


def _check_round_trip(seconds: float) -> None:
    text = format_timeout(seconds)
    digits, unit = text[:-1], text[-1]
    assert 1 <= len(digits) <= 8 and digits.isdigit(), text
    assert unit in UNIT_SECONDS
    parsed = parse_timeout(text)
    assert parsed >= seconds, (seconds, text, parsed)
    # Within one unit of the chosen unit (plus float slack).
    assert parsed - seconds <= UNIT_SECONDS[unit] * (1 + 1e-9), (seconds, text, parsed)


@settings(max_examples=1000, deadline=None)
@given(st.floats(min_value=0, max_value=3.5e11, exclude_min=True, allow_nan=False))
@example(0.1)
@example(0.3)
@example(0.7)
@example(1.1)
@example(100000.1)
@example(5e-324)
@example(3.5e11)
def test_property_round_trip_never_shortens(seconds: float) -> None:
    _check_round_trip(seconds)


@settings(max_examples=500, deadline=None)
@given(st.integers(-9, 10), st.integers(1, 9999))
def test_property_round_trip_decimal_magnitudes(exponent: int, mantissa: int) -> None:
    # Decimal values such as 0.3 or 1.7 are where float rounding bites.
    _check_round_trip(mantissa * 10.0**exponent / 1000)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_property_format_is_always_valid(seconds: float) -> None:
    text = format_timeout(seconds)
    assert 2 <= len(text) <= 9
    assert text[:-1].isdigit() and text[-1] in UNIT_SECONDS
    parse_timeout(text)  # never raises


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 99_999_999), st.sampled_from(sorted(UNIT_SECONDS)))
def test_property_parse_valid(value: int, unit: str) -> None:
    assert parse_timeout(f"{value}{unit}") == pytest.approx(value * UNIT_SECONDS[unit], rel=1e-12, abs=0)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_property_parse_only_raises_invalid_timeout(value: str) -> None:
    try:
        result = parse_timeout(value)
    except InvalidTimeout:
        return
    assert result >= 0
    assert 2 <= len(value) <= 9 and value[-1] in UNIT_SECONDS
