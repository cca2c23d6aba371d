"""Client call credentials against the server's AuthMiddleware, over loopback:
static tokens, refresh before expiry, single-flight refresh, invalidation on
UNAUTHENTICATED, provider failures, API keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client_mw_support import SV, UU, Service
from grpcasgi import GRPCError, Middleware, Status
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.middleware import APIKeyScheme, AuthMiddleware, BearerTokenScheme
from grpcasgi.middleware.credentials import ApiKeyCredentialsMiddleware, CallCredentialsMiddleware
from grpcasgi.middleware.retry import RetryMiddleware


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def whoami(stream: Any) -> None:
    await stream.recv_message()
    await stream.send_message(SV(value=f"{stream.state['principal']}|{stream.metadata.get('authorization')}"))


async def auth_server(start_server: Any, tokens: dict[str, str]) -> Any:
    return await start_server(
        [Service("t.A", WhoAmI=(whoami, UU))],
        middleware=[Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens=tokens), APIKeyScheme(tokens=tokens)])],
    )


async def test_static_token(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"s3cret": "alice"})
    channel = make_channel(server.port, middleware=[Middleware(CallCredentialsMiddleware, token="s3cret")])
    reply = await UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)(SV())
    assert reply.value == "alice|Bearer s3cret"


async def test_without_credentials_the_server_refuses(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"s3cret": "alice"})
    channel = make_channel(server.port)
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)(SV())
    assert info.value.status is Status.UNAUTHENTICATED


async def test_token_refreshed_before_expiry(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"t1": "alice", "t2": "alice-again"})
    clock = Clock()
    issued: list[str] = []

    async def provider() -> tuple[str, float | None]:
        issued.append(f"t{len(issued) + 1}")
        return issued[-1], clock.now + 300

    channel = make_channel(
        server.port,
        middleware=[Middleware(CallCredentialsMiddleware, token_provider=provider, refresh_margin=30, clock=clock)],
    )
    method = UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)
    assert (await method(SV())).value == "alice|Bearer t1"
    clock.now += 250  # still outside the refresh margin
    assert (await method(SV())).value == "alice|Bearer t1"
    clock.now += 25  # 25 s before expiry: inside the 30 s margin
    assert (await method(SV())).value == "alice-again|Bearer t2"
    assert issued == ["t1", "t2"]


async def test_concurrent_calls_share_one_refresh(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"t1": "alice"})
    release = asyncio.Event()
    calls = 0

    async def provider() -> tuple[str, float | None]:
        nonlocal calls
        calls += 1
        await release.wait()
        return "t1", None

    channel = make_channel(server.port, middleware=[Middleware(CallCredentialsMiddleware, token_provider=provider)])
    method = UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)
    pending = [asyncio.ensure_future(method(SV())) for _ in range(20)]
    for _ in range(20):  # no I/O before the provider: a few loop turns bring every call there
        await asyncio.sleep(0)
    assert calls == 1
    release.set()
    replies = await asyncio.gather(*pending)
    assert {r.value for r in replies} == {"alice|Bearer t1"}
    assert calls == 1


async def test_valid_token_is_used_while_a_refresh_runs(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"t1": "old", "t2": "new"})
    clock = Clock()
    release = asyncio.Event()
    refreshing_started = asyncio.Event()
    tokens = iter(["t1", "t2"])

    async def provider() -> tuple[str, float | None]:
        token = next(tokens)
        if token == "t2":
            refreshing_started.set()
            await release.wait()
        return token, clock.now + 100

    channel = make_channel(
        server.port,
        middleware=[Middleware(CallCredentialsMiddleware, token_provider=provider, refresh_margin=50, clock=clock)],
    )
    method = UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)
    assert (await method(SV())).value == "old|Bearer t1"
    clock.now += 60  # within the margin, not expired
    refreshing = asyncio.ensure_future(method(SV()))
    await asyncio.wait_for(refreshing_started.wait(), 5)
    assert (await method(SV())).value == "old|Bearer t1"  # did not queue behind the refresh
    release.set()
    assert (await refreshing).value == "new|Bearer t2"


async def test_unauthenticated_drops_the_token(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"good": "alice"})
    tokens = iter(["revoked", "good"])

    async def provider() -> tuple[str, float | None]:
        return next(tokens), None

    channel = make_channel(server.port, middleware=[Middleware(CallCredentialsMiddleware, token_provider=provider)])
    method = UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)
    with pytest.raises(GRPCError) as info:
        await method(SV())
    assert info.value.status is Status.UNAUTHENTICATED
    assert (await method(SV())).value == "alice|Bearer good"


async def test_retry_outside_credentials_recovers_from_a_revoked_token(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"good": "alice"})
    tokens = iter(["revoked", "good"])

    async def provider() -> tuple[str, float | None]:
        return next(tokens), None

    channel = make_channel(
        server.port,
        middleware=[
            Middleware(RetryMiddleware, retryable_status_codes={Status.UNAUTHENTICATED}, initial_backoff=0.01),
            Middleware(CallCredentialsMiddleware, token_provider=provider),
        ],
    )
    assert (await UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)(SV())).value == "alice|Bearer good"


async def test_provider_failure(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"t1": "alice"})
    clock = Clock()
    outcomes: list[Any] = [RuntimeError("token service down"), ("t1", clock.now + 100), RuntimeError("down again")]

    async def provider() -> tuple[str, float | None]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    channel = make_channel(
        server.port,
        middleware=[Middleware(CallCredentialsMiddleware, token_provider=provider, refresh_margin=50, clock=clock)],
    )
    method = UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)
    with pytest.raises(GRPCError) as info:
        await method(SV())
    assert info.value.status is Status.UNAVAILABLE and "token service down" in (info.value.message or "")
    assert (await method(SV())).value == "alice|Bearer t1"
    clock.now += 60  # refresh due, provider fails, the current token is still valid
    assert (await method(SV())).value == "alice|Bearer t1"


async def test_slow_provider_respects_the_deadline(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"t1": "alice"})

    async def provider() -> tuple[str, float | None]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    channel = make_channel(server.port, middleware=[Middleware(CallCredentialsMiddleware, token_provider=provider)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)(SV(), timeout=0.1)
    assert info.value.status is Status.DEADLINE_EXCEEDED


async def test_api_key_and_explicit_metadata_wins(start_server: Any, make_channel: Any) -> None:
    server = await auth_server(start_server, {"k-123": "service-a", "caller": "explicit"})
    channel = make_channel(server.port, middleware=[Middleware(ApiKeyCredentialsMiddleware, key="k-123")])
    method = UnaryUnaryMethod(channel, "/t.A/WhoAmI", SV, SV)
    assert (await method(SV())).value == "service-a|None"
    assert (await method(SV(), metadata={"x-api-key": "caller"})).value == "explicit|None"


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        CallCredentialsMiddleware(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CallCredentialsMiddleware(None, token="bad\nvalue")  # type: ignore[arg-type]
