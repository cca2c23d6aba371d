"""Authentication cannot be bypassed: every built-in scheme refuses missing,
malformed, expired and wrong credentials before the handler runs (an entry
counter proves it), and neither the status message nor any log line carries
the presented credential or a configured secret."""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

import pytest
import trustme
from hostile_support import SV, Echo, peer, request_headers

from grpcasgi.call import Middleware
from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.exceptions import GRPCError
from grpcasgi.middleware.auth import (
    APIKeyScheme,
    AuthenticationError,
    AuthMiddleware,
    BearerTokenScheme,
    CertificatePrincipal,
    MTLSScheme,
)
from grpcasgi.protocol.status import Status
from grpcasgi.server import Server

SECRET = "s3cr3t-VALID-token-0123456789"
WRONG = "WRONG-guess-9876543210"
API_KEY = "k3y-VALID-abcdef"


def expiring_tokens(scope: Any, token: str) -> Any:
    """Tokens ``<name>.<expiry unix time>.<SECRET>``: the JWT pattern in miniature."""
    name, _, rest = token.partition(".")
    expiry, _, secret = rest.partition(".")
    if not expiry.isdigit() or secret != SECRET:
        return None
    if int(expiry) < time.time():
        raise AuthenticationError("Token expired")
    return name


SCHEMES: dict[str, Any] = {
    "bearer-static": lambda: BearerTokenScheme(tokens={SECRET: "alice"}),
    "bearer-callable": lambda: BearerTokenScheme(authenticate=expiring_tokens),
    "api-key": lambda: APIKeyScheme(tokens={API_KEY: "svc"}),
    "api-key-custom-header": lambda: APIKeyScheme(header="x-service-key", tokens={API_KEY: "svc"}),
}

# (case, metadata) per scheme; every one must be UNAUTHENTICATED.
BAD: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "bearer-static": [
        ("missing", []),
        ("wrong", [("authorization", f"Bearer {WRONG}")]),
        ("prefix of the secret", [("authorization", f"Bearer {SECRET[:-1]}")]),
        ("secret plus suffix", [("authorization", f"Bearer {SECRET}x")]),
        ("empty token", [("authorization", "Bearer")]),
        ("other scheme", [("authorization", f"Basic {SECRET}")]),
        ("no scheme", [("authorization", SECRET)]),
        ("valid and wrong together", [("authorization", f"Bearer {SECRET}"), ("authorization", f"Bearer {WRONG}")]),
        ("in another header", [("x-api-key", SECRET)]),
    ],
    "bearer-callable": [
        ("missing", []),
        ("expired", [("authorization", f"alice.{int(time.time()) - 60}.{SECRET}")]),
        ("wrong secret", [("authorization", f"Bearer alice.{int(time.time()) + 600}.{WRONG}")]),
        ("malformed", [("authorization", "Bearer alice")]),
    ],
    "api-key": [
        ("missing", []),
        ("wrong", [("x-api-key", WRONG)]),
        ("empty", [("x-api-key", "")]),
        ("two keys", [("x-api-key", API_KEY), ("x-api-key", API_KEY)]),
        ("bearer instead", [("authorization", f"Bearer {API_KEY}")]),
    ],
    "api-key-custom-header": [
        ("missing", []),
        ("default header", [("x-api-key", API_KEY)]),
        ("wrong", [("x-service-key", WRONG)]),
    ],
}
GOOD = {
    "bearer-static": [("authorization", f"Bearer {SECRET}")],
    "bearer-callable": [("authorization", f"Bearer alice.{int(time.time()) + 600}.{SECRET}")],
    "api-key": [("x-api-key", API_KEY)],
    "api-key-custom-header": [("x-service-key", API_KEY)],
}
# The "expired" case carries the token without the Bearer prefix; fix it up.
BAD["bearer-callable"][1] = ("expired", [("authorization", f"Bearer alice.{int(time.time()) - 60}.{SECRET}")])

CASES = [(scheme, case, md) for scheme, cases in BAD.items() for case, md in cases]


def secrets_in(text: str) -> list[str]:
    return [s for s in (SECRET, WRONG, API_KEY, SECRET[:-1]) if s in text]


