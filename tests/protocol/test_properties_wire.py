"""Property tests of the sans-IO wire rules against arbitrary input: what a
hostile or broken peer can send only ever raises the documented error, and
what our side sends parses back to what was meant, however it is chunked."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from grpcasgi.protocol.framing import HEADER_SIZE, FramingError, MessageDecoder, encode_message
from grpcasgi.protocol.headers import (
    RequestRejected,
    parse_request,
    parse_response_headers,
    parse_trailers,
    request_headers,
    trailers,
)
from grpcasgi.protocol.metadata import InvalidMetadata, decode_metadata, encode_metadata, is_reserved
from grpcasgi.protocol.status import Status, decode_grpc_message
from grpcasgi.protocol.timeout import InvalidTimeout, format_timeout, parse_timeout

header_names = st.one_of(
    st.sampled_from(
        [b":path", b":method", b":scheme", b":authority", b"content-type", b"te", b"grpc-timeout",
         b"grpc-encoding", b"grpc-accept-encoding", b"user-agent", b"x-md", b"x-md-bin", b"grpc-status",
         b"grpc-message", b"grpc-status-details-bin", b":status"]
    ),
    st.binary(max_size=12),
)
header_values = st.one_of(
    st.sampled_from([b"POST", b"application/grpc", b"application/grpc+json", b"trailers", b"1S", b"gzip", b"200", b"0"]),
    st.binary(max_size=24),
)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=16)


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=8), st.text(max_size=20), header_lists)
def test_parse_request_only_rejects(method: bytes, path: str, headers: list[tuple[bytes, bytes]]) -> None:
    try:
        head = parse_request(method, path, headers)
    except RequestRejected as exc:
        assert exc.http_status in (200, 400, 405, 415) or exc.http_status >= 400
        return
    assert head.path == path


@settings(max_examples=250, deadline=None)
@given(header_lists, st.booleans())
def test_response_parsers_never_raise_anything_but_grpc_errors(headers: list[tuple[bytes, bytes]], end: bool) -> None:
    from grpcasgi.exceptions import GRPCError

    for parse in (lambda: parse_response_headers(headers, end), lambda: parse_trailers(headers)):
        try:
            parse()
        except GRPCError:
            pass


KEY_CHARS = string.ascii_lowercase + string.digits + "_.-"
keys = st.text(KEY_CHARS, min_size=1, max_size=12).filter(lambda k: not is_reserved(k.encode()))
text_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    st.text(string.ascii_letters + "/._", min_size=1, max_size=30).map(lambda p: "/" + p),
    st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e6)),
    st.sampled_from([None, "gzip", "deflate"]),
    st.lists(
        st.one_of(
            st.tuples(keys.filter(lambda k: not k.endswith("-bin")), text_values),
            st.tuples(keys.map(lambda k: k + "-bin").filter(lambda k: not is_reserved(k.encode())), st.binary(max_size=20)),
        ),
        max_size=6,
    ),
)
def test_request_headers_parse_back(path: str, timeout: float | None, encoding: str | None, metadata: list) -> None:
    headers = request_headers(
        path=path,
        authority="example:443",
        scheme="https",
        content_type=b"application/grpc",
        timeout=timeout,
        encoding=encoding,
        user_agent="ua/1",
        metadata=encode_metadata(metadata),
    )
    head = parse_request(b"POST", path, headers)
    assert head.path == path
    assert head.encoding == encoding
    assert head.metadata == [("user-agent", "ua/1"), *metadata] or head.metadata == metadata
    if timeout is None:
        assert head.timeout is None
    else:
        assert head.timeout is not None and head.timeout >= timeout * (1 - 1e-6)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Status)), st.text(max_size=60), st.one_of(st.none(), st.binary(max_size=40)))
def test_trailers_status_and_message_survive_any_text(status: Status, message: str, details: bytes | None) -> None:
    info = parse_trailers(trailers(status, message, details))
    assert info.status is status
    assert (info.message or "") == message
    assert info.details == details


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=40))
def test_grpc_message_decoding_never_raises(value: bytes) -> None:
    assert isinstance(decode_grpc_message(value), str)


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=12))
def test_timeout_parser_only_raises_invalid_timeout(value: bytes) -> None:
    try:
        seconds = parse_timeout(value)
    except InvalidTimeout:
        return
    assert seconds >= 0
    assert parse_timeout(format_timeout(seconds)) >= seconds * (1 - 1e-9)


@settings(max_examples=250, deadline=None)
@given(header_lists)
def test_metadata_decoding_only_raises_invalid_metadata(headers: list[tuple[bytes, bytes]]) -> None:
    try:
        decode_metadata(headers)
    except InvalidMetadata:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=300), st.data())
def test_decoder_on_garbage_raises_only_framing_errors_and_stays_bounded(
    data: bytes, limit: int, draw: st.DataObject
) -> None:
    decoder = MessageDecoder(limit)
    i = 0
    try:
        while i < len(data):
            n = draw.draw(st.integers(min_value=1, max_value=64))
            decoder.feed(data[i : i + n])
            i += n
            while (item := decoder.next_message()) is not None:
                assert len(item[1]) <= limit
            # Never more than one message (at most the limit) plus a prefix and the last chunk.
            assert decoder.buffered <= limit + HEADER_SIZE + n
    except FramingError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=8), st.data())
def test_framing_round_trips_across_arbitrary_chunking(messages: list[tuple[bool, bytes]], draw: st.DataObject) -> None:
    stream = b"".join(encode_message(payload, compressed) for compressed, payload in messages)
    cuts = sorted(draw.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12)))
    decoder = MessageDecoder(1000)
    out: list[tuple[bool, bytes]] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[last:cut])
        last = cut
        while (item := decoder.next_message()) is not None:
            out.append((item[0], bytes(item[1])))
    assert out == messages
    assert decoder.at_boundary
