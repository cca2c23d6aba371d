"""Per-message compression: identity, gzip, deflate; bounded decompression."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcasgi.protocol.compression import (
    SUPPORTED_ENCODINGS,
    DecompressedTooLarge,
    UnsupportedEncoding,
    accept_encoding_header,
    compress,
    decompress,
    parse_accept_encoding,
)

MiB = 1024 * 1024
PAYLOADS = [b"", b"a", b"hello world" * 100, bytes(range(256)) * 50]


def test_supported_encodings() -> None:
    assert SUPPORTED_ENCODINGS == ("identity", "gzip", "deflate")


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_round_trip(encoding: str, payload: bytes) -> None:
    compressed = compress(encoding, payload)
    assert isinstance(compressed, bytes)
    assert decompress(encoding, compressed, None) == payload
    assert decompress(encoding, compressed, len(payload)) == payload
    assert decompress(encoding, memoryview(compressed), 4 * MiB) == payload


def test_memoryview_input() -> None:
    data = memoryview(b"xxhello worldxx")[2:-2]
    for encoding in SUPPORTED_ENCODINGS:
        assert decompress(encoding, compress(encoding, data), None) == b"hello world"


def test_identity_is_a_copy() -> None:
    assert compress("identity", b"abc") == b"abc"
    assert decompress("identity", memoryview(b"abc"), None) == b"abc"
    assert type(decompress("identity", memoryview(b"abc"), None)) is bytes


def test_wire_formats_interoperate_with_stdlib() -> None:
    payload = b"interop" * 100
    # gzip: RFC 1952, as gzip.compress produces and other gRPC stacks send.
    assert gzip.decompress(compress("gzip", payload)) == payload
    assert decompress("gzip", gzip.compress(payload), None) == payload
    # deflate: the zlib format (RFC 1950), as grpc-core's "deflate".
    assert zlib.decompress(compress("deflate", payload)) == payload
    assert decompress("deflate", zlib.compress(payload), None) == payload


def test_compression_actually_compresses() -> None:
    assert len(compress("gzip", b"\x00" * 10000)) < 200
    assert len(compress("deflate", b"\x00" * 10000)) < 200


def test_exactly_at_limit_is_accepted_one_over_is_not() -> None:
    payload = b"z" * 1000
    for encoding in ("gzip", "deflate"):
        data = compress(encoding, payload)
        assert decompress(encoding, data, 1000) == payload
        with pytest.raises(DecompressedTooLarge) as info:
            decompress(encoding, data, 999)
        assert info.value.limit == 999
        assert isinstance(info.value, ValueError)


def test_zero_limit() -> None:
    assert decompress("gzip", compress("gzip", b""), 0) == b""
    with pytest.raises(DecompressedTooLarge):
        decompress("gzip", compress("gzip", b"x"), 0)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    zeros = bytes(50 * MiB)
    return {encoding: compress(encoding, zeros) for encoding in ("gzip", "deflate")}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compression_bomb_stops_at_limit(encoding: str, bombs: dict[str, bytes]) -> None:
    bomb = bombs[encoding]
    assert len(bomb) < 100_000  # 50 MB of zeros in a few tens of kB
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(DecompressedTooLarge):
            decompress(encoding, bomb, 4 * MiB)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    # Never more than about the limit: certainly not the 50 MB output.
    assert peak < 12 * MiB, peak


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_data(encoding: str) -> None:
    data = bytearray(compress(encoding, b"some payload that is long enough" * 10))
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 1] ^= 0xFF
    with pytest.raises(ValueError):
        decompress(encoding, bytes(data), None)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("garbage", [b"", b"\x00", b"not compressed at all", b"\x1f\x8b", b"\x78\x9c"])
def test_garbage_is_value_error(encoding: str, garbage: bytes) -> None:
    with pytest.raises(ValueError):
        decompress(encoding, garbage, None)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_truncated_data(encoding: str) -> None:
    data = compress(encoding, bytes(range(256)) * 20)
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(ValueError, match=encoding):
            decompress(encoding, data[:cut], None)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_trailing_data_after_stream(encoding: str) -> None:
    data = compress(encoding, b"payload")
    with pytest.raises(ValueError, match="trailing"):
        decompress(encoding, data + b"junk", None)
    with pytest.raises(ValueError):
        decompress(encoding, data + data, None)


def test_gzip_checksum_is_verified() -> None:
    data = bytearray(compress("gzip", b"payload"))
    data[-8] ^= 0x01  # CRC32 in the trailer
    with pytest.raises(ValueError):
        decompress("gzip", bytes(data), None)


def test_wrong_format_for_encoding() -> None:
    with pytest.raises(ValueError):
        decompress("gzip", compress("deflate", b"payload"), None)
    with pytest.raises(ValueError):
        decompress("deflate", compress("gzip", b"payload"), None)


@pytest.mark.parametrize("encoding", ["br", "snappy", "zstd", "GZIP", "", "x-gzip"])
def test_unsupported_encoding(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding) as info:
        compress(encoding, b"x")
    assert info.value.encoding == encoding
    assert encoding == "" or encoding in str(info.value)
    with pytest.raises(UnsupportedEncoding):
        decompress(encoding, b"x", None)
    assert issubclass(UnsupportedEncoding, ValueError)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, ()),
        (b"", ()),
        ("", ()),
        (b"gzip", ("gzip",)),
        (b"identity,deflate,gzip", ("identity", "deflate", "gzip")),
        ("identity, gzip ,  deflate", ("identity", "gzip", "deflate")),
        (b"gzip,,deflate,", ("gzip", "deflate")),
        (b" , ", ()),
        (b"g\xffzip", ("g\ufffdzip",)),
    ],
)
def test_parse_accept_encoding(value: bytes | str | None, parsed: tuple[str, ...]) -> None:
    assert parse_accept_encoding(value) == parsed


def test_accept_encoding_header() -> None:
    assert accept_encoding_header() == b"identity,gzip,deflate"
    assert accept_encoding_header(["gzip"]) == b"gzip"
    assert parse_accept_encoding(accept_encoding_header()) == SUPPORTED_ENCODINGS


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SUPPORTED_ENCODINGS), st.binary(max_size=2000))
def test_property_round_trip(encoding: str, payload: bytes) -> None:
    assert decompress(encoding, compress(encoding, payload), len(payload)) == payload


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["gzip", "deflate"]), st.binary(max_size=200), st.integers(0, 100))
def test_property_garbage_only_raises_value_error(encoding: str, data: bytes, limit: int) -> None:
    try:
        out = decompress(encoding, data, limit)
    except ValueError:
        return
    assert len(out) <= limit
