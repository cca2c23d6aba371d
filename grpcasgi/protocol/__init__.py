"""The sans-IO core: gRPC-over-HTTP/2 wire rules as pure functions and small classes.

Nothing in this package performs I/O or imports asyncio; the transports
(:mod:`grpcasgi.transport`) and the ASGI adapter drive it. Each module owns
one concept of the wire protocol.
"""

from .status import Status

__all__ = ["Status"]
