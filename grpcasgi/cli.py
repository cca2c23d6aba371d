"""``grpcasgi run module:app``: serve an application on the bundled HTTP/2 server.

The target may be a :class:`grpcasgi.asgi.App` (served with its middleware,
codecs, configuration and lifecycle hooks), a :class:`grpcasgi.server.Server`,
a service object, a list of services, or a function returning any of these.
The same ``module:app`` runs under Hypercorn instead with
``hypercorn --config python:grpcasgi.contrib.hypercorn_config module:app``
(see ``docs/asgi.md``).

``--workers N`` forks N processes that each bind the port with
``SO_REUSEPORT``, so the kernel spreads connections over them. SIGTERM or
SIGINT closes gracefully (``graceful_exit``): no new connections, in-flight
calls get ``Configuration.shutdown_grace`` seconds, ``on_shutdown`` hooks run,
and the process exits 0; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Any, Sequence

from .server import Server
from .utils import graceful_exit

__all__ = ["main", "load_target", "to_server"]

log = logging.getLogger("grpcasgi.cli")


def load_target(spec: str) -> Any:
    """Import ``module:attribute`` (``attribute`` may be dotted; default ``app``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SystemExit(f"grpcasgi: invalid target {spec!r}, expected module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like hypercorn/uvicorn: modules of the current directory
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"grpcasgi: cannot import {module_name!r}: {exc}") from None
    for part in (attr or "app").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"grpcasgi: {module_name!r} has no attribute {attr or 'app'!r}") from None
    return obj


def to_server(target: Any, *, _depth: int = 0) -> Server:
    """A :class:`Server` for whatever ``module:app`` named."""
    from .asgi import App, GrpcDispatcher

    if isinstance(target, Server):
        return target
    if isinstance(target, App):
        return target.server()
    if isinstance(target, GrpcDispatcher) and isinstance(target.grpc_app, App):
        log.warning("serving only the gRPC part of %r; its HTTP app needs an ASGI server", target)
        return target.grpc_app.server()
    if hasattr(target, "__mapping__"):
        return Server([target])
    if isinstance(target, (list, tuple)):
        return Server(list(target))
    if callable(target) and _depth == 0:
        return to_server(target(), _depth=1)
    raise SystemExit(
        f"grpcasgi: cannot serve {target!r}: expected an App, a Server, a service or a list of services"
    )


def _ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise SystemExit("grpcasgi: --keyfile needs --certfile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


_SIGNALS = {signal.SIGTERM, signal.SIGINT}


async def _serve(server: Server, args: argparse.Namespace, reuse_port: bool, ready_fd: int | None = None) -> None:
    context = _ssl_context(args.certfile, args.keyfile)
    with graceful_exit([server]):
        if ready_fd is not None:
            # A worker: signals were blocked across fork() until graceful_exit handles them.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        if args.uds is not None:
            await server.start(path=args.uds, ssl=context)
            where = f"unix:{args.uds}"
        else:
            await server.start(args.host, args.port, ssl=context, reuse_port=reuse_port or None)
            where = f"{args.host}:{server.port}"
        scheme = "https" if context is not None else "http"
        log.info("grpcasgi: serving on %s://%s (pid %d)", scheme, where, os.getpid())
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        await server.wait_closed()
    log.info("grpcasgi: stopped (pid %d)", os.getpid())


def _reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (not listen) with SO_REUSEPORT to fix the port every worker will bind."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    return sock, int(sock.getsockname()[1])


def _run_workers(server: Server, args: argparse.Namespace) -> int:
    """Fork ``args.workers`` servers sharing the port; forward signals; 0 if all exit 0."""
    if not hasattr(os, "fork") or not hasattr(socket, "SO_REUSEPORT"):
        raise SystemExit("grpcasgi: --workers needs fork() and SO_REUSEPORT (Linux, macOS)")
    if args.uds is not None:
        raise SystemExit("grpcasgi: --uds cannot be combined with --workers")
    placeholder, args.port = _reserve_port(args.host, args.port)
    children: list[int] = []
    ready_r, ready_w = os.pipe()
    # Blocked until each worker's graceful_exit is in place (and the parent's
    # forwarding handler below), so an early SIGTERM is never lost or fatal.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            placeholder.close()
            os.close(ready_r)
            code = 0
            try:
                asyncio.run(_serve(server, args, reuse_port=True, ready_fd=ready_w))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("grpcasgi: worker %d failed", os.getpid())
                code = 1
            logging.shutdown()
            os._exit(code)
        children.append(pid)
    os.close(ready_w)

    stopping: list[int] = []

    def forward(sig_num: int, frame: Any) -> None:
        stopping.append(sig_num)
        for child in children:
            try:
                os.kill(child, sig_num)
            except ProcessLookupError:
                pass

    for sig_num in _SIGNALS:
        signal.signal(sig_num, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    ready = 0
    while ready < args.workers:
        try:
            chunk = os.read(ready_r, args.workers)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        if not chunk:
            break  # every worker has exited or failed to start
        ready += len(chunk)
    os.close(ready_r)
    if ready == args.workers:
        scheme = "https" if args.certfile else "http"
        log.info(
            "grpcasgi: %d workers serving on %s://%s:%d (supervisor pid %d)", ready, scheme, args.host, args.port, os.getpid()
        )
    status = 0
    alive = set(children)
    try:
        while alive:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            alive.discard(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if code != 0:
                status = 1
            if not stopping:
                log.error("grpcasgi: worker %d exited (%d) without a signal; stopping the others", pid, code)
                status = 1
                forward(signal.SIGTERM, None)
    finally:
        placeholder.close()
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpcasgi", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve module:app on the bundled HTTP/2 server")
    run.add_argument("target", help="module:attribute naming an App, Server, service or list of services")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=50051, help="TCP port (default 50051; 0 picks a free one)")
    run.add_argument("--uds", metavar="PATH", help="serve on a UNIX socket instead of TCP")
    run.add_argument("--workers", type=int, default=1, help="processes sharing the port via SO_REUSEPORT")
    run.add_argument("--certfile", help="TLS certificate chain (PEM); enables TLS with ALPN h2")
    run.add_argument("--keyfile", help="TLS private key (PEM)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
    )
    if args.workers < 1:
        raise SystemExit("grpcasgi: --workers must be at least 1")
    server = to_server(load_target(args.target))
    if args.workers > 1:
        return _run_workers(server, args)
    asyncio.run(_serve(server, args, reuse_port=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
