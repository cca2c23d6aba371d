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
* "CompressedRequest": a request with ``expect_compressed: true`` that
  arrived without the compressed flag is INVALID_ARGUMENT;
* "CompressedResponse": ``response_compressed`` (UnaryCall) and
  ``ResponseParameters.compressed`` choose, message by message, whether the
  reply is compressed (gzip, or the request's encoding); unset, replies follow
  the server's default (the request's encoding);
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


def _check_compression(
    stream: Stream[Any, Any], request: messages_pb2.SimpleRequest | messages_pb2.StreamingInputCallRequest
) -> None:
    """The "CompressedRequest" feature: refuse an uncompressed request that should not be."""
    if not request.expect_compressed.value:
        return
    compressed = stream.last_message_compressed
    if compressed is None:  # a runtime that does not report the flag: judge by the header
        compressed = stream.scope["encoding"] not in (None, "identity")
    if not compressed:
        raise GRPCError(Status.INVALID_ARGUMENT, "Expected compressed request but received uncompressed")


def _compress_replies(stream: Stream[Any, Any], flags: Sequence[messages_pb2.BoolValue | None]) -> None:
    """The "CompressedResponse" feature: compress replies when any of them asks to be.

    Each reply then goes out compressed or not per its own flag (see
    :func:`_compress_flag`); the call's encoding is the request's, else gzip.
    """
    if any(flag is not None and flag.value for flag in flags):
        encoding = stream.scope["encoding"]
        stream.set_compression(encoding if encoding not in (None, "identity") else "gzip")


def _compress_flag(flag: messages_pb2.BoolValue | None) -> bool:
    """``send_message(compress=...)`` for a reply: its flag when set, else the call's default."""
    return flag.value if flag is not None else True


def _flag(message: Any, field: str) -> messages_pb2.BoolValue | None:
    """A "nullable" BoolValue field: None when the client did not set it."""
    return getattr(message, field) if message.HasField(field) else None


class _Call:
    """Echo-metadata bookkeeping shared by the methods of one call.

    ``start()`` sends the initial-metadata echo; a method body calls it before
    its first reply (after reading the request when the request decides the
    reply compression, which must be chosen before the headers go out).
    """

    __slots__ = ("stream", "trailing", "started")

    def __init__(self, stream: Stream[Any, Any]) -> None:
        self.stream = stream
        metadata = stream.metadata
        self.trailing: _Pairs = [(TRAILING_METADATA_KEY, v) for v in metadata.getall(TRAILING_METADATA_KEY, [])]
        self.started = False

    async def start(self) -> None:
        """Send the initial metadata now when the client asked for an echo (once)."""
        if self.started:
            return
        self.started = True
        initial: _Pairs = [(INITIAL_METADATA_KEY, v) for v in self.stream.metadata.getall(INITIAL_METADATA_KEY, [])]
        if initial:
            await self.stream.send_initial_metadata(metadata=initial)

    async def end(self, status: Status = Status.OK, message: str | None = None) -> None:
        """End the call, carrying both metadata echoes whatever the status."""
        await self.start()
        await self.stream.send_trailing_metadata(
            status=status, status_message=message, metadata=self.trailing or None
        )

    async def run(self, body: Any) -> None:
        """Run ``body(self)``; a GRPCError still carries the echoed metadata."""
        try:
            await body(self)
        except GRPCError as exc:
            if self.stream.trailers_sent:
                raise
            await self.end(exc.status, exc.message)
            return
        if not self.stream.trailers_sent:
            await self.end()


async def _respond(call: _Call, request: messages_pb2.StreamingOutputCallRequest) -> None:
    """One response per ResponseParameters, each after its ``interval_us`` sleep.

    ``compressed: false`` sends that response uncompressed; ``true`` compresses
    it only if the call compresses (StreamingOutputCall arranges that).
    """
    await call.start()
    for params in request.response_parameters:
        if params.interval_us > 0:
            await asyncio.sleep(params.interval_us / 1e6)
        await call.stream.send_message(
            messages_pb2.StreamingOutputCallResponse(payload=_payload(request.response_type, params.size)),
            compress=_compress_flag(_flag(params, "compressed")),
        )


class TestService(test_grpc.TestServiceBase):
    """``grpc.testing.TestService`` as the interop spec's servers implement it."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, server_id: str | None = None) -> None:
        self.server_id = server_id or f"grpcasgi-{socket.gethostname()}-{os.getpid()}"
        self.hostname = socket.gethostname()

    async def EmptyCall(self, stream: Stream[empty_pb2.Empty, empty_pb2.Empty]) -> None:
        async def body(call: _Call) -> None:
            await call.start()
            await stream.recv_message()
            await stream.send_message(empty_pb2.Empty())

        await _Call(stream).run(body)

    async def UnaryCall(self, stream: Stream[messages_pb2.SimpleRequest, messages_pb2.SimpleResponse]) -> None:
        async def body(call: _Call) -> None:
            request = await stream.recv_message()
            if request is None:
                raise GRPCError(Status.INTERNAL, "no request message")
            _check_compression(stream, request)
            echo = _echo_status(request)
            if echo is not None:
                await call.end(*echo)
                return
            response = messages_pb2.SimpleResponse(payload=_payload(request.response_type, request.response_size))
            if request.fill_server_id:
                response.server_id = self.server_id
                response.hostname = self.hostname
            flag = _flag(request, "response_compressed")
            _compress_replies(stream, [flag])
            await call.start()
            await stream.send_message(response, compress=_compress_flag(flag))

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
            _compress_replies(stream, [_flag(p, "compressed") for p in request.response_parameters])
            await _respond(call, request)

        await _Call(stream).run(body)

    async def StreamingInputCall(
        self,
        stream: Stream[messages_pb2.StreamingInputCallRequest, messages_pb2.StreamingInputCallResponse],
    ) -> None:
        async def body(call: _Call) -> None:
            await call.start()
            total = 0
            async for request in stream:
                _check_compression(stream, request)
                total += len(request.payload.body)
            await stream.send_message(messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total))

        await _Call(stream).run(body)

    async def FullDuplexCall(
        self,
        stream: Stream[messages_pb2.StreamingOutputCallRequest, messages_pb2.StreamingOutputCallResponse],
    ) -> None:
        async def body(call: _Call) -> None:
            await call.start()
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
            await call.start()
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
# ``hypercorn --config python:grpcasgi.contrib.hypercorn_config grpcasgi.interop.server:app``
# serves the interop services under Hypercorn, ``grpcasgi run grpcasgi.interop.server:app``
# on the bundled server. grpcasgi.asgi does not import hypercorn, so this
# module stays importable without it.
from ..asgi import App  # noqa: E402  (after main(): the entry point is an add-on)

app = App(make_services())
