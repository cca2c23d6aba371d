"""Length-prefixed message framing: encoder, incremental decoder, limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpcasgi.protocol.framing import (
    HEADER_SIZE,
    FramingError,
    MessageDecoder,
    MessageTooLarge,
    encode_message,
    frame_header,
)


def drain(decoder: MessageDecoder) -> list[tuple[bool, bytes]]:
    out = []
    while (msg := decoder.next_message()) is not None:
        compressed, payload = msg
        out.append((compressed, bytes(payload)))
    return out


# --- encoding ----------------------------------------------------------------


def test_frame_header_layout() -> None:
    assert HEADER_SIZE == 5
    assert frame_header(0) == b"\x00\x00\x00\x00\x00"
    assert frame_header(5) == b"\x00\x00\x00\x00\x05"
    assert frame_header(0x01020304, compressed=True) == b"\x01\x01\x02\x03\x04"
    assert frame_header(2**32 - 1) == b"\x00\xff\xff\xff\xff"


def test_encode_message() -> None:
    assert encode_message(b"hello") == b"\x00\x00\x00\x00\x05hello"
    assert encode_message(b"hello", compressed=True) == b"\x01\x00\x00\x00\x05hello"
    assert encode_message(b"") == b"\x00" * 5
    assert encode_message(b"x" * 300) == b"\x00\x00\x00\x01\x2c" + b"x" * 300


# --- decoding ----------------------------------------------------------------


def test_decode_single_message() -> None:
    d = MessageDecoder()
    d.feed(encode_message(b"hello"))
    assert drain(d) == [(False, b"hello")]
    assert d.at_boundary and d.buffered == 0


def test_decode_compressed_flag() -> None:
    d = MessageDecoder()
    d.feed(encode_message(b"zz", compressed=True) + encode_message(b"plain"))
    assert drain(d) == [(True, b"zz"), (False, b"plain")]


def test_decode_empty_messages() -> None:
    d = MessageDecoder()
    d.feed(encode_message(b"") * 3 + encode_message(b"", compressed=True))
    assert drain(d) == [(False, b"")] * 3 + [(True, b"")]
    assert d.at_boundary


def test_empty_message_alone_in_its_chunks() -> None:
    d = MessageDecoder()
    for byte in encode_message(b""):
        assert d.next_message() is None
        d.feed(bytes([byte]))
    assert drain(d) == [(False, b"")]
    assert d.at_boundary


def test_feeding_empty_chunks_is_harmless() -> None:
    d = MessageDecoder()
    d.feed(b"")
    assert d.at_boundary and d.buffered == 0
    assert d.next_message() is None
    d.feed(encode_message(b"a"))
    d.feed(b"")
    assert drain(d) == [(False, b"a")]


def test_next_message_on_empty_decoder() -> None:
    d = MessageDecoder()
    assert d.next_message() is None
    assert d.at_boundary


MESSAGES = [b"", b"a", b"hello world", bytes(range(256)), b"", b"\x00" * 1000, b"z"]


def test_split_at_every_byte_boundary() -> None:
    """Every two-chunk split of a multi-message stream decodes identically."""
    stream = b"".join(encode_message(m, compressed=i % 2 == 1) for i, m in enumerate(MESSAGES))
    expected = [(i % 2 == 1, m) for i, m in enumerate(MESSAGES)]
    for cut in range(len(stream) + 1):
        d = MessageDecoder()
        got = []
        d.feed(stream[:cut])
        got += drain(d)
        d.feed(stream[cut:])
        got += drain(d)
        assert got == expected, cut
        assert d.at_boundary


def test_byte_at_a_time() -> None:
    stream = b"".join(encode_message(m) for m in MESSAGES)
    d = MessageDecoder()
    got = []
    for i in range(len(stream)):
        d.feed(stream[i : i + 1])
        got += drain(d)
    assert [m for _, m in got] == MESSAGES
    assert d.at_boundary and d.buffered == 0


def test_many_messages_in_one_chunk() -> None:
    payloads = [str(i).encode() * (i % 7) for i in range(1000)]
    d = MessageDecoder()
    d.feed(b"".join(encode_message(p) for p in payloads))
    assert [m for _, m in drain(d)] == payloads
    assert d.at_boundary


def test_message_spanning_many_chunks() -> None:
    payload = bytes(range(256)) * 40
    stream = encode_message(payload)
    d = MessageDecoder()
    for i in range(0, len(stream), 7):
        d.feed(stream[i : i + 7])
    assert drain(d) == [(False, payload)]


def test_message_within_one_chunk_is_not_copied() -> None:
    chunk = encode_message(b"first") + encode_message(b"second")
    d = MessageDecoder()
    d.feed(chunk)
    first = d.next_message()
    assert first is not None
    payload = first[1]
    assert isinstance(payload, memoryview)
    assert payload.obj is chunk
    assert bytes(payload) == b"first"


def test_whole_chunk_message_returned_as_is() -> None:
    prefix, payload = frame_header(4), b"data"
    d = MessageDecoder()
    d.feed(prefix)
    d.feed(payload)
    msg = d.next_message()
    assert msg is not None and msg[1] is payload


def test_buffered_and_at_boundary_track_partial_messages() -> None:
    d = MessageDecoder()
    stream = encode_message(b"abcdef")
    d.feed(stream[:3])  # partial prefix
    assert d.buffered == 3 and not d.at_boundary
    assert d.next_message() is None
    d.feed(stream[3:5])  # whole prefix, no payload: parsed and pending
    assert d.next_message() is None
    assert d.buffered == 0
    assert not d.at_boundary  # a prefix awaiting its payload is a partial message
    d.feed(stream[5:8])
    assert d.next_message() is None
    assert d.buffered == 3 and not d.at_boundary
    d.feed(stream[8:])
    assert drain(d) == [(False, b"abcdef")]
    assert d.buffered == 0 and d.at_boundary


def test_truncated_stream_detectable_at_end() -> None:
    """A stream that ends inside a message leaves the decoder off a boundary."""
    stream = encode_message(b"one") + encode_message(b"two")
    for cut in range(len(stream) + 1):
        d = MessageDecoder()
        d.feed(stream[:cut])
        drain(d)
        complete = cut in (0, len(encode_message(b"one")), len(stream))
        assert d.at_boundary is complete, cut


def test_truncated_empty_message_prefix() -> None:
    d = MessageDecoder()
    d.feed(b"\x00\x00\x00")
    assert d.next_message() is None
    assert not d.at_boundary and d.buffered == 3


# --- limits ------------------------------------------------------------------


def test_message_at_limit_is_accepted() -> None:
    d = MessageDecoder(max_message_length=10)
    d.feed(encode_message(b"x" * 10))
    assert drain(d) == [(False, b"x" * 10)]


def test_message_too_large_raised_from_prefix_alone() -> None:
    d = MessageDecoder(max_message_length=10)
    d.feed(frame_header(11))  # no payload at all
    with pytest.raises(MessageTooLarge) as info:
        d.next_message()
    assert info.value.length == 11
    assert info.value.limit == 10
    assert isinstance(info.value, FramingError)
    assert "11" in str(info.value) and "10" in str(info.value)


def test_message_too_large_with_prefix_split() -> None:
    d = MessageDecoder(max_message_length=1024)
    header = frame_header(1025, compressed=True)
    d.feed(header[:2])
    assert d.next_message() is None
    d.feed(header[2:])
    with pytest.raises(MessageTooLarge):
        d.next_message()


def test_max_uint32_prefix_rejected_without_payload() -> None:
    d = MessageDecoder(max_message_length=4 * 1024 * 1024)
    d.feed(b"\x00\xff\xff\xff\xff")
    with pytest.raises(MessageTooLarge) as info:
        d.next_message()
    assert info.value.length == 2**32 - 1


def test_zero_limit_allows_only_empty_messages() -> None:
    d = MessageDecoder(max_message_length=0)
    d.feed(encode_message(b""))
    assert drain(d) == [(False, b"")]
    d.feed(encode_message(b"x"))
    with pytest.raises(MessageTooLarge):
        d.next_message()


def test_no_limit_pends_on_huge_prefix() -> None:
    d = MessageDecoder()
    d.feed(b"\x00\xff\xff\xff\xff" + b"abc")
    assert d.next_message() is None
    assert not d.at_boundary


def test_limit_can_be_changed_after_construction() -> None:
    d = MessageDecoder()
    d.max_message_length = 2
    d.feed(encode_message(b"abc"))
    with pytest.raises(MessageTooLarge):
        d.next_message()


@pytest.mark.parametrize("flag", [2, 0x80, 0xFF])
def test_invalid_compressed_flag(flag: int) -> None:
    d = MessageDecoder()
    d.feed(bytes([flag]) + struct.pack(">I", 1) + b"x")
    with pytest.raises(FramingError, match="flag"):
        d.next_message()


# --- property ----------------------------------------------------------------


@st.composite
def framed_and_split(draw: st.DrawFn) -> tuple[list[tuple[bool, bytes]], list[bytes]]:
    messages = draw(
        st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=20)
    )
    stream = b"".join(encode_message(p, c) for c, p in messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    return messages, chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(framed_and_split())
def test_property_split_stream_round_trips(
    case: tuple[list[tuple[bool, bytes]], list[bytes]],
) -> None:
    messages, chunks = case
    d = MessageDecoder(max_message_length=300)
    got: list[tuple[bool, bytes]] = []
    for chunk in chunks:
        d.feed(chunk)
        got += drain(d)
    assert got == messages
    assert d.at_boundary
    assert d.buffered == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=100), min_size=1, max_size=10), st.data())
def test_property_truncation_is_detected(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_message(p) for p in payloads)
    cut = data.draw(st.integers(0, len(stream) - 1))
    boundaries = {0}
    pos = 0
    for p in payloads:
        pos += HEADER_SIZE + len(p)
        boundaries.add(pos)
    d = MessageDecoder()
    d.feed(stream[:cut])
    got = drain(d)
    assert d.at_boundary is (cut in boundaries)
    assert [m for _, m in got] == payloads[: len(got)]
