"""Status codes, the HTTP-to-gRPC mapping and ``grpc-message`` coding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcasgi.protocol import Status as ExportedStatus
from grpcasgi.protocol.status import (
    STATUS_HEADER_VALUES,
    Status,
    decode_grpc_message,
    encode_grpc_message,
    status_from_header,
    status_from_http,
)

EXPECTED_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def test_seventeen_codes_with_spec_numbers() -> None:
    assert {s.name: s.value for s in Status} == EXPECTED_CODES
    assert len(Status) == 17
    assert ExportedStatus is Status


def test_status_header_values() -> None:
    for status in Status:
        assert STATUS_HEADER_VALUES[status] == str(status.value).encode()


@pytest.mark.parametrize(
    ("http", "status"),
    [
        (400, Status.INTERNAL),
        (401, Status.UNAUTHENTICATED),
        (403, Status.PERMISSION_DENIED),
        (404, Status.UNIMPLEMENTED),
        (429, Status.UNAVAILABLE),
        (502, Status.UNAVAILABLE),
        (503, Status.UNAVAILABLE),
        (504, Status.UNAVAILABLE),
        (0, Status.UNKNOWN),
        (100, Status.UNKNOWN),
        (201, Status.UNKNOWN),
        (301, Status.UNKNOWN),
        (405, Status.UNKNOWN),
        (415, Status.UNKNOWN),
        (500, Status.UNKNOWN),
        (501, Status.UNKNOWN),
        (505, Status.UNKNOWN),
        (999, Status.UNKNOWN),
    ],
)
def test_http_to_grpc_mapping(http: int, status: Status) -> None:
    assert status_from_http(http) is status


@pytest.mark.parametrize("status", list(Status))
def test_status_from_header_round_trip(status: Status) -> None:
    assert status_from_header(STATUS_HEADER_VALUES[status]) is status
    assert status_from_header(str(status.value)) is status


def test_status_from_header_leading_zeros() -> None:
    assert status_from_header(b"00") is Status.OK
    assert status_from_header(b"014") is Status.UNAVAILABLE


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"17",
        b"99",
        b"-1",
        b"-0",  # int() accepts these: they must not become OK/CANCELLED
        b"+0",
        b" 0",
        b"0 ",
        b"\t1",
        b"1_0",
        b"0x0",
        b"ok",
        b"OK",
        b"1.0",
        b"\xff",
        b"9" * 5000,
        "٣",  # non-ASCII digit
        "０",  # fullwidth zero
        "-0",
    ],
)
def test_status_from_header_garbage_is_unknown(value: bytes | str) -> None:
    assert status_from_header(value) is Status.UNKNOWN


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12))
def test_property_status_from_header_never_raises(value: bytes) -> None:
    status = status_from_header(value)
    if status is not Status.UNKNOWN:
        assert value.isdigit()
        assert int(value) == status.value


# --- grpc-message ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "encoded"),
    [
        ("", b""),
        ("plain text, with punctuation!", b"plain text, with punctuation!"),
        ("100%", b"100%25"),
        ("%%", b"%25%25"),
        ("caf\u00e9", b"caf%C3%A9"),
        ("\u2603", b"%E2%98%83"),
        ("\U0001f600", b"%F0%9F%98%80"),
        ("line1\nline2", b"line1%0Aline2"),
        ("\r\t\x00\x7f", b"%0D%09%00%7F"),
        ("~ space ~", b"~ space ~"),
    ],
)
def test_encode_grpc_message(message: str, encoded: bytes) -> None:
    assert encode_grpc_message(message) == encoded
    assert decode_grpc_message(encoded) == message


def test_encoded_message_is_header_safe() -> None:
    encoded = encode_grpc_message("".join(chr(c) for c in range(0x300)))
    assert all(0x20 <= b <= 0x7E for b in encoded)


def test_encode_lone_surrogate_does_not_raise() -> None:
    # e.g. an exception message containing an os.fsdecode()d file name
    encoded = encode_grpc_message("bad file \udcff.txt")
    assert all(0x20 <= b <= 0x7E for b in encoded)
    assert decode_grpc_message(encoded) == "bad file ?.txt"


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        (b"%", "%"),
        (b"100%", "100%"),
        (b"%2", "%2"),
        (b"a%2", "a%2"),
        (b"%zz", "%zz"),
        (b"%g0", "%g0"),
        (b"%0g", "%0g"),
        (b"%%41", "%A"),
        (b"%41", "A"),
        (b"a%41", "aA"),
        (b"%41%", "A%"),
        (b"%4", "%4"),
        (b"%c3%a9", "\u00e9"),  # lowercase hex accepted
        (b"%C3", "\ufffd"),  # truncated UTF-8 sequence replaced
        (b"%FF%FE", "\ufffd\ufffd"),
        (b"\xff", "\ufffd"),  # raw invalid UTF-8 replaced
        (b"caf\xc3\xa9", "caf\u00e9"),  # raw UTF-8 tolerated
        ("str input %41", "str input A"),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_decode_is_lenient(value: bytes | str, decoded: str) -> None:
    assert decode_grpc_message(value) == decoded


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_property_message_round_trip(message: str) -> None:
    encoded = encode_grpc_message(message)
    assert all(0x20 <= b <= 0x7E for b in encoded)
    assert re.fullmatch(rb"(?:[\x20-\x24\x26-\x7e]|%[0-9A-F]{2})*", encoded)
    assert decode_grpc_message(encoded) == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_property_decode_never_raises(value: bytes) -> None:
    assert isinstance(decode_grpc_message(value), str)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="%")))
def test_property_printable_ascii_passes_unchanged(message: str) -> None:
    assert encode_grpc_message(message) == message.encode("ascii")
