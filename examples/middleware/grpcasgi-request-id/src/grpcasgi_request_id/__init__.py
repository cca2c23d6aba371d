"""Give every gRPC call a request id: the client's ``x-request-id``, or a new one.

The id is put in ``scope["state"]["request_id"]`` (``stream.state`` in
handlers) and in the :data:`current_request_id` context variable (for log
filters), and returned to the client in the response headers -- or, for an
error sent without headers (Trailers-Only), in the trailers.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from typing import Any, Mapping

from grpcasgi.types import App, Receive, Scope, Send, SendEvent

__all__ = ["RequestIdMiddleware", "current_request_id"]

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Ids are echoed back in headers: accept only short, harmless ones.
_VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _with(metadata: Any, key: str, value: str) -> list[tuple[str, Any]]:
    """``metadata`` (a mapping, pairs or None) plus one entry."""
    pairs = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata or ())
    return [*pairs, (key, value)]


class RequestIdMiddleware:
    def __init__(self, app: App, *, header: str = "x-request-id") -> None:
        self.app = app
        self.header = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        presented = scope["metadata"].get(self.header)
        if isinstance(presented, str) and _VALID.fullmatch(presented):
            request_id = presented
        else:
            request_id = uuid.uuid4().hex
        scope["state"]["request_id"] = request_id
        started = False

        async def send_with_id(event: SendEvent) -> None:
            nonlocal started
            if event["type"] == "grpc.response.start":
                started = True
                event = {**event, "metadata": _with(event.get("metadata"), self.header, request_id)}
            elif event["type"] == "grpc.response.message" and not started:
                # The runtime would send default headers; send ours instead.
                started = True
                await send({"type": "grpc.response.start", "metadata": [(self.header, request_id)]})
            elif event["type"] == "grpc.response.end" and not started and not event.get("reset"):
                event = {**event, "metadata": _with(event.get("metadata"), self.header, request_id)}
            await send(event)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
