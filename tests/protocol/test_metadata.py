"""Custom metadata: key/value validation, reserved names, ``-bin`` coding."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from grpcasgi.protocol.metadata import (
    RESERVED_HEADERS,
    InvalidMetadata,
    decode_binary_value,
    decode_metadata,
    encode_metadata,
    is_reserved,
)

# --- encoding (sending) --------------------------------------------------------


def test_encode_empty() -> None:
    assert encode_metadata(None) == []
    assert encode_metadata([]) == []
    assert encode_metadata({}) == []


def test_encode_pairs_and_mapping() -> None:
    assert encode_metadata([("key", "value"), ("other", "x")]) == [(b"key", b"value"), (b"other", b"x")]
    assert encode_metadata({"key": "value"}) == [(b"key", b"value")]
    assert encode_metadata((("a", ""),)) == [(b"a", b"")]


@pytest.mark.parametrize("key", ["a", "0", "x-y", "a_b", "a.b", "-", "_", ".", "abc-def.ghi_jkl-0123456789", "x-bin-not"])
def test_valid_keys(key: str) -> None:
    assert encode_metadata([(key, "v")]) == [(key.encode(), b"v")]


@pytest.mark.parametrize(
    "key",
    ["", "Key", "KEY", "key ", " key", "key\n", "key\r\n", "ke:y", "key/x", "kéy", "key\x00", "a+b", "a=b", "a,b", "\u212a"],
)
def test_invalid_keys_refused(key: str) -> None:
    with pytest.raises(InvalidMetadata, match="key") as info:
        encode_metadata([(key, "v")])
    assert repr(key) in str(info.value)


def test_non_str_key_refused() -> None:
    with pytest.raises(InvalidMetadata, match="str"):
        encode_metadata([(b"key", "v")])  # type: ignore[list-item]


RESERVED_KEYS = [
    "grpc-timeout",
    "grpc-status",
    "grpc-message",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-status-details-bin",
    "grpc-anything",
    "content-type",
    "te",
    "user-agent",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
]


@pytest.mark.parametrize("key", RESERVED_KEYS)
def test_reserved_keys_refused_on_send(key: str) -> None:
    value: str | bytes = b"x" if key.endswith("-bin") else "x"
    with pytest.raises(InvalidMetadata, match="reserved") as info:
        encode_metadata([(key, value)])
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("key", [":path", ":authority", ":method", ":status"])
def test_pseudo_headers_refused_on_send(key: str) -> None:
    with pytest.raises(InvalidMetadata):
        encode_metadata([(key, "x")])


def test_is_reserved() -> None:
    for key in RESERVED_KEYS:
        assert is_reserved(key.encode()), key
    assert is_reserved(b":path")
    assert is_reserved(b":status")
    for bkey in (b"grpcx", b"grpc", b"x-grpc-foo", b"my-te", b"content-types", b"tea"):
        assert not is_reserved(bkey), bkey
    assert b"te" in RESERVED_HEADERS


def test_binary_values_base64_without_padding() -> None:
    assert encode_metadata([("k-bin", b"a")]) == [(b"k-bin", b"YQ")]
    assert encode_metadata([("k-bin", b"ab")]) == [(b"k-bin", b"YWI")]
    assert encode_metadata([("k-bin", b"abc")]) == [(b"k-bin", b"YWJj")]
    assert encode_metadata([("k-bin", b"")]) == [(b"k-bin", b"")]
    # bytes-like values are accepted too, beyond the annotated str | bytes
    assert encode_metadata([("k-bin", bytearray(b"\xff\x00"))]) == [(b"k-bin", b"/wA")]  # type: ignore[list-item]
    assert encode_metadata([("k-bin", memoryview(b"\xfb\xff"))]) == [(b"k-bin", b"+/8")]  # type: ignore[list-item]


def test_binary_key_requires_bytes() -> None:
    with pytest.raises(InvalidMetadata, match="'k-bin'.*bytes"):
        encode_metadata([("k-bin", "text")])
    with pytest.raises(InvalidMetadata, match="'k-bin'"):
        encode_metadata([("k-bin", 5)])  # type: ignore[list-item]


def test_text_key_requires_str() -> None:
    with pytest.raises(InvalidMetadata, match="'key'.*-bin"):
        encode_metadata([("key", b"bytes")])


@pytest.mark.parametrize("value", ["caf\u00e9", "\u2603", "emoji \U0001f600", "\x80"])
def test_non_ascii_values_refused_naming_the_key(value: str) -> None:
    with pytest.raises(InvalidMetadata, match="'my-key'.*printable ASCII"):
        encode_metadata([("ok", "fine"), ("my-key", value)])


@pytest.mark.parametrize("value", ["a\nb", "trailing\n", "\nleading", "cr\r", "nul\x00", "tab\t", "bell\x07", "del\x7f", "\x1b[31m"])
def test_control_characters_refused_naming_the_key(value: str) -> None:
    with pytest.raises(InvalidMetadata, match="'my-key'.*printable ASCII"):
        encode_metadata([("my-key", value)])


def test_printable_ascii_accepted() -> None:
    value = "".join(chr(c) for c in range(0x21, 0x7F))
    assert encode_metadata([("k", value)]) == [(b"k", value.encode())]
    assert encode_metadata([("k", "inner spaces are fine")]) == [(b"k", b"inner spaces are fine")]


@pytest.mark.parametrize("value", [" lead", "trail ", " both ", " "])
def test_surrounding_whitespace_refused_naming_the_key(value: str) -> None:
    # h2 (and grpcio) treat such a header as malformed; h2 fails the whole
    # connection, so it is refused where the mistake is made.
    with pytest.raises(InvalidMetadata, match="'my-key'.*start or end with a space"):
        encode_metadata([("my-key", value)])


def test_invalid_metadata_is_value_error() -> None:
    assert issubclass(InvalidMetadata, ValueError)


def test_multidict_preserves_repeated_keys_and_order() -> None:
    md: MultiDict[str | bytes] = MultiDict()
    md.add("a", "1")
    md.add("b", "x")
    md.add("a", "2")
    md.add("c-bin", b"\x00")
    md.add("c-bin", b"\x01")
    assert encode_metadata(md) == [
        (b"a", b"1"),
        (b"b", b"x"),
        (b"a", b"2"),
        (b"c-bin", b"AA"),
        (b"c-bin", b"AQ"),
    ]


def test_ci_multidict_keys_are_still_validated() -> None:
    md: CIMultiDict[str] = CIMultiDict([("Key", "v")])
    with pytest.raises(InvalidMetadata):
        encode_metadata(md)


def test_repeated_keys_in_pairs() -> None:
    assert encode_metadata([("a", "1"), ("a", "2")]) == [(b"a", b"1"), (b"a", b"2")]


# --- decoding (receiving) -------------------------------------------------------


def test_decode_plain() -> None:
    assert decode_metadata([(b"key", b"value"), (b"key", b"again"), (b"e", b"")]) == [
        ("key", "value"),
        ("key", "again"),
        ("e", ""),
    ]


@pytest.mark.parametrize(
    "key",
    [
        b":path",
        b":authority",
        b":method",
        b":scheme",
        b":status",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"grpc-status",
        b"grpc-message",
        b"grpc-status-details-bin",
        b"grpc-whatever",
        b"content-type",
        b"te",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ],
)
def test_reserved_headers_dropped_on_receive(key: bytes) -> None:
    assert decode_metadata([(key, b"x"), (b"keep", b"me")]) == [("keep", "me")]


def test_user_agent_kept_on_receive() -> None:
    assert decode_metadata([(b"user-agent", b"grpc-python/1.0")]) == [("user-agent", "grpc-python/1.0")]


def test_reserved_values_are_not_validated() -> None:
    # Dropped headers are never looked at, whatever they contain.
    assert decode_metadata([(b"grpc-message", b"\xff\n"), (b":path", b"\x00")]) == []


@pytest.mark.parametrize("encoded", [b"YQ", b"YQ=", b"YQ==", b" YQ== "])
def test_binary_value_with_or_without_padding(encoded: bytes) -> None:
    assert decode_metadata([(b"k-bin", encoded)]) == [("k-bin", b"a")]
    assert decode_binary_value(encoded) == b"a"


def test_binary_values_all_lengths() -> None:
    for n in range(10):
        raw = bytes(range(250, 250 - n, -1))
        unpadded = base64.b64encode(raw).rstrip(b"=")
        padded = base64.b64encode(raw)
        assert decode_binary_value(unpadded) == raw
        assert decode_binary_value(padded) == raw


@pytest.mark.parametrize("encoded", [b"Y", b"YQ!!", b"Y Q", b"YQ==YQ==", b"\xff\xfe", b"-_8", b"a"])
def test_invalid_base64_refused(encoded: bytes) -> None:
    with pytest.raises(InvalidMetadata, match="base64"):
        decode_metadata([(b"k-bin", encoded)])


@pytest.mark.parametrize(
    "key",
    [b"Key", b"key\n", b"key ", b"", b"k\xc3\xa9", b"a/b"],
)
def test_invalid_keys_on_receive(key: bytes) -> None:
    with pytest.raises(InvalidMetadata, match="key"):
        decode_metadata([(key, b"v")])


@pytest.mark.parametrize("value", [b"a\nb", b"trailing\n", b"caf\xc3\xa9", b"\xff", b"nul\x00", b"\x7f", b"tab\t"])
def test_invalid_values_on_receive_name_the_key(value: bytes) -> None:
    with pytest.raises(InvalidMetadata, match="'my-key'"):
        decode_metadata([(b"my-key", value)])


# --- round trips ----------------------------------------------------------------

KEY_CHARS = string.ascii_lowercase + string.digits + "_.-"
text_keys = st.text(KEY_CHARS, min_size=1, max_size=20).filter(
    lambda k: not k.endswith("-bin") and not is_reserved(k.encode())
)
bin_keys = st.text(KEY_CHARS, max_size=16).map(lambda k: k + "-bin").filter(lambda k: not is_reserved(k.encode()))
ascii_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).filter(
    lambda v: v == v.strip(" ")
)
entries = st.one_of(
    st.tuples(text_keys, ascii_values),
    st.tuples(bin_keys, st.binary(max_size=64)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(entries, max_size=10))
def test_property_round_trip(metadata: list[tuple[str, str | bytes]]) -> None:
    headers = encode_metadata(metadata)
    for key, value in headers:
        assert not value.endswith(b"=") or not key.endswith(b"-bin")
    assert decode_metadata(headers) == metadata


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_property_binary_padded_round_trip(raw: bytes) -> None:
    assert decode_binary_value(base64.b64encode(raw)) == raw


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=10), st.text(max_size=10))
def test_property_encode_only_raises_invalid_metadata(key: str, value: str) -> None:
    try:
        headers = encode_metadata([(key, value)])
    except InvalidMetadata:
        return
    assert decode_metadata(headers) == [(key, value)]
