"""Request, response and trailer headers, server and client side."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcasgi.protocol.headers import (
    RequestHead,
    RequestRejected,
    ResponseHead,
    TrailersInfo,
    parse_request,
    parse_response_headers,
    parse_trailers,
    request_headers,
    response_headers,
    trailers,
    trailers_only,
)
from grpcasgi.protocol.metadata import encode_metadata
from grpcasgi.protocol.status import Status

PATH = "/pkg.Service/Method"

BASE = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", PATH.encode()),
    (b":authority", b"example.com:50051"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


def without(headers: list[tuple[bytes, bytes]], name: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k != name]


def replace(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [*without(headers, name), (name, value)]


def reject(headers: list[tuple[bytes, bytes]], method: bytes | str = b"POST") -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        parse_request(method, PATH, headers)
    return info.value


# --- server: parse_request -----------------------------------------------------------


def test_parse_minimal_request() -> None:
    head = parse_request(b"POST", PATH, BASE)
    assert head == RequestHead(
        path=PATH,
        codec="proto",
        content_type=b"application/grpc",
        timeout=None,
        encoding=None,
        accept_encoding=(),
        user_agent=None,
        authority="example.com:50051",
        metadata=[],
    )


def test_parse_full_request() -> None:
    headers = [
        *BASE[:4],
        (b"content-type", b"application/grpc+json"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"250m"),
        (b"grpc-encoding", b"gzip"),
        (b"grpc-accept-encoding", b"gzip, identity"),
        (b"user-agent", b"grpc-python/1.60.0"),
        (b"x-request-id", b"abc"),
        (b"trace-bin", b"AAEC"),
        (b"x-request-id", b"def"),
        (b"grpc-trace-bin", b"AAEC"),  # reserved: not metadata
        (b"grpc-previous-rpc-attempts", b"1"),
    ]
    head = parse_request("POST", PATH, headers)
    assert head.path == PATH
    assert head.codec == "json"
    assert head.content_type == b"application/grpc+json"
    assert head.timeout == 0.25
    assert head.encoding == "gzip"
    assert head.accept_encoding == ("gzip", "identity")
    assert head.user_agent == "grpc-python/1.60.0"
    assert head.authority == "example.com:50051"
    assert head.metadata == [
        ("user-agent", "grpc-python/1.60.0"),
        ("x-request-id", "abc"),
        ("trace-bin", b"\x00\x01\x02"),
        ("x-request-id", "def"),
    ]


def test_pseudo_headers_and_protocol_headers_are_not_metadata() -> None:
    head = parse_request(b"POST", PATH, [*BASE, (b":custom", b"x"), (b"grpc-message", b"x")])
    assert head.metadata == []


def test_identity_encoding_means_none() -> None:
    assert parse_request(b"POST", PATH, [*BASE, (b"grpc-encoding", b"identity")]).encoding is None


def test_unsupported_encoding_is_passed_through() -> None:
    # The server answers UNIMPLEMENTED itself, listing what it accepts.
    assert parse_request(b"POST", PATH, [*BASE, (b"grpc-encoding", b"br")]).encoding == "br"


def test_host_is_authority_fallback() -> None:
    headers = [*without(BASE, b":authority"), (b"host", b"fallback:80")]
    head = parse_request(b"POST", PATH, headers)
    assert head.authority == "fallback:80"
    assert head.metadata == []
    both = [*BASE, (b"host", b"other:80")]
    assert parse_request(b"POST", PATH, both).authority == "example.com:50051"


def test_no_authority() -> None:
    assert parse_request(b"POST", PATH, without(BASE, b":authority")).authority is None


def test_content_type_parameters_allowed() -> None:
    head = parse_request(b"POST", PATH, replace(BASE, b"content-type", b"application/grpc; charset=utf-8"))
    assert head.codec == "proto"


def test_empty_header_name_is_rejected_not_a_crash() -> None:
    # Used to raise IndexError (name[0]) instead of a clean rejection.
    exc = reject([(b"", b"x"), *BASE])
    assert exc.http_status == 200
    assert exc.status is Status.INTERNAL


@pytest.mark.parametrize("method", [b"GET", "GET", b"PUT", b"post", b"", "HEAD", b"OPTIONS"])
def test_non_post_is_405(method: bytes | str) -> None:
    exc = reject(BASE, method)
    assert exc.http_status == 405
    assert "POST" in exc.message
    assert str(exc) == exc.message


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"",
        b"application/json",
        b"text/html",
        b"application/grpc-web",
        b"application/grpc-web+proto",
        b"application/grpc-web-text",
        b"application/grpcx",
    ],
)
def test_bad_content_type_is_415(content_type: bytes | None) -> None:
    headers = without(BASE, b"content-type")
    if content_type is not None:
        headers.append((b"content-type", content_type))
    exc = reject(headers)
    assert exc.http_status == 415
    assert "content-type" in exc.message


@pytest.mark.parametrize("te", [None, b"", b"gzip", b"Trailers", b"trailers, deflate"])
def test_missing_te_trailers_is_400(te: bytes | None) -> None:
    headers = without(BASE, b"te")
    if te is not None:
        headers.append((b"te", te))
    exc = reject(headers)
    assert exc.http_status == 400
    assert exc.status is Status.INTERNAL
    assert "te" in exc.message


@pytest.mark.parametrize("timeout", [b"", b"1", b"1s", b"-1S", b"123456789S", b"1.5S", b"\xffS"])
def test_bad_timeout_is_grpc_internal(timeout: bytes) -> None:
    exc = reject([*BASE, (b"grpc-timeout", timeout)])
    assert exc.http_status == 200
    assert exc.status is Status.INTERNAL
    assert "grpc-timeout" in exc.message


@pytest.mark.parametrize(
    "header",
    [
        (b"x-key", b"line\nbreak"),
        (b"x-key", b"caf\xc3\xa9"),
        (b"x-key", b"nul\x00"),
        (b"x-key-bin", b"!!not base64!!"),
        (b"X-Upper", b"v"),
        (b"bad key", b"v"),
    ],
)
def test_invalid_metadata_is_grpc_internal(header: tuple[bytes, bytes]) -> None:
    exc = reject([*BASE, header])
    assert exc.http_status == 200
    assert exc.status is Status.INTERNAL
    assert "metadata" in exc.message


def test_check_order_content_type_before_te() -> None:
    # Something that is not gRPC at all gets a plain HTTP error first.
    assert reject(without(without(BASE, b"te"), b"content-type")).http_status == 415


# --- server: response headers and trailers --------------------------------------------


def test_response_headers_minimal() -> None:
    assert response_headers(b"application/grpc") == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-accept-encoding", b"identity,gzip,deflate"),
    ]


def test_response_headers_full() -> None:
    md = encode_metadata([("x-a", "1"), ("x-b-bin", b"\x00")])
    headers = response_headers(b"application/grpc+json", md, encoding="gzip")
    assert headers == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc+json"),
        (b"grpc-encoding", b"gzip"),
        (b"grpc-accept-encoding", b"identity,gzip,deflate"),
        (b"x-a", b"1"),
        (b"x-b-bin", b"AA"),
    ]


def test_response_headers_without_pseudo_header() -> None:
    # ASGI carries the status outside the header list.
    headers = response_headers(b"application/grpc", http2=False)
    assert headers[0] == (b"content-type", b"application/grpc")
    assert all(not name.startswith(b":") for name, _ in headers)


def test_trailers_ok() -> None:
    assert trailers(Status.OK) == [(b"grpc-status", b"0")]
    assert trailers(Status.OK, "") == [(b"grpc-status", b"0")]


def test_trailers_full() -> None:
    md = encode_metadata([("x-t", "v")])
    assert trailers(Status.NOT_FOUND, "no 100% caf\u00e9", b"\x08\x05", md) == [
        (b"grpc-status", b"5"),
        (b"grpc-message", b"no 100%25 caf%C3%A9"),
        (b"grpc-status-details-bin", b"CAU"),
        (b"x-t", b"v"),
    ]


def test_trailers_empty_details_are_sent() -> None:
    assert (b"grpc-status-details-bin", b"") in trailers(Status.INTERNAL, details=b"")


@pytest.mark.parametrize("status", list(Status))
def test_trailers_every_status(status: Status) -> None:
    assert trailers(status)[0] == (b"grpc-status", str(status.value).encode())


def test_trailers_only() -> None:
    assert trailers_only(Status.UNIMPLEMENTED, "method not found") == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"12"),
        (b"grpc-message", b"method not found"),
    ]
    asgi = trailers_only(Status.INTERNAL, content_type=b"application/grpc+json", http2=False)
    assert asgi == [(b"content-type", b"application/grpc+json"), (b"grpc-status", b"13")]


# --- client: request headers ---------------------------------------------------------


def test_request_headers_minimal() -> None:
    headers = request_headers(
        path=PATH, authority="localhost:50051", scheme="https", content_type=b"application/grpc"
    )
    assert headers == [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":path", PATH.encode()),
        (b":authority", b"localhost:50051"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"grpc-accept-encoding", b"identity,gzip,deflate"),
    ]


def test_request_headers_full() -> None:
    md = encode_metadata([("x-a", "1"), ("x-a", "2")])
    headers = request_headers(
        path=PATH,
        authority="host",
        scheme="http",
        content_type=b"application/grpc+json",
        timeout=0.25,
        encoding="gzip",
        accept_encoding=("gzip",),
        user_agent="my-client/1.0",
        metadata=md,
    )
    assert headers[6:] == [
        (b"grpc-timeout", b"250000u"),
        (b"grpc-encoding", b"gzip"),
        (b"grpc-accept-encoding", b"gzip"),
        (b"user-agent", b"my-client/1.0"),
        (b"x-a", b"1"),
        (b"x-a", b"2"),
    ]


def test_request_headers_pseudo_headers_first() -> None:
    headers = request_headers(
        path=PATH, authority="h", scheme="http", content_type=b"application/grpc",
        timeout=1.0, user_agent="ua", metadata=[(b"x", b"y")],
    )
    names = [name for name, _ in headers]
    pseudo = [n.startswith(b":") for n in names]
    assert pseudo == sorted(pseudo, reverse=True)
    assert all(name == name.lower() for name in names)


def test_request_headers_identity_encoding_omitted() -> None:
    headers = request_headers(
        path=PATH, authority="h", scheme="http", content_type=b"application/grpc", encoding="identity"
    )
    assert all(name != b"grpc-encoding" for name, _ in headers)


def test_request_headers_zero_timeout() -> None:
    headers = request_headers(
        path=PATH, authority="h", scheme="http", content_type=b"application/grpc", timeout=-5.0
    )
    assert (b"grpc-timeout", b"0n") in headers


def test_request_round_trip_through_parse_request() -> None:
    md = encode_metadata([("x-a", "1"), ("x-b-bin", b"\xff\x00")])
    headers = request_headers(
        path=PATH,
        authority="svc.local:443",
        scheme="https",
        content_type=b"application/grpc",
        timeout=3.0,
        encoding="deflate",
        user_agent="ua/1",
        metadata=md,
    )
    head = parse_request(dict(headers)[b":method"], dict(headers)[b":path"].decode(), headers)
    assert head.timeout == 3.0
    assert head.encoding == "deflate"
    assert head.accept_encoding == ("identity", "gzip", "deflate")
    assert head.user_agent == "ua/1"
    assert head.authority == "svc.local:443"
    assert head.metadata == [("user-agent", "ua/1"), ("x-a", "1"), ("x-b-bin", b"\xff\x00")]


# --- client: response headers --------------------------------------------------------

RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def test_parse_normal_response_headers() -> None:
    headers = [*RESPONSE, (b"grpc-encoding", b"gzip"), (b"grpc-accept-encoding", b"gzip"), (b"x-m", b"v")]
    head = parse_response_headers(headers, end_stream=False)
    assert head == ResponseHead(200, "proto", "gzip", [("x-m", "v")], None)


def test_parse_response_headers_json_codec() -> None:
    head = parse_response_headers([(b":status", b"200"), (b"content-type", b"application/grpc+json")], False)
    assert head.codec == "json" and head.trailers is None


def test_trailers_only_response() -> None:
    headers = trailers_only(Status.NOT_FOUND, "nope", b"\x01", encode_metadata([("x-t", "v")]))
    head = parse_response_headers(headers, end_stream=True)
    assert head.http_status == 200
    assert head.metadata == []
    assert head.trailers == TrailersInfo(Status.NOT_FOUND, "nope", b"\x01", [("x-t", "v")])


def test_end_stream_without_grpc_status() -> None:
    head = parse_response_headers(RESPONSE, end_stream=True)
    assert head.trailers is not None
    assert head.trailers.status is Status.UNKNOWN
    assert head.trailers.message is not None and "grpc-status" in head.trailers.message


def test_grpc_status_without_end_stream_is_trailers_only() -> None:
    head = parse_response_headers([*RESPONSE, (b"grpc-status", b"0")], end_stream=False)
    assert head.trailers is not None and head.trailers.status is Status.OK


@pytest.mark.parametrize(
    ("http", "status"),
    [
        (400, Status.INTERNAL),
        (401, Status.UNAUTHENTICATED),
        (403, Status.PERMISSION_DENIED),
        (404, Status.UNIMPLEMENTED),
        (429, Status.UNAVAILABLE),
        (500, Status.UNKNOWN),
        (502, Status.UNAVAILABLE),
        (503, Status.UNAVAILABLE),
        (504, Status.UNAVAILABLE),
        (302, Status.UNKNOWN),
        (204, Status.UNKNOWN),
    ],
)
@pytest.mark.parametrize("end_stream", [False, True])
def test_non_200_without_grpc_status(http: int, status: Status, end_stream: bool) -> None:
    headers = [(b":status", str(http).encode()), (b"content-type", b"text/html"), (b"x-m", b"v")]
    head = parse_response_headers(headers, end_stream)
    assert head.http_status == http
    assert head.metadata == []
    assert head.trailers is not None
    assert head.trailers.status is status
    assert head.trailers.message is not None and str(http) in head.trailers.message


def test_non_200_with_grpc_status_uses_grpc_status() -> None:
    headers = [(b":status", b"503"), (b"content-type", b"application/grpc"), (b"grpc-status", b"8"), (b"grpc-message", b"busy")]
    head = parse_response_headers(headers, end_stream=True)
    assert head.trailers is not None
    assert head.trailers.status is Status.RESOURCE_EXHAUSTED
    assert head.trailers.message == "busy"


@pytest.mark.parametrize("status_value", [b"", b"abc", b"20x"])
def test_garbage_http_status(status_value: bytes) -> None:
    head = parse_response_headers([(b":status", status_value), (b"content-type", b"application/grpc")], False)
    assert head.trailers is not None and head.trailers.status is Status.UNKNOWN


def test_missing_http_status() -> None:
    head = parse_response_headers([(b"content-type", b"application/grpc")], False)
    assert head.trailers is not None and head.trailers.status is Status.UNKNOWN


@pytest.mark.parametrize("content_type", [None, b"text/html", b"application/grpc-web", b"application/json"])
def test_bad_content_type_is_unknown(content_type: bytes | None) -> None:
    headers = [(b":status", b"200")]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    head = parse_response_headers(headers, end_stream=False)
    assert head.codec is None
    assert head.trailers is not None
    assert head.trailers.status is Status.UNKNOWN
    assert "content-type" in (head.trailers.message or "")


def test_invalid_response_metadata_is_internal() -> None:
    head = parse_response_headers([*RESPONSE, (b"x-m", b"bad\nvalue")], end_stream=False)
    assert head.trailers is not None
    assert head.trailers.status is Status.INTERNAL
    assert "metadata" in (head.trailers.message or "")


# --- client: trailers ----------------------------------------------------------------


def test_parse_trailers_ok() -> None:
    assert parse_trailers([(b"grpc-status", b"0")]) == TrailersInfo(Status.OK, None, None, [])


def test_parse_trailers_full() -> None:
    details = b"\x08\x03\x12\x04oops"
    headers = [
        (b"grpc-status", b"3"),
        (b"grpc-message", b"bad %E2%98%83 arg"),
        (b"grpc-status-details-bin", base64.b64encode(details)),  # padded is accepted
        (b"x-t", b"1"),
        (b"x-t-bin", b"AQ"),
    ]
    assert parse_trailers(headers) == TrailersInfo(
        Status.INVALID_ARGUMENT, "bad \u2603 arg", details, [("x-t", "1"), ("x-t-bin", b"\x01")]
    )


def test_parse_trailers_missing_status() -> None:
    info = parse_trailers([(b"x-t", b"1")])
    assert info.status is Status.UNKNOWN
    assert info.message is not None and "grpc-status" in info.message
    assert info.metadata == [("x-t", "1")]


def test_parse_trailers_missing_status_keeps_message() -> None:
    info = parse_trailers([(b"grpc-message", b"hello")])
    assert info.status is Status.UNKNOWN and info.message == "hello"


def test_parse_trailers_garbage_status() -> None:
    assert parse_trailers([(b"grpc-status", b"-0")]).status is Status.UNKNOWN
    assert parse_trailers([(b"grpc-status", b"42")]).status is Status.UNKNOWN


def test_parse_trailers_bad_details_ignored() -> None:
    info = parse_trailers([(b"grpc-status", b"13"), (b"grpc-status-details-bin", b"!!!")])
    assert info.status is Status.INTERNAL and info.details is None


def test_parse_trailers_invalid_metadata() -> None:
    info = parse_trailers([(b"grpc-status", b"0"), (b"x-t", b"\xff")])
    assert info.status is Status.INTERNAL
    assert info.message is not None and "metadata" in info.message


def test_parse_trailers_drops_reserved_headers() -> None:
    info = parse_trailers([(b"grpc-status", b"0"), (b"grpc-other", b"x"), (b"content-type", b"x")])
    assert info.metadata == []


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(Status)),
    st.text(max_size=50),
    st.one_of(st.none(), st.binary(max_size=50)),
    st.lists(st.tuples(st.sampled_from(["a", "x-y", "k.z"]), st.text("abc XYZ!~", max_size=10).map(lambda v: v.strip(" "))), max_size=4),
)
def test_property_trailers_round_trip(
    status: Status, message: str, details: bytes | None, metadata: list[tuple[str, str]]
) -> None:
    info = parse_trailers(trailers(status, message, details, encode_metadata(metadata)))
    assert info.status is status
    assert info.message == (message or None)
    assert info.details == details
    assert info.metadata == metadata
