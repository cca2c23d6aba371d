"""The remote end of a call, as grpclib's ``Peer``: an address and maybe a certificate."""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["Peer"]


class Peer:
    __slots__ = ("_addr", "_ssl_object", "_cert")

    def __init__(
        self,
        addr: Any,
        *,
        ssl_object: ssl.SSLObject | ssl.SSLSocket | None = None,
        cert: dict[str, Any] | None = None,
    ) -> None:
        self._addr = addr
        self._ssl_object = ssl_object
        self._cert = cert

    def addr(self) -> Any:
        """``(host, port)`` for TCP, the socket path (or '') for UNIX sockets, None if unknown."""
        return self._addr

    def cert(self) -> dict[str, Any] | None:
        """The peer's verified TLS certificate (``ssl.getpeercert()`` form), or None."""
        if self._cert is None and self._ssl_object is not None:
            self._cert = self._ssl_object.getpeercert() or None
        return self._cert

    @property
    def is_secure(self) -> bool:
        return self._ssl_object is not None or self._cert is not None

    def __repr__(self) -> str:
        return f"Peer({self._addr!r}{', tls' if self.is_secure else ''})"
