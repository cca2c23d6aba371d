"""Client call credentials: a bearer token or an API key on every outgoing call.

grpcio calls these *call credentials*; here they are client middleware that
sets one metadata entry on ``scope["metadata"]``::

    Channel(host, port, ssl=True, middleware=[
        Middleware(CallCredentialsMiddleware, token_provider=fetch_token),
    ])

``token_provider`` is ``async def () -> (token, expires_at)`` with
``expires_at`` a ``time.time()`` timestamp (or None: valid until the server
rejects it). The token is cached and refreshed ``refresh_margin`` seconds
before it expires. Refreshes are single-flight: however many calls start at
once, one of them runs the provider and the others wait for its result --
unless the cached token is still valid, in which case they go ahead with it
rather than queue behind the refresh. A call that ends UNAUTHENTICATED
discards the token it carried, so the next call fetches a new one (the
failed call itself is not repeated; put :class:`RetryMiddleware` outside with
UNAUTHENTICATED retryable if that is wanted).

A provider that fails (raises) ends the call with UNAVAILABLE -- not
UNAUTHENTICATED: the caller's credentials were not judged, they could not be
obtained, which is usually transient -- unless the cached token is still
valid, which is then used. Metadata the caller set explicitly for the same
header wins over the middleware.

Credentials are sent on whatever connection the channel has: use TLS
(``Channel(..., ssl=True)``) for anything but tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NamedTuple

from ..exceptions import GRPCError
from ..protocol.metadata import InvalidMetadata, encode_metadata
from ..protocol.status import Status
from ..types import ClientApp, ClientScope, Receive, Send, SendEvent

__all__ = ["CallCredentialsMiddleware", "ApiKeyCredentialsMiddleware", "TokenProvider"]

log = logging.getLogger("grpcasgi.client.credentials")

#: ``async () -> (token, expires_at)``; ``expires_at`` is a ``time.time()`` timestamp or None.
TokenProvider = Callable[[], Awaitable[tuple[str, "float | None"]]]


class _Token(NamedTuple):
    value: str  # the header value, e.g. "Bearer abc"
    expires_at: float | None


def _checked_value(header: str, value: str) -> str:
    try:
        encode_metadata([(header, value)])
    except InvalidMetadata as exc:
        raise ValueError(f"invalid credential for {header!r}: {exc}") from None
    return value


class CallCredentialsMiddleware:
    """Send ``authorization: Bearer <token>`` (header and scheme configurable).

    Give either a fixed ``token`` or a ``token_provider`` (see the module docs).
    """

    def __init__(
        self,
        app: ClientApp,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        refresh_margin: float = 30.0,
        header: str = "authorization",
        scheme: str | None = "Bearer",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (token is None) == (token_provider is None):
            raise ValueError("give exactly one of token= or token_provider=")
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self.app = app
        self.header = header.lower()
        self.scheme = scheme
        self.refresh_margin = refresh_margin
        self._provider = token_provider
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: _Token | None = None
        if token is not None:
            self._cached = _Token(_checked_value(self.header, self._format(token)), None)

    def _format(self, token: str) -> str:
        return f"{self.scheme} {token}" if self.scheme else token

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        metadata = scope["metadata"]
        if self.header in metadata:  # the caller chose credentials for this call
            await self.app(scope, receive, send)
            return
        used = self._cached
        if used is None or not self._fresh(used, self.refresh_margin):
            used = await self._obtain(scope)
        metadata[self.header] = used.value
        if self._provider is None:
            await self.app(scope, receive, send)
            return

        async def watch(event: SendEvent) -> None:
            if event["type"] == "grpc.response.end" and event["status"] is Status.UNAUTHENTICATED:
                self.invalidate(used)
            await send(event)

        await self.app(scope, receive, watch)

    def invalidate(self, token: _Token | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given)."""
        if token is None or self._cached is token:
            self._cached = None

    def _fresh(self, token: _Token | None, margin: float) -> bool:
        if token is None:
            return False
        return token.expires_at is None or self._clock() < token.expires_at - margin

    async def _obtain(self, scope: ClientScope) -> _Token:
        deadline = scope["deadline"]
        if deadline is None:
            return await self._current()
        try:
            return await asyncio.wait_for(self._current(), deadline.time_remaining())
        except asyncio.TimeoutError:
            raise GRPCError(Status.DEADLINE_EXCEEDED, "Deadline exceeded while obtaining call credentials") from None

    async def _current(self) -> _Token:
        cached = self._cached
        if self._fresh(cached, self.refresh_margin):
            assert cached is not None
            return cached
        if self._lock.locked() and self._fresh(cached, 0):
            assert cached is not None
            return cached  # a refresh is under way; the old token is still good
        async with self._lock:
            cached = self._cached
            if self._fresh(cached, self.refresh_margin):  # refreshed while we waited
                assert cached is not None
                return cached
            return await self._refresh(cached)

    async def _refresh(self, cached: _Token | None) -> _Token:
        assert self._provider is not None
        try:
            token, expires_at = await self._provider()
            value = _checked_value(self.header, self._format(token))
        except Exception as exc:
            if self._fresh(cached, 0):
                log.warning("refreshing call credentials failed (%r); using the current token until it expires", exc)
                assert cached is not None
                return cached
            log.warning("could not obtain call credentials: %r", exc)
            raise GRPCError(Status.UNAVAILABLE, f"could not obtain call credentials: {exc}") from exc
        fresh = self._cached = _Token(value, expires_at)
        return fresh


class ApiKeyCredentialsMiddleware(CallCredentialsMiddleware):
    """Send a fixed API key, by default as ``x-api-key: <key>``."""

    def __init__(self, app: ClientApp, *, key: str, header: str = "x-api-key") -> None:
        super().__init__(app, token=key, header=header, scheme=None)