@pytest.mark.parametrize("scheme,case,metadata", CASES, ids=[f"{s}-{c}" for s, c, _ in CASES])
async def test_bad_credentials_are_refused_before_the_handler(
    scheme: str, case: str, metadata: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = Echo()
    server = Server([echo], middleware=[Middleware(AuthMiddleware, schemes=[SCHEMES[scheme]()])])
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as channel:
            method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
            with pytest.raises(GRPCError) as info:
                await method(SV(value="x"), metadata=metadata, timeout=5)
            assert info.value.status is Status.UNAUTHENTICATED
            assert echo.entered == 0
            assert not secrets_in(info.value.message or "")
            # The right credential works on the same server: the refusal was about the credential.
            assert (await method(SV(value="ok"), metadata=GOOD[scheme], timeout=5)).value == "ok"
            assert echo.entered == 1
    finally:
        server.close()
        await server.wait_closed()
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert not secrets_in(logged), secrets_in(logged)


async def test_authorize_refusal_never_enters_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = Echo()
    mw = Middleware(AuthMiddleware, schemes=[SCHEMES["bearer-static"]()], authorize=lambda scope, who: False)
    server = Server([echo], middleware=[mw])
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as channel:
            with pytest.raises(GRPCError) as info:
                await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="x"), metadata=GOOD["bearer-static"])
            assert info.value.status is Status.PERMISSION_DENIED
    finally:
        server.close()
        await server.wait_closed()
    assert echo.entered == 0
    assert not secrets_in("\n".join(r.getMessage() for r in caplog.records))


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b" Bearer " + SECRET.encode())],  # whitespace: malformed for HTTP/2
        [(b"Authorization", b"Bearer " + SECRET.encode())],  # uppercase name: malformed
        [(b"authorization", b"Bearer\t" + WRONG.encode())],
        [(b"authorization", b"Bearer " + SECRET.encode() + b"\x00")],
    ],
    ids=["leading space", "uppercase name", "tab", "NUL"],
)
async def test_raw_header_tricks_never_reach_the_handler(headers: list[tuple[bytes, bytes]]) -> None:
    echo = Echo()
    server = Server([echo], middleware=[Middleware(AuthMiddleware, schemes=[SCHEMES["bearer-static"]()])])
    await server.start("127.0.0.1", 0)
    try:
        async with peer(server.port) as raw:  # type: ignore[arg-type]
            raw.handshake()
            sid = raw.open_stream(request_headers() + headers, body=b"\x00\x00\x00\x00\x00")
            await raw.read_until(lambda: bool(raw.resets(sid)) or any("END_STREAM" in f.flags for f in raw.headers_of(sid)))
    finally:
        server.close()
        await server.wait_closed()
    assert echo.entered == 0


async def test_mtls_refuses_missing_and_unaccepted_certificates(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ca, other_ca = trustme.CA(), trustme.CA()
    server_cert = ca.issue_cert("localhost")
    alice = ca.issue_cert("alice.example", common_name="alice")
    mallory = ca.issue_cert("mallory.example", common_name="mallory")
    forged = other_ca.issue_cert("alice.example", common_name="alice")  # a CA the server does not trust

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_OPTIONAL

    def identity(cert: Any) -> Any:
        principal = CertificatePrincipal.from_cert(cert)
        return None if principal is None or principal.name == "mallory" else principal

    echo = Echo()
    server = Server([echo], middleware=[Middleware(AuthMiddleware, schemes=[MTLSScheme(identity=identity)])])
    await server.start("127.0.0.1", 0, ssl=server_ctx)

    def client(cert: Any) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(ctx)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx

    async def call(cert: Any) -> Any:
        async with Channel("127.0.0.1", server.port, ssl=client(cert), server_hostname="localhost") as channel:
            return await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="x"), timeout=5)

    try:
        for cert, status in ((None, Status.UNAUTHENTICATED), (mallory, Status.UNAUTHENTICATED)):
            with pytest.raises(GRPCError) as info:
                await call(cert)
            assert info.value.status is status
        with pytest.raises(GRPCError) as info:
            await call(forged)  # refused by the TLS handshake itself
        assert info.value.status is Status.UNAVAILABLE
        assert echo.entered == 0
        assert (await call(alice)).value == "x"
        assert echo.entered == 1
    finally:
        server.close()
        await server.wait_closed()
