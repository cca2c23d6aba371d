"""The standard gRPC interop server (``grpc.testing.TestService``) on grpcasgi.

It behaves as grpc's reference interop servers do (``doc/interop-test-descriptions.md``,
"Server" section), so grpc's own interop clients in any language can be
pointed at it, and our interop client at theirs:

* ``UnaryCall``/``StreamingOutputCall``/``FullDuplexCall``/``HalfDuplexCall``
  answer with zero-filled payloads of the requested sizes, sleeping
  ``interval_us`` before each response;
* "Echo Status": a request carrying ``response_status`` with a non-zero code
  ends the call with that code and message (later requests are not
  processed);
* "Echo Metadata": ``x-grpc-test-echo-initial`` comes back in the initial
  metadata and ``x-grpc-test-echo-trailing-bin`` in the trailers, also when
  the call ends with an echoed error status;
* "CompressedRequest": ``expect_compressed`` is checked against the request's
  ``grpc-encoding`` (the only signal the call model exposes; a client that
  announces an encoding but sends a message uncompressed is not caught).
  ``response_compressed`` is accepted and ignored: the bundled server answers
  in the client's encoding.
* ``UnimplementedCall`` answers UNIMPLEMENTED, like a server that lacks it.

Run it with ``python -m grpcasgi.interop.server --port 10000`` (add
``--use_tls --tls_cert_file F --tls_key_file K`` for TLS). It logs the bound
address to stderr and exits cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import ssl as _ssl
import sys
import time
from typing import Any, Sequence

from ..contrib.health import Health
from ..contrib.reflection import ServerReflection
from ..exceptions import GRPCError
from ..protocol.metadata import MetadataValue
from ..protocol.status import Status
from ..server import Server, Stream
from ..utils import graceful_exit
from .protos.grpc.testing import empty_pb2, messages_pb2, test_grpc

__all__ = ["TestService", "make_services", "serve", "main", "INITIAL_METADATA_KEY", "TRAILING_METADATA_KEY"]

log = logging.getLogger("grpcasgi.interop")

INITIAL_METADATA_KEY = "x-grpc-test-echo-initial"
TRAILING_METADATA_KEY = "x-grpc-test-echo-trailing-bin"

_Pairs = list[tuple[str, MetadataValue]]
_Request = messages_pb2.SimpleRequest | messages_pb2.StreamingOutputCallRequest


def _payload(response_type: int, size: int) -> messages_pb2.Payload:
    """A zero-filled payload; only COMPRESSABLE exists, anything else is refused."""
    if response_type != messages_pb2.COMPRESSABLE:
        raise GRPCError(Status.INVALID_ARGUMENT, f"unsupported payload type {response_type}")
    if size < 0:
        raise GRPCError(Status.INVALID_ARGUMENT, f"requested a response with invalid length {size}")
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


def _echo_status(request: _Request) -> tuple[Status, str] | None:
    """The status a request asks the server to end with, if any (code 0 means none)."""
    if not request.HasField("response_status") or request.response_status.code == 0:
        return None
    code = request.response_status.code
    try:
        status = Status(code)
    except ValueError:
        # grpc-status only carries the 17 defined codes; clients map unknown ones to UNKNOWN.
        log.warning("echo status: code %d is not a gRPC status code; answering UNKNOWN", code)
        status = Status.UNKNOWN
    return status, request.response_status.message


def _check_compression(stream: Stream[Any, Any], expect_compressed: messages_pb2.BoolValue) -> None:
    """The "CompressedRequest" feature: refuse an uncompressed request that should not be."""
    if expect_compressed.value and stream.scope["encoding"] in (None, "identity"):
        raise GRPCError(Status.INVALID_ARGUMENT, "Expected compressed request but received uncompressed")


class _Call:
    """Echo-metadata bookkeeping shared by the methods of one call."""

    __slots__ = ("stream", "trailing")

    def __init__(self, stream: Stream[Any, Any]) -> None:
        self.stream = stream
        metadata = stream.metadata
        self.trailing: _Pairs = [(TRAILING_METADATA_KEY, v) for v in metadata.getall(TRAILING_METADATA_KEY, [])]

    async def start(self) -> None:
        """Send the initial metadata now when the client asked for an echo."""
        initial: _Pairs = [(INITIAL_METADATA_KEY, v) for v in self.stream.metadata.getall(INITIAL_METADATA_KEY, [])]
        if initial:
            await self.stream.send_initial_metadata(metadata=initial)

    async def end(self, status: Status = Status.OK, message: str | None = None) -> None:
        """End the call, carrying the trailing-metadata echo whatever the status."""
        await self.stream.send_trailing_metadata(
            status=status, status_message=message, metadata=self.trailing or None
        )

    async def run(self, body: Any) -> None:
        """Run ``body(self)``; a GRPCError still carries the echoed trailers."""
        try:
            await self.start()
            await body(self)
        except GRPCError as exc:
            if self.stream.trailers_sent:
                raise
            await self.end(exc.status, exc.message)
            return
        if not self.stream.trailers_sent:
            await self.end()


async def _respond(call: _Call, request: messages_pb2.StreamingOutputCallRequest) -> None:
    """One response per ResponseParameters, each after its ``interval_us`` sleep."""
    for params in request.response_parameters:
        if params.interval_us > 0:
            await asyncio.sleep(params.interval_us / 1e6)
        await call.stream.send_message(
            messages_pb2.StreamingOutputCallResponse(payload=_payload(request.response_type, params.size))
        )


class TestService(test_grpc.TestServiceBase):
    """``grpc.testing.TestService`` as the interop spec's servers implement it."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, server_id: str | None = None) -> None:
        self.server_id = server_id or f"grpcasgi-{socket.gethostname()}-{os.getpid()}"
        self.hostname = socket.gethostname()

    async def EmptyCall(self, stream: Stream[empty_pb2.Empty, empty_pb2.Empty]) -> None:
        async def body(call: _Call) -> None:
            await stream.recv_message()
            await stream.send_message(empty_pb2.Empty())

        await _Call(stream).run(body)

    async def UnaryCall(self, stream: Stream[messages_pb2.SimpleRequest, messages_pb2.SimpleResponse]) -> None:
        async def body(call: _Call) -> None:
            request = await stream.recv_message()
            if request is None:
                raise GRPCError(Status.INTERNAL, "no request message")
            _check_compression(stream, request.expect_compressed)
            echo = _echo_status(request)
            if echo is not None:
                await call.end(*echo)
                return
            response = messages_pb2.SimpleResponse(payload=_payload(request.response_type, request.response_size))
            if request.fill_server_id:
                response.server_id = self.server_id
                response.hostname = self.hostname
            await stream.send_message(response)

        await _Call(stream).run(body)

    async def CacheableUnaryCall(
        self, stream: Stream[messages_pb2.SimpleRequest, messages_pb2.SimpleResponse]
    ) -> None:
        """A response that differs each time and may be cached by a proxy for 60 s."""
        await stream.recv_message()
        await stream.send_initial_metadata(metadata=[("cache-control", "max-age=60, public")])
        body = str(time.time_ns()).encode("ascii")
        await stream.send_message(messages_pb2.SimpleResponse(payload=messages_pb2.Payload(body=body)))

    async def StreamingOutputCall(
        self,
        stream: Stream[messages_pb2.StreamingOutputCallRequest, messages_pb2.StreamingOutputCallResponse],
    ) -> None:
        async def body(call: _Call) -> None:
            request = await stream.recv_message()
            if request is None:
                raise GRPCError(Status.INTERNAL, "no request message")
            echo = _echo_status(request)
            if echo is not None:
                await call.end(*echo)
                return
            await _respond(call, request)

        await _Call(stream).run(body)

    async def StreamingInputCall(
        self,
        stream: Stream[messages_pb2.StreamingInputCallRequest, messages_pb2.StreamingInputCallResponse],
    ) -> None:
        async def body(call: _Call) -> None:
            total = 0
            async for request in stream:
                _check_compression(stream, request.expect_compressed)
                total += len(request.payload.body)
            await stream.send_message(messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total))

        await _Call(stream).run(body)

    async def FullDuplexCall(
        self,
        stream: Stream[messages_pb2.StreamingOutputCallRequest, messages_pb2.StreamingOutputCallResponse],
    ) -> None:
        async def body(call: _Call) -> None:
            async for request in stream:
                echo = _echo_status(request)
                if echo is not None:
                    await call.end(*echo)
                    return
                await _respond(call, request)

        await _Call(stream).run(body)

    async def HalfDuplexCall(
        self,
        stream: Stream[messages_pb2.StreamingOutputCallRequest, messages_pb2.StreamingOutputCallResponse],
    ) -> None:
        async def body(call: _Call) -> None:
            requests = [request async for request in stream]
            for request in requests:
                echo = _echo_status(request)
                if echo is not None:
                    await call.end(*echo)
                    return
                await _respond(call, request)

        await _Call(stream).run(body)

    async def UnimplementedCall(self, stream: Stream[empty_pb2.Empty, empty_pb2.Empty]) -> None:
        # Part of the generated base but, by the spec, implemented by no server.
        raise GRPCError(Status.UNIMPLEMENTED, f"Method not found: {stream.method}")


