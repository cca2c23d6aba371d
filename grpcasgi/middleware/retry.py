"""Client-side retries, following gRPC's retry design (gRFC A6).

``Channel(..., middleware=[Middleware(RetryMiddleware, max_attempts=4)])``
re-sends a call that failed with a retryable status (UNAVAILABLE by default)
as long as retrying is *safe* and *useful*:

* safe: the call is not *committed*. It commits as soon as the server sent
  response headers (``grpc.response.start``) or a message, because from then
  on the caller may have seen part of a response; a Trailers-Only failure
  (status without headers, what a server that never ran the handler sends)
  stays retryable. It also commits when the request messages buffered for
  replay exceed ``max_buffer_size``: what is no longer kept cannot be re-sent.
* useful: attempts left, the next attempt would start before the call's
  deadline (the deadline covers all attempts together and is never extended),
  and, with a :class:`RetryThrottle`, the channel is not failing too often.

Between attempts the middleware waits an exponential backoff,
``min(initial_backoff * backoff_multiplier**(n-1), max_backoff)``, spread by
``±jitter`` (gRPC core's ±20 % by default; A6's text draws uniformly from
``[0, backoff]``, which is ``jitter=1`` centred at half the backoff -- the
proportional form keeps the configured spacing meaningful). Request messages
are buffered and replayed to each new attempt; retries carry the
``grpc-previous-rpc-attempts`` header (the number of earlier attempts).

Not implemented: hedging, and server pushback (``grpc-retry-pushback-ms``),
because grpcasgi keeps every ``grpc-*`` header out of application metadata on
both sides, so servers cannot send it through this API.

Place it outermost or near it: middleware inside it (credentials, tracing)
runs once per attempt, middleware outside it once per call.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable, Iterable

from multidict import MultiDict

from ..client_stack import PREVIOUS_ATTEMPTS
from ..exceptions import GRPCError
from ..protocol.status import Status
from ..types import ClientApp, ClientScope, Receive, ReceiveEvent, ResponseEndEvent, Send, SendEvent

__all__ = ["RetryMiddleware", "RetryThrottle"]

log = logging.getLogger("grpcasgi.client.retry")

#: Per-call replay buffer bound (gRPC core's default per-RPC retry buffer).
DEFAULT_MAX_BUFFER_SIZE = 256 * 1024


class RetryThrottle:
    """Channel-wide retry throttling (A6, "Throttling Retry Attempts").

    Starts with ``max_tokens``; an attempt that fails with a retryable status
    costs one token, a successful call earns ``token_ratio``. Retries are
    allowed only while more than half of ``max_tokens`` is left, so a failing
    backend is not hammered with retries by every client.
    """

    __slots__ = ("max_tokens", "token_ratio", "tokens")

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        if not 0 < max_tokens <= 1000:
            raise ValueError("max_tokens must be in (0, 1000]")
        if token_ratio <= 0:
            raise ValueError("token_ratio must be positive")
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self.tokens = float(max_tokens)

    def record_success(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def record_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    @property
    def retry_allowed(self) -> bool:
        return self.tokens > self.max_tokens / 2


class _Replay:
    """The request events of one call, kept so that another attempt can re-read them."""

    __slots__ = ("_receive", "_limit", "events", "size", "keeping")

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.events: list[ReceiveEvent] = []
        self.size = 0
        #: False once the call committed or the buffer overflowed.
        self.keeping = True

    def drop(self) -> None:
        self.keeping = False
        self.events = []

    def reader(self) -> Receive:
        """``receive`` for one attempt: the kept events first, then the caller's."""
        index = 0

        async def receive() -> ReceiveEvent:
            nonlocal index
            events = self.events
            if index < len(events):
                event = events[index]
                index += 1
                return event
            event = await self._receive()
            if self.keeping:
                if event["type"] == "grpc.request.message":
                    self.size += event["size"]
                    if self.size > self._limit:
                        self.drop()  # this attempt goes on; there is no next one
                        return event
                self.events.append(event)
                index += 1
            return event

        return receive


class RetryMiddleware:
    """Retry calls that failed with a retryable status before committing (see the module docs)."""

    def __init__(
        self,
        app: ClientApp,
        *,
        max_attempts: int = 5,
        initial_backoff: float = 0.1,
        max_backoff: float = 1.0,
        backoff_multiplier: float = 2,
        retryable_status_codes: Iterable[Status] = frozenset({Status.UNAVAILABLE}),
        jitter: float = 0.2,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
        throttle: RetryThrottle | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if initial_backoff <= 0 or max_backoff <= 0:
            raise ValueError("initial_backoff and max_backoff must be positive")
        if backoff_multiplier <= 0:
            raise ValueError("backoff_multiplier must be positive")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        codes = frozenset(Status(code) for code in retryable_status_codes)
        if Status.OK in codes:
            raise ValueError("OK is not a retryable status")
        self.app = app
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.backoff_multiplier = backoff_multiplier
        self.retryable_status_codes = codes
        self.jitter = jitter
        self.max_buffer_size = max_buffer_size
        self.throttle = throttle
        self._rng = rng

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.initial_backoff * self.backoff_multiplier ** (retry - 1), self.max_backoff)
        return max(0.0, base * (1 + self.jitter * (2 * self._rng() - 1)))

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        replay = _Replay(receive, self.max_buffer_size)
        committed = False
        attempt = 0
        while True:
            attempt += 1
            held: list[ResponseEndEvent] = []  # the end of a failed attempt we may retry
            delay = 0.0

            def retry_delay(status: Status) -> float | None:
                """The wait before the next attempt, or None when this failure is final."""
                if committed or not replay.keeping or status not in self.retryable_status_codes:
                    return None
                if attempt >= self.max_attempts:
                    return None
                if self.throttle is not None and not self.throttle.retry_allowed:
                    return None
                wait = self.backoff(attempt)
                deadline = scope["deadline"]
                if deadline is not None and wait >= deadline.time_remaining():
                    return None
                return wait

            async def attempt_send(event: SendEvent) -> None:
                nonlocal committed, delay
                if not committed:
                    if event["type"] == "grpc.response.end":
                        status = event["status"]
                        self._record(status)
                        wait = retry_delay(status)
                        if wait is not None:
                            delay = wait
                            held.append(event)
                            return
                    committed = True
                    replay.drop()
                await send(event)

            attempt_scope: Any = dict(scope)
            metadata = attempt_scope["metadata"] = MultiDict(scope["metadata"])
            if attempt > 1:
                metadata[PREVIOUS_ATTEMPTS] = str(attempt - 1)
            try:
                await self.app(attempt_scope, replay.reader(), attempt_send)
            except GRPCError as exc:
                if committed or held:
                    raise
                self._record(exc.status)
                wait = retry_delay(exc.status)
                if wait is None:
                    raise
                delay = wait
                log.info("%s: attempt %d failed with %s: %s", scope["path"], attempt, exc.status.name, exc.message)
            else:
                if not held:
                    return
                log.info(
                    "%s: attempt %d failed with %s: %s",
                    scope["path"],
                    attempt,
                    held[0]["status"].name,
                    held[0].get("message"),
                )
            log.debug("%s: retrying in %.3fs (attempt %d of %d)", scope["path"], delay, attempt + 1, self.max_attempts)
            await asyncio.sleep(delay)

    def _record(self, status: Status) -> None:
        throttle = self.throttle
        if throttle is not None:
            if status is Status.OK:
                throttle.record_success()
            elif status in self.retryable_status_codes:
                throttle.record_failure()
