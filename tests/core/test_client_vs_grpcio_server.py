"""Our client against a grpcio (grpc.aio) server: the four cardinalities, metadata
both ways (``-bin``, repeated keys), statuses with rich details, trailers-only errors."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from core_helpers import SS, SU, SV, US, UU, call_ours
from grpcasgi.protocol.status import Status


async def _uu(request: Any, context: Any) -> Any:
    return SV(value=request.value.upper())


async def _us(request: Any, context: Any) -> Any:
    for part in request.value.split(","):
        yield SV(value=part)


async def _su(requests: Any, context: Any) -> Any:
    return SV(value=",".join([r.value async for r in requests]))


async def _ss(requests: Any, context: Any) -> Any:
    async for r in requests:
        yield SV(value=r.value * 2)


async def _metadata(request: Any, context: Any) -> Any:
    md = context.invocation_metadata()
    await context.send_initial_metadata([("x-seen", ",".join(v for k, v in md if k == "x-rep"))])
    bin_values = [v for k, v in md if k == "x-data-bin"]
    context.set_trailing_metadata([("x-trail-bin", bin_values[0] + b"!"), ("x-trail", "t")])
    return SV(value="md")


async def _fail(request: Any, context: Any) -> Any:
    detail = error_details_pb2.QuotaFailure(
        violations=[error_details_pb2.QuotaFailure.Violation(subject="s", description="too many")]
    )
    rich = status_pb2.Status(code=Status.RESOURCE_EXHAUSTED.value, message="slow down")
    rich.details.add().Pack(detail)
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        trailing_metadata=(("grpc-status-details-bin", rich.SerializeToString()),),
    )


async def _fail_plain(request: Any, context: Any) -> Any:
    await context.abort(grpc.StatusCode.NOT_FOUND, "nothing here: ünï %")


@pytest.fixture
async def port(grpcio_server: Any) -> int:
    return int(
        await grpcio_server(
            "core.G",
            {
                "UU": (UU, _uu),
                "US": (US, _us),
                "SU": (SU, _su),
                "SS": (SS, _ss),
                "Metadata": (UU, _metadata),
                "Fail": (UU, _fail),
                "FailPlain": (UU, _fail_plain),
            },
        )
    )


@pytest.mark.parametrize(
    "method, cardinality, requests, replies",
    [
        ("UU", UU, ["abc"], ["ABC"]),
        ("US", US, ["a,b,c"], ["a", "b", "c"]),
        ("SU", SU, ["a", "b"], ["a,b"]),
        ("SS", SS, ["a", "b"], ["aa", "bb"]),
        ("US", US, [""], [""]),
    ],
)
async def test_cardinalities(
    port: int, make_channel: Any, method: str, cardinality: Any, requests: list[str], replies: list[str]
) -> None:
    out = await call_ours(make_channel(port), f"/core.G/{method}", cardinality, [SV(value=v) for v in requests])
    assert out.status == 0, out
    assert [r.value for r in out.replies] == replies


async def test_metadata_both_ways(port: int, make_channel: Any) -> None:
    md = [("x-rep", "1"), ("x-rep", "2"), ("x-data-bin", b"\x00\xff")]
    out = await call_ours(make_channel(port), "/core.G/Metadata", UU, [SV()], metadata=md)
    assert out.status == 0, out
    assert ("x-seen", "1,2") in out.initial
    assert ("x-trail-bin", b"\x00\xff!") in out.trailing
    assert ("x-trail", "t") in out.trailing


async def test_rich_error_details(port: int, make_channel: Any) -> None:
    out = await call_ours(make_channel(port), "/core.G/Fail", UU, [SV()])
    assert (out.status, out.message) == (Status.RESOURCE_EXHAUSTED.value, "slow down")
    assert len(out.details) == 1 and isinstance(out.details[0], error_details_pb2.QuotaFailure)
    assert out.details[0].violations[0].description == "too many"


async def test_plain_error_and_unknown_method(port: int, make_channel: Any) -> None:
    channel = make_channel(port)
    out = await call_ours(channel, "/core.G/FailPlain", UU, [SV()])
    assert (out.status, out.message) == (Status.NOT_FOUND.value, "nothing here: ünï %")
    out = await call_ours(channel, "/core.G/Missing", UU, [SV()])
    assert out.status == Status.UNIMPLEMENTED.value
