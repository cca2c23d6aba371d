"""gRPC content types."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcasgi.protocol.content_type import (
    GRPC_CONTENT_TYPE,
    content_type_for,
    is_grpc_content_type,
    parse_content_type,
)


@pytest.mark.parametrize(
    ("value", "codec"),
    [
        (b"application/grpc", "proto"),
        ("application/grpc", "proto"),
        (b"application/grpc+proto", "proto"),
        (b"application/grpc+json", "json"),
        (b"application/grpc+msgpack", "msgpack"),
        (b"Application/GRPC", "proto"),
        (b"application/grpc+JSON", "json"),
        (b"application/grpc; charset=utf-8", "proto"),
        (b"application/grpc+json;foo=bar", "json"),
        (b"  application/grpc  ", "proto"),
        (b"application/grpc ; x=y", "proto"),
    ],
)
def test_grpc_content_types(value: bytes | str, codec: str) -> None:
    assert parse_content_type(value) == codec
    assert is_grpc_content_type(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        "",
        b"application/grpc-web",
        b"application/grpc-web+proto",
        b"application/grpc-web-text",
        b"application/grpc+",
        b"application/grpc+;x=y",
        b"application/grpcx",
        b"application/json",
        b"application/x-protobuf",
        b"text/plain",
        b"application",
        b"grpc",
        b"application/grpc\xff",
        "application/grpc\u00e9",
    ],
)
def test_not_grpc_content_types(value: bytes | str | None) -> None:
    assert parse_content_type(value) is None
    assert not is_grpc_content_type(value)


def test_content_type_for() -> None:
    assert content_type_for("proto") == GRPC_CONTENT_TYPE == b"application/grpc"
    assert content_type_for("json") == b"application/grpc+json"


@settings(max_examples=200, deadline=None)
@given(st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=20))
def test_property_round_trip(codec: str) -> None:
    assert parse_content_type(content_type_for(codec)) == codec


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40)))
def test_property_never_raises(value: bytes | str) -> None:
    result = parse_content_type(value)
    assert result is None or isinstance(result, str)
