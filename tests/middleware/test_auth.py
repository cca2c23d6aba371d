"""AuthMiddleware: bearer tokens, API keys, mTLS, authorization; grpcio as a client too."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import grpc
import pytest
import trustme
from google.protobuf.wrappers_pb2 import StringValue
from mw_support import Echo, expect_status, serve

from grpcasgi import Middleware, Status
from grpcasgi.client import Channel
from grpcasgi.contrib.health import Health
from grpcasgi.contrib.protos.grpc.health.v1.health_grpc import HealthStub
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest
from grpcasgi.middleware import (
    SYSTEM_SERVICES,
    APIKeyScheme,
    AuthMiddleware,
    BearerTokenScheme,
    CertificatePrincipal,
    MTLSScheme,
    current_principal,
    select,
)
from grpcasgi.types import Scope

SECRET = "s3cr3t-token-value"


def recording_echo() -> Echo:
    echo = Echo()

    async def hook(stream: Any) -> None:
        echo.seen["state"] = stream.state.get("principal")
        echo.seen["contextvar"] = current_principal.get()

    echo.hooks["Unary"] = hook
    return echo


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_bearer_static_tokens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="grpcasgi")
    echo = recording_echo()
    mw = [Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={SECRET: "alice", "other": "bob"})])]
    async with serve(mw, [echo]) as (_, client):
        assert await client.unary(metadata=bearer(SECRET)) == "echo:hi"
        assert echo.seen == {"state": "alice", "contextvar": "alice"}
        assert echo.entered == ["Unary"]

        err = await expect_status(client.unary(), Status.UNAUTHENTICATED)
        assert err.message == "Missing credentials"
        err = await expect_status(client.unary(metadata=bearer(SECRET + "x")), Status.UNAUTHENTICATED)
        assert err.message == "Invalid bearer token"
        err = await expect_status(client.unary(metadata={"authorization": "Basic dXNlcjpwdw=="}), Status.UNAUTHENTICATED)
        assert err.message == "Missing credentials"
        err = await expect_status(client.unary(metadata={"authorization": "Bearer"}), Status.UNAUTHENTICATED)
        assert err.message == "Malformed bearer token"
        await expect_status(
            client.unary(metadata=[("authorization", f"Bearer {SECRET}"), ("authorization", "Bearer x")]),
            Status.UNAUTHENTICATED,
        )
    assert echo.entered == ["Unary"]  # rejected calls never reached the handler
    assert SECRET + "x" not in caplog.text
    assert "unauthenticated" in caplog.text


async def test_bearer_authenticate_callable_and_authorize() -> None:
    seen_tokens: list[str] = []

    async def authenticate(scope: Scope, token: str) -> Any:
        seen_tokens.append(token)
        return {"sub": token[5:]} if token.startswith("user-") else None

    async def authorize(scope: Scope, principal: Any) -> bool:
        return principal["sub"] == "admin" or scope["method"] != "Fail"

    echo = recording_echo()
    mw = [
        Middleware(
            AuthMiddleware,
            schemes=[BearerTokenScheme(authenticate=authenticate)],
            authorize=authorize,
        )
    ]
    async with serve(mw, [echo]) as (_, client):
        assert await client.unary(metadata=bearer("user-bob")) == "echo:hi"
        assert echo.seen["state"] == {"sub": "bob"}
        await expect_status(client.unary(metadata=bearer("robot")), Status.UNAUTHENTICATED)
        err = await expect_status(
            client.Fail(StringValue(value="grpc:OK"), metadata=bearer("user-bob")), Status.PERMISSION_DENIED
        )
        assert err.message == "Permission denied"
        await expect_status(
            client.Fail(StringValue(value="grpc:ABORTED"), metadata=bearer("user-admin")), Status.ABORTED
        )
    assert echo.entered == ["Unary", "Fail"]
    assert seen_tokens == ["user-bob", "robot", "user-bob", "user-admin"]


async def test_api_key_and_scheme_order() -> None:
    echo = recording_echo()
    schemes = [
        BearerTokenScheme(tokens={SECRET: "token-user"}),
        APIKeyScheme(header="X-Api-Key", authenticate=lambda scope, key: "key-user" if key == "k1" else None),
    ]
    async with serve([Middleware(AuthMiddleware, schemes=schemes, state_key="principal")], [echo]) as (_, client):
        await client.unary(metadata={"x-api-key": "k1"})
        assert echo.seen["state"] == "key-user"
        await client.unary(metadata={**bearer(SECRET), "x-api-key": "k1"})
        assert echo.seen["state"] == "token-user"
        err = await expect_status(client.unary(metadata={"x-api-key": "nope"}), Status.UNAUTHENTICATED)
        assert err.message == "Invalid API key"


async def test_auth_except_health_and_reflection() -> None:
    mw = [select(Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={SECRET: "a"})]), exclude=SYSTEM_SERVICES)]
    async with serve(mw, [Echo(), Health()]) as (_, client):
        await HealthStub(client.channel).Check(HealthCheckRequest())
        await expect_status(client.unary(), Status.UNAUTHENTICATED)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        AuthMiddleware(None, schemes=[])
    with pytest.raises(TypeError):
        AuthMiddleware(None, schemes=[object()])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        BearerTokenScheme()
    with pytest.raises(ValueError):
        BearerTokenScheme(tokens={"": "x"})
    with pytest.raises(ValueError):
        APIKeyScheme(header="key-bin", tokens={"a": "b"})


def test_certificate_principal_from_cert() -> None:
    cert = {
        "subject": ((("organizationName", "Acme"),), (("commonName", "alice"),)),
        "subjectAltName": (("DNS", "alice.example"), ("URI", "spiffe://acme/alice")),
    }
    principal = CertificatePrincipal.from_cert(cert)
    assert principal is not None and str(principal) == "alice"
    assert principal.subject["organizationName"] == "Acme"
    assert ("URI", "spiffe://acme/alice") in principal.san
    no_cn = CertificatePrincipal.from_cert({"subject": (), "subjectAltName": (("URI", "spiffe://x"),)})
    assert no_cn is not None and no_cn.name == "spiffe://x"
    assert CertificatePrincipal.from_cert({}) is None


async def test_mtls_principal_from_client_certificate() -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_cert = ca.issue_cert("alice.example", common_name="alice")

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_OPTIONAL

    def client_ctx(with_cert: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(ctx)
        if with_cert:
            client_cert.configure_cert(ctx)
        return ctx

    echo = recording_echo()
    mw = [Middleware(AuthMiddleware, schemes=[MTLSScheme()], authorize=lambda s, p: p.name != "mallory")]
    from grpcasgi.server import Server

    server = Server([echo], middleware=mw)
    await server.start("127.0.0.1", 0, ssl=server_ctx)
    try:
        async with Channel("127.0.0.1", server.port, ssl=client_ctx(True), server_hostname="localhost") as channel:
            from mw_support import Client

            assert await Client(channel).unary() == "echo:hi"
        principal = echo.seen["state"]
        assert isinstance(principal, CertificatePrincipal) and principal.name == "alice"
        assert ("DNS", "alice.example") in principal.san
        async with Channel("127.0.0.1", server.port, ssl=client_ctx(False), server_hostname="localhost") as channel:
            err = await expect_status(Client(channel).unary(), Status.UNAUTHENTICATED)
            assert err.message == "Missing credentials"
    finally:
        server.close()
        await server.wait_closed()


def _grpcio_call(port: int, metadata: list[tuple[str, str]] | None) -> tuple[grpc.StatusCode, str | None, str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary(
            "/test.Echo/Unary",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )
        try:
            reply = unary(StringValue(value="grpcio"), metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err.code(), err.details(), ""
        return grpc.StatusCode.OK, None, reply.value


async def test_grpcio_client_with_bearer_token() -> None:
    echo = recording_echo()
    mw = [Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={SECRET: "grpcio-user"})])]
    async with serve(mw, [echo]) as (server, _):
        assert server.port is not None
        ok = await asyncio.to_thread(_grpcio_call, server.port, [("authorization", f"Bearer {SECRET}")])
        assert ok == (grpc.StatusCode.OK, None, "echo:grpcio")
        assert echo.seen["state"] == "grpcio-user"
        missing = await asyncio.to_thread(_grpcio_call, server.port, None)
        assert missing[:2] == (grpc.StatusCode.UNAUTHENTICATED, "Missing credentials")
        wrong = await asyncio.to_thread(_grpcio_call, server.port, [("authorization", "Bearer leaked-guess")])
        assert wrong[0] is grpc.StatusCode.UNAUTHENTICATED
        assert "leaked-guess" not in (wrong[1] or "")
    assert echo.entered == ["Unary"]
