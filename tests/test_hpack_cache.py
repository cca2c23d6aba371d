"""CachingEncoder puts exactly hpack's bytes on the wire.

The cache is only an optimisation: for any sequence of header lists, table
resizes and never-indexed fields, its output must be byte-for-byte what a
plain ``hpack.Encoder`` produces, and decode to the lists sent.
"""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcasgi.transport.hpack_cache import CachingEncoder

NAMES = [b":status", b"content-type", b"grpc-status", b"grpc-message", b"x-meta", b"x-other-bin"]
VALUES = [b"200", b"application/grpc", b"0", b"13", b"a" * 40, b"b" * 300, b"v1", b"v2"]

header = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES), st.booleans())
header_list = st.lists(header, min_size=1, max_size=6)
step = st.one_of(
    st.tuples(st.just("encode"), header_list),
    st.tuples(st.just("resize"), st.sampled_from([0, 64, 256, 4096])),
)


def _as_h2_sends(headers: list[tuple[bytes, bytes, bool]]) -> list[hpack.HeaderTuple]:
    # h2 hands the encoder HeaderTuple / NeverIndexedHeaderTuple lists.
    return [hpack.NeverIndexedHeaderTuple(n, v) if never else hpack.HeaderTuple(n, v) for n, v, never in headers]


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=25), st.lists(header_list, min_size=1, max_size=3))
def test_same_bytes_as_hpack(steps: list[tuple[str, object]], repeated: list[list[tuple[bytes, bytes, bool]]]) -> None:
    plain, caching, decoder = hpack.Encoder(), CachingEncoder(), hpack.Decoder()
    # Interleave the random steps with lists sent again and again, as gRPC does.
    for i, (kind, arg) in enumerate(steps):
        sends = [arg] if kind == "encode" else []
        sends.append(repeated[i % len(repeated)])
        if kind == "resize":
            plain.header_table_size = caching.header_table_size = arg  # type: ignore[assignment]
            decoder.header_table_size = max(decoder.header_table_size, 4096)
        for headers in sends:
            wire = plain.encode(_as_h2_sends(headers))  # type: ignore[arg-type]
            assert caching.encode(_as_h2_sends(headers)) == wire  # type: ignore[arg-type]
            assert [(n, v) for n, v in decoder.decode(wire, raw=True)] == [(n, v) for n, v, _ in headers]


def test_repeated_list_is_served_from_the_cache_until_the_table_changes() -> None:
    plain, caching = hpack.Encoder(), CachingEncoder()
    trailers = [hpack.HeaderTuple(b"grpc-status", b"0")]
    other = [hpack.HeaderTuple(b"x-new", b"value")]
    for headers in (trailers, trailers, trailers, other, trailers, trailers):
        assert caching.encode(list(headers)) == plain.encode(list(headers))
    # The last two sends of the trailers were answered from one cache entry,
    # made after `other` shifted the dynamic indexes.
    assert len(caching._cache) == 1