def make_services() -> list[Any]:
    """The services an interop server exposes (for ``Server`` or the ASGI ``App``).

    ``TestService`` plus health checking (``""`` and ``grpc.testing.TestService``
    SERVING until shutdown) and server reflection (v1 and v1alpha), which
    grpc's reference interop servers also expose.
    """
    test_service = TestService()
    health = Health({test_service: []})
    return ServerReflection.extend([test_service, health])


async def serve(host: str | None, port: int, *, ssl: _ssl.SSLContext | None = None) -> None:
    """Serve the interop services until SIGINT/SIGTERM."""
    server = Server(make_services())
    with graceful_exit([server]):
        await server.start(host, port, ssl=ssl)
        for sock in server.sockets:
            log.info("grpcasgi interop server listening on %s (%s)", _format_addr(sock), "TLS" if ssl else "plaintext")
        await server.wait_closed()
    log.info("grpcasgi interop server stopped")


def _format_addr(sock: socket.socket) -> str:
    addr = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"[{addr[0]}]:{addr[1]}"
    if sock.family == socket.AF_INET:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def parse_bool(value: str | bool) -> bool:
    """``--use_tls``, ``--use_tls=true`` and ``--use_tls=false`` as grpc's interop tools accept them."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def _server_ssl(cert_file: str, key_file: str) -> _ssl.SSLContext:
    ctx = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m grpcasgi.interop.server", description="gRPC interop test server (grpc.testing.TestService)"
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default=None, help="address to bind (default: all interfaces)")
    parser.add_argument("--use_tls", type=parse_bool, nargs="?", const=True, default=False)
    parser.add_argument("--tls_cert_file", help="PEM certificate chain (required with --use_tls)")
    parser.add_argument("--tls_key_file", help="PEM private key (required with --use_tls)")
    parser.add_argument("--log_level", default="INFO", help="stderr log level (default INFO)")
    args = parser.parse_args(argv)
    ssl = None
    if args.use_tls:
        if not (args.tls_cert_file and args.tls_key_file):
            parser.error("--use_tls needs --tls_cert_file and --tls_key_file")
        try:
            ssl = _server_ssl(args.tls_cert_file, args.tls_key_file)
        except (OSError, _ssl.SSLError) as exc:
            parser.error(f"could not load the TLS certificate/key: {exc}")
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, ssl=ssl))
    except OSError as exc:
        log.error("could not start the interop server: %s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()


# --- ASGI entry point -------------------------------------------------------------
# Reserved for the ASGI engineer: ``app = ...`` (a ``grpcasgi.asgi.App`` over
# ``make_services()``) goes here, so ``hypercorn grpcasgi.interop.server:app``
# serves the interop service. Keep this module importable without hypercorn.
