"""Exceptions raised to and by applications."""

from __future__ import annotations

from typing import Any

from .protocol.status import Status

__all__ = ["GRPCError", "ProtocolError", "StreamTerminatedError"]


class GRPCError(Exception):
    """A call ended with a non-OK status.

    Raise it in a handler (or middleware) to end the call with ``status``;
    clients raise it when the server ended the call with one. ``details`` are
    rich error details (``google.rpc`` messages) carried in
    ``grpc-status-details-bin`` when a status-details codec is configured.
    """

    def __init__(self, status: Status, message: str | None = None, details: Any = None) -> None:
        super().__init__(status, message, details)
        self.status = status
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"GRPCError({self.status!s}, {self.message!r}, {self.details!r})"

    def __str__(self) -> str:
        if self.message:
            return f"({self.status.name}) {self.message}"
        return self.status.name


class ProtocolError(Exception):
    """The peer or the application broke the gRPC or HTTP/2 protocol."""


class StreamTerminatedError(Exception):
    """The stream was reset or the connection was lost mid-call."""
